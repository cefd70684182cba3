r"""Exact-gradient training of the single-spike PL-PSP network (SpikeProp-style).

This module trains *the same network* as :class:`stidi.SpikingClassifier`
(same neuron, same time-to-first-spike coding, same event-driven forward
pass, same calibrated initialisation) with the exact gradient of a standard
loss instead of the STiDi-BP rule.  It answers one question: how much of the
accuracy gap is due to the rule's approximations, and how much to the network
itself?

The exact gradient
------------------
A neuron :math:`j` that fires at :math:`t_j < t_{\max}` satisfies
:math:`v_j(t_j) = \sum_i w_{ji}\,\varepsilon(t_j - t_i) = \theta`.  As long
as the set of breakpoints crossed before :math:`t_j` does not change, the
implicit function theorem gives

.. math::

    \frac{\partial t_j}{\partial w_{ji}} = -\frac{\varepsilon(t_j - t_i)}{\dot v_j},
    \qquad
    \frac{\partial t_j}{\partial t_i} = \frac{w_{ji}\,\varepsilon'(t_j - t_i)}{\dot v_j},
    \qquad
    \dot v_j = \sum_i w_{ji}\,\varepsilon'(t_j - t_i) > 0,

with :math:`\dot v_j` the slope of the potential in the linear segment that
ends at the crossing (the slope :func:`stidi.layer_forward` returns).  This is
:math:`\partial t/\partial v = -1/\dot v` of chapter 3
(``book/03_linear_approximation.md``, "The exact local answer"), chained
through every layer; STiDi-BP (chapter 4, ``book/04_stidi_bp_rule.md``)
replaces it with :math:`-t_j/\theta` and layer-local targets.

Conventions
-----------
* :math:`\varepsilon'(s)` is the *left* derivative, :math:`1/\tau_1` for
  :math:`0 < s \le \tau_1`, :math:`-1/\tau_2` for
  :math:`\tau_1 < s \le \tau_1 + \tau_2`, 0 otherwise, so that
  :math:`\sum_i w_{ji}\varepsilon'(t_j - t_i)` equals the forward pass's
  crossing slope even when an input spike coincides with :math:`t_j`.
* ``slope_floor``: :math:`\dot v_j` is replaced by
  :math:`\max(\dot v_j, \text{slope\_floor})` (units: threshold per time
  step; :math:`\theta = 1` by default), which caps the gain
  :math:`1/\dot v_j` of a grazing crossing.
* Silent neurons (:math:`t_j = t_{\max}`) have no crossing and pass no
  gradient: neither to their weights nor to the layer below.  Silent
  *inputs* contribute nothing either, since their PSP starts at or after
  :math:`t_{\max}`.  As an option (``silent_surrogate = c > 0``, default 0,
  i.e. off) a silent neuron is treated as if it fired at its peak-potential
  time :math:`t^*_j` with gain :math:`c` in place of :math:`1/\dot v_j`:
  :math:`\partial t_j/\partial w_{ji} := -c\,\varepsilon(t^*_j - t_i)` and
  :math:`\partial t_j/\partial t_i := c\,w_{ji}\varepsilon'(t^*_j - t_i)`.
  That is a surrogate, not the gradient.
* Loss: softmax cross-entropy on the logits :math:`-t^{\rm out}_k / s`, with
  ``temperature`` :math:`s` in time steps (a silent output has logit
  :math:`-t_{\max}/s`), averaged over the mini-batch, plus optionally
  :math:`\tfrac{\lambda}{2}\sum w^2` (``weight_decay`` :math:`\lambda`).
* The spike times are piecewise smooth in the weights: the gradient is exact
  almost everywhere, and blind to the jumps that occur when a neuron starts
  or stops firing or a crossing moves past a breakpoint.

The backward kernel :func:`_layer_backward_kernel` (Numba) has a plain NumPy
twin, :func:`layer_backward_reference`, which the tests compare it with.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from ._io import atomic_savez
from ._estimator import ScoringMixin
from ._jit import njit
from .dense import layer_forward
from .init import calibrate_scale, default_medians
from .neuron import encode, psp
from .rule import decide_batch

__all__ = [
    "ExactGradientClassifier",
    "exact_layer_backward",
    "layer_backward_reference",
    "softmax_time_loss",
    "network_forward",
    "network_gradient",
]

_FORMAT_VERSION = 1


# ---------------------------------------------------------------------------
# kernel derivative convention (left derivative), NumPy
# ---------------------------------------------------------------------------
def _deps_left(s, tau1, tau2):
    """Left derivative of the PSP: ``1/tau1`` on (0, tau1], ``-1/tau2`` on (tau1, tau1+tau2]."""
    s = np.asarray(s, dtype=np.float64)
    return np.where((s > 0) & (s <= tau1), 1.0 / tau1,
                    np.where((s > tau1) & (s <= tau1 + tau2), -1.0 / tau2, 0.0))


# ---------------------------------------------------------------------------
# one layer's backward pass: NumPy twin and Numba kernel
# ---------------------------------------------------------------------------
def layer_backward_reference(t_in, t_star, W, coef, tau1, tau2, t_max, need_input_grad=True):
    r"""Backward pass of one layer, vectorised NumPy (the readable twin).

    Given ``coef[b, j]`` :math:`= \frac{\partial L}{\partial t_j} \cdot g_j`
    with :math:`g_j = 1/\max(\dot v_j, \text{floor})` for a neuron that fired
    (0 for a silent one, or the surrogate gain), returns

    .. math::

        \frac{\partial L}{\partial w_{ji}} = -\sum_b c_{bj}\,\varepsilon(t^*_{bj} - t_{bi}),
        \qquad
        \frac{\partial L}{\partial t_{bi}} = \sum_j c_{bj}\, w_{ji}\,\varepsilon'(t^*_{bj} - t_{bi}),

    where inputs with :math:`t_{bi} \ge t_{\max}` (no spike) contribute 0.
    Builds ``(B, n_out, n_in)`` arrays: for checking and small batches.

    Returns ``(grad_W, grad_t_in)``; ``grad_t_in`` is None unless requested.
    """
    t_in = np.asarray(t_in, dtype=np.float64)
    t_star = np.asarray(t_star, dtype=np.float64)
    coef = np.asarray(coef, dtype=np.float64)
    W = np.asarray(W, dtype=np.float64)
    active = (t_in < t_max)[:, None, :]
    s = t_star[:, :, None] - t_in[:, None, :]
    E = np.where(active, psp(s, tau1, tau2), 0.0)
    gW = -np.einsum("bj,bji->ji", coef, E)
    if not need_input_grad:
        return gW, None
    D = np.where(active, _deps_left(s, tau1, tau2), 0.0)
    g_in = np.einsum("bj,ji,bji->bi", coef, W, D)
    return gW, g_in


@njit
def _layer_backward_kernel(t_in, t_star, W, coef, tau1, tau2, t_max, gW, g_in, need_in):
    """Exact SpikeProp-style backward pass of one layer over a mini-batch (Numba).

    Derivation: ``book/03_linear_approximation.md`` ("The exact local answer",
    :math:`\\partial t/\\partial v = -1/\\dot v`), chained through the triangular
    kernel; compared in ``book/04_stidi_bp_rule.md`` with the STiDi-BP rule.
    Same contract as :func:`layer_backward_reference`: accumulates
    ``gW[j, i] -= coef[b, j] * eps(t*_bj - t_bi)`` and, when ``need_in``,
    ``g_in[b, i] += coef[b, j] * W[j, i] * eps'(t*_bj - t_bi)`` (left
    derivative), skipping inputs that did not spike and zero coefficients.
    ``gW`` and ``g_in`` are overwritten.
    """
    B, n_in = t_in.shape
    n_out = W.shape[0]
    t12 = tau1 + tau2
    inv1 = 1.0 / tau1
    inv2 = 1.0 / tau2
    gW[:, :] = 0.0
    if need_in:
        g_in[:, :] = 0.0
    act = np.empty(n_in, dtype=np.int64)
    for b in range(B):
        n_act = 0
        for i in range(n_in):
            if t_in[b, i] < t_max:
                act[n_act] = i
                n_act += 1
        for j in range(n_out):
            c = coef[b, j]
            if c == 0.0:
                continue
            tj = t_star[b, j]
            row = gW[j]
            wrow = W[j]
            for k in range(n_act):
                i = act[k]
                s = tj - t_in[b, i]
                if s <= 0.0 or s >= t12:
                    # s == tau1 + tau2 has eps = 0 and a (left) slope of -1/tau2
                    if need_in and s == t12:
                        g_in[b, i] -= c * wrow[i] * inv2
                    continue
                if s <= tau1:
                    row[i] -= c * s * inv1
                    if need_in:
                        g_in[b, i] += c * wrow[i] * inv1
                else:
                    row[i] -= c * (t12 - s) * inv2
                    if need_in:
                        g_in[b, i] -= c * wrow[i] * inv2


def exact_layer_backward(t_in, t_star, W, coef, tau1, tau2, t_max, need_input_grad=True):
    """Numba version of :func:`layer_backward_reference` (same arguments and results)."""
    t_in = np.ascontiguousarray(t_in, dtype=np.float64)
    t_star = np.ascontiguousarray(t_star, dtype=np.float64)
    W = np.ascontiguousarray(W, dtype=np.float64)
    coef = np.ascontiguousarray(coef, dtype=np.float64)
    if t_in.ndim != 2 or t_star.ndim != 2 or coef.shape != t_star.shape \
            or W.shape != (t_star.shape[1], t_in.shape[1]) or t_in.shape[0] != t_star.shape[0]:
        raise ValueError(f"inconsistent shapes: t_in {t_in.shape}, t_star {t_star.shape}, "
                         f"W {W.shape}, coef {coef.shape}")
    gW = np.empty(W.shape)
    g_in = np.empty(t_in.shape if need_input_grad else (1, 1))
    _layer_backward_kernel(t_in, t_star, W, coef, float(tau1), float(tau2), float(t_max),
                           gW, g_in, bool(need_input_grad))
    return gW, (g_in if need_input_grad else None)


# ---------------------------------------------------------------------------
# network-level forward, loss and gradient
# ---------------------------------------------------------------------------
def network_forward(T, Ws, thetas, tau1, tau2, t_max):
    """Exact forward pass; returns per layer ``(t, slope, v_peak, t_peak)``, input first as ``(T,)``."""
    acts = [(np.asarray(T, dtype=np.float64),)]
    t = acts[0][0]
    for W, th in zip(Ws, thetas):
        out = layer_forward(t, W, th, tau1, tau2, t_max)
        acts.append(out)
        t = out[0]
    return acts


def softmax_time_loss(t_out, y, temperature):
    r"""Mean cross-entropy of ``softmax(-t_out / s)`` and its gradient with respect to ``t_out``.

    Returns ``(loss, dL/dt_out)``; the gradient is of the *mean* over the batch.
    """
    z = -np.asarray(t_out, dtype=np.float64) / temperature
    z = z - z.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    B = t_out.shape[0]
    loss = -float(np.mean(logp[np.arange(B), y]))
    p = np.exp(logp)
    p[np.arange(B), y] -= 1.0
    # dL/dz = p - onehot, dz/dt = -1/s
    return loss, -p / (temperature * B)


def network_gradient(acts, Ws, y, temperature, tau1, tau2, t_max, slope_floor,
                     silent_surrogate=0.0, backend="numba"):
    r"""Exact gradient of the softmax-time loss for one mini-batch.

    ``acts`` comes from :func:`network_forward`.  Returns ``(loss, grads)``
    with one ``(n_out, n_in)`` array per layer.
    """
    if backend not in ("numba", "numpy"):
        raise ValueError(f"backend must be 'numba' or 'numpy', got {backend!r}")
    back = exact_layer_backward if backend == "numba" else layer_backward_reference
    loss, dL_dt = softmax_time_loss(acts[-1][0], y, temperature)
    grads = [None] * len(Ws)
    for l in range(len(Ws), 0, -1):
        t, slope, _, t_peak = acts[l]
        fired = t < t_max
        gain = np.where(fired, 1.0 / np.maximum(slope, slope_floor), silent_surrogate)
        t_star = np.where(fired, t, t_peak)
        coef = dL_dt * gain
        gW, g_in = back(acts[l - 1][0], t_star, Ws[l - 1], coef, tau1, tau2, t_max,
                        need_input_grad=l > 1)
        grads[l - 1] = gW
        dL_dt = g_in
    return loss, grads


# ---------------------------------------------------------------------------
# estimator
# ---------------------------------------------------------------------------
class ExactGradientClassifier(ScoringMixin):
    r"""The network of :class:`stidi.SpikingClassifier`, trained with the exact gradient.

    Parameters
    ----------
    hidden : sequence of int, default (400,)
    t_max, tau1, tau2, theta : float, defaults 256, 128, 1024, 1
        Window, PSP rise and decay, threshold: the package's defaults.
    epochs : int, default 10
    batch_size : int, default 32
    lr : float, default 3e-3
        Adam step size *relative to each layer's calibrated initial weight
        scale* (layer ``l`` uses ``lr * scales_[l]``), as the package's Adam.
    lr_decay : float, default 1.0
        Multiplicative decay of the step size after every epoch.
    temperature : float, default 4.0
        :math:`s` in the logits :math:`-t/s`, in time steps.
    slope_floor : float, default 1e-3
        Lower bound on the crossing slope :math:`\dot v` (threshold per time step).
    silent_surrogate : float, default 0.0
        Gain used for silent neurons (0: silent neurons pass no gradient;
        see the module docstring).
    weight_decay : float, default 0.0
        L2 coefficient :math:`\lambda` (the loss gains :math:`\lambda/2 \|W\|^2`).
    clip : float or None, default None
        Per-layer clipping of the mini-batch gradient's L2 norm, before Adam.
    init_range, init_median, init_samples
        Initialisation exactly as :class:`stidi.SpikingClassifier`: weights
        ``U(low, high) * s_l``, ``s_l`` calibrated so that the median first
        spike time of layer ``l`` on the first ``init_samples`` training
        images is ``init_median[l]`` (default: 48 for a single hidden layer,
        hidden layers evenly from 48 to 96 otherwise, 128 at the output, all
        scaled by ``t_max/256``).
    train_eval_size : int, default 5000
        After every epoch, accuracy on a fixed random subset of this many
        training images (0 = skip), next to the running training accuracy.
    backend : {"numba", "numpy"}, default "numba"
        Backward implementation (identical results; NumPy is slow).
    random_state : int or None
    verbose : bool, default False
        Print one line per epoch.

    Attributes
    ----------
    coefs_ : list of ndarray, ``(n_out, n_in)`` per layer (best-validation weights)
    scales_ : ndarray, calibrated initial scale per layer
    history_ : list of dict
    best_epoch_ : int
    classes_ : ndarray
    """

    def __init__(self, hidden: Sequence[int] = (400,), *, t_max: float = 256.0, tau1: float = 128.0,
                 tau2: float = 1024.0, theta: float = 1.0, epochs: int = 10, batch_size: int = 32,
                 lr: float = 3e-3, lr_decay: float = 1.0, temperature: float = 4.0,
                 slope_floor: float = 1e-3, silent_surrogate: float = 0.0,
                 weight_decay: float = 0.0, clip: float | None = None,
                 init_range: tuple[float, float] = (-0.5, 1.0),
                 init_median: Sequence[float] | None = None, init_samples: int = 300,
                 train_eval_size: int = 5000, backend: str = "numba",
                 random_state: int | None = None, verbose: bool = False):
        self.hidden = hidden
        self.t_max = t_max
        self.tau1 = tau1
        self.tau2 = tau2
        self.theta = theta
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.lr_decay = lr_decay
        self.temperature = temperature
        self.slope_floor = slope_floor
        self.silent_surrogate = silent_surrogate
        self.weight_decay = weight_decay
        self.clip = clip
        self.init_range = init_range
        self.init_median = init_median
        self.init_samples = init_samples
        self.train_eval_size = train_eval_size
        self.backend = backend
        self.random_state = random_state
        self.verbose = verbose

    _PARAMS = ("hidden", "t_max", "tau1", "tau2", "theta", "epochs", "batch_size", "lr", "lr_decay",
               "temperature", "slope_floor", "silent_surrogate", "weight_decay", "clip",
               "init_range", "init_median", "init_samples", "train_eval_size", "backend",
               "random_state", "verbose")

    def get_params(self) -> dict:
        """Settings as a JSON-friendly dict."""
        out = {}
        for k in self._PARAMS:
            v = getattr(self, k)
            if isinstance(v, (tuple, list, np.ndarray)):
                v = [float(x) if isinstance(x, (float, np.floating)) else int(x) for x in v]
            elif isinstance(v, np.generic):
                v = v.item()
            out[k] = v
        return out

    def set_params(self, **params) -> "ExactGradientClassifier":
        for k, v in params.items():
            if k not in self._PARAMS:
                raise ValueError(f"unknown parameter {k!r}")
            setattr(self, k, v)
        return self

    # ---------------------------------------------------------------- checks
    def _validate(self, n_in: int, n_classes: int) -> list[int]:
        hidden = [int(h) for h in (self.hidden if self.hidden is not None else ())]
        if any(h <= 0 for h in hidden):
            raise ValueError(f"hidden layer widths must be positive, got {self.hidden!r}")
        for name in ("t_max", "tau1", "tau2", "theta", "temperature", "slope_floor"):
            v = getattr(self, name)
            if not isinstance(v, (int, float, np.number)) or not np.isfinite(v) or v <= 0:
                raise ValueError(f"{name} must be a finite number > 0, got {v!r}")
        for name in ("lr", "silent_surrogate", "weight_decay"):
            v = getattr(self, name)
            if not isinstance(v, (int, float, np.number)) or not np.isfinite(v) or v < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {v!r}")
        if not 0 < self.lr_decay <= 1:
            raise ValueError(f"lr_decay must lie in (0, 1], got {self.lr_decay!r}")
        if self.clip is not None and not (np.isfinite(self.clip) and self.clip > 0):
            raise ValueError(f"clip must be None or > 0, got {self.clip!r}")
        if int(self.epochs) < 0 or int(self.batch_size) < 1 or int(self.init_samples) < 1 \
                or int(self.train_eval_size) < 0:
            raise ValueError("epochs and train_eval_size must be >= 0, batch_size and init_samples >= 1")
        if self.backend not in ("numba", "numpy"):
            raise ValueError(f"backend must be 'numba' or 'numpy', got {self.backend!r}")
        lo, hi = self.init_range
        if not lo < hi:
            raise ValueError(f"init_range must be (low, high) with low < high, got {self.init_range!r}")
        sizes = [n_in, *hidden, n_classes]
        L = len(sizes) - 1
        t_max = float(self.t_max)
        if self.init_median is None:
            med = default_medians(L, t_max)
        else:
            med = [float(m) for m in self.init_median]
        if len(med) != L or any(not 0 < m < t_max for m in med):
            raise ValueError(f"init_median needs {L} values in (0, t_max), got {self.init_median!r}")
        self._medians = med
        return sizes

    def _times(self, X) -> np.ndarray:
        X = np.asarray(X)
        if X.ndim < 2 or X.shape[0] == 0:
            raise ValueError(f"X must have shape (n_samples, ...) with n_samples > 0, got {X.shape}")
        flat = X.reshape(X.shape[0], -1)
        if hasattr(self, "n_features_in_") and flat.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {flat.shape[1]} features per sample, the model expects "
                             f"{self.n_features_in_}")
        return np.ascontiguousarray(encode(flat, self.t_max))

    # ---------------------------------------------------------------- pieces
    def _init_weights(self, T, sizes, rng):
        lo, hi = self.init_range
        Ws, scales = [], []
        t_prev = T[: int(self.init_samples)]
        for l in range(len(sizes) - 1):
            raw = rng.uniform(lo, hi, size=(sizes[l + 1], sizes[l]))
            s = calibrate_scale(t_prev, raw, self._medians[l], float(self.theta), float(self.tau1),
                                float(self.tau2), float(self.t_max))
            Ws.append(s * raw)
            scales.append(s)
            t_prev = layer_forward(t_prev, s * raw, float(self.theta), float(self.tau1),
                                   float(self.tau2), float(self.t_max))[0]
        return Ws, np.asarray(scales)

    def _forward(self, T, Ws=None):
        Ws = self.W_ if Ws is None else Ws
        return network_forward(T, Ws, [float(self.theta)] * len(Ws), float(self.tau1),
                               float(self.tau2), float(self.t_max))

    def _decide(self, out, fallback=True):
        t, slope, vpk, _ = out
        n = t.shape[0]
        pred = np.empty(n, dtype=np.int64)
        tied = np.empty(n, dtype=np.bool_)
        decide_batch(np.ascontiguousarray(t), np.ascontiguousarray(slope), np.ascontiguousarray(vpk),
                     float(self.t_max), bool(fallback), pred, tied)
        return pred, tied

    def _evaluate_times(self, T, yi, Ws=None, chunk=2000) -> dict:
        preds, strict, loss, times = [], [], 0.0, None
        for s in range(0, T.shape[0], chunk):
            acts = self._forward(T[s:s + chunk], Ws)
            preds.append(self._decide(acts[-1], True)[0])
            strict.append(self._decide(acts[-1], False)[0])
            lo, _ = softmax_time_loss(acts[-1][0], yi[s:s + chunk], float(self.temperature))
            loss += lo * acts[-1][0].shape[0]
            ts = [a[0] for a in acts[1:]]
            times = ts if times is None else [np.concatenate([a, b]) for a, b in zip(times, ts)]
        pred, strict = np.concatenate(preds), np.concatenate(strict)
        t_max = float(self.t_max)
        return {
            "accuracy": float(np.mean(pred == yi)),
            "accuracy_no_fallback": float(np.mean(strict == yi)),
            "loss": loss / T.shape[0],
            "output_silent_fraction": float(np.mean(strict < 0)),
            "silent_fraction": [float(np.mean(t >= t_max)) for t in times],
            "median_spike_time": [float(np.median(t)) for t in times],
        }

    # ---------------------------------------------------------------- fit
    def fit(self, X, y, X_val=None, y_val=None, *, checkpoint: str | os.PathLike | None = None,
            resume: bool = False) -> "ExactGradientClassifier":
        """Train with mini-batch Adam on the exact gradient.

        The weights of the epoch with the best validation accuracy are kept
        (``X_val``/``y_val``; without them, the last epoch's).  ``checkpoint``
        (``.npz``, written atomically after every epoch) with ``resume=True``
        continues an interrupted run; the result equals an uninterrupted run.
        """
        T = self._times(X)
        y = np.asarray(y)
        if y.shape != (T.shape[0],):
            raise ValueError(f"y must have shape ({T.shape[0]},), got {y.shape}")
        if (X_val is None) != (y_val is None):
            raise ValueError("give both X_val and y_val, or neither")
        self.classes_ = np.unique(y)
        if len(self.classes_) < 2:
            raise ValueError("y needs at least two classes")
        self.n_features_in_ = T.shape[1]
        yi = self._labels(y, T.shape[0])
        sizes = self._validate(T.shape[1], len(self.classes_))
        val = None
        if X_val is not None:
            Tv = self._times(X_val)
            val = (Tv, self._labels(np.asarray(y_val), Tv.shape[0]))
        rng = np.random.default_rng(self.random_state)
        ckpt = Path(checkpoint) if checkpoint is not None else None
        start = 0
        if resume and ckpt is not None and ckpt.exists():
            start = self._load_state(ckpt, rng)
        else:
            self.W_, self.scales_ = self._init_weights(T, sizes, rng)
            self.m1_ = [np.zeros_like(W) for W in self.W_]
            self.m2_ = [np.zeros_like(W) for W in self.W_]
            self.step_ = 0
            self.best_W_ = [W.copy() for W in self.W_]
            self.best_epoch_ = 0
            self.best_score_ = -1.0
            self.history_ = []
            # fixed subset of the training set for the end-of-epoch train accuracy
            k = min(int(self.train_eval_size), T.shape[0])
            self.train_eval_idx_ = np.sort(rng.permutation(T.shape[0])[:k])
        L = len(self.W_)
        t_max, tau1, tau2 = float(self.t_max), float(self.tau1), float(self.tau2)
        beta1, beta2, adam_eps = 0.9, 0.999, 1e-8
        B = int(self.batch_size)
        for epoch in range(start, int(self.epochs)):
            t0 = time.perf_counter()
            lrs = float(self.lr) * self.scales_ * float(self.lr_decay) ** epoch
            order = rng.permutation(T.shape[0])
            loss_sum = correct = out_silent = 0.0
            hid_fire = [0.0] * (L - 1)
            clipped = 0
            for s in range(0, T.shape[0], B):
                idx = order[s:s + B]
                acts = self._forward(T[idx])
                pred, _ = self._decide(acts[-1], True)
                correct += float(np.sum(pred == yi[idx]))
                out_silent += float(np.sum(np.all(acts[-1][0] >= t_max, axis=1)))
                for l in range(L - 1):
                    hid_fire[l] += float(np.sum(acts[l + 1][0] < t_max))
                loss, grads = network_gradient(acts, self.W_, yi[idx], float(self.temperature),
                                               tau1, tau2, t_max, float(self.slope_floor),
                                               float(self.silent_surrogate), self.backend)
                loss_sum += loss * len(idx)
                self.step_ += 1
                bc1 = 1.0 - beta1 ** self.step_
                bc2 = 1.0 - beta2 ** self.step_
                for l in range(L):
                    g = grads[l]
                    if self.weight_decay > 0:
                        g = g + float(self.weight_decay) * self.W_[l]
                    if self.clip is not None:
                        nrm = float(np.sqrt(np.sum(g * g)))
                        if nrm > self.clip:
                            g = g * (float(self.clip) / nrm)
                            clipped += 1
                    m1, m2 = self.m1_[l], self.m2_[l]
                    m1 *= beta1
                    m1 += (1.0 - beta1) * g
                    m2 *= beta2
                    m2 += (1.0 - beta2) * g * g
                    self.W_[l] -= lrs[l] * (m1 / bc1) / (np.sqrt(m2 / bc2) + adam_eps)
            n = T.shape[0]
            rec = {
                "epoch": epoch + 1,
                "train_loss_running": loss_sum / n,
                "train_accuracy_running": correct / n,
                "train_output_silent_fraction": out_silent / n,
                "train_hidden_silent_fraction": [1.0 - f / (n * sizes[l + 1]) for l, f in enumerate(hid_fire)],
                "lr": [float(x) for x in lrs],
                "clipped_steps": int(clipped),
                "train_seconds": time.perf_counter() - t0,
            }
            if len(self.train_eval_idx_):
                ev = self._evaluate_times(T[self.train_eval_idx_], yi[self.train_eval_idx_])
                rec.update({"train_eval_accuracy": ev["accuracy"], "train_eval_loss": ev["loss"]})
            if val is not None:
                ev = self._evaluate_times(*val)
                rec.update({"val_" + k: v for k, v in ev.items()})
                if ev["accuracy"] > self.best_score_:
                    self.best_score_ = ev["accuracy"]
                    self.best_epoch_ = epoch + 1
                    self.best_W_ = [W.copy() for W in self.W_]
            else:
                self.best_W_ = [W.copy() for W in self.W_]
                self.best_epoch_ = epoch + 1
            rec["seconds"] = time.perf_counter() - t0
            self.history_.append(rec)
            if ckpt is not None:
                self._save_state(ckpt, rng, epoch + 1)
            if self.verbose:
                msg = (f"epoch {epoch + 1}: loss {rec['train_loss_running']:.4f} "
                       f"train(run) {rec['train_accuracy_running']:.4f}")
                if "train_eval_accuracy" in rec:
                    msg += f" train(eval) {rec['train_eval_accuracy']:.4f}"
                if val is not None:
                    msg += (f" val {rec['val_accuracy']:.4f} silent {rec['val_silent_fraction']}"
                            f" median t {rec['val_median_spike_time']}")
                print(msg + f" {rec['seconds']:.1f} s", flush=True)
        self.last_W_ = [W.copy() for W in self.W_]
        self.W_ = [W.copy() for W in self.best_W_]
        return self

    # ---------------------------------------------------------------- use
    @property
    def coefs_(self) -> list[np.ndarray]:
        return [W.copy() for W in self.W_]

    def _check_fitted(self):
        if not hasattr(self, "W_"):
            raise RuntimeError("this ExactGradientClassifier is not fitted yet; call fit() first")

    def predict(self, X, *, fallback: bool = True) -> np.ndarray:
        """First output spike wins; ties go to the larger slope; no output spike -> largest
        peak potential (or -1 with ``fallback=False``), the rule of :func:`stidi.rule.decide`."""
        self._check_fitted()
        T = self._times(X)
        pred = np.concatenate([self._decide(self._forward(T[s:s + 2000])[-1], fallback)[0]
                               for s in range(0, T.shape[0], 2000)])
        out = np.full(pred.shape, -1, dtype=np.result_type(self.classes_.dtype, np.int8))
        ok = pred >= 0
        out[ok] = self.classes_[pred[ok]]
        return out

    # ---------------------------------------------------------------- checkpoints
    def _save_state(self, path: Path, rng, epoch: int) -> None:
        L = len(self.W_)
        arrays = {
            "format_version": np.array(_FORMAT_VERSION),
            "params": np.array(json.dumps(self.get_params())),
            "epoch": np.array(epoch), "step": np.array(self.step_),
            "scales": self.scales_, "classes": self.classes_,
            "n_features_in": np.array(self.n_features_in_),
            "best_epoch": np.array(self.best_epoch_), "best_score": np.array(self.best_score_),
            "history": np.array(json.dumps(self.history_)),
            "rng": np.array(json.dumps(rng.bit_generator.state)),
            "train_eval_idx": self.train_eval_idx_,
        }
        for l in range(L):
            arrays[f"W{l}"] = self.W_[l]
            arrays[f"m1_{l}"] = self.m1_[l]
            arrays[f"m2_{l}"] = self.m2_[l]
            arrays[f"best_W{l}"] = self.best_W_[l]
        atomic_savez(path, **arrays)

    def _load_state(self, path: Path, rng) -> int:
        with np.load(path, allow_pickle=False) as z:
            if int(z["format_version"]) != _FORMAT_VERSION:
                raise ValueError(f"{path}: unsupported checkpoint format {int(z['format_version'])}")
            saved = json.loads(str(z["params"]))
            mine = self.get_params()
            diff = sorted(k for k in mine if k not in ("epochs", "verbose", "backend")
                          and saved.get(k) != mine[k])
            if diff:
                raise ValueError(f"checkpoint {path} was written with different settings: {diff}")
            if not np.array_equal(z["classes"], self.classes_) \
                    or int(z["n_features_in"]) != self.n_features_in_:
                raise ValueError(f"checkpoint {path} was written for different data")
            L = len([k for k in z.files if k.startswith("W")])
            self.W_ = [z[f"W{l}"].copy() for l in range(L)]
            self.m1_ = [z[f"m1_{l}"].copy() for l in range(L)]
            self.m2_ = [z[f"m2_{l}"].copy() for l in range(L)]
            self.best_W_ = [z[f"best_W{l}"].copy() for l in range(L)]
            self.scales_ = z["scales"].copy()
            self.step_ = int(z["step"])
            self.best_epoch_ = int(z["best_epoch"])
            self.best_score_ = float(z["best_score"])
            self.history_ = json.loads(str(z["history"]))
            self.train_eval_idx_ = z["train_eval_idx"].copy()
            rng.bit_generator.state = json.loads(str(z["rng"]))
            return int(z["epoch"])
