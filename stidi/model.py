r"""A small scikit-learn-like facade around the STiDi-BP kernels.

>>> clf = SpikingClassifier(hidden=(400,), epochs=3, random_state=0)   # doctest: +SKIP
>>> clf.fit(X_train, y_train, validation_data=(X_val, y_val))          # doctest: +SKIP
>>> clf.score(X_test, y_test)                                           # doctest: +SKIP

``__init__`` only stores settings; :meth:`SpikingClassifier.fit` learns the
attributes that end in an underscore.  Every choice of the learning rule is a
parameter; the defaults are the ones we selected on a validation split carved
from the MNIST training set (see ``results/README.md``).
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from . import network as _net
from .neuron import encode, first_spike_times

__all__ = ["SpikingClassifier", "calibrate_scale"]

_FORMAT_VERSION = 1
_SCHEDULES = {"exponential": 0, "cosine": 1}
_SILENT_TARGETS = {"correct": 0, "all": 1}


def _shift_images(T: np.ndarray, shape: tuple, dx: np.ndarray, dy: np.ndarray, fill: float) -> np.ndarray:
    """Shift every row of ``T`` (flattened ``shape`` images) by ``(dy, dx)`` pixels, filling with ``fill``."""
    h, w = shape
    n = T.shape[0]
    src = T.reshape(n, h, w)
    out = np.full_like(src, fill)
    for sy in np.unique(dy):
        for sx in np.unique(dx):
            idx = np.flatnonzero((dy == sy) & (dx == sx))
            if idx.size == 0:
                continue
            ys, yd = (slice(0, h - sy), slice(sy, h)) if sy >= 0 else (slice(-sy, h), slice(0, h + sy))
            xs, xd = (slice(0, w - sx), slice(sx, w)) if sx >= 0 else (slice(-sx, w), slice(0, w + sx))
            out[idx, yd, xd] = src[idx, ys, xs]
    return out.reshape(n, h * w)


def calibrate_scale(t_in: np.ndarray, W_raw: np.ndarray, target: float, theta: float,
                    tau1: float, tau2: float, t_max: float, steps: int = 40) -> float:
    r"""Scale :math:`s` such that the median first spike time of ``s * W_raw`` is ``target``.

    The median is taken over all (neuron, sample) pairs, silent pairs counting
    as ``t_max``.  It decreases with :math:`s`, so we bisect on a log scale in
    :math:`[10^{-4}, 10^{4}]`.
    """
    lo, hi = -4.0, 4.0
    for _ in range(steps):
        mid = 0.5 * (lo + hi)
        med = np.median(first_spike_times(t_in, (10.0 ** mid) * W_raw, theta, tau1, tau2, t_max))
        if med > target:
            lo = mid
        else:
            hi = mid
    return float(10.0 ** (0.5 * (lo + hi)))


@dataclass
class _Layout:
    sizes: np.ndarray
    w_off: np.ndarray
    a_off: np.ndarray

    @classmethod
    def from_sizes(cls, sizes: Sequence[int]) -> "_Layout":
        sizes = np.asarray(sizes, dtype=np.int64)
        w = np.concatenate([[0], np.cumsum(sizes[:-1] * sizes[1:])]).astype(np.int64)
        a = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        return cls(sizes, w, a)


def _atomic_savez(path: Path, **arrays) -> None:
    """Write an ``.npz`` next to its destination, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, **arrays)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


class SpikingClassifier:
    r"""Fully connected single-spike SNN trained with STiDi-BP.

    Parameters
    ----------
    hidden : sequence of int, default (400,)
        Hidden layer widths; the output layer has one neuron per class.
    t_max : float, default 256
        Coding and simulation window; also the time of "no spike".
    tau1, tau2 : float, default 128, 1024
        Rise and decay times of the triangular PSP.
    theta : float or sequence, default 1.0
        Threshold of each layer (a scalar applies to all).
    gamma : float, default 3
        Target margin of the output layer.
    target : {"relative", "minmax"}, default "relative"
        Output target rule (see :mod:`stidi.network`).
    dtdv : {"linear", "constant", "slope"}, default "linear"
        Approximation of :math:`\partial t/\partial v`: :math:`-t/\theta`,
        :math:`-1` or :math:`-1/\dot v`.
    hidden_error : {"s4nn", "displacement"}, default "s4nn"
        How errors reach the layers below.
    normalise : bool, default True
        Divide each layer's error vector by its L2 norm, per sample.
    beta : float, default 1.0
        Gain of the spike-time displacement (``hidden_error="displacement"``).
    lr : sequence of float or None
        Learning rate per layer (hidden layers first).  ``None`` uses
        ``lr_hidden`` for hidden layers and ``lr_output`` for the last layer.
    lr_hidden, lr_output : float
        Defaults used when ``lr`` is None (SGD: 1e-3 and 2.5e-6; Adam: both
        as fractions of each layer's initial weight scale).
    lr_decay : float, default 0.7
        Multiplicative learning-rate decay after every epoch
        (``lr_schedule="exponential"``).
    lr_schedule : {"exponential", "cosine"}, default "exponential"
        Epoch ``k`` (0-based) of ``E`` uses ``lr * lr_decay**k``, or
        ``lr * (1 + cos(pi k / E)) / 2`` for ``"cosine"`` (``lr_decay`` is then
        ignored; the cosine schedule depends on ``epochs``, so resume with the
        same ``epochs``).
    epochs : int, default 10
    batch_size : int, default 1
        1 = online updates (serial, deterministic); > 1 = averaged mini-batches
        computed on ``n_jobs`` threads.
    optimizer : {"sgd", "adam"}, default "sgd"
    weight_decay : float, default 0
        L2 decay coefficient (``W -= lr * weight_decay * W`` per update).
    augment : int, default 0
        Data augmentation: every epoch, each training image is shifted by a
        random whole number of pixels in ``[-augment, augment]`` along both
        axes (vacated pixels are black, i.e. no spike).  Needs square images
        (or ``X`` of shape ``(n, h, w)``).  The shifts come from
        ``random_state``'s stream, so runs are reproducible and resumable.
    norm_floor : float, default 0
        With ``normalise``, divide the output error by ``max(|e|, norm_floor)``
        instead of ``|e|`` (hidden errors get the same overall gain), so a
        sample whose targets are nearly met takes a small step.
    silent_target : {"correct", "all"}, default "correct"
        When no output neuron fires: push only the correct neuron to fire
        (at ``t_max - gamma``), or push every output neuron to fire.
    init_range : (float, float), default (-0.5, 1.0)
        Weights start as ``U(low, high) * s_l``.
    init_median : sequence of float or None
        Median first spike time each layer is calibrated to at
        initialisation (by choosing ``s_l``).  ``None``: hidden layers evenly
        from 48 up, the output layer at 128 (with ``t_max = 256``; scaled
        with ``t_max``).
    init_samples : int, default 300
        Training samples used for the calibration.
    dead_threshold : float, default 0.001
        After every epoch, hidden neurons that fired on fewer than this
        fraction of the epoch's samples get fresh input weights.
    slope_floor : float, default 1e-3
        Lower bound on :math:`\dot v` for ``dtdv="slope"``.
    n_jobs : int, default 2
        Threads for mini-batches and evaluation.
    random_state : int or None
    verbose : bool, default True
        Show a progress bar (notebook-aware) and per-epoch lines.

    Attributes
    ----------
    coefs_ : list of ndarray
        Weight matrices, shape ``(n_out, n_in)`` per layer.
    scales_ : ndarray
        Calibrated initial weight scale of each layer.
    history_ : list of dict
        Per-epoch accuracies, firing statistics and timings.
    best_epoch_ : int
        Epoch (1-based) whose weights were kept (best validation accuracy).
    classes_ : ndarray
    """

    def __init__(self, hidden: Sequence[int] = (400,), *, t_max: float = 256.0,
                 tau1: float = 128.0, tau2: float = 1024.0, theta: float | Sequence[float] = 1.0,
                 gamma: float = 3.0, target: str = "relative", dtdv: str = "linear",
                 hidden_error: str = "s4nn", normalise: bool = True, beta: float = 1.0,
                 lr: Sequence[float] | None = None, lr_hidden: float = 1e-3,
                 lr_output: float = 2.5e-6, lr_decay: float = 0.7,
                 lr_schedule: str = "exponential", epochs: int = 10,
                 batch_size: int = 1, optimizer: str = "sgd", weight_decay: float = 0.0,
                 augment: int = 0, norm_floor: float = 0.0, silent_target: str = "correct",
                 init_range: tuple[float, float] = (-0.5, 1.0),
                 init_median: Sequence[float] | None = None, init_samples: int = 300,
                 dead_threshold: float = 0.001, slope_floor: float = 1e-3, n_jobs: int = 2,
                 random_state: int | None = None, verbose: bool = True):
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
        self.lr_hidden = lr_hidden
        self.lr_output = lr_output
        self.lr_decay = lr_decay
        self.lr_schedule = lr_schedule
        self.epochs = epochs
        self.batch_size = batch_size
        self.optimizer = optimizer
        self.weight_decay = weight_decay
        self.augment = augment
        self.norm_floor = norm_floor
        self.silent_target = silent_target
        self.init_range = init_range
        self.init_median = init_median
        self.init_samples = init_samples
        self.dead_threshold = dead_threshold
        self.slope_floor = slope_floor
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.verbose = verbose

    # ------------------------------------------------------------------ config
    def get_params(self) -> dict:
        """Settings as a JSON-friendly dict."""
        out = {}
        for k in self.__init__.__code__.co_varnames[1:self.__init__.__code__.co_argcount
                                                   + self.__init__.__code__.co_kwonlyargcount]:
            v = getattr(self, k)
            if isinstance(v, (tuple, list, np.ndarray)):
                v = [float(x) if isinstance(x, (float, np.floating)) else int(x) for x in v]
            out[k] = v
        return out

    def set_params(self, **params) -> "SpikingClassifier":
        for k, v in params.items():
            if not hasattr(self, k):
                raise ValueError(f"unknown parameter {k!r}")
            setattr(self, k, v)
        return self

    def _validate(self, n_in: int, n_classes: int) -> dict:
        def choice(name, table):
            v = getattr(self, name)
            if v not in table:
                raise ValueError(f"{name} must be one of {sorted(table)}, got {v!r}")
            return table[v]

        hidden = [int(h) for h in (self.hidden if self.hidden is not None else ())]
        if any(h <= 0 for h in hidden):
            raise ValueError(f"hidden layer widths must be positive, got {self.hidden!r}")
        sizes = [n_in, *hidden, n_classes]
        L = len(sizes) - 1
        for name in ("t_max", "tau1", "tau2"):
            v = float(getattr(self, name))
            if not np.isfinite(v) or v <= 0:
                raise ValueError(f"{name} must be > 0, got {v!r}")
        thetas = np.broadcast_to(np.asarray(self.theta, dtype=np.float64), (L,)).copy() \
            if np.ndim(self.theta) == 0 else np.asarray(self.theta, dtype=np.float64)
        if thetas.shape != (L,) or np.any(~np.isfinite(thetas)) or np.any(thetas <= 0):
            raise ValueError(f"theta must be > 0, one value or one per layer ({L}), got {self.theta!r}")
        if self.gamma < 0:
            raise ValueError(f"gamma must be >= 0, got {self.gamma!r}")
        if int(self.epochs) < 0 or int(self.batch_size) < 1:
            raise ValueError("epochs must be >= 0 and batch_size >= 1")
        opt = choice("optimizer", _net.OPTIMIZERS)
        sched = choice("lr_schedule", _SCHEDULES)
        silent = choice("silent_target", _SILENT_TARGETS)
        if int(self.augment) < 0 or not np.isfinite(self.norm_floor) or self.norm_floor < 0:
            raise ValueError("augment and norm_floor must be >= 0")
        if self.lr is None:
            lrs = [self.lr_hidden] * (L - 1) + [self.lr_output]
        else:
            lrs = list(self.lr)
        if len(lrs) != L or any(not np.isfinite(x) or x < 0 for x in lrs):
            raise ValueError(f"lr needs {L} non-negative values (one per layer), got {self.lr!r}")
        t_max = float(self.t_max)
        if self.init_median is None:
            hid = np.linspace(48.0, 96.0, L - 1) if L > 2 else np.array([48.0] * (L - 1))
            med = [*(hid * t_max / 256.0), 128.0 * t_max / 256.0]
        else:
            med = [float(m) for m in self.init_median]
        if len(med) != L or any(not 0 < m < t_max for m in med):
            raise ValueError(f"init_median needs {L} values in (0, t_max), got {self.init_median!r}")
        lo, hi = self.init_range
        if not lo < hi:
            raise ValueError(f"init_range must be (low, high) with low < high, got {self.init_range!r}")
        return dict(sizes=sizes, thetas=thetas, lrs=np.asarray(lrs, dtype=np.float64),
                    target=choice("target", _net.TARGET_MODES), dtdv=choice("dtdv", _net.DTDV_MODES),
                    hidden=choice("hidden_error", _net.HIDDEN_MODES), optimizer=opt, medians=med,
                    schedule=sched, silent=silent)

    # ------------------------------------------------------------- inputs
    def _times(self, X) -> np.ndarray:
        X = np.asarray(X)
        if X.ndim < 2:
            raise ValueError(f"X must have shape (n_samples, ...) , got shape {X.shape}")
        if X.shape[0] == 0:
            raise ValueError("X has no samples")
        flat = X.reshape(X.shape[0], -1)
        if hasattr(self, "n_features_in_") and flat.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {flat.shape[1]} features per sample, the model expects "
                             f"{self.n_features_in_}")
        return np.ascontiguousarray(encode(flat, self.t_max))

    def _labels(self, y, n: int) -> np.ndarray:
        y = np.asarray(y)
        if y.shape != (n,):
            raise ValueError(f"y must have shape ({n},), got {y.shape}")
        if hasattr(self, "classes_"):
            idx = np.searchsorted(self.classes_, y)
            idx = np.clip(idx, 0, len(self.classes_) - 1)
            if not np.all(self.classes_[idx] == y):
                raise ValueError("y contains labels not seen during fit")
            return idx.astype(np.int64)
        return y

    # ------------------------------------------------------------- weights
    def _W_layer(self, l: int) -> np.ndarray:
        lay = self.layout_
        n_in, n_out = lay.sizes[l], lay.sizes[l + 1]
        return self.W_[lay.w_off[l]:lay.w_off[l + 1]].reshape(n_in, n_out)

    @property
    def coefs_(self) -> list[np.ndarray]:
        return [self._W_layer(l).T.copy() for l in range(len(self.layout_.sizes) - 1)]

    def _init_weights(self, T: np.ndarray, cfg: dict, rng: np.random.Generator) -> None:
        lay = self.layout_
        lo, hi = self.init_range
        self.W_ = np.empty(int(lay.w_off[-1]))
        scales = []
        t_prev = T[: self.init_samples]
        for l in range(len(lay.sizes) - 1):
            n_in, n_out = int(lay.sizes[l]), int(lay.sizes[l + 1])
            raw = rng.uniform(lo, hi, size=(n_out, n_in))
            s = calibrate_scale(t_prev, raw, cfg["medians"][l], cfg["thetas"][l], self.tau1,
                                self.tau2, self.t_max)
            scales.append(s)
            self._W_layer(l)[...] = (s * raw).T
            t_prev = first_spike_times(t_prev, s * raw, cfg["thetas"][l], self.tau1, self.tau2, self.t_max)
        self.scales_ = np.asarray(scales)

    def _reinit_dead(self, fire_counts: np.ndarray, n_seen: int, rng: np.random.Generator) -> int:
        if self.dead_threshold <= 0 or n_seen == 0:
            return 0
        lay = self.layout_
        lo, hi = self.init_range
        total = 0
        for l in range(len(lay.sizes) - 2):  # hidden layers only
            counts = fire_counts[lay.a_off[l + 1]:lay.a_off[l + 2]]
            dead = np.flatnonzero(counts < self.dead_threshold * n_seen)
            if dead.size:
                Wl = self._W_layer(l)
                Wl[:, dead] = self.scales_[l] * rng.uniform(lo, hi, size=(Wl.shape[0], dead.size))
                total += dead.size
        return total

    # ------------------------------------------------------------- forward
    def _forward(self, T: np.ndarray, chunk: int = 4096):
        lay = self.layout_
        a_total = int(lay.a_off[-1])
        out = []
        for s in range(0, T.shape[0], chunk):
            Tc = T[s:s + chunk]
            t_all = np.empty((Tc.shape[0], a_total))
            slope = np.empty_like(t_all)
            vpk = np.empty_like(t_all)
            _net.forward_network(Tc, self.W_, lay.w_off, lay.a_off, lay.sizes, self.thetas_,
                                 float(self.tau1), float(self.tau2), float(self.t_max), t_all, slope, vpk)
            out.append((t_all, slope, vpk))
        return tuple(np.concatenate([o[k] for o in out]) for k in range(3))

    def _evaluate_times(self, T: np.ndarray, y: np.ndarray) -> dict:
        t_all, slope, vpk = self._forward(T)
        a = self.layout_.a_off
        o = slice(int(a[-2]), int(a[-1]))
        n = T.shape[0]
        pred = np.empty(n, dtype=np.int64)
        tied = np.empty(n, dtype=np.bool_)
        _net.decide_batch(t_all[:, o], slope[:, o], vpk[:, o], float(self.t_max), True, pred, tied)
        strict = pred.copy()
        silent = np.all(t_all[:, o] >= self.t_max, axis=1)
        strict[silent] = -1
        res = {
            "accuracy": float(np.mean(pred == y)),
            "accuracy_no_fallback": float(np.mean(strict == y)),
            "output_silent_fraction": float(np.mean(silent)),
            "tie_fraction": float(np.mean(tied)),
            "silent_fraction": [],
            "median_spike_time": [],
        }
        for l in range(1, len(a) - 1):
            tl = t_all[:, int(a[l]):int(a[l + 1])]
            res["silent_fraction"].append(float(np.mean(tl >= self.t_max)))
            res["median_spike_time"].append(float(np.median(tl)))
        return res

    # ------------------------------------------------------------- public API
    def fit(self, X, y, *, validation_data=None, checkpoint: str | os.PathLike | None = None,
            resume: bool = False) -> "SpikingClassifier":
        """Train on images ``X`` (uint8 0..255 or float 0..1, any trailing shape).

        Parameters
        ----------
        X, y : array_like
            Training images and integer labels.
        validation_data : (X_val, y_val), optional
            Evaluated after every epoch; the weights of the epoch with the best
            validation accuracy are kept (model selection never looks at a
            test set).
        checkpoint : path, optional
            ``.npz`` file written atomically after every epoch.
        resume : bool
            Continue from ``checkpoint`` if it exists.  Training resumed this
            way ends with the same weights as an uninterrupted run.
        """
        T = self._times(X)
        y = np.asarray(y)
        shape = None
        if int(self.augment) > 0:
            Xs = np.shape(X)
            side = int(round(np.sqrt(T.shape[1])))
            shape = tuple(Xs[1:]) if len(Xs) == 3 else (side, side)
            if shape[0] * shape[1] != T.shape[1]:
                raise ValueError("augment needs square images or X of shape (n, height, width)")
        if y.shape != (T.shape[0],):
            raise ValueError(f"y must have shape ({T.shape[0]},), got {y.shape}")
        self.classes_ = np.unique(y)
        if len(self.classes_) < 2:
            raise ValueError("y needs at least two classes")
        self.n_features_in_ = T.shape[1]
        yi = self._labels(y, T.shape[0])
        cfg = self._validate(T.shape[1], len(self.classes_))
        self.layout_ = _Layout.from_sizes(cfg["sizes"])
        self.thetas_ = cfg["thetas"]
        val = None
        if validation_data is not None:
            Xv, yv = validation_data
            Tv = self._times(Xv)
            val = (Tv, self._labels(np.asarray(yv), Tv.shape[0]))

        rng = np.random.default_rng(self.random_state)
        start_epoch = 0
        ckpt = Path(checkpoint) if checkpoint is not None else None
        if resume and ckpt is not None and ckpt.exists():
            state = self._load_state(ckpt)
            rng.bit_generator.state = state["rng"]
            start_epoch = state["epoch"]
        else:
            self._init_weights(T, cfg, rng)
            self.history_ = []
            self.m1_ = np.zeros_like(self.W_)
            self.m2_ = np.zeros_like(self.W_)
            self.step_ = 0
            self.best_W_ = self.W_.copy()
            self.best_epoch_ = 0
            self.best_score_ = -1.0

        lay = self.layout_
        lrs0 = cfg["lrs"] * (self.scales_ if cfg["optimizer"] == 1 else 1.0)
        bar = _progress(self.epochs, start_epoch, self.verbose)
        for epoch in range(start_epoch, int(self.epochs)):
            t0 = time.perf_counter()
            order = rng.permutation(T.shape[0]).astype(np.int64)
            if cfg["schedule"] == 1:
                lrs = lrs0 * 0.5 * (1.0 + np.cos(np.pi * epoch / max(int(self.epochs), 1)))
            else:
                lrs = lrs0 * self.lr_decay ** epoch
            Te = T
            if shape is not None:
                k = int(self.augment)
                d = rng.integers(-k, k + 1, size=(2, T.shape[0]))
                Te = _shift_images(T, shape, d[0], d[1], float(self.t_max))
            stats = np.zeros(_net.N_STATS)
            fire = np.zeros(int(lay.a_off[-1]))
            common = (Te, yi, order, self.W_, lay.w_off, lay.a_off, lay.sizes, self.thetas_, lrs,
                      float(self.tau1), float(self.tau2), float(self.t_max), float(self.gamma),
                      cfg["target"], cfg["dtdv"], cfg["hidden"], bool(self.normalise),
                      float(self.beta), float(self.slope_floor), float(self.weight_decay), stats, fire)
            extra = (float(self.norm_floor), cfg["silent"])
            if self.batch_size == 1 and cfg["optimizer"] == 0:
                _net.train_epoch_sgd(*common, *extra)
            else:
                self.step_ = _net.train_epoch_batch(
                    *common, int(self.batch_size), max(1, min(int(self.n_jobs), int(self.batch_size))),
                    cfg["optimizer"], self.m1_, self.m2_, int(self.step_), 0.9, 0.999, 1e-8, *extra)
            reinit = self._reinit_dead(fire, T.shape[0], rng)
            train_seconds = time.perf_counter() - t0
            rec = {
                "epoch": epoch + 1,
                "train_accuracy_running": stats[_net.ST_CORRECT] / max(stats[_net.ST_N], 1),
                "train_output_silent_fraction": stats[_net.ST_OUT_SILENT] / max(stats[_net.ST_N], 1),
                "train_hidden_silent_fraction": [
                    float(1 - fire[lay.a_off[l]:lay.a_off[l + 1]].mean() / T.shape[0])
                    for l in range(1, len(lay.sizes) - 1)],
                "reinitialised": int(reinit),
                "lr": [float(x) for x in lrs],
                "train_seconds": train_seconds,
            }
            if val is not None:
                ev = self._evaluate_times(*val)
                rec.update({"val_" + k: v for k, v in ev.items()})
                if ev["accuracy"] > self.best_score_:
                    self.best_score_ = ev["accuracy"]
                    self.best_epoch_ = epoch + 1
                    self.best_W_ = self.W_.copy()
            else:
                self.best_W_ = self.W_.copy()
                self.best_epoch_ = epoch + 1
            rec["seconds"] = time.perf_counter() - t0
            self.history_.append(rec)
            if ckpt is not None:
                self._save_state(ckpt, rng=rng.bit_generator.state, epoch=epoch + 1)
            bar.update(rec)
        bar.close()
        self.last_W_ = self.W_.copy()
        self.W_ = self.best_W_.copy()
        return self

    def predict(self, X, *, fallback: bool = True) -> np.ndarray:
        """Class of the first output neuron to fire (see :func:`stidi.network.decide`).

        With ``fallback=False`` a sample with no output spike gets -1.
        """
        self._check_fitted()
        T = self._times(X)
        t_all, slope, vpk = self._forward(T)
        a = self.layout_.a_off
        o = slice(int(a[-2]), int(a[-1]))
        pred = np.empty(T.shape[0], dtype=np.int64)
        tied = np.empty(T.shape[0], dtype=np.bool_)
        _net.decide_batch(t_all[:, o], slope[:, o], vpk[:, o], float(self.t_max), bool(fallback), pred, tied)
        # a dtype that can also hold -1 (uint8 labels become int16)
        out = np.full(pred.shape, -1, dtype=np.result_type(self.classes_.dtype, np.int8))
        ok = pred >= 0
        out[ok] = self.classes_[pred[ok]]
        return out

    def spike_times(self, X) -> list[np.ndarray]:
        """Spike times of every layer (input first), one ``(n_samples, n_l)`` array each."""
        self._check_fitted()
        t_all = self._forward(self._times(X))[0]
        a = self.layout_.a_off
        return [t_all[:, int(a[l]):int(a[l + 1])] for l in range(len(a) - 1)]

    def score(self, X, y, *, fallback: bool = True) -> float:
        """Accuracy of :meth:`predict` on ``(X, y)``."""
        return float(np.mean(self.predict(X, fallback=fallback) == np.asarray(y)))

    def evaluate(self, X, y) -> dict:
        """Accuracy with and without the silent-output fallback, plus firing statistics."""
        self._check_fitted()
        T = self._times(X)
        return self._evaluate_times(T, self._labels(np.asarray(y), T.shape[0]))

    def _check_fitted(self):
        if not hasattr(self, "W_"):
            raise RuntimeError("this SpikingClassifier is not fitted yet; call fit() first")

    # ------------------------------------------------------------- persistence
    def _arrays(self) -> dict:
        return dict(
            format_version=np.array(_FORMAT_VERSION),
            params=np.array(json.dumps(self.get_params())),
            sizes=self.layout_.sizes, thetas=self.thetas_, W=self.W_, scales=self.scales_,
            classes=self.classes_, history=np.array(json.dumps(self.history_)),
            best_epoch=np.array(self.best_epoch_), n_features_in=np.array(self.n_features_in_),
        )

    def save(self, path: str | os.PathLike) -> None:
        """Save settings, weights and history to ``path`` (``numpy.savez``; atomic)."""
        self._check_fitted()
        _atomic_savez(Path(path), **self._arrays())

    @classmethod
    def load(cls, path: str | os.PathLike) -> "SpikingClassifier":
        """Load a model written by :meth:`save` (no pickle involved)."""
        with np.load(path, allow_pickle=False) as z:
            if int(z["format_version"]) != _FORMAT_VERSION:
                raise ValueError(f"{path}: unsupported model format {int(z['format_version'])}")
            params = json.loads(str(z["params"]))
            clf = cls(**params)
            clf._restore(z)
        return clf

    def _restore(self, z) -> None:
        self.layout_ = _Layout.from_sizes(z["sizes"])
        self.thetas_ = z["thetas"].copy()
        self.W_ = z["W"].copy()
        self.scales_ = z["scales"].copy()
        self.classes_ = z["classes"].copy()
        self.history_ = json.loads(str(z["history"]))
        self.best_epoch_ = int(z["best_epoch"])
        self.n_features_in_ = int(z["n_features_in"])

    def _save_state(self, path: Path, *, rng: dict, epoch: int) -> None:
        arrays = self._arrays()
        arrays.update(m1=self.m1_, m2=self.m2_, step=np.array(self.step_), best_W=self.best_W_,
                      best_score=np.array(self.best_score_), epoch=np.array(epoch),
                      rng=np.array(json.dumps(rng)))
        _atomic_savez(path, **arrays)

    def _load_state(self, path: Path) -> dict:
        with np.load(path, allow_pickle=False) as z:
            saved = json.loads(str(z["params"]))
            mine = self.get_params()
            diff = {k for k in mine if k not in ("epochs", "verbose", "n_jobs") and saved.get(k) != mine[k]}
            if diff:
                raise ValueError(f"checkpoint {path} was written with different settings: {sorted(diff)}")
            self._restore(z)
            self.m1_ = z["m1"].copy()
            self.m2_ = z["m2"].copy()
            self.step_ = int(z["step"])
            self.best_W_ = z["best_W"].copy()
            self.best_score_ = float(z["best_score"])
            return {"epoch": int(z["epoch"]), "rng": json.loads(str(z["rng"]))}


class _progress:
    """tqdm bar over epochs (notebook-aware), or nothing when not verbose."""

    def __init__(self, total: int, initial: int, enabled: bool):
        self.bar = None
        if enabled:
            from tqdm.auto import tqdm
            self.bar = tqdm(total=total, initial=initial, desc="epochs", unit="epoch")

    def update(self, rec: dict) -> None:
        if self.bar is None:
            return
        post = {"train": f"{rec['train_accuracy_running']:.3f}"}
        if "val_accuracy" in rec:
            post["val"] = f"{rec['val_accuracy']:.4f}"
        post["s"] = f"{rec['seconds']:.1f}"
        self.bar.set_postfix(post)
        self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
