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


def _choice(name: str, members: str) -> type:
    return _Choice(name, members, start=0, module=__name__)


# every option with a fixed set of values: enum name, then its members (value 0 first)
_CHOICES = """
LayerKind       CONV POOL DENSE
Target          RELATIVE MINMAX SOFTMAX
DtDv            LINEAR CONSTANT SLOPE
HiddenError     S4NN DISPLACEMENT
Optimizer       SGD ADAM
Schedule        EXPONENTIAL COSINE CONSTANT
SilentTarget    CORRECT ALL
SilentHidden    NONE PULL
ConvReduce      SUM MEAN
BinaryBackward  REAL SIGN
Psp             TRIANGLE STEP
Init            CALIBRATED UNIFORM
DecayEvery      UPDATE SAMPLE
BinaryScale     LAYER UNIT
"""
(LayerKind, Target, DtDv, HiddenError, Optimizer, Schedule, SilentTarget, SilentHidden, ConvReduce,
 BinaryBackward, Psp, Init, DecayEvery, BinaryScale) = (_choice(*line.split(None, 1))
                                           for line in _CHOICES.strip().splitlines())
Stat = IntEnum("Stat", "CORRECT CORRECT_STRICT OUT_SILENT TIES N", start=0, module=__name__)
Stat.__doc__ = "Columns of the statistics vector the epoch kernels fill."
Col = IntEnum("Col", "KIND C H W F HO WO K PAD", start=0, module=__name__)
Col.__doc__ = "Columns of the ``(L, 9)`` layer descriptor table read by the kernels."
N_STATS = len(Stat)
N_COLS = len(Col)

BISECT_STEPS = 22        # log-scale bisection of the initial weight scale: 8 / 2**22 decades
ALPHA_FLOOR = 1e-12      # binary scales never reach 0
ADAM_BETAS = (0.9, 0.999, 1e-8)


class Neuron(NamedTuple):
    """PSP kernel and coding window (the threshold is per layer).

    ``psp`` is a :class:`Psp` code: ``TRIANGLE`` (the PL-PSP with ``tau1``, ``tau2``)
    or ``STEP`` (non-leaky integrate-and-fire: every input adds its weight for good,
    ``tau1``/``tau2`` unused).  ``delay`` (step PSP only) is added to every
    crossing time: a neuron whose potential reaches the threshold at ``t`` fires
    at ``t + delay``.
    """

    tau1: float
    tau2: float
    t_max: float
    psp: int = 0          # Psp.TRIANGLE
    delay: float = 0.0


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
    sign_backward: bool   # BinaryBackward.SIGN
    alpha_lr: float
    decay_every_sample: bool = False   # DecayEvery.SAMPLE: decay also after samples without error
    binary_clip: float = 0.0           # binary layers: real weights kept in [-c alpha_l, c alpha_l] (0: off)
    binary_unit: bool = False          # BinaryScale.UNIT: alpha_l times each unit's relative mean |w|
    end_margin: float = 0.0            # relative targets: the correct output's target is <= t_max - end_margin


def make_rule(*, gamma=3.0, target="relative", dtdv="linear", hidden_error="s4nn", normalise=True,
              beta=1.0, slope_floor=1e-3, norm_floor=0.0, silent_target="correct",
              silent_hidden="none", conv_reduce="sum", binary_backward="real",
              alpha_lr=0.0, decay_every="update", binary_clip=0.0, binary_scale="layer",
              end_margin=0.0) -> Rule:
    """A :class:`Rule` from option names (each checked, with a clear message)."""
    return Rule(float(gamma), int(Target.parse("target", target)), int(DtDv.parse("dtdv", dtdv)),
                int(HiddenError.parse("hidden_error", hidden_error)), bool(normalise), float(beta),
                float(slope_floor), float(norm_floor),
                int(SilentTarget.parse("silent_target", silent_target)),
                SilentHidden.parse("silent_hidden", silent_hidden) == SilentHidden.PULL,
                ConvReduce.parse("conv_reduce", conv_reduce) == ConvReduce.MEAN,
                BinaryBackward.parse("binary_backward", binary_backward) == BinaryBackward.SIGN,
                float(alpha_lr), DecayEvery.parse("decay_every", decay_every) == DecayEvery.SAMPLE,
                float(binary_clip), BinaryScale.parse("binary_scale", binary_scale) == BinaryScale.UNIT,
                float(end_margin))
