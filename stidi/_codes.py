"""Named codes and typed settings shared by the kernels and the estimator.

Every choice of the learning rule is an :class:`enum.IntEnum` (Numba compares
its members with plain integers inside compiled code), and the kernels
receive the neuron and rule settings as two typed :class:`typing.NamedTuple`
values instead of long positional argument lists.
"""

from __future__ import annotations

from enum import IntEnum
from typing import NamedTuple


class _Choice(IntEnum):
    """An option chosen by a lower-case name, e.g. ``Target.parse("target", "minmax")``."""

    @classmethod
    def names(cls) -> list[str]:
        return [m.name.lower() for m in cls]

    @classmethod
    def parse(cls, option: str, value) -> "_Choice":
        if isinstance(value, str) and value.upper() in cls.__members__:
            return cls[value.upper()]
        raise ValueError(f"{option} must be one of {cls.names()}, got {value!r}")


class LayerKind(_Choice):
    CONV = 0
    POOL = 1
    DENSE = 2


class Target(_Choice):
    RELATIVE = 0
    MINMAX = 1


class DtDv(_Choice):
    LINEAR = 0
    CONSTANT = 1
    SLOPE = 2


class HiddenError(_Choice):
    S4NN = 0
    DISPLACEMENT = 1


class Optimizer(_Choice):
    SGD = 0
    ADAM = 1


class Schedule(_Choice):
    EXPONENTIAL = 0
    COSINE = 1


class SilentTarget(_Choice):
    CORRECT = 0
    ALL = 1


class SilentHidden(_Choice):
    NONE = 0
    PULL = 1


class ConvReduce(_Choice):
    SUM = 0
    MEAN = 1


class BinaryBackward(_Choice):
    REAL = 0
    SIGN = 1


class Stat(IntEnum):
    """Columns of the statistics vector the epoch kernels fill."""

    CORRECT = 0
    CORRECT_STRICT = 1
    OUT_SILENT = 2
    TIES = 3
    N = 4


N_STATS = len(Stat)


class Col(IntEnum):
    """Columns of the ``(L, 9)`` layer descriptor table read by the kernels."""

    KIND = 0
    C = 1
    H = 2
    W = 3
    F = 4
    HO = 5
    WO = 6
    K = 7
    PAD = 8


N_COLS = len(Col)

BISECT_STEPS = 22        # log-scale bisection of the initial weight scale: 8 / 2**22 decades
ALPHA_FLOOR = 1e-12      # binary scales never reach 0
ADAM_BETAS = (0.9, 0.999, 1e-8)


class Neuron(NamedTuple):
    """PSP kernel and coding window (the threshold is per layer)."""

    tau1: float
    tau2: float
    t_max: float


class Rule(NamedTuple):
    """Settings of the STiDi-BP rule read by the kernels."""

    gamma: float
    target: int           # Target
    dtdv: int             # DtDv
    hidden: int           # HiddenError
    normalise: bool
    beta: float
    slope_floor: float
    norm_floor: float
    silent_target: int    # SilentTarget
    silent_pull: bool     # SilentHidden.PULL
    conv_mean: bool       # ConvReduce.MEAN
    weight_decay: float
    sign_backward: bool   # BinaryBackward.SIGN
    alpha_lr: float


def make_rule(*, gamma=3.0, target="relative", dtdv="linear", hidden_error="s4nn", normalise=True,
              beta=1.0, slope_floor=1e-3, norm_floor=0.0, silent_target="correct",
              silent_hidden="none", conv_reduce="sum", weight_decay=0.0, binary_backward="real",
              alpha_lr=0.0) -> Rule:
    """A :class:`Rule` from option names (each checked, with a clear message)."""
    return Rule(float(gamma), int(Target.parse("target", target)), int(DtDv.parse("dtdv", dtdv)),
                int(HiddenError.parse("hidden_error", hidden_error)), bool(normalise), float(beta),
                float(slope_floor), float(norm_floor),
                int(SilentTarget.parse("silent_target", silent_target)),
                SilentHidden.parse("silent_hidden", silent_hidden) == SilentHidden.PULL,
                ConvReduce.parse("conv_reduce", conv_reduce) == ConvReduce.MEAN, float(weight_decay),
                BinaryBackward.parse("binary_backward", binary_backward) == BinaryBackward.SIGN,
                float(alpha_lr))
