r"""One scikit-learn estimator for every architecture.

>>> clf = SpikingClassifier("784-400-10", epochs=3, random_state=0)     # doctest: +SKIP
>>> clf.fit(X_train, y_train, validation_data=(X_val, y_val))         # doctest: +SKIP
>>> clf.score(X_test, y_test)                                          # doctest: +SKIP

``__init__`` only stores settings; :meth:`SpikingClassifier.fit` learns the
attributes that end in an underscore.  Initialisation lives in
:mod:`stidi.init`, the kernels in :mod:`stidi.network`, files in
:mod:`stidi._io`.
"""

from __future__ import annotations

import inspect
import json
import os
import time
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Sequence

import numpy as np

from . import _io
from ._estimator import ScoringMixin
from ._codes import (N_STATS, Col, DtDv, HiddenError, Init, LayerKind, Neuron, Optimizer, Psp,
                     Schedule, Stat, make_rule)
from .architecture import parse_architecture
from .binary import forward_weights
from .datasets import flip_images, shift_images
from .init import (bump_silent, calibrate_binary, calibrate_scale,  # noqa: F401  (old import path)
                   default_medians, init_weights, reinit_dead)
from .network import forward_network, train_epoch_batch, train_epoch_sgd
from .neuron import _check_positive, encode, psp as _psp_triangle
from .rule import decide_batch

__all__ = ["SpikingClassifier", "ConvSpikingClassifier", "NotFittedError", "calibrate_scale"]

# Learning-rate defaults (units: each layer's calibrated initial scale s_l) when
# lr_hidden / lr_output are None.  Dense networks: the rates chosen on a
# validation split for 784-400-10 when they were absolute (1e-3 and 2.5e-6)
# divided by that network's calibrated scales (about 0.175 and 0.016).
# Networks with a convolution: the rates chosen for 28x28-16C5-P2-10.
AUTO_LR = {False: {"lr_hidden": 5.7e-3, "lr_output": 1.6e-4},
           True: {"lr_hidden": 1e-4, "lr_output": 1e-3}}


# Settings added after files were first written, with the value that reproduces the
# behaviour of files that lack them (where that differs from today's default).
_ABSENT_MEANS = {"weight_average": 0.0, "eval_before_reset": False}


class NotFittedError(RuntimeError, ValueError, AttributeError):
    """A method that needs a fitted estimator was called before :meth:`SpikingClassifier.fit`.

    A ``ValueError`` and ``AttributeError`` as scikit-learn's own (so ``hasattr(clf, "coefs_")``
    is False before fitting), and a ``RuntimeError`` as in earlier versions.
    """


def _n_threads(n_jobs) -> int:
    import numba

    avail = int(numba.config.NUMBA_NUM_THREADS)
    if n_jobs is None:
        return 1
    n = int(n_jobs)
    if n == 0:
        raise ValueError("n_jobs must be a positive number of threads, -1 (all) or None (1), got 0")
    return max(1, n if n > 0 else avail + 1 + n)


@contextmanager
def _threads(n_jobs):
    """Run Numba's parallel kernels on ``n_jobs`` threads (capped by the pool), then restore."""
    import numba

    n = min(_n_threads(n_jobs), int(numba.config.NUMBA_NUM_THREADS))
    old = numba.get_num_threads()
    numba.set_num_threads(n)
    try:
        yield n
    finally:
        numba.set_num_threads(old)


def _whole(x: float):
    """``x`` as an int when it is a whole number (bits per synapse of uniform networks)."""
    return int(x) if float(x).is_integer() else x


class SpikingClassifier(ScoringMixin):
    r"""Single-spike SNN trained with STiDi-BP: dense, convolutional, real or binary weights.

    Parameters
    ----------
    arch : str, default "784-400-10"
        Architecture string (:mod:`stidi.architecture`): e.g. ``"784-800-400-10"``,
        ``"28x28-16C5-P2-10"``, ``"28x28-32C5-P2-64C5-P2-10"``; ``*`` as the first
        (last) token takes the input size (number of classes) from the data.
    binary : bool or sequence of bool, default False
        Forward pass with :math:`\alpha_l\,\mathrm{sign}(w)`, learning on real :math:`w`
        (:mod:`stidi.binary`): every weight layer (True), or one flag per weight
        layer, e.g. ``[False, True]`` for a real convolution and a binary output layer.
    hidden : sequence of int or None
        Deprecated: ``hidden=(400,)`` means ``arch="*-400-*"``, with the learning-rate
        meaning of the former fully connected classifier kept for old code: with SGD,
        ``lr``, ``lr_hidden`` and ``lr_output`` are absolute steps (defaults 1e-3 and
        2.5e-6); with Adam, units of the calibrated scale (same defaults).
    t_max : float, default 256
        Coding and simulation window; also the time of "no spike".
    tau1, tau2 : float, default 128, 1024
        Rise and decay times of the triangular PSP.
    theta : float or sequence, default 1.0
        Threshold: one value, or one per weight layer.
    gamma : float, default 3
        Target margin of the output layer.
    target : {"relative", "minmax", "softmax"}, default "relative"
        Output target rule (:mod:`stidi.rule`); ``"softmax"``: a graded target for
        every output on every sample, from the cross-entropy of a softmax over
        :math:`-t/\gamma` (``gamma`` is then its temperature, in time steps).
    dtdv : {"linear", "constant", "slope"}, default "linear"
        Approximation of :math:`\partial t/\partial v`: :math:`-t/\theta`, :math:`-1`
        or :math:`-1/\dot v`.
    hidden_error : {"s4nn", "displacement"}, default "s4nn"
        How errors reach the layers below (:mod:`stidi.dense`, :mod:`stidi.conv`).
    normalise : bool, default True
        Divide each layer's error vector by its L2 norm, per sample.
    beta : float, default 1.0
        Gain of the spike-time displacement (``hidden_error="displacement"``).
    lr : sequence of float or None
        One learning rate per weight layer, **in units of the layer's calibrated
        initial weight scale** :math:`s_l` (the step applied is ``lr_l * s_l``, so one
        value suits layers of any fan-in).  ``None``: ``lr_conv`` for conv layers,
        ``lr_hidden`` for hidden dense layers, ``lr_output`` for the last layer.
    lr_conv : float, default 1e-4
        Rate of conv layers when ``lr`` is None (chosen for ``28x28-16C5-P2-10``; a
        deeper conv layer is unstable at this rate in our runs: give ``lr`` per layer).
    lr_hidden, lr_output : float or None
        Rates of hidden dense layers and of the output layer when ``lr`` is None.
        ``None``: 5.7e-3 and 1.6e-4 for networks without convolutions, 1e-4 and
        1e-3 for networks with one (each chosen on a validation split for the
        default network of its family; see :data:`AUTO_LR`).
    lr_decay : float, default 0.7
        Multiplicative decay after every epoch (``lr_schedule="exponential"``).
    lr_schedule : {"exponential", "cosine", "constant"}, default "exponential"
        Epoch ``k`` (0-based) of ``E`` uses ``lr * lr_decay**k``,
        ``lr * (1 + cos(pi k / E)) / 2`` (``"cosine"``; resume with the same ``epochs``),
        or ``lr`` throughout (``"constant"``, S4NN's schedule; ``lr_decay`` is ignored).
    lr_steps : int, default 1
        Times per epoch the schedule is evaluated: the epoch is cut into
        ``lr_steps`` equal parts (whole mini-batches) and part ``j`` uses the
        schedule at the fractional epoch ``k + j / lr_steps``, so the rate falls
        smoothly instead of once per epoch (1: one rate per epoch).
    conv_reduce : {"sum", "mean"}, default "sum"
        How a filter's update is reduced over the positions that share it.
    epochs : int, default 10
    batch_size : int, default 1
        1 = online updates (serial, deterministic); > 1 = averaged mini-batches,
        each split into ``n_jobs`` fixed shares computed in parallel.
    optimizer : {"sgd", "adam"}, default "sgd"
    weight_decay : float, default 0
        L2 decay: after each update of layer :math:`l` its weights are multiplied by
        :math:`1 - \eta_l \lambda_l`, with :math:`\eta_l` the layer's step.
    decay_units : {"absolute", "relative"}, default "absolute"
        What :math:`\lambda_l` is. ``"absolute"``: ``weight_decay`` itself, so a layer
        decays in proportion to its absolute step (its rate times its calibrated
        scale :math:`s_l` when rates are relative); ``"relative"``:
        ``weight_decay / s_l``, so every layer loses the same fraction of its weights per
        unit of relative rate whatever its scale (the output layer of a convolutional
        network is calibrated about a thousand times smaller than the convolution).
        Our addition.
    decay_every : {"update", "sample"}, default "update"
        Online SGD: decay only after samples that carry an error (``"update"``), or
        after every sample (``"sample"``, S4NN's code).
    augment : int, default 0
        Every epoch, each training image is shifted by a random whole number of
        pixels in ``[-augment, augment]`` along both axes (vacated pixels: no
        spike).  Needs single-channel images (square ones for a flat input).
    flip : bool, default False
        Every epoch, each training image is mirrored left to right with
        probability 1/2 (after the shift of ``augment``; same image requirements).
        Our addition, for data whose classes do not depend on the side, such as
        Fashion-MNIST's clothing (not for digits).
    input_dropout : float, default 0
        Every epoch, each input spike of each training image is removed (its
        time set to ``t_max``) with this probability, independently (after
        ``augment`` and ``flip``); evaluation sees every spike.  Our addition: the
        dropout of Srivastava et al. (2014) applied to the input spikes, without
        rescaling (a calibrated layer then fires slightly later in training than
        at evaluation).  Any input layout.
    norm_floor : float, default 0
        With ``normalise``, the output error is divided by ``max(|e|, norm_floor)``
        and hidden errors get the same overall gain, so samples whose targets are
        nearly met take small steps.
    silent_target : {"correct", "all"}, default "correct"
        When no output neuron fires: push only the correct neuron (to
        ``t_max - gamma``), or every output neuron.
    end_margin : float, default 0
        Relative targets only: the correct output's target is at most
        ``t_max - end_margin``, so a correct output that fires first but within
        ``end_margin`` of the end of the window is still pushed earlier.  Our
        addition, against images that end with no output spike under a wide
        margin ``gamma`` (wrong outputs are then pushed to silence, and the
        correct one is asked for nothing once it fires first).  Must be
        ``< t_max``; 0 leaves the rule as published.
    silent_hidden : {"none", "pull"}, default "none"
        ``"pull"`` (our addition, S4NN-like errors only): a silent hidden unit whose
        potential rose above 0 gets :math:`\min(0, \sum_j e_j w_{ji})`, applied at its
        peak time, and a silent pooling window passes its error to the position that
        came closest to threshold.
    alpha_lr : float, default 0
        Learning rate of the binary scales :math:`\alpha_l` (0: calibrated once, fixed).
    binary_backward : {"real", "sign"}, default "real"
        Weights that send errors down in binary networks.
    binary_clip : float, default 0
        Binary layers only: after every update their real weights are clipped to
        :math:`[-c\,\alpha_l, c\,\alpha_l]` with ``c = binary_clip`` (0: no clipping,
        as in BS4NN), so signs keep changing late in training (:mod:`stidi.binary`).
    binary_scale : {"layer", "unit"}, default "layer"
        Binary layers only: one scale :math:`\alpha_l` per layer (BS4NN), or
        :math:`\alpha_l r_j` per unit (neuron or filter) with :math:`r_j` the mean
        magnitude of the unit's real weights relative to the layer's, recomputed with
        the signs (our option, after XNOR-Net's per-filter scales; :mod:`stidi.binary`).
    binary_warmup : int, default 0
        Binary networks only: the first ``binary_warmup`` epochs train as the real
        network does (the same initial weights, real weights in the forward pass); then every binary layer switches to
        :math:`\alpha_l\,\mathrm{sign}(w)`, with :math:`\alpha_l` chosen so that it fires,
        in the median, when the real layer did on the calibration images
        (:func:`stidi.init.calibrate_binary`).  Warm-up epochs are scored on the
        validation split but never kept as the fitted model.  Our option; 0 (the
        default, as BS4NN): binary from the first sample.
    init : {"calibrated", "uniform"}, default "calibrated"
        ``"calibrated"``: weights start as ``U(low, high) * s_l`` with ``s_l`` calibrated
        on data (``init_median``).  ``"uniform"`` (S4NN's scheme): ``U(low, high)`` in
        absolute units, nothing calibrated, and ``s_l`` is defined as 1, so the learning
        rates are then absolute steps.
    init_range : (float, float) or sequence of them, default (-0.5, 1.0)
        ``(low, high)`` of the initial uniform draw, one pair or one pair per weight
        layer.  Dead hidden neurons (``dead_threshold``) are re-drawn the same way.
    init_median : sequence of float or None
        Median first spike time each weight layer is calibrated to (:mod:`stidi.init`).
        ``None`` (:func:`stidi.init.default_medians`): fully connected networks start
        late, hidden weight layers evenly from 160 to 192 and the output at 224;
        networks with a convolution early, hidden weight layers evenly from 48 to 96 and
        the output at 128 (for ``t_max = 256``; scaled with ``t_max``).  Before version
        0.2 every network started early: ``init_median=[48, 128]`` for ``784-400-10``.
    init_samples : int, default 100
        Training samples used for the calibration.
    bump : float, default 0
        Weight bumping (Göltz et al. 2021): after every ``bump_every`` training samples,
        each input weight of the hidden units (conv filters: over all positions) that
        did not fire once in that window grows by ``bump`` times the layer's calibrated
        scale, a step that doubles while bumping goes on (``bump_doubling``); only
        the lowest layer with a silent unit is bumped (:func:`stidi.init.bump_silent`).
        0: off.
    bump_every : int, default 500
        Training samples per bumping window (rounded down to whole mini-batches).
    bump_doubling : {"layer", "unit"}, default "layer"
        ``"layer"`` (Göltz et al.): the step doubles for every window in a row in which
        the layer was bumped, whichever of its units were silent; ``"unit"``: for every
        window in a row in which that unit was bumped.
    bump_floor : float or sequence of float, default 0
        Fraction of a unit's (sample, position) pairs of a bumping window on which it
        must fire not to count as silent there (our addition, for conv maps that fall
        silent at most of their positions without being silent at all of them); one
        value, or one per weight layer (the output layer's is not used), e.g.
        ``[0, 0.1, 0]`` for the second convolution only.  0: a unit is silent only
        when it did not fire once in the window (Göltz et al.).
    bump_cap : int or None, default None
        Most doublings of the bumping step: it grows to at most ``bump * 2**bump_cap``
        times the layer's scale.  ``None``: no bound.
    weight_average : float, default 0.95
        Our addition: keep an exponential moving average of the weights,
        :math:`\bar w \leftarrow a \bar w + (1 - a) w` with ``a = weight_average``
        after every ``average_every`` training samples (the averaging of Polyak and
        Juditsky 1992 in its exponential form); validation, the choice of the best
        epoch and the fitted model use :math:`\bar w`, training goes on from
        :math:`w` (``last_W_``).  Re-drawn units restart their average.  0: off (the
        default before version 0.2).  The default 0.95 (every 100 samples) was chosen at
        a course-lab budget, 5,000 images and two epochs (``results/lab-defaults.json``).
    average_every : int or None, default None
        Training samples between two updates of the average (rounded down to whole
        mini-batches); with bumping it must equal ``bump_every``.  ``None``:
        ``bump_every`` with bumping, else 100.
    dead_threshold : float, default 0.001
        After every epoch, hidden neurons (conv filters: counted over positions) that
        fired on fewer than this fraction of the epoch's samples get fresh weights.
    slope_floor : float, default 1e-3
        Lower bound on :math:`\dot v` for ``dtdv="slope"``.
    psp : {"triangle", "step"}, default "triangle"
        Post-synaptic potential: the triangular PL-PSP (``tau1``, ``tau2``), or the step
        of a non-leaky integrate-and-fire neuron (S4NN's neuron, :mod:`stidi.neuron`;
        dense layers only, with ``hidden_error="s4nn"`` and ``dtdv`` "constant" or
        "linear"; the decision's tie-break then uses the potential reached at the spike).
    delay : float, default 0
        Step PSP only: a neuron that reaches the threshold at ``t`` fires at ``t + delay``
        (S4NN: 1).
    shuffle : bool, default True
        Visit the training set in a fresh random order every epoch (False: in the given
        order, as S4NN's code does).
    input_window : float or None, default None
        Encode intensities into ``[0, input_window]`` instead of ``[0, t_max]``:
        ``t = floor(input_window * (1 - p))``, black pixels still "no spike".  ``None``:
        ``t_max`` (the plain :func:`stidi.encode`).
    eval_before_reset : bool, default True
        Order of the end of an epoch: the validation split scores (and may keep) the
        epoch's weights first and dead hidden neurons are re-drawn afterwards, as
        S4NN's code does; False re-draws first and scores the weights with the fresh
        random neurons, which made accuracy dip after the epochs that re-drew many
        (the default before version 0.2; chapter 5).
    n_jobs : int or None, default None
        Threads of the parallel kernels (mini-batches, prediction, evaluation) while
        the estimator runs: ``None`` = 1, ``-1`` = all of Numba's pool.  With
        ``batch_size > 1`` it is also the number of shares a batch is split into,
        so the result depends on ``n_jobs`` but never on thread scheduling.
    random_state : int or None
    verbose : bool, default False
        Show a progress bar over epochs.

    Attributes
    ----------
    arch_ : Architecture
        The architecture, with ``*`` resolved.
    coefs_ : list
        Real weights per layer: ``(F, C, k, k)``, ``(n_out, n_in)`` or ``None`` (pooling).
    forward_coefs_ : list
        Weights of the forward pass (``alpha_l * sign(w)`` when binary).
    scales_ : ndarray
        Calibrated initial weight scale of each layer (1 for pooling).
    alpha_ : ndarray
        Binary scales (empty for real weights).
    history_ : list of dict
        Per-epoch accuracies, firing statistics and timings.
    best_epoch_ : int
        Epoch (1-based) whose weights were kept (best validation accuracy).
    classes_ : ndarray
    n_features_in_ : int

    Notes
    -----
    scikit-learn's ``check_estimator`` runs in ``tests/test_sklearn.py``; the checks
    that cannot apply (inputs must be intensities in [0, 1], a spiking network needs
    several samples per class to calibrate, ...) are listed there with their reasons.
    """

    def __init__(self, arch: str = "784-400-10", *, binary: bool = False,
                 hidden: Sequence[int] | None = None, t_max: float = 256.0, tau1: float = 128.0,
                 tau2: float = 1024.0, theta: float | Sequence[float] = 1.0, gamma: float = 3.0,
                 target: str = "relative", dtdv: str = "linear", hidden_error: str = "s4nn",
                 normalise: bool = True, beta: float = 1.0, lr: Sequence[float] | None = None,
                 lr_conv: float = 1e-4, lr_hidden: float | None = None,
                 lr_output: float | None = None, lr_decay: float = 0.7,
                 lr_schedule: str = "exponential", lr_steps: int = 1,
                 conv_reduce: str = "sum", epochs: int = 10,
                 batch_size: int = 1, optimizer: str = "sgd", weight_decay: float = 0.0,
                 decay_units: str = "absolute",
                 augment: int = 0, flip: bool = False, input_dropout: float = 0.0,
                 norm_floor: float = 0.0, silent_target: str = "correct", end_margin: float = 0.0,
                 silent_hidden: str = "none", alpha_lr: float = 0.0,
                 binary_backward: str = "real", binary_clip: float = 0.0, binary_scale: str = "layer",
                 binary_warmup: int = 0,
                 init_range: tuple[float, float] = (-0.5, 1.0),
                 init_median: Sequence[float] | None = None, init_samples: int = 100,
                 bump: float = 0.0, bump_every: int = 500, bump_doubling: str = "layer",
                 bump_cap: int | None = None, bump_floor: float | Sequence[float] = 0.0,
                 weight_average: float = 0.95, average_every: int | None = None,
                 dead_threshold: float = 0.001, slope_floor: float = 1e-3,
                 psp: str = "triangle", delay: float = 0.0, init: str = "calibrated",
                 shuffle: bool = True, decay_every: str = "update",
                 input_window: float | None = None, eval_before_reset: bool = True,
                 n_jobs: int | None = None, random_state: int | None = None,
                 verbose: bool = False):
        self.arch = arch
        self.binary = binary
        self.hidden = hidden
        self.t_max = t_max
        self.tau1 = tau1
        self.tau2 = tau2
        self.theta = theta
        self.gamma = gamma
        self.target = target
        self.dtdv = dtdv
        self.hidden_error = hidden_error
        self.normalise = normalise
        self.beta = beta
        self.lr = lr
        self.lr_conv = lr_conv
        self.lr_hidden = lr_hidden
        self.lr_output = lr_output
        self.lr_decay = lr_decay
        self.lr_schedule = lr_schedule
        self.lr_steps = lr_steps
        self.conv_reduce = conv_reduce
        self.epochs = epochs
        self.batch_size = batch_size
        self.optimizer = optimizer
        self.weight_decay = weight_decay
        self.decay_units = decay_units
        self.augment = augment
        self.flip = flip
        self.input_dropout = input_dropout
        self.norm_floor = norm_floor
        self.silent_target = silent_target
        self.end_margin = end_margin
        self.silent_hidden = silent_hidden
        self.alpha_lr = alpha_lr
        self.binary_backward = binary_backward
        self.binary_clip = binary_clip
        self.binary_scale = binary_scale
        self.binary_warmup = binary_warmup
        self.init_range = init_range
        self.init_median = init_median
        self.init_samples = init_samples
        self.bump = bump
        self.bump_every = bump_every
        self.bump_doubling = bump_doubling
        self.bump_cap = bump_cap
        self.bump_floor = bump_floor
        self.weight_average = weight_average
        self.average_every = average_every
        self.dead_threshold = dead_threshold
        self.slope_floor = slope_floor
        self.psp = psp
        self.delay = delay
        self.init = init
        self.shuffle = shuffle
        self.decay_every = decay_every
        self.input_window = input_window
        self.eval_before_reset = eval_before_reset
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.verbose = verbose

    # ------------------------------------------------------------------ parameters
    @classmethod
    def _defaults(cls) -> dict:
        """Constructor parameters and their defaults (of :class:`SpikingClassifier` itself)."""
        return {p.name: p.default for p in inspect.signature(SpikingClassifier.__init__).parameters.values()
                if p.name != "self"}

    @classmethod
    def _param_names(cls) -> list:
        return list(cls._defaults())

    def get_params(self, deep: bool = True) -> dict:
        """Constructor parameters, exactly as stored (``deep`` is accepted; there are no sub-estimators)."""
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params) -> "SpikingClassifier":
        """Set constructor parameters; an unknown name is an error."""
        valid = set(self._param_names())
        for k, v in params.items():
            if k not in valid:
                raise ValueError(f"invalid parameter {k!r} for {type(self).__name__}; "
                                 f"valid parameters: {sorted(valid)}")
            setattr(self, k, v)
        return self

    def __repr__(self) -> str:
        defaults = self._defaults()
        changed = [f"{k}={v!r}" for k, v in self.get_params().items()
                   if not (isinstance(v, type(defaults[k])) and v == defaults[k])]
        return f"{type(self).__name__}({', '.join(changed)})"

    def _arch_string(self) -> str:
        if self.hidden is not None:
            warnings.warn("SpikingClassifier(hidden=...) is deprecated; write arch='*-400-*' "
                          "(input size and classes from the data) or e.g. arch='784-400-10'",
                          FutureWarning, stacklevel=3)
            widths = [int(h) for h in self.hidden]
            if any(h <= 0 for h in widths):
                raise ValueError(f"hidden layer widths must be positive, got {self.hidden!r}")
            return "-".join(["*", *map(str, widths), "*"])
        if not isinstance(self.arch, str):
            raise TypeError(f"arch must be a string like '784-400-10' or '28x28-16C5-P2-10', "
                            f"got {self.arch!r}")
        return self.arch

    def _validate(self, arch) -> dict:
        """Check every setting; return the resolved per-layer values and kernel settings."""
        for name in ("t_max", "tau1", "tau2"):
            _check_positive(name, getattr(self, name))
        wl = arch.weight_layers
        nw = len(wl)
        th = np.asarray(self.theta, dtype=np.float64)
        th = np.full(nw, float(th)) if th.ndim == 0 else th
        if th.shape != (nw,) or np.any(~np.isfinite(th)) or np.any(th <= 0):
            raise ValueError(f"theta must be > 0, one value or one per weight layer ({nw}), "
                             f"got {self.theta!r}")
        legacy = self.hidden is not None  # the former fully connected classifier's rates
        auto = {"lr_hidden": 1e-3, "lr_output": 2.5e-6} if legacy else AUTO_LR[arch.has_conv]
        rates = {k: auto[k] if getattr(self, k) is None else getattr(self, k)
                 for k in ("lr_hidden", "lr_output")}
        if self.lr is None:
            lrs = [rates["lr_output"] if l == wl[-1] else
                   (self.lr_conv if arch.layers[l].kind == LayerKind.CONV else rates["lr_hidden"])
                   for l in wl]
        else:
            lrs = list(self.lr)
        try:
            lrs = [float(v) for v in lrs]
        except (TypeError, ValueError):
            lrs = []
        if len(lrs) != nw or any(not np.isfinite(v) or v < 0 for v in lrs):
            raise ValueError(f"lr needs {nw} non-negative values (one per weight layer), got "
                             f"{self.lr if self.lr is not None else lrs!r}")
        t_max = float(self.t_max)
        if self.init_median is None:
            med = default_medians(nw, t_max, fully_connected=not arch.has_conv)
        else:
            med = [float(m) for m in self.init_median]
        if len(med) != nw or any(not 0 < m < t_max for m in med):
            raise ValueError(f"init_median needs {nw} values in (0, t_max), got {self.init_median!r}")
        try:
            rng_arr = np.asarray(self.init_range, dtype=np.float64)
            pairs = [tuple(rng_arr)] * nw if rng_arr.ndim == 1 else [tuple(r) for r in rng_arr]
            ok = rng_arr.shape in ((2,), (nw, 2)) and all(np.isfinite(p).all() and p[0] < p[1]
                                                          for p in pairs)
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise ValueError(f"init_range must be (low, high) with low < high, or one such pair per "
                             f"weight layer ({nw}), got {self.init_range!r}")
        ranges = [(0.0, 1.0)] * len(arch.layers)
        for q, l in enumerate(wl):
            ranges[l] = (float(pairs[q][0]), float(pairs[q][1]))
        psp = Psp.parse("psp", self.psp)
        init = Init.parse("init", self.init)
        self._check_numbers((("delay", 0.0),))
        if self.delay and psp != Psp.STEP:
            raise ValueError("delay applies to psp='step' only")
        if psp == Psp.STEP:
            if arch.has_conv:
                raise ValueError("psp='step' is implemented for dense layers only")
            if HiddenError.parse("hidden_error", self.hidden_error) == HiddenError.DISPLACEMENT:
                raise ValueError("hidden_error='displacement' needs the PSP slope, which is 0 for "
                                 "psp='step'; use hidden_error='s4nn'")
            if DtDv.parse("dtdv", self.dtdv) == DtDv.SLOPE:
                raise ValueError("dtdv='slope' is undefined for psp='step' (the potential jumps); "
                                 "use 'constant' or 'linear'")
        binary = self._binary_layers(arch)
        if init == Init.UNIFORM and any(binary):
            raise ValueError("binary weights need init='calibrated'")
        if self.decay_units not in ("absolute", "relative"):
            raise ValueError(f"decay_units must be 'absolute' or 'relative', got {self.decay_units!r}")
        if self.bump_doubling not in ("layer", "unit"):
            raise ValueError(f"bump_doubling must be 'layer' or 'unit', got {self.bump_doubling!r}")
        cap = self.bump_cap
        if cap is not None and (not isinstance(cap, (int, np.integer)) or isinstance(cap, bool) or cap < 0):
            raise ValueError(f"bump_cap must be None or an integer >= 0, got {cap!r}")
        for name in ("shuffle", "eval_before_reset", "flip"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise ValueError(f"{name} must be True or False, got {getattr(self, name)!r}")
        if self.input_window is not None:
            iw = self.input_window
            if not isinstance(iw, (int, float, np.number)) or isinstance(iw, bool) \
                    or not 0 < iw <= t_max:
                raise ValueError(f"input_window must be None or a number in (0, t_max], got {iw!r}")
        for name in ("input_dropout", "weight_average"):
            p = getattr(self, name)
            if not isinstance(p, (int, float, np.number)) or isinstance(p, bool) or not 0.0 <= p < 1.0:
                raise ValueError(f"{name} must be a number in [0, 1), got {p!r}")
        try:
            bf = np.asarray(self.bump_floor, dtype=np.float64)
            bf = np.full(nw, float(bf)) if bf.ndim == 0 else bf
            ok = bf.shape == (nw,) and bool(np.all((bf >= 0) & (bf < 1))) \
                and not isinstance(self.bump_floor, (bool, np.bool_))
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise ValueError(f"bump_floor must be in [0, 1): one value or one per weight layer "
                             f"({nw}), got {self.bump_floor!r}")
        self._check_numbers((("gamma", 0.0), ("norm_floor", 0.0), ("alpha_lr", 0.0),
                             ("binary_clip", 0.0), ("weight_decay", 0.0), ("beta", 0.0),
                             ("slope_floor", 0.0),
                             ("dead_threshold", 0.0), ("lr_conv", 0.0), ("lr_decay", 0.0),
                             ("bump", 0.0), ("end_margin", 0.0)))
        if float(self.end_margin) >= float(self.t_max):
            raise ValueError(f"end_margin must be smaller than t_max ({self.t_max}), got {self.end_margin!r}")
        for name, minimum in (("epochs", 0), ("batch_size", 1), ("augment", 0), ("init_samples", 1),
                              ("lr_steps", 1), ("bump_every", 1), ("binary_warmup", 0)):
            v = getattr(self, name)
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < minimum:
                raise ValueError(f"{name} must be an integer >= {minimum}, got {v!r}")
        if int(self.binary_warmup) > 0:
            if not any(binary):
                raise ValueError(f"binary_warmup={self.binary_warmup} needs binary weights "
                                 f"(binary=True or one flag per weight layer)")
            if int(self.binary_warmup) >= int(self.epochs):
                raise ValueError(f"binary_warmup ({self.binary_warmup}) must be smaller than epochs "
                                 f"({self.epochs}): the fitted network would have no binary epoch")
        ae = self.average_every
        if ae is not None and (not isinstance(ae, (int, np.integer)) or isinstance(ae, bool) or ae < 1):
            raise ValueError(f"average_every must be None or an integer >= 1, got {ae!r}")
        if float(self.bump) > 0 and float(self.weight_average) > 0 and ae is not None \
                and int(ae) != int(self.bump_every):
            raise ValueError(f"with bumping, average_every must equal bump_every ({self.bump_every}), "
                             f"got {self.average_every}")
        _n_threads(self.n_jobs)
        L = len(arch.layers)
        full = np.ones((3, L))
        full[1:] = 0.0
        for q, l in enumerate(wl):
            full[:, l] = th[q], lrs[q], med[q]
        rule = make_rule(gamma=self.gamma, target=self.target, dtdv=self.dtdv,
                         hidden_error=self.hidden_error, normalise=self.normalise, beta=self.beta,
                         slope_floor=self.slope_floor, norm_floor=self.norm_floor,
                         silent_target=self.silent_target, silent_hidden=self.silent_hidden,
                         conv_reduce=self.conv_reduce,
                         binary_backward=self.binary_backward, alpha_lr=self.alpha_lr,
                         decay_every=self.decay_every, binary_clip=self.binary_clip,
                         binary_scale=self.binary_scale, end_margin=self.end_margin)
        optimizer = int(Optimizer.parse("optimizer", self.optimizer))
        binary_full = np.zeros(L, dtype=bool)
        binary_full[wl] = binary
        floor_full = np.zeros(L)
        floor_full[wl] = bf
        return dict(thetas=full[0].copy(), lrs=full[1].copy(), medians=full[2].copy(), rule=rule,
                    binary=binary_full, bump_floor=floor_full,
                    neuron=self._neuron(), optimizer=optimizer, init_ranges=ranges,
                    uniform=init == Init.UNIFORM,
                    absolute_lr=legacy and optimizer == Optimizer.SGD,
                    weight_decay=float(self.weight_decay), decay_relative=self.decay_units == "relative",
                    schedule=Schedule.parse("lr_schedule", self.lr_schedule),
                    lr_steps=int(self.lr_steps))

    def _check_numbers(self, bounds) -> None:
        """Each ``(name, minimum)``: the parameter is a finite real number >= minimum."""
        for name, minimum in bounds:
            v = getattr(self, name)
            if not isinstance(v, (int, float, np.number)) or isinstance(v, bool) \
                    or not np.isfinite(v) or v < minimum:
                raise ValueError(f"{name} must be a number >= {minimum:g}, got {v!r}")

    def _neuron(self) -> Neuron:
        return Neuron(float(self.tau1), float(self.tau2), float(self.t_max),
                      int(Psp.parse("psp", self.psp)), float(self.delay))

    # ------------------------------------------------------------------ inputs
    def _flat(self, X) -> np.ndarray:
        if hasattr(X, "toarray") or type(X).__module__.startswith("scipy.sparse"):
            raise TypeError("sparse input is not supported: pass a dense array of intensities")
        X = np.asarray(X)
        if np.iscomplexobj(X):
            raise ValueError("Complex data not supported: X must hold real intensities")
        if X.dtype == object:
            X = X.astype(np.float64)
        if X.ndim < 2:
            raise ValueError(f"X must have shape (n_samples, ...), got shape {X.shape}; Reshape your "
                             "data with X[None] for a single sample or X.reshape(-1, 1) for one feature")
        if X.shape[0] == 0:
            raise ValueError(f"X has 0 samples (shape={X.shape}) while a minimum of 1 is required")
        flat = X.reshape(X.shape[0], -1)
        if flat.shape[1] == 0:
            raise ValueError(f"X has 0 feature(s) (shape={X.shape}) while a minimum of 1 is required.")
        return flat

    def _times(self, X) -> np.ndarray:
        flat = self._flat(X)
        arch = self.arch_
        if flat.shape[1] != arch.n_inputs:
            raise ValueError(f"X has {flat.shape[1]} features, but {type(self).__name__} is expecting "
                             f"{arch.n_inputs} features as input (architecture {arch.text!r}, input "
                             f"{arch.input_shape} as (C, H, W))")
        shape = np.asarray(X).shape[1:]
        if len(shape) > 1 and not arch.flat_input and \
                shape not in (tuple(arch.input_shape), tuple(arch.input_shape[1:])):
            raise ValueError(f"X has samples of shape {shape}; the architecture {arch.text!r} "
                             f"expects {arch.input_shape} (C, H, W), {arch.input_shape[1:]} or flat")
        T = encode(flat, self.t_max)
        if self.input_window is not None:
            # the same encoding into [0, input_window]; black pixels stay "no spike" (t_max)
            T = np.where(T >= self.t_max, float(self.t_max), encode(flat, float(self.input_window)))
        return np.ascontiguousarray(T)

    def _augment_shape(self):
        if int(self.augment) == 0 and not self.flip:
            return None
        arch = self.arch_
        if not arch.flat_input:
            if arch.input_shape[0] != 1:
                raise ValueError("augment and flip need single-channel images")
            return tuple(arch.input_shape[1:])
        shape = getattr(self, "_fit_shape", ())
        if len(shape) == 2:
            return tuple(shape)
        side = int(round(np.sqrt(arch.n_inputs)))
        if side * side != arch.n_inputs:
            raise ValueError("augment and flip need square images or X of shape (n, height, width)")
        return (side, side)

    # ------------------------------------------------------------------ weights
    @property
    def coefs_(self) -> list:
        """Real weights per layer: ``(F, C, k, k)``, ``(n_out, n_in)`` or ``None`` (pooling)."""
        self._check_fitted()
        return self.arch_.unpack(self.W_)

    @property
    def forward_coefs_(self) -> list:
        """Weights of the forward pass (``alpha_l * sign(w)`` when binary)."""
        self._check_fitted()
        return self.arch_.unpack(self._forward_weights())

    def _binary_layers(self, arch) -> list:
        """``binary`` as one flag per weight layer of ``arch`` (checked)."""
        n = len(arch.weight_layers)
        b = self.binary
        if isinstance(b, (bool, np.bool_)):
            return [bool(b)] * n
        if isinstance(b, (list, tuple, np.ndarray)) and len(b) == n \
                and all(isinstance(v, (bool, np.bool_)) for v in b):
            return [bool(v) for v in b]
        raise ValueError(f"binary must be True, False or one True/False per weight layer "
                         f"({n} for {arch.text!r}), got {b!r}")

    def _forward_weights(self, W=None) -> np.ndarray:
        W = self.W_ if W is None else W
        unit = self.binary_scale == "unit"
        n_out = self.arch_.descriptor()[:, Col.F]
        return np.ascontiguousarray(forward_weights(W, self.arch_.offsets()[1], self.alpha_, n_out, unit))

    # ------------------------------------------------------------------ forward
    def _forward(self, T: np.ndarray, all_layers: bool = True, chunk: int = 4096,
                 buffer_values: int = 2 ** 25):
        """Spike times of every layer (``all_layers``) or of the output layer only, and the
        output layer's crossing slopes and peak potentials, one row per sample.

        The network runs over shares of the samples whose full state (three values per
        unit) fits in ``buffer_values`` floats, so memory grows with the samples only
        through what is kept.
        """
        a_off, w_off = self.arch_.offsets()
        desc = self.arch_.descriptor()
        Wf = self._forward_weights()
        neuron = self._neuron()
        n, width = T.shape[0], int(a_off[-1])
        o = slice(int(a_off[-2]), width)
        times = np.empty((n, width if all_layers else o.stop - o.start))
        slope = np.empty((n, o.stop - o.start))
        vpk = np.empty((n, o.stop - o.start))
        share = max(16, min(chunk, buffer_values // (3 * width)))
        buf = np.empty((3, min(share, n), width))
        with _threads(self.n_jobs):
            for s in range(0, n, share):
                e = min(s + share, n)
                k = e - s
                forward_network(T[s:e], Wf, desc, w_off, a_off, self.thetas_, neuron,
                                buf[0, :k], buf[1, :k], buf[2, :k])
                times[s:e] = buf[0, :k] if all_layers else buf[0, :k, o]
                slope[s:e] = buf[1, :k, o]
                vpk[s:e] = buf[2, :k, o]
        return times, slope, vpk

    def _decide(self, t_out, slope, vpk, fallback=True):
        """Decisions from the output layer's spike times, slopes and peaks (``(n, classes)`` each)."""
        n = t_out.shape[0]
        pred = np.empty(n, dtype=np.int64)
        tied = np.empty(n, dtype=np.bool_)
        with _threads(self.n_jobs):
            decide_batch(np.ascontiguousarray(t_out), np.ascontiguousarray(slope),
                         np.ascontiguousarray(vpk), float(self.t_max), bool(fallback), pred, tied)
        return pred, tied

    def _evaluate_times(self, T: np.ndarray, y: np.ndarray) -> dict:
        t_all, slope, vpk = self._forward(T)
        a = self.arch_.offsets()[0]
        t_out = t_all[:, int(a[-2]):int(a[-1])]
        pred, tied = self._decide(t_out, slope, vpk)
        silent = np.all(t_out >= self.t_max, axis=1)
        res = {
            "accuracy": float(np.mean(pred == y)),
            "accuracy_no_fallback": float(np.mean(np.where(silent, -1, pred) == y)),
            "output_silent_fraction": float(np.mean(silent)),
            "tie_fraction": float(np.mean(tied)),
            "accuracy_s4nn": self._s4nn_accuracy(t_all, y),
            "silent_fraction": [],
            "median_spike_time": [],
        }
        for l in range(1, len(a) - 1):
            tl = t_all[:, int(a[l]):int(a[l + 1])]
            res["silent_fraction"].append(float(np.mean(tl >= self.t_max)))
            res["median_spike_time"].append(float(np.median(tl)))
        return res

    def _s4nn_accuracy(self, t_all: np.ndarray, y: np.ndarray):
        """Accuracy under S4NN's evaluation rule (its public code), for comparison with ours.

        An image counts as correct when the label neuron's spike time *equals* the
        earliest output time, so ties count as correct; when no output fires, the
        prediction is the output with the highest potential at ``t_max - 3`` (t = 253
        of 256).  Returns None when the last layer is not dense.
        """
        arch = self.arch_
        last = len(arch.layers) - 1
        if arch.layers[last].kind != LayerKind.DENSE:
            return None
        a = arch.offsets()[0]
        t_out = t_all[:, int(a[-2]):int(a[-1])]
        t_below = t_all[:, int(a[-3]):int(a[-2])]
        tmin = t_out.min(axis=1)
        fired = tmin < self.t_max
        rows = np.arange(len(y))
        correct = fired & (t_out[rows, y] == tmin)
        if np.any(~fired):
            WT = arch.layer_view(self._forward_weights(), last)      # (n_in, n_out)
            s = float(self.t_max) - 3.0 - t_below[~fired]
            if Psp.parse("psp", self.psp) == Psp.STEP:
                k = ((s >= 0) & (t_below[~fired] < self.t_max)).astype(np.float64)
            else:
                k = _psp_triangle(s, self.tau1, self.tau2) * (t_below[~fired] < self.t_max)
            v = k @ WT
            correct[~fired] = np.argmax(v, axis=1) == y[~fired]
        return float(np.mean(correct))

    # ------------------------------------------------------------------ training
    def _reset(self) -> None:
        for name in [k for k in vars(self) if k.endswith("_") and not k.startswith("__")]:
            delattr(self, name)

    def fit(self, X, y, *, validation_data=None, checkpoint: str | os.PathLike | None = None,
            resume: bool = False) -> "SpikingClassifier":
        """Train on images ``X`` (uint8 0..255 or floats in [0, 1]).

        Parameters
        ----------
        X : array_like, shape ``(n, H, W)``, ``(n, C, H, W)`` or flat ``(n, C*H*W)``
        y : array_like, shape ``(n,)``
            Labels (any sortable values, at least two classes).
        validation_data : (X_val, y_val), optional
            Evaluated after every epoch; the weights of the epoch with the best
            validation accuracy are kept (model selection never looks at a test set).
        checkpoint : path, optional
            ``.npz`` file written atomically after every epoch.
        resume : bool
            Continue from ``checkpoint`` if it exists; a resumed run ends with the
            same weights as an uninterrupted one.
        """
        self._reset()
        if y is None:
            raise ValueError(f"{type(self).__name__} requires y to be passed, but the target y is None")
        flat = self._flat(X)
        y = np.asarray(y)
        if y.ndim != 1 or y.shape[0] != flat.shape[0]:
            raise ValueError(f"y must have shape ({flat.shape[0]},), got {y.shape}")
        if y.dtype.kind == "f" and not np.all(np.isfinite(y) & (y == np.round(y))):
            raise ValueError("Unknown label type: continuous (y holds non-integer numbers; a classifier "
                             "needs class labels)")
        classes = np.unique(y)
        if len(classes) < 2:
            raise ValueError(f"y needs at least two classes, got {len(classes)} "
                             f"({flat.shape[0]} sample{'s' if flat.shape[0] != 1 else ''})")
        arch = parse_architecture(self._arch_string(), n_inputs=flat.shape[1], n_classes=len(classes))
        if arch.n_outputs != len(classes):
            raise ValueError(f"the output layer of {arch.text!r} has {arch.n_outputs} neurons but y "
                             f"has {len(classes)} classes")
        self.arch_ = arch
        cfg = self._validate(arch)
        self._fit_shape = np.asarray(X).shape[1:]
        T = self._times(X)
        self.classes_ = classes
        self.n_features_in_ = int(flat.shape[1])
        self.thetas_ = cfg["thetas"]
        yi = self._labels(y, T.shape[0])
        val = None
        if validation_data is not None:
            Xv, yv = validation_data
            Tv = self._times(Xv)
            val = (Tv, self._labels(yv, Tv.shape[0]))
        shape = self._augment_shape()
        rng = np.random.default_rng(self.random_state)
        start_epoch = 0
        ckpt = Path(checkpoint) if checkpoint is not None else None
        with _threads(self.n_jobs):
            if resume and ckpt is not None and ckpt.exists():
                state = self._load_state(ckpt)
                rng.bit_generator.state = state["rng"]
                start_epoch = state["epoch"]
            else:
                warm = int(self.binary_warmup) > 0   # starts as the real network, binary later
                self.W_, self.scales_, self.alpha_ = init_weights(
                    arch, T[: int(self.init_samples)], cfg["medians"], cfg["thetas"], cfg["init_ranges"],
                    False if warm else cfg["binary"], cfg["neuron"], rng, uniform=cfg["uniform"],
                    binary_unit=cfg["rule"].binary_unit)
                if warm:
                    self.alpha_ = np.zeros(len(arch.layers))  # 0: real forward weights until the switch
                self.history_ = []
                self.m1_ = np.zeros_like(self.W_)
                self.m2_ = np.zeros_like(self.W_)
                self.step_ = 0
                self.best_W_, self.best_alpha_ = self.W_.copy(), self.alpha_.copy()
                self.avg_W_ = self.W_.copy()
                self.best_epoch_ = 0
                self.best_score_ = -1.0
            bar = _io.Progress(int(self.epochs), start_epoch, bool(self.verbose))
            for epoch in range(start_epoch, int(self.epochs)):
                t0 = time.perf_counter()
                if epoch == int(self.binary_warmup) > 0:
                    self._switch_to_binary(T, cfg)
                rec = self._run_epoch(T, yi, cfg, epoch, shape, rng)
                self._select_best(rec, val, epoch)
                if self.eval_before_reset:
                    rec["reinitialised"] = self._reset_dead(rec.pop("_fire"), T.shape[0], cfg, rng)
                rec["seconds"] = time.perf_counter() - t0
                self.history_.append(rec)
                if ckpt is not None:
                    self._save_state(ckpt, rng=rng.bit_generator.state, epoch=epoch + 1)
                bar.update(rec)
            bar.close()
        self.last_W_ = self.W_.copy()
        self.W_ = self.best_W_.copy()
        self.alpha_ = self.best_alpha_.copy()
        return self

    def _run_epoch(self, T, yi, cfg, epoch, shape, rng) -> dict:
        t0 = time.perf_counter()
        order = rng.permutation(T.shape[0]).astype(np.int64)  # drawn either way: same random stream
        if not self.shuffle:
            order = np.arange(T.shape[0], dtype=np.int64)
        lrs0 = cfg["lrs"] * (1.0 if cfg["absolute_lr"] else self.scales_)
        lrs = self._scheduled(lrs0, cfg, epoch)
        decays = np.full(lrs0.shape[0], cfg["weight_decay"])
        if cfg["decay_relative"]:
            decays = decays / self.scales_
        if shape is not None and int(self.augment) > 0:
            k = int(self.augment)
            d = rng.integers(-k, k + 1, size=(2, T.shape[0]))
            T = shift_images(T, shape, d[0], d[1], float(self.t_max))
        if shape is not None and self.flip:
            T = flip_images(T, shape, rng.random(T.shape[0]) < 0.5)
        if float(self.input_dropout) > 0.0:
            T = np.where(rng.random(T.shape) < float(self.input_dropout), float(self.t_max), T)
        a_off, w_off = self.arch_.offsets()
        stats = np.zeros(N_STATS)
        fire = np.zeros(int(a_off[-1]))
        Wf = self._forward_weights()
        desc = self.arch_.descriptor()
        bs = int(self.batch_size)
        parts = cfg["lr_steps"]
        n_batches = -(-order.shape[0] // bs)
        cuts = [min(order.shape[0], bs * (n_batches * j // parts)) for j in range(parts + 1)]
        bump = float(self.bump)
        avg = float(self.weight_average)
        if bump > 0 or avg > 0:
            window = max(1, int(self.bump_every if bump > 0 else self._average_every()) // bs) * bs
        else:
            window = order.shape[0]
        level = np.zeros(int(a_off[-1]), dtype=np.int64)   # bumps in a row (stidi.init.bump_silent)
        bumped = 0
        rates = [self._scheduled(lrs0, cfg, epoch + j / parts) for j in range(parts)]
        # windows (bumping, averaging) run over the whole epoch; a window that spans the
        # cut between two schedule parts trains each side at its part's rates
        for w0 in range(0, order.shape[0], window):
            w1 = min(w0 + window, order.shape[0])
            before = fire.copy() if bump > 0 else None
            a = w0
            while a < w1:
                j = next(j for j in range(parts) if cuts[j] <= a < cuts[j + 1])
                b = min(w1, cuts[j + 1])
                args = (T, yi, order[a:b], self.W_, Wf, self.alpha_, desc, w_off, a_off, self.thetas_,
                        rates[j], decays, cfg["neuron"], cfg["rule"], stats, fire)
                if bs == 1 and cfg["optimizer"] == Optimizer.SGD:
                    train_epoch_sgd(*args)
                else:
                    self.step_ = train_epoch_batch(*args, bs, min(_n_threads(self.n_jobs), bs),
                                                   cfg["optimizer"], self.m1_, self.m2_, int(self.step_))
                a = b
            if bump > 0 and w1 - w0 == window:
                n_b = bump_silent(self.arch_, self.W_, fire - before, bump, self.scales_, level,
                                  per_unit=self.bump_doubling == "unit", cap=self.bump_cap,
                                  floor=cfg["bump_floor"], n_seen=int(w1 - w0))
                if n_b:
                    bumped += n_b
                    Wf = self._forward_weights()
            if avg > 0:
                self.avg_W_ *= avg
                self.avg_W_ += (1.0 - avg) * self.W_
        reinit = 0 if self.eval_before_reset else self._reset_dead(fire, T.shape[0], cfg, rng)
        seconds = time.perf_counter() - t0
        n = max(stats[Stat.N], 1)
        rec = {
            "epoch": epoch + 1,
            "train_accuracy_running": stats[Stat.CORRECT] / n,
            "train_output_silent_fraction": stats[Stat.OUT_SILENT] / n,
            "train_hidden_silent_fraction": [float(1 - fire[a_off[l]:a_off[l + 1]].mean() / T.shape[0])
                                             for l in range(1, len(a_off) - 2)],
            "reinitialised": int(reinit),
            "bumped": int(bumped),
            "lr": [float(v) for v in lrs],
            "train_seconds": seconds,
            "seconds_per_image": seconds / T.shape[0],
        }
        if self.alpha_.size:
            rec["alpha"] = [float(v) for v in self.alpha_]
        if self.eval_before_reset:
            rec["_fire"] = fire
        return rec

    def _switch_to_binary(self, T, cfg) -> None:
        """End of the warm-up (``binary_warmup``): the binary layers' scales are calibrated on
        the current real weights, and from here on the forward pass uses their signs."""
        self.alpha_ = calibrate_binary(self.arch_, self.W_, T[: int(self.init_samples)], cfg["thetas"],
                                       cfg["binary"], cfg["neuron"],
                                       binary_unit=cfg["rule"].binary_unit)

    def _average_every(self) -> int:
        """Training samples between two updates of the averaged weights (``average_every``)."""
        if self.average_every is not None:
            return int(self.average_every)
        return int(self.bump_every) if float(self.bump) > 0 else 100

    def _scheduled(self, lrs0, cfg, epoch: float) -> np.ndarray:
        """Learning rates at (fractional) epoch ``epoch`` of the schedule (``lr_schedule``)."""
        if cfg["schedule"] == Schedule.CONSTANT:
            return lrs0.copy()
        if cfg["schedule"] == Schedule.COSINE:
            return lrs0 * 0.5 * (1.0 + np.cos(np.pi * epoch / max(int(self.epochs), 1)))
        return lrs0 * self.lr_decay ** epoch

    def _reset_dead(self, fire, n_seen, cfg, rng) -> int:
        """Fresh weights for the hidden units that fired too rarely in the epoch (``dead_threshold``).

        With ``weight_average`` the re-drawn weights also replace their average."""
        before = self.W_.copy() if float(self.weight_average) > 0 else None
        n = reinit_dead(self.arch_, self.W_, fire, n_seen, float(self.dead_threshold), self.scales_,
                        cfg["init_ranges"], rng)
        if n and before is not None:
            changed = self.W_ != before
            self.avg_W_[changed] = self.W_[changed]
        return int(n)

    def _select_best(self, rec: dict, val, epoch: int) -> None:
        """Keep the weights of the best validation epoch (the last epoch without validation data).

        With ``weight_average`` the averaged weights are scored and kept."""
        if epoch < int(self.binary_warmup):
            rec["warmup"] = True   # real forward weights: scored for the record, never kept
        averaged = float(self.weight_average) > 0
        W_train = self.W_
        if averaged:
            self.W_ = self.avg_W_
        try:
            if val is not None:
                ev = self._evaluate_times(*val)
                rec.update({"val_" + k: v for k, v in ev.items()})
            if rec.get("warmup"):
                return
            if val is not None:
                if ev["accuracy"] <= self.best_score_:
                    return
                self.best_score_ = ev["accuracy"]
            self.best_epoch_ = epoch + 1
            self.best_W_, self.best_alpha_ = self.W_.copy(), self.alpha_.copy()
        finally:
            self.W_ = W_train

    # ------------------------------------------------------------------ prediction
    def predict(self, X, *, fallback: bool = True) -> np.ndarray:
        """Class of the first output neuron to fire (:func:`stidi.rule.decide`).

        With ``fallback=False`` a sample with no output spike gets -1 (the result
        then has a dtype that can hold -1: signed for integer labels, ``object``
        for other labels, with ``None`` instead of -1).
        """
        self._check_fitted()
        pred, _ = self._decide(*self._forward(self._times(X), all_layers=False), fallback=fallback)
        if fallback:
            return self.classes_[pred]
        dt = self.classes_.dtype
        if np.issubdtype(dt, np.number):
            out = np.full(pred.shape, -1, dtype=np.result_type(dt, np.int8))
        else:
            out = np.full(pred.shape, None, dtype=object)
        ok = pred >= 0
        out[ok] = self.classes_[pred[ok]]
        return out

    def spike_times(self, X) -> list:
        """Spike times of every layer, input first: ``(n, C, H, W)`` maps or ``(n, width)``."""
        self._check_fitted()
        t_all = self._forward(self._times(X))[0]
        a = self.arch_.offsets()[0]
        kinds = [None] + [lay.kind for lay in self.arch_.layers]
        shapes = [self.arch_.input_shape] + [lay.out_shape for lay in self.arch_.layers]
        out = []
        for l in range(len(a) - 1):
            t = t_all[:, int(a[l]):int(a[l + 1])]
            flat = kinds[l] == LayerKind.DENSE or (l == 0 and self.arch_.flat_input)
            out.append(t if flat else t.reshape(t.shape[0], *shapes[l]))
        return out

    def cost_report(self, X) -> dict:
        """Memory and synaptic operations per inference.

        * ``bits_per_synapse``: 64 (float64 as stored; 32 if cast to float32) for real
          weights, 1 for binary ones (plus one 64-bit ``alpha`` per binary layer); with
          binary and real layers mixed, the mean over all synapses (per layer in ``layers``).
        * ``synops``: PSP contributions integrated per image, averaged over ``X``: for
          each input spike before ``t_max``, one per neuron it projects to (conv: the
          filters at every valid output position whose receptive field contains it).
          These are the weight reads the event-driven sweep makes at PSP onsets:
          multiply-accumulates for real weights, additions for binary ones.
        """
        self._check_fitted()
        maps = self.spike_times(X)
        n = maps[0].shape[0]
        layers = []
        # what the fitted model holds: alpha_l > 0 marks a binary layer (stidi.binary)
        is_binary = [self.alpha_.size > 0 and self.alpha_[l] > 0 for l in range(len(self.arch_.layers))]
        flags = [is_binary[l] for l, shape in enumerate(self.arch_.weight_shapes()) if shape is not None]
        ops_all = nbytes_all = nbytes32_all = bits_all = bits32_all = 0.0
        n_syn_all = 0
        for l, (lay, shape) in enumerate(zip(self.arch_.layers, self.arch_.weight_shapes())):
            kind = lay.kind.name.lower()
            if shape is None:
                layers.append(dict(layer=lay.token, kind=kind, synapses=0, bytes=0.0, synops=0.0))
                continue
            n_syn = int(np.prod(shape))
            bits, bits32 = (1, 1) if is_binary[l] else (64, 32)
            alpha_bytes = 8 if is_binary[l] else 0
            nbytes = n_syn * bits / 8 + alpha_bytes
            F = lay.out_shape[0]
            if lay.kind == LayerKind.DENSE:
                ops = float((maps[l].reshape(n, -1) < self.t_max).sum(axis=1).mean()) * F
            else:
                k, p = lay.k, lay.pad
                act = (maps[l].reshape(n, *lay.in_shape) < self.t_max)
                act = np.pad(act, ((0, 0), (0, 0), (p, p), (p, p))).astype(np.float64)
                win = np.lib.stride_tricks.sliding_window_view(act, (k, k), axis=(2, 3))
                ops = float(win.sum(axis=(1, 4, 5)).sum(axis=(1, 2)).mean()) * F
            ops_all += ops
            nbytes_all += nbytes
            nbytes32_all += n_syn * bits32 / 8 + alpha_bytes
            bits_all += n_syn * bits
            bits32_all += n_syn * bits32
            n_syn_all += n_syn
            layers.append(dict(layer=lay.token, kind=kind, synapses=n_syn, bits_per_synapse=bits,
                               bytes=nbytes, synops=ops))
        return {
            "binary": self.binary if isinstance(self.binary, (bool, np.bool_)) else list(self.binary),
            "bits_per_synapse": _whole(bits_all / n_syn_all),
            "bits_per_synapse_float32": _whole(bits32_all / n_syn_all),
            "weight_bytes": nbytes_all,
            "weight_bytes_float32": nbytes32_all,
            "synops_per_image": ops_all,
            "op_kind": "add" if all(flags) else ("mixed" if any(flags) else "mac"),
            "layers": layers,
        }

    def _check_fitted(self):
        if not hasattr(self, "W_"):
            raise NotFittedError(f"this {type(self).__name__} is not fitted yet; call fit() first")

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "W_")

    def __sklearn_tags__(self):
        """Estimator tags for scikit-learn (imported only when scikit-learn asks)."""
        from sklearn.utils import ClassifierTags, InputTags, Tags, TargetTags

        return Tags(estimator_type="classifier", target_tags=TargetTags(required=True),
                    classifier_tags=ClassifierTags(), input_tags=InputTags(positive_only=True))

    # ------------------------------------------------------------------ persistence
    def _arrays(self) -> dict:
        return dict(
            format_version=np.array(_io.FORMAT_VERSION), kind=np.array(_io.KIND),
            params=np.array(_io.params_json(self.get_params())), arch=np.array(self.arch_.text),
            thetas=self.thetas_, W=self.W_, alpha=self.alpha_, scales=self.scales_,
            classes=self.classes_, history=np.array(json.dumps(self.history_)),
            best_epoch=np.array(self.best_epoch_), n_features_in=np.array(self.n_features_in_),
        )

    def save(self, path: str | os.PathLike) -> None:
        """Save settings, weights and history (``numpy.savez``, atomic, no pickle; format 2)."""
        self._check_fitted()
        _io.atomic_savez(Path(path), **self._arrays())

    @classmethod
    def load(cls, path: str | os.PathLike) -> "SpikingClassifier":
        """Load a model written by :meth:`save` (format 2) or by an earlier version (format 1)."""
        return cls._from_stored(_io.read_model(path))

    @classmethod
    def _from_stored(cls, data: dict) -> "SpikingClassifier":
        """The estimator held by ``data``, the arrays of a model file as :func:`stidi._io.read_model` returns them."""
        defaults = cls._defaults()
        stored = {**_ABSENT_MEANS, **data["params"]}
        params = {k: tuple(v) if isinstance(defaults[k], tuple) and isinstance(v, list) else v
                  for k, v in stored.items() if k in defaults}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            clf = cls(**params)
        clf._restore(data)
        return clf

    def _restore(self, z: dict) -> None:
        arch = parse_architecture(str(z["arch"]))
        self.arch_ = arch
        self._validate(arch)
        W = np.asarray(z["W"], dtype=np.float64)
        if W.shape != (int(arch.offsets()[1][-1]),):
            raise _io.ModelFileError(f"stored weights ({W.size}) do not match the architecture {arch.text!r}")
        self.W_ = W.copy()
        self.thetas_ = np.asarray(z["thetas"], dtype=np.float64).copy()
        self.alpha_ = np.asarray(z.get("alpha", np.empty(0)), dtype=np.float64).copy()
        self.scales_ = np.asarray(z["scales"], dtype=np.float64).copy()
        self.classes_ = z["classes"].copy()
        self.history_ = json.loads(str(z["history"]))
        self.best_epoch_ = int(z["best_epoch"])
        self.n_features_in_ = arch.n_inputs

    def _save_state(self, path: Path, *, rng: dict, epoch: int) -> None:
        arrays = self._arrays()
        arrays.update(m1=self.m1_, m2=self.m2_, step=np.array(self.step_), best_W=self.best_W_,
                      avg_W=self.avg_W_,
                      best_alpha=self.best_alpha_, best_score=np.array(self.best_score_),
                      epoch=np.array(epoch), rng=np.array(json.dumps(rng)))
        _io.atomic_savez(path, **arrays)

    def _load_state(self, path: Path) -> dict:
        z = _io.read_model(path)
        if "epoch" not in z:
            raise _io.ModelFileError(f"{path}: a saved model, not a training checkpoint")
        mine = json.loads(_io.params_json(self.get_params()))
        ignore = {"epochs", "verbose"} | ({"n_jobs"} if int(self.batch_size) == 1 else set())
        # a setting added after the checkpoint was written counts as its default, or as
        # the value that reproduces the behaviour of the time (_ABSENT_MEANS)
        stored = {**json.loads(_io.params_json(self._defaults())), **_ABSENT_MEANS, **z["params"]}
        if float(stored["weight_average"]) == 0 and float(mine["weight_average"]) == 0:
            ignore.add("average_every")  # no average kept either way
        diff = sorted(k for k in mine if k not in ignore and stored.get(k) != mine[k])
        if diff or str(z["arch"]) != self.arch_.text:
            raise ValueError(f"checkpoint {path} was written with different settings: "
                             f"{diff or ['arch']}")
        self._restore(z)
        self.m1_, self.m2_ = z["m1"].copy(), z["m2"].copy()
        self.step_ = int(z["step"])
        self.best_W_ = z["best_W"].copy()
        self.avg_W_ = z["avg_W"].copy() if "avg_W" in z else self.W_.copy()
        self.best_alpha_ = np.asarray(z.get("best_alpha", np.empty(0)), dtype=np.float64).copy()
        self.best_score_ = float(z["best_score"])
        return {"epoch": int(z["epoch"]), "rng": json.loads(str(z["rng"]))}


class ConvSpikingClassifier(SpikingClassifier):
    """Deprecated: use :class:`SpikingClassifier` with a convolutional ``arch``.

    Kept so that old code runs; its defaults are those of the former
    convolutional classifier (``arch="28x28-16C5-P2-10"``, 5 epochs).
    """

    def __init__(self, arch: str = "28x28-16C5-P2-10", *, epochs: int = 5, **kwargs):
        warnings.warn("ConvSpikingClassifier is deprecated; use stidi.SpikingClassifier(arch=...)",
                      FutureWarning, stacklevel=2)
        super().__init__(arch, epochs=epochs, **kwargs)
