r"""Convolutional and binary-weight single-spike SNNs trained with STiDi-BP.

Architectures are written as in the literature::

    28x28-16C5-P2-32C5-P2-10

* ``HxW`` or ``HxWxC``: the input map (``C`` channels, default 1); it must come first.
* ``nCk``: a convolution with ``n`` filters of size ``k x k``, stride 1, no padding.
  ``nCkpP`` (e.g. ``16C5p2``) pads every side with ``P`` rows/columns of "no spike"
  (``t_max``); ``P < k``.
* ``Pk``: first-spike pooling over non-overlapping ``k x k`` windows (stride ``k``).
  A map whose side is not a multiple of ``k`` loses its last rows/columns (floor).
* a plain number: a fully connected layer of that width.  The map is flattened
  in ``(C, H, W)`` order before the first one; no convolution or pooling may follow.

The last token must be a fully connected layer with one neuron per class.

Forward pass
------------
Every neuron of a convolutional layer is a PL-PSP neuron of
:mod:`stidi.neuron` whose inputs are its receptive field.  For every output
position we gather the receptive field (padding = no spike) into a vector and
call the same exact sweep :func:`stidi.neuron._sweep` with the filters as a
``(C*k*k, F)`` matrix, so one sort of the receptive field serves all ``F``
filters.  No time grid is involved.

First-spike pooling passes the earliest spike of each window.  **Ties** go to
the first position in row-major order inside the window (``(0,0), (0,1), ...``);
a window with no spike passes ``t_max`` and its first position is recorded
as the winner.  The winner is kept for learning.

Learning (per sample; see :mod:`stidi.network` for the FC rule)
-----------------------------------------------------------------
* Output layer: the targets, errors and decision of :mod:`stidi.network`.
* Errors go down through FC layers in the S4NN-like form (default) or as
  spike-time displacements, exactly as in :mod:`stidi.network`; through a
  pooling layer to the winner of each window only (other positions get 0; the
  L2 norm is unchanged, so no renormalisation); through a convolutional layer
  by the transposed convolution of the same two forms,

  .. math::

      e_{c,Y,X} = \sum_{f,u,v} e_{f,y,x}\, w_{f,c,u,v}\,[t_{c,Y,X} < t_{f,y,x}]
      \quad\text{or}\quad
      T_{c,Y,X} = \mathrm{clip}\Big(t_{c,Y,X} + \beta \sum_{f,u,v} e_{f,y,x} g_{f,y,x}
      w_{f,c,u,v}\, \varepsilon'(t^*_{f,y,x} - t_{c,Y,X})\Big),

  with :math:`(y, x) = (Y - u + p, X - v + p)` over valid output positions.
  Silent units get no error (unless ``silent_hidden="pull"``, our option: then
  a silent unit whose potential rose above 0 gets :math:`\min(0, \sum e\,w)`,
  applied at its peak time); each layer's error vector is L2-normalised
  (``normalise=True``, optionally with ``norm_floor``).  All errors use the
  weights before the sample's update.
* Convolutional update, **summed over the positions sharing a filter**
  (``conv_reduce="sum"``, our default; ``"mean"`` divides by ``H_out*W_out``):

  .. math::

      \Delta w_{f,c,u,v} = -\eta_l \sum_{y,x} e_{f,y,x}\, g_{f,y,x}\,
      \varepsilon(t^*_{f,y,x} - t_{c,y+u-p,x+v-p}).

  :math:`g` is :func:`stidi.network._gain` (``dtdv``), :math:`t^*` the firing
  time or, for a silent neuron, the time of its peak potential.

Binary weights
--------------
With ``binary=True`` the forward pass of every weight layer uses
:math:`\alpha_l\,\mathrm{sign}(w)` (``sign(0) = 0``) while learning updates
the real weights :math:`w`.  :math:`\alpha_l` is calibrated at initialisation
(the median first spike time of the layer, as for real weights).  With
``alpha_lr = 0`` (our default) it then stays fixed, which is the same as
folding it into the threshold (:math:`\mathrm{sign}(w)` with threshold
:math:`\theta_l/\alpha_l`).  With ``alpha_lr > 0`` it is trained as in BS4NN,
by the STiDi-BP rule applied to :math:`\partial v_j/\partial\alpha_l =
\sum_i \mathrm{sign}(w_{ji})\,\varepsilon(t^*_j - t_i)`:

.. math::  \Delta\alpha_l = -\eta_\alpha \sum_j e_j g_j \sum_i \mathrm{sign}(w_{ji})\,\varepsilon(t^*_j - t_i).

The gain :math:`g = t/\theta` is taken in units of the forward weights
:math:`\alpha\,\mathrm{sign}(w)`.  Hidden errors use the real :math:`w`
(``binary_backward="real"``) or :math:`\alpha\,\mathrm{sign}(w)` (``"sign"``).
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from . import network as _net
from ._jit import njit, prange
from .model import _atomic_savez, _progress
from .neuron import _check_positive, _check_times, _deps, _sweep, encode, psp
from .reference import first_spike_times_reference, layer_forward_reference

__all__ = [
    "Architecture",
    "parse_architecture",
    "conv_forward",
    "first_spike_pool",
    "conv_forward_reference",
    "first_spike_pool_reference",
    "conv_clock_driven",
    "train_step_conv_reference",
    "ConvSpikingClassifier",
]

KIND_CONV, KIND_POOL, KIND_FC = 0, 1, 2
_KIND_NAMES = {KIND_CONV: "conv", KIND_POOL: "pool", KIND_FC: "fc"}
CONV_REDUCE = {"sum": 0, "mean": 1}
SILENT_TARGET = {"correct": 0, "all": 1}
SILENT_HIDDEN = {"none": 0, "pull": 1}
BINARY_BACKWARD = {"real": 0, "sign": 1}

# columns of the layer descriptor table
D_KIND, D_C, D_H, D_W, D_F, D_HO, D_WO, D_K, D_PAD = range(9)
N_DESC = 9


# =============================================================================
# architecture strings
# =============================================================================
@dataclass
class Architecture:
    """A parsed architecture string.

    Attributes
    ----------
    input_shape : (C, H, W)
    layers : list of dict
        One dict per layer with ``kind`` ("conv", "pool", "fc"), ``in_shape`` and
        ``out_shape`` (``(C, H, W)``; FC layers use ``(n, 1, 1)``), ``k``,
        ``pad`` and ``token``.
    """

    input_shape: tuple
    layers: list = field(default_factory=list)
    text: str = ""

    @property
    def n_outputs(self) -> int:
        return self.layers[-1]["out_shape"][0]

    @property
    def n_inputs(self) -> int:
        return int(np.prod(self.input_shape))

    def descriptor(self) -> np.ndarray:
        """``(L, 9)`` int64 table read by the kernels (kind, C, H, W, F, Ho, Wo, k, pad)."""
        d = np.zeros((len(self.layers), N_DESC), dtype=np.int64)
        kinds = {"conv": KIND_CONV, "pool": KIND_POOL, "fc": KIND_FC}
        for l, lay in enumerate(self.layers):
            C, H, W = lay["in_shape"]
            F, Ho, Wo = lay["out_shape"]
            if lay["kind"] == "fc":
                C, H, W = C * H * W, 1, 1
            d[l] = (kinds[lay["kind"]], C, H, W, F, Ho, Wo, lay["k"], lay["pad"])
        return d

    def weight_shapes(self) -> list:
        """Shape of each layer's weights: ``(F, C, k, k)``, ``(n_out, n_in)`` or ``None`` (pooling)."""
        out = []
        for lay in self.layers:
            C, H, W = lay["in_shape"]
            if lay["kind"] == "conv":
                out.append((lay["out_shape"][0], C, lay["k"], lay["k"]))
            elif lay["kind"] == "fc":
                out.append((lay["out_shape"][0], C * H * W))
            else:
                out.append(None)
        return out


_RE_INPUT = re.compile(r"^(\d+)x(\d+)(?:x(\d+))?$", re.IGNORECASE)
_RE_CONV = re.compile(r"^(\d+)[cC](\d+)(?:p(\d+))?$")
_RE_POOL = re.compile(r"^[pP](\d+)$")
_RE_FC = re.compile(r"^(\d+)$")


def parse_architecture(arch: str) -> Architecture:
    """Parse ``"28x28-16C5-P2-32C5-P2-10"`` (see the module docstring for the syntax).

    Raises
    ------
    ValueError
        With a message naming the offending token for: an empty string, a missing
        or malformed input size, an unknown token, zero sizes, a kernel or pooling
        window larger than the (padded) map, padding >= kernel size, convolution or
        pooling after a fully connected layer, or no fully connected output layer.
    """
    if not isinstance(arch, str):
        raise TypeError(f"arch must be a string like '28x28-16C5-P2-10', got {type(arch).__name__}")
    tokens = [t.strip() for t in arch.strip().split("-")]
    if not arch.strip() or any(t == "" for t in tokens):
        raise ValueError(f"architecture {arch!r}: empty token (write e.g. '28x28-16C5-P2-10')")
    m = _RE_INPUT.match(tokens[0])
    if not m:
        raise ValueError(f"architecture {arch!r}: the first token must be the input size 'HxW' or "
                         f"'HxWxC', got {tokens[0]!r}")
    H, W = int(m.group(1)), int(m.group(2))
    C = int(m.group(3)) if m.group(3) else 1
    if min(H, W, C) < 1:
        raise ValueError(f"architecture {arch!r}: input size must be positive, got {tokens[0]!r}")
    out = Architecture(input_shape=(C, H, W), text=arch)
    shape = (C, H, W)
    flat = False
    if len(tokens) < 2:
        raise ValueError(f"architecture {arch!r}: missing layers; the last one must be a fully "
                         "connected output layer (a plain number)")
    for tok in tokens[1:]:
        if (m := _RE_CONV.match(tok)):
            n, k = int(m.group(1)), int(m.group(2))
            p = int(m.group(3)) if m.group(3) else 0
            if flat:
                raise ValueError(f"architecture {arch!r}: convolution {tok!r} after a fully "
                                 "connected layer")
            if n < 1 or k < 1:
                raise ValueError(f"architecture {arch!r}: {tok!r} needs >= 1 filters of size >= 1")
            if p >= k:
                raise ValueError(f"architecture {arch!r}: padding {p} of {tok!r} must be smaller "
                                 f"than the kernel size {k}")
            Ho, Wo = shape[1] + 2 * p - k + 1, shape[2] + 2 * p - k + 1
            if Ho < 1 or Wo < 1:
                raise ValueError(f"architecture {arch!r}: kernel {k}x{k} of {tok!r} is larger than "
                                 f"its (padded) {shape[1] + 2 * p}x{shape[2] + 2 * p} input map")
            new = (n, Ho, Wo)
            out.layers.append(dict(kind="conv", in_shape=shape, out_shape=new, k=k, pad=p, token=tok))
        elif (m := _RE_POOL.match(tok)):
            k = int(m.group(1))
            if flat:
                raise ValueError(f"architecture {arch!r}: pooling {tok!r} after a fully connected layer")
            if k < 1:
                raise ValueError(f"architecture {arch!r}: pooling size must be >= 1 in {tok!r}")
            if k > shape[1] or k > shape[2]:
                raise ValueError(f"architecture {arch!r}: pooling {tok!r} is larger than its "
                                 f"{shape[1]}x{shape[2]} input map")
            new = (shape[0], shape[1] // k, shape[2] // k)
            out.layers.append(dict(kind="pool", in_shape=shape, out_shape=new, k=k, pad=0, token=tok))
        elif (m := _RE_FC.match(tok)):
            n = int(m.group(1))
            if n < 1:
                raise ValueError(f"architecture {arch!r}: layer width must be >= 1, got {tok!r}")
            new = (n, 1, 1)
            out.layers.append(dict(kind="fc", in_shape=shape, out_shape=new, k=1, pad=0, token=tok))
            flat = True
        else:
            raise ValueError(
                f"architecture {arch!r}: unknown token {tok!r}; expected 'nCk' (convolution, "
                "optionally 'nCkpP' for padding P), 'Pk' (first-spike pooling) or an integer "
                "(fully connected)")
        shape = new
    if out.layers[-1]["kind"] != "fc":
        raise ValueError(f"architecture {arch!r}: the last layer must be fully connected (the "
                         "output, one neuron per class), got "
                         f"{out.layers[-1]['token']!r}")
    return out


def _offsets(arch: Architecture):
    sizes = [arch.n_inputs] + [int(np.prod(l["out_shape"])) for l in arch.layers]
    a_off = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    nw = [0 if s is None else int(np.prod(s)) for s in arch.weight_shapes()]
    w_off = np.concatenate([[0], np.cumsum(nw)]).astype(np.int64)
    return a_off, w_off


# =============================================================================
# Numba kernels: forward
# =============================================================================
@njit
def _gather(t_in, C, H, W, k, pad, y, x, t_max, rf):
    """Receptive field of output position ``(y, x)``, row ``c*k*k + u*k + v``; padding = ``t_max``."""
    kk = k * k
    HW = H * W
    for c in range(C):
        for u in range(k):
            Y = y + u - pad
            for v in range(k):
                X = x + v - pad
                if Y >= 0 and Y < H and X >= 0 and X < W:
                    rf[c * kk + u * k + v] = t_in[c * HW + Y * W + X]
                else:
                    rf[c * kk + u * k + v] = t_max


@njit
def _conv_sample(t_in, WT, C, H, W, F, Ho, Wo, k, pad, theta, tau1, tau2, t_max,
                 t_out, slope_out, vpk_out, tpk_out, rf, act_t, act_i, V, S, to, so, vo, po):
    """Exact conv layer on one ``(C, H, W)`` map (flat), outputs ``(F, Ho, Wo)`` (flat)."""
    n_rf = C * k * k
    HoWo = Ho * Wo
    rfv = rf[:n_rf]
    for y in range(Ho):
        for x in range(Wo):
            _gather(t_in, C, H, W, k, pad, y, x, t_max, rfv)
            _sweep(rfv, WT, theta, tau1, tau2, t_max, to[:F], so[:F], vo[:F], po[:F],
                   act_t, act_i, V, S)
            p = y * Wo + x
            for f in range(F):
                q = f * HoWo + p
                t_out[q] = to[f]
                slope_out[q] = so[f]
                vpk_out[q] = vo[f]
                tpk_out[q] = po[f]


@njit
def _pool_sample(t_in, s_in, v_in, p_in, C, H, W, k, Ho, Wo, t_out, s_out, v_out, p_out, win):
    """First-spike pooling; ``win`` gets the flat index (in the input map) of each window's winner."""
    HW = H * W
    for c in range(C):
        for Y in range(Ho):
            for X in range(Wo):
                best = np.inf
                bi = c * HW + (Y * k) * W + X * k
                for u in range(k):
                    for v in range(k):
                        i = c * HW + (Y * k + u) * W + X * k + v
                        if t_in[i] < best:  # strict: the first in row-major order wins ties
                            best = t_in[i]
                            bi = i
                q = c * Ho * Wo + Y * Wo + X
                t_out[q] = t_in[bi]
                s_out[q] = s_in[bi]
                v_out[q] = v_in[bi]
                p_out[q] = p_in[bi]
                win[q] = bi


@njit
def _forward_sample(x, Wf, desc, w_off, a_off, thetas, tau1, tau2, t_max,
                    t_all, slope_all, vpk_all, tpk_all, win_all, rf, act_t, act_i, V, S,
                    to, so, vo, po):
    L = desc.shape[0]
    for i in range(a_off[1]):
        t_all[i] = x[i]
        slope_all[i] = 0.0
        vpk_all[i] = 0.0
        tpk_all[i] = t_max
    for l in range(L):
        kind = desc[l, D_KIND]
        C, H, W = desc[l, D_C], desc[l, D_H], desc[l, D_W]
        F, Ho, Wo = desc[l, D_F], desc[l, D_HO], desc[l, D_WO]
        k, pad = desc[l, D_K], desc[l, D_PAD]
        a0, a1, a2 = a_off[l], a_off[l + 1], a_off[l + 2]
        if kind == KIND_POOL:
            _pool_sample(t_all[a0:a1], slope_all[a0:a1], vpk_all[a0:a1], tpk_all[a0:a1],
                         C, H, W, k, Ho, Wo, t_all[a1:a2], slope_all[a1:a2], vpk_all[a1:a2],
                         tpk_all[a1:a2], win_all[a1:a2])
        elif kind == KIND_CONV:
            WT = Wf[w_off[l]:w_off[l + 1]].reshape((C * k * k, F))
            _conv_sample(t_all[a0:a1], WT, C, H, W, F, Ho, Wo, k, pad, thetas[l], tau1, tau2,
                         t_max, t_all[a1:a2], slope_all[a1:a2], vpk_all[a1:a2], tpk_all[a1:a2],
                         rf, act_t, act_i, V, S, to, so, vo, po)
        else:
            WT = Wf[w_off[l]:w_off[l + 1]].reshape((C, F))
            _sweep(t_all[a0:a1], WT, thetas[l], tau1, tau2, t_max, t_all[a1:a2],
                   slope_all[a1:a2], vpk_all[a1:a2], tpk_all[a1:a2], act_t, act_i, V, S)


def _scratch_sizes(desc):
    max_rf = 1
    max_out = 1
    for d in desc:
        if d[D_KIND] == KIND_CONV:
            max_rf = max(max_rf, d[D_C] * d[D_K] * d[D_K])
        elif d[D_KIND] == KIND_FC:
            max_rf = max(max_rf, d[D_C])
        max_out = max(max_out, d[D_F])
    return int(max_rf), int(max_out)


@njit(parallel=True)
def forward_network(X, Wf, desc, w_off, a_off, thetas, tau1, tau2, t_max, max_rf, max_out,
                    t_all, slope_all, vpk_all):
    """Forward pass over a batch (parallel over samples); ``(batch, a_total)`` outputs."""
    a_total = a_off[a_off.shape[0] - 1]
    for n in prange(X.shape[0]):
        tpk = np.empty(a_total)
        win = np.empty(a_total, dtype=np.int64)
        rf = np.empty(max_rf)
        act_t = np.empty(max_rf)
        act_i = np.empty(max_rf, dtype=np.int64)
        V = np.empty(max_out)
        S = np.empty(max_out)
        to = np.empty(max_out)
        so = np.empty(max_out)
        vo = np.empty(max_out)
        po = np.empty(max_out)
        _forward_sample(X[n], Wf, desc, w_off, a_off, thetas, tau1, tau2, t_max,
                        t_all[n], slope_all[n], vpk_all[n], tpk, win, rf, act_t, act_i, V, S,
                        to, so, vo, po)


@njit(parallel=True)
def _conv_batch(T, WT, C, H, W, F, Ho, Wo, k, pad, theta, tau1, tau2, t_max,
                t_out, slope_out, vpk_out, tpk_out):
    n_rf = C * k * k
    for n in prange(T.shape[0]):
        rf = np.empty(n_rf)
        act_t = np.empty(n_rf)
        act_i = np.empty(n_rf, dtype=np.int64)
        V = np.empty(F)
        S = np.empty(F)
        to = np.empty(F)
        so = np.empty(F)
        vo = np.empty(F)
        po = np.empty(F)
        _conv_sample(T[n], WT, C, H, W, F, Ho, Wo, k, pad, theta, tau1, tau2, t_max,
                     t_out[n], slope_out[n], vpk_out[n], tpk_out[n], rf, act_t, act_i, V, S,
                     to, so, vo, po)


@njit(parallel=True)
def _pool_batch(T, C, H, W, k, Ho, Wo, t_out, win):
    for n in prange(T.shape[0]):
        z = np.zeros(T.shape[1])
        s = np.zeros(t_out.shape[1])
        _pool_sample(T[n], z, z, z, C, H, W, k, Ho, Wo, t_out[n], s, s.copy(), s.copy(), win[n])


# =============================================================================
# public forward functions
# =============================================================================
def _check_maps(t_in, name="t_in"):
    t = _check_times(t_in, name)
    if t.ndim not in (3, 4):
        raise ValueError(f"{name} must have shape (C, H, W) or (batch, C, H, W), got {t.shape}")
    single = t.ndim == 3
    return (t[None] if single else t), single


def conv_forward(t_in, filters, theta, tau1, tau2, t_max, padding=0):
    r"""Exact first spike times of a convolutional layer (stride 1).

    Parameters
    ----------
    t_in : array_like, shape ``(C, H, W)`` or ``(batch, C, H, W)``
        Input spike-time maps; values ``>= t_max`` mean "no spike".
    filters : array_like, shape ``(F, C, k, k)``
    theta, tau1, tau2, t_max : float
        As in :func:`stidi.first_spike_times`.
    padding : int, default 0
        Rows/columns of "no spike" added on every side (``< k``).

    Returns
    -------
    t, slope, v_peak, t_peak : ndarray, shape ``(F, H_out, W_out)`` (or with a batch axis)
        As in :func:`stidi.layer_forward`, for every filter and position.
    """
    theta = _check_positive("theta", theta)
    tau1 = _check_positive("tau1", tau1)
    tau2 = _check_positive("tau2", tau2)
    t_max = _check_positive("t_max", t_max)
    T, single = _check_maps(t_in)
    Wt = np.asarray(filters, dtype=np.float64)
    if Wt.ndim != 4 or Wt.shape[2] != Wt.shape[3]:
        raise ValueError(f"filters must have shape (F, C, k, k), got {Wt.shape}")
    if not np.all(np.isfinite(Wt)):
        raise ValueError("filters contain NaN or infinite weights")
    F, C, k, _ = Wt.shape
    B, Ci, H, W = T.shape
    if Ci != C:
        raise ValueError(f"t_in has {Ci} channels but the filters expect {C}")
    padding = int(padding)
    if not 0 <= padding < k:
        raise ValueError(f"padding must be in [0, k) = [0, {k}), got {padding}")
    Ho, Wo = H + 2 * padding - k + 1, W + 2 * padding - k + 1
    if Ho < 1 or Wo < 1:
        raise ValueError(f"kernel {k}x{k} is larger than the padded {H + 2 * padding}x"
                         f"{W + 2 * padding} map")
    WT = np.ascontiguousarray(Wt.reshape(F, -1).T)
    outs = [np.empty((B, F * Ho * Wo)) for _ in range(4)]
    _conv_batch(np.ascontiguousarray(T.reshape(B, -1)), WT, C, H, W, F, Ho, Wo, k, padding,
                theta, tau1, tau2, t_max, *outs)
    outs = [o.reshape(B, F, Ho, Wo) for o in outs]
    return tuple(o[0] for o in outs) if single else tuple(outs)


def first_spike_pool(t_in, k):
    """First-spike pooling over non-overlapping ``k x k`` windows.

    Parameters
    ----------
    t_in : array_like, shape ``(C, H, W)`` or ``(batch, C, H, W)``
    k : int
        Window size and stride; trailing rows/columns that do not fill a window are dropped.

    Returns
    -------
    t : ndarray, shape ``(C, H // k, W // k)`` (or with a batch axis)
        Earliest spike time of each window.
    winner : ndarray of int64, same shape
        Flat index into the ``(C, H, W)`` input map of the unit that won (ties:
        first in row-major order inside the window; a silent window records its
        first position).
    """
    T, single = _check_maps(t_in)
    k = int(k)
    B, C, H, W = T.shape
    if k < 1 or k > H or k > W:
        raise ValueError(f"pooling size must be in [1, min(H, W)] = [1, {min(H, W)}], got {k}")
    Ho, Wo = H // k, W // k
    t_out = np.empty((B, C * Ho * Wo))
    win = np.empty((B, C * Ho * Wo), dtype=np.int64)
    _pool_batch(np.ascontiguousarray(T.reshape(B, -1)), C, H, W, k, Ho, Wo, t_out, win)
    t_out = t_out.reshape(B, C, Ho, Wo)
    win = win.reshape(B, C, Ho, Wo)
    return (t_out[0], win[0]) if single else (t_out, win)


# =============================================================================
# readable NumPy twins
# =============================================================================
def conv_forward_reference(t_in, filters, theta, tau1, tau2, t_max, padding=0):
    """Twin of :func:`conv_forward`: pad, cut out each receptive field, and call
    :func:`stidi.reference.layer_forward_reference` position by position."""
    t_in = np.asarray(t_in, dtype=np.float64)
    single = t_in.ndim == 3
    T = t_in[None] if single else t_in
    filters = np.asarray(filters, dtype=np.float64)
    F, C, k, _ = filters.shape
    p = int(padding)
    Tp = np.pad(T, ((0, 0), (0, 0), (p, p), (p, p)), constant_values=t_max)
    Ho, Wo = Tp.shape[2] - k + 1, Tp.shape[3] - k + 1
    out = np.zeros((4, T.shape[0], F, Ho, Wo))
    Wmat = filters.reshape(F, -1)
    for b in range(T.shape[0]):
        for y in range(Ho):
            for x in range(Wo):
                rf = Tp[b, :, y:y + k, x:x + k].ravel()
                res = layer_forward_reference(rf, Wmat, theta, tau1, tau2, t_max)
                for q in range(4):
                    out[q, b, :, y, x] = res[q]
    return tuple(o[0] for o in out) if single else tuple(out)


def first_spike_pool_reference(t_in, k):
    """Twin of :func:`first_spike_pool` (``np.argmin`` returns the first minimum in row-major order)."""
    t_in = np.asarray(t_in, dtype=np.float64)
    single = t_in.ndim == 3
    T = t_in[None] if single else t_in
    B, C, H, W = T.shape
    Ho, Wo = H // k, W // k
    t_out = np.zeros((B, C, Ho, Wo))
    win = np.zeros((B, C, Ho, Wo), dtype=np.int64)
    for b in range(B):
        for c in range(C):
            for Y in range(Ho):
                for X in range(Wo):
                    window = T[b, c, Y * k:(Y + 1) * k, X * k:(X + 1) * k]
                    u, v = np.unravel_index(np.argmin(window), window.shape)
                    t_out[b, c, Y, X] = window[u, v]
                    win[b, c, Y, X] = c * H * W + (Y * k + u) * W + X * k + v
    return (t_out[0], win[0]) if single else (t_out, win)


def conv_clock_driven(t_in, filters, theta, tau1, tau2, t_max, padding=0, dt=1.0):
    r"""Clock-driven conv layer on the grid :math:`t = 0, dt, \dots < t_{\max}`.

    The S4NN-style simulation: build the PSP of every input on the grid,
    convolve (an im2col matrix product per time step), and return the first grid
    time at which each potential reaches ``theta``.  Used as the speed baseline
    of the event-driven kernel; its times are within ``dt`` of the exact ones.
    """
    t_in = np.asarray(t_in, dtype=np.float64)
    single = t_in.ndim == 3
    T = t_in[None] if single else t_in
    filters = np.asarray(filters, dtype=np.float64)
    F, C, k, _ = filters.shape
    p = int(padding)
    Tp = np.pad(T, ((0, 0), (0, 0), (p, p), (p, p)), constant_values=t_max)
    B, _, Hp, Wp = Tp.shape
    Ho, Wo = Hp - k + 1, Wp - k + 1
    grid = np.arange(0.0, t_max, dt)
    Wmat = filters.reshape(F, -1)
    out = np.full((B, F, Ho, Wo), float(t_max))
    for b in range(B):
        E = psp(grid[None, None, None, :] - Tp[b][..., None], tau1, tau2)      # (C, Hp, Wp, nt)
        E[Tp[b] >= t_max] = 0.0
        cols = np.lib.stride_tricks.sliding_window_view(E, (k, k), axis=(1, 2))  # (C, Ho, Wo, nt, k, k)
        cols = cols.transpose(1, 2, 3, 0, 4, 5).reshape(Ho * Wo, len(grid), C * k * k)
        V = cols @ Wmat.T                                                        # (HoWo, nt, F)
        above = V >= theta
        fired = above.any(axis=1)
        first = grid[above.argmax(axis=1)]
        tt = np.where(fired, first, t_max)                                       # (HoWo, F)
        out[b] = tt.T.reshape(F, Ho, Wo)
    return out[0] if single else out


# =============================================================================
# Numba kernels: learning
# =============================================================================
@njit
def _l2_normalise(e, gain=1.0):
    """Scale ``e`` to L2 norm ``gain`` (unless it is all zeros)."""
    s = 0.0
    for j in range(e.shape[0]):
        s += e[j] * e[j]
    if s > 0.0:
        f = gain / np.sqrt(s)
        for j in range(e.shape[0]):
            e[j] *= f
    return s > 0.0


@njit
def _conv_errors_below(t_in, t_out, err_out, g_out, ts_out, WT, C, H, W, F, Ho, Wo, k, pad,
                       tau1, tau2, t_max, hidden_mode, beta, err_in, vpk_in, silent_pull):
    """Transposed convolution of the errors (S4NN-like or displacement form) into ``err_in``.

    With ``silent_pull`` (S4NN-like form only), a silent unit whose potential rose above 0
    gets the earlier-only part of its error, ``min(0, sum e w)`` (no timing indicator).
    """
    pull = silent_pull and hidden_mode == 0
    n_in = C * H * W
    kk = k * k
    HW = H * W
    HoWo = Ho * Wo
    for i in range(n_in):
        err_in[i] = 0.0
    for y in range(Ho):
        for x in range(Wo):
            p = y * Wo + x
            nz = False
            for f in range(F):
                if err_out[f * HoWo + p] != 0.0:
                    nz = True
                    break
            if not nz:
                continue
            for c in range(C):
                for u in range(k):
                    Y = y + u - pad
                    if Y < 0 or Y >= H:
                        continue
                    for v in range(k):
                        X = x + v - pad
                        if X < 0 or X >= W:
                            continue
                        i = c * HW + Y * W + X
                        ti = t_in[i]
                        if ti >= t_max and not (pull and vpk_in[i] > 0.0):
                            continue
                        row = WT[c * kk + u * k + v]
                        acc = 0.0
                        if hidden_mode == 0:
                            for f in range(F):
                                q = f * HoWo + p
                                ef = err_out[q]
                                if ef != 0.0 and (ti < t_out[q] or ti >= t_max):
                                    acc += ef * row[f]
                        else:
                            for f in range(F):
                                q = f * HoWo + p
                                ef = err_out[q]
                                if ef != 0.0:
                                    acc += ef * g_out[q] * row[f] * _deps(ts_out[q] - ti, tau1, tau2)
                        err_in[i] += acc
    if pull:
        for i in range(n_in):
            if t_in[i] >= t_max and err_in[i] > 0.0:
                err_in[i] = 0.0
    if hidden_mode == 1:
        for i in range(n_in):
            ti = t_in[i]
            if ti < t_max:
                Ti = min(max(ti + beta * err_in[i], 0.0), t_max)
                err_in[i] = (Ti - ti) / t_max


@njit
def _fc_errors_below(t_in, t_out, err_out, g_out, ts_out, WT, tau1, tau2, t_max, hidden_mode,
                     beta, err_in, vpk_in, silent_pull):
    n_in, n_l = WT.shape
    for i in range(n_in):
        ti = t_in[i]
        acc = 0.0
        if ti >= t_max and silent_pull and hidden_mode == 0 and vpk_in[i] > 0.0:
            for j in range(n_l):
                acc += err_out[j] * WT[i, j]
            err_in[i] = min(acc, 0.0)
        elif ti < t_max:
            if hidden_mode == 0:
                for j in range(n_l):
                    ej = err_out[j]
                    if ej != 0.0 and ti < t_out[j]:
                        acc += ej * WT[i, j]
                err_in[i] = acc
            else:
                for j in range(n_l):
                    ej = err_out[j]
                    if ej != 0.0:
                        acc += ej * g_out[j] * WT[i, j] * _deps(ts_out[j] - ti, tau1, tau2)
                Ti = min(max(ti + beta * acc, 0.0), t_max)
                err_in[i] = (Ti - ti) / t_max
        else:
            err_in[i] = 0.0


@njit
def _backward_sample(label, Wb, desc, w_off, a_off, thetas, tau1, tau2, t_max, gamma,
                     target_mode, dtdv, hidden_mode, normalise, beta, slope_floor,
                     t_all, slope_all, tpk_all, win_all, err_all, g_all, tstar_all,
                     vpk_all, silent_mode, silent_pull, norm_floor):
    """Errors, gains and t* of every layer (weights before the update). False: no error.

    ``silent_mode`` is the output rule of :func:`stidi.network._output_targets`;
    ``silent_pull`` gives silent hidden units an earlier-only error (see
    :func:`_conv_errors_below`), and sends a silent pooling window's error to the
    position with the highest peak potential.  With ``normalise``, the output
    error is divided by ``max(|e|, norm_floor)`` and every hidden error vector is
    scaled to the resulting norm (1 when ``norm_floor`` is 0), as in
    :func:`stidi.network._backward_sample`.
    """
    L = desc.shape[0]
    a, b = a_off[L], a_off[L + 1]
    n_out = b - a
    T = np.empty(n_out)
    _net._output_targets(t_all[a:b], label, gamma, t_max, target_mode, T, silent_mode)
    nz = False
    for j in range(n_out):
        err_all[a + j] = (T[j] - t_all[a + j]) / t_max
        nz |= err_all[a + j] != 0.0
    if not nz:
        return False
    gain = 1.0
    if normalise:
        nrm = np.sqrt(np.sum(err_all[a:b] ** 2))
        gain = nrm / max(nrm, norm_floor)
        _l2_normalise(err_all[a:b], gain)
    for l in range(L - 1, -1, -1):
        kind = desc[l, D_KIND]
        a0, a1, a2 = a_off[l], a_off[l + 1], a_off[l + 2]
        if kind != KIND_POOL:
            theta = thetas[l]
            for j in range(a1, a2):
                tj = t_all[j]
                g_all[j] = _net._gain(tj, slope_all[j], theta, t_max, dtdv, slope_floor)
                tstar_all[j] = tj if tj < t_max else tpk_all[j]
        if l == 0:
            break
        if kind == KIND_POOL:
            for i in range(a0, a1):
                err_all[i] = 0.0
            if silent_pull:
                Cp, Hp, Wp, kp = desc[l, D_C], desc[l, D_H], desc[l, D_W], desc[l, D_K]
                Hop, Wop = desc[l, D_HO], desc[l, D_WO]
            for q in range(a1, a2):
                i = win_all[q]
                if silent_pull and t_all[q] >= t_max and err_all[q] != 0.0:
                    # silent window: the position that came closest to threshold
                    r = q - a1
                    c = r // (Hop * Wop)
                    Y = (r // Wop) % Hop
                    X = r % Wop
                    best = -np.inf
                    for u in range(kp):
                        for v in range(kp):
                            j = c * Hp * Wp + (Y * kp + u) * Wp + X * kp + v
                            if vpk_all[a0 + j] > best:
                                best = vpk_all[a0 + j]
                                i = j
                err_all[a0 + i] = err_all[q]
            continue
        C, H, W = desc[l, D_C], desc[l, D_H], desc[l, D_W]
        F, Ho, Wo = desc[l, D_F], desc[l, D_HO], desc[l, D_WO]
        k, pad = desc[l, D_K], desc[l, D_PAD]
        if kind == KIND_CONV:
            WT = Wb[w_off[l]:w_off[l + 1]].reshape((C * k * k, F))
            _conv_errors_below(t_all[a0:a1], t_all[a1:a2], err_all[a1:a2], g_all[a1:a2],
                               tstar_all[a1:a2], WT, C, H, W, F, Ho, Wo, k, pad, tau1, tau2,
                               t_max, hidden_mode, beta, err_all[a0:a1], vpk_all[a0:a1],
                               silent_pull)
        else:
            WT = Wb[w_off[l]:w_off[l + 1]].reshape((C, F))
            _fc_errors_below(t_all[a0:a1], t_all[a1:a2], err_all[a1:a2], g_all[a1:a2],
                             tstar_all[a1:a2], WT, tau1, tau2, t_max, hidden_mode, beta,
                             err_all[a0:a1], vpk_all[a0:a1], silent_pull)
        if normalise:
            _l2_normalise(err_all[a0:a1], gain)
    return True


@njit
def _update_layer(W, Wsign, desc, w_off, a_off, l, scale, tau1, tau2, t_max,
                  t_all, err_all, g_all, tstar_all, coef):
    """``W_l += scale * e g eps(t* - t_in)`` (conv: summed over positions).

    Returns :math:`\\sum e g \\sum \\mathrm{sign}(w)\\,\\varepsilon` (the alpha
    direction, times ``scale``) when ``Wsign`` has entries, else 0.
    """
    C, H, W_, F = desc[l, D_C], desc[l, D_H], desc[l, D_W], desc[l, D_F]
    Ho, Wo, k, pad = desc[l, D_HO], desc[l, D_WO], desc[l, D_K], desc[l, D_PAD]
    a0, a1, a2 = a_off[l], a_off[l + 1], a_off[l + 2]
    inv1 = 1.0 / tau1
    inv2 = 1.0 / tau2
    t12 = tau1 + tau2
    want_alpha = Wsign.shape[0] > 0
    dalpha = 0.0
    if desc[l, D_KIND] == KIND_FC:
        WT = W[w_off[l]:w_off[l + 1]].reshape((C, F))
        any_err = False
        for j in range(F):
            coef[j] = scale * err_all[a1 + j] * g_all[a1 + j]
            any_err |= coef[j] != 0.0
        if not any_err:
            return 0.0
        ts = tstar_all[a1:a2]
        for i in range(C):
            ti = t_all[a0 + i]
            if ti >= t_max:
                continue
            row = WT[i]
            for j in range(F):
                d = ts[j] - ti
                e = max(min(d * inv1, (t12 - d) * inv2), 0.0)
                row[j] += coef[j] * e
            if want_alpha:
                srow = Wsign[w_off[l] + i * F:w_off[l] + (i + 1) * F]
                for j in range(F):
                    d = ts[j] - ti
                    e = max(min(d * inv1, (t12 - d) * inv2), 0.0)
                    dalpha += coef[j] * srow[j] * e
        return dalpha
    kk = k * k
    HW = H * W_
    HoWo = Ho * Wo
    WT = W[w_off[l]:w_off[l + 1]].reshape((C * kk, F))
    for y in range(Ho):
        for x in range(Wo):
            p = y * Wo + x
            any_err = False
            for f in range(F):
                q = a1 + f * HoWo + p
                coef[f] = scale * err_all[q] * g_all[q]
                any_err |= coef[f] != 0.0
            if not any_err:
                continue
            for c in range(C):
                for u in range(k):
                    Y = y + u - pad
                    if Y < 0 or Y >= H:
                        continue
                    for v in range(k):
                        X = x + v - pad
                        if X < 0 or X >= W_:
                            continue
                        ti = t_all[a0 + c * HW + Y * W_ + X]
                        if ti >= t_max:
                            continue
                        r = c * kk + u * k + v
                        row = WT[r]
                        for f in range(F):
                            d = tstar_all[a1 + f * HoWo + p] - ti
                            e = max(min(d * inv1, (t12 - d) * inv2), 0.0)
                            row[f] += coef[f] * e
                        if want_alpha:
                            base = w_off[l] + r * F
                            for f in range(F):
                                d = tstar_all[a1 + f * HoWo + p] - ti
                                e = max(min(d * inv1, (t12 - d) * inv2), 0.0)
                                dalpha += coef[f] * Wsign[base + f] * e
    return dalpha


@njit
def _refresh_binary(W, Wf, w_off, alpha, l):
    a = alpha[l]
    for q in range(w_off[l], w_off[l + 1]):
        w = W[q]
        Wf[q] = a if w > 0.0 else (-a if w < 0.0 else 0.0)


@njit
def _record(t_all, slope_all, vpk_all, a_off, label, t_max, stats, fire_counts):
    n_lay = a_off.shape[0] - 1
    a, b = a_off[n_lay - 1], a_off[n_lay]
    pred, tied = _net.decide(t_all[a:b], slope_all[a:b], vpk_all[a:b], t_max, True)
    strict, _ = _net.decide(t_all[a:b], slope_all[a:b], vpk_all[a:b], t_max, False)
    stats[4] += 1
    if pred == label:
        stats[0] += 1
    if strict == label:
        stats[1] += 1
    if strict < 0:
        stats[2] += 1
    if tied:
        stats[3] += 1
    for q in range(a_off[1], b):
        if t_all[q] < t_max:
            fire_counts[q] += 1


@njit
def _is_binary(alpha):
    return alpha.shape[0] > 0


@njit
def train_epoch_sgd(X, y, order, W, Wf, desc, w_off, a_off, thetas, lrs, alpha, alpha_lr,
                    sign_backward, tau1, tau2, t_max, gamma, target_mode, dtdv, hidden_mode,
                    normalise, beta, slope_floor, conv_mean, weight_decay, max_rf, max_out,
                    stats, fire_counts, silent_mode=0, silent_pull=False, norm_floor=0.0):
    """One pass of per-sample STiDi-BP over ``X[order]``; serial and deterministic.

    ``Wf`` holds the forward weights: the same array as ``W`` for real-valued
    networks; for binary ones (``alpha`` has one entry per layer)
    ``alpha_l * sign(W)``, refreshed after every update.
    """
    L = desc.shape[0]
    a_total = a_off[L + 1]
    binary = _is_binary(alpha)
    t_all = np.empty(a_total)
    slope_all = np.empty(a_total)
    vpk_all = np.empty(a_total)
    tpk_all = np.empty(a_total)
    win_all = np.zeros(a_total, dtype=np.int64)
    err_all = np.zeros(a_total)
    g_all = np.zeros(a_total)
    tstar_all = np.zeros(a_total)
    rf = np.empty(max_rf)
    act_t = np.empty(max_rf)
    act_i = np.empty(max_rf, dtype=np.int64)
    V = np.empty(max_out)
    S = np.empty(max_out)
    to = np.empty(max_out)
    so = np.empty(max_out)
    vo = np.empty(max_out)
    po = np.empty(max_out)
    coef = np.empty(max_out)
    Wb = Wf if (binary and sign_backward) else W
    Wsign = Wf if (binary and alpha_lr > 0.0) else np.empty(0)
    for kk in range(order.shape[0]):
        n = order[kk]
        _forward_sample(X[n], Wf, desc, w_off, a_off, thetas, tau1, tau2, t_max, t_all,
                        slope_all, vpk_all, tpk_all, win_all, rf, act_t, act_i, V, S,
                        to, so, vo, po)
        _record(t_all, slope_all, vpk_all, a_off, y[n], t_max, stats, fire_counts)
        if not _backward_sample(y[n], Wb, desc, w_off, a_off, thetas, tau1, tau2, t_max, gamma,
                                target_mode, dtdv, hidden_mode, normalise, beta, slope_floor,
                                t_all, slope_all, tpk_all, win_all, err_all, g_all, tstar_all,
                                vpk_all, silent_mode, silent_pull, norm_floor):
            continue
        for l in range(L - 1, -1, -1):
            if desc[l, D_KIND] == KIND_POOL:
                continue
            scale = -lrs[l]
            if conv_mean and desc[l, D_KIND] == KIND_CONV:
                scale /= desc[l, D_HO] * desc[l, D_WO]
            # alpha's direction is taken before W changes (Wsign aliases Wf, refreshed below)
            da = _update_layer(W, Wsign, desc, w_off, a_off, l, scale, tau1, tau2, t_max,
                               t_all, err_all, g_all, tstar_all, coef)
            if weight_decay > 0.0:
                fdec = 1.0 - lrs[l] * weight_decay
                for q in range(w_off[l], w_off[l + 1]):
                    W[q] *= fdec
            if binary:
                if alpha_lr > 0.0 and lrs[l] > 0.0:
                    # da = -lr_l * sum e g alpha sign(w) eps  ->  d alpha = -alpha_lr * sum e g sign(w) eps
                    alpha[l] = max(alpha[l] + alpha_lr * da / (lrs[l] * alpha[l]), 1e-12)
                _refresh_binary(W, Wf, w_off, alpha, l)


@njit(parallel=True)
def _batch_gradient(X, y, idx, W, Wf, desc, w_off, a_off, thetas, alpha, sign_backward,
                    want_alpha, tau1, tau2, t_max, gamma, target_mode, dtdv, hidden_mode,
                    normalise, beta, slope_floor, conv_mean, max_rf, max_out, n_chunks, grads,
                    galpha, stats, fire_counts, silent_mode, silent_pull, norm_floor):
    """Summed per-sample update directions over ``X[idx]`` in ``n_chunks`` fixed shares."""
    L = desc.shape[0]
    a_total = a_off[L + 1]
    binary = _is_binary(alpha)
    m = idx.shape[0]
    cstats = np.zeros((n_chunks, stats.shape[0]))
    cfire = np.zeros((n_chunks, fire_counts.shape[0]))
    for c in prange(n_chunks):
        G = grads[c]
        G[:] = 0.0
        galpha[c, :] = 0.0
        t_all = np.empty(a_total)
        slope_all = np.empty(a_total)
        vpk_all = np.empty(a_total)
        tpk_all = np.empty(a_total)
        win_all = np.zeros(a_total, dtype=np.int64)
        err_all = np.zeros(a_total)
        g_all = np.zeros(a_total)
        tstar_all = np.zeros(a_total)
        rf = np.empty(max_rf)
        act_t = np.empty(max_rf)
        act_i = np.empty(max_rf, dtype=np.int64)
        V = np.empty(max_out)
        S = np.empty(max_out)
        to = np.empty(max_out)
        so = np.empty(max_out)
        vo = np.empty(max_out)
        po = np.empty(max_out)
        coef = np.empty(max_out)
        Wb = Wf if (binary and sign_backward) else W
        Wsign = Wf if (binary and want_alpha) else np.empty(0)
        lo = (c * m) // n_chunks
        hi = ((c + 1) * m) // n_chunks
        for kk in range(lo, hi):
            n = idx[kk]
            _forward_sample(X[n], Wf, desc, w_off, a_off, thetas, tau1, tau2, t_max, t_all,
                            slope_all, vpk_all, tpk_all, win_all, rf, act_t, act_i, V, S,
                            to, so, vo, po)
            _record(t_all, slope_all, vpk_all, a_off, y[n], t_max, cstats[c], cfire[c])
            if not _backward_sample(y[n], Wb, desc, w_off, a_off, thetas, tau1, tau2, t_max,
                                    gamma, target_mode, dtdv, hidden_mode, normalise, beta,
                                    slope_floor, t_all, slope_all, tpk_all, win_all, err_all,
                                    g_all, tstar_all, vpk_all, silent_mode, silent_pull, norm_floor):
                continue
            for l in range(L):
                if desc[l, D_KIND] == KIND_POOL:
                    continue
                scale = 1.0
                if conv_mean and desc[l, D_KIND] == KIND_CONV:
                    scale /= desc[l, D_HO] * desc[l, D_WO]
                galpha[c, l] += _update_layer(G, Wsign, desc, w_off, a_off, l, scale, tau1, tau2,
                                              t_max, t_all, err_all, g_all, tstar_all, coef)
    for c in range(n_chunks):
        for q in range(stats.shape[0]):
            stats[q] += cstats[c, q]
        for q in range(fire_counts.shape[0]):
            fire_counts[q] += cfire[c, q]


def train_epoch_batch(X, y, order, W, Wf, desc, w_off, a_off, thetas, lrs, alpha, alpha_lr,
                      sign_backward, tau1, tau2, t_max, gamma, target_mode, dtdv, hidden_mode,
                      normalise, beta, slope_floor, conv_mean, weight_decay, max_rf, max_out,
                      stats, fire_counts, batch_size, n_chunks, optimizer, m1, m2, step,
                      silent_mode=0, silent_pull=False, norm_floor=0.0):
    """Mini-batch STiDi-BP: per-sample directions averaged over a batch, samples of a batch
    spread over ``n_chunks`` threads; SGD or Adam via :func:`stidi.network._optimizer_step`.
    Returns the updated optimizer step counter."""
    binary = alpha.shape[0] > 0
    grads = np.zeros((n_chunks, W.shape[0]))
    galpha = np.zeros((n_chunks, desc.shape[0]))
    for start in range(0, order.shape[0], batch_size):
        idx = order[start:start + batch_size]
        _batch_gradient(X, y, idx, W, Wf, desc, w_off, a_off, thetas, alpha, sign_backward,
                        alpha_lr > 0, tau1, tau2, t_max, gamma, target_mode, dtdv, hidden_mode,
                        normalise, beta, slope_floor, conv_mean, max_rf, max_out, n_chunks, grads,
                        galpha, stats, fire_counts, silent_mode, silent_pull, norm_floor)
        step += 1
        # the kernels accumulate +e g eps; the optimizer applies W -= lr * mean
        _net._optimizer_step(W, grads, w_off, lrs, float(idx.shape[0]), optimizer, weight_decay,
                             m1, m2, float(step), 0.9, 0.999, 1e-8)
        if binary:
            if alpha_lr > 0:
                alpha -= alpha_lr * galpha.sum(axis=0) / (idx.shape[0] * alpha)
                np.maximum(alpha, 1e-12, out=alpha)
            for l in range(desc.shape[0]):
                _refresh_binary(W, Wf, w_off, alpha, l)
    return step


# =============================================================================
# NumPy twin of one training step
# =============================================================================
def train_step_conv_reference(x, label, arch: Architecture, weights, thetas, tau1, tau2, t_max,
                              gamma, lrs, *, target="relative", dtdv="linear",
                              hidden_error="s4nn", normalise=True, beta=1.0, slope_floor=1e-3,
                              conv_reduce="sum", silent_target="correct", silent_hidden="none",
                              norm_floor=0.0):
    """One per-sample STiDi-BP step of a conv network, written with NumPy arrays.

    ``weights[l]`` is ``(F, C, k, k)`` for conv, ``(n_out, n_in)`` for FC, ``None``
    for pooling.  Returns the updated list.  Real-valued weights only.
    """
    pull = silent_hidden == "pull" and hidden_error == "s4nn"
    L = len(arch.layers)
    x = np.asarray(x, dtype=np.float64).reshape(arch.input_shape)
    ts, slopes, tstars, wins, vpks = [x], [None], [None], [None], [np.zeros_like(x)]
    for l, lay in enumerate(arch.layers):
        tin = ts[-1]
        if lay["kind"] == "conv":
            t, s, vp, tp = conv_forward_reference(tin, weights[l], thetas[l], tau1, tau2, t_max,
                                                  lay["pad"])
            wins.append(None)
        elif lay["kind"] == "pool":
            t, w = first_spike_pool_reference(tin, lay["k"])
            s, tp = np.zeros_like(t), np.full_like(t, t_max)
            vp = vpks[-1].ravel()[w]
            wins.append(w)
        else:
            t, s, vp, tp = layer_forward_reference(tin.ravel(), weights[l], thetas[l], tau1, tau2,
                                                   t_max)
            wins.append(None)
        ts.append(t)
        slopes.append(s)
        vpks.append(vp)
        tstars.append(np.where(t < t_max, t, tp))

    def gain(l):  # layer index l into arch.layers; activations at l + 1
        t = ts[l + 1]
        if dtdv == "constant":
            return np.ones_like(t)
        if dtdv == "slope":
            return np.where(t < t_max, 1.0 / np.maximum(slopes[l + 1], slope_floor), t / thetas[l])
        return t / thetas[l]

    def norm(e, g):
        n = np.linalg.norm(e)
        return e * (g / n) if (normalise and n > 0) else e

    from .reference import output_targets_reference
    errs = [None] * (L + 1)
    T = output_targets_reference(ts[-1], label, gamma, t_max, target)
    if silent_target == "all" and target == "relative" and np.all(ts[-1] >= t_max):
        T[:] = t_max - gamma
    e = (T - ts[-1]) / t_max
    if not np.any(e):
        return [None if w is None else w.copy() for w in weights]
    n_out = np.linalg.norm(e)
    err_gain = n_out / max(n_out, norm_floor)
    errs[L] = norm(e, err_gain)
    for l in range(L - 1, 0, -1):
        lay = arch.layers[l]
        t_below, t_here, e_here = ts[l], ts[l + 1], errs[l + 1]
        # silent units that may be pulled earlier
        can_pull = pull & (t_below >= t_max) & (vpks[l].reshape(t_below.shape) > 0)
        if lay["kind"] == "pool":
            eb = np.zeros(t_below.size)
            win = wins[l + 1].ravel().copy()
            if pull:
                k = lay["k"]
                Cb, _, _ = t_below.shape
                _, Ho, Wo = t_here.shape
                vb = vpks[l].reshape(t_below.shape)
                for q in np.flatnonzero((t_here.ravel() >= t_max) & (e_here.ravel() != 0)):
                    c, Y, X = np.unravel_index(q, t_here.shape)
                    block = vb[c, Y * k:(Y + 1) * k, X * k:(X + 1) * k]
                    u, v = np.unravel_index(np.argmax(block), block.shape)
                    win[q] = np.ravel_multi_index((c, Y * k + u, X * k + v), t_below.shape)
            eb[win] = e_here.ravel()
            errs[l] = eb.reshape(t_below.shape)
            continue
        if lay["kind"] == "fc":
            tb = t_below.ravel()
            if hidden_error == "s4nn":
                eb = (e_here[:, None] * weights[l] * (tb[None, :] < t_here[:, None])).sum(axis=0)
                if pull:
                    eb = np.where(can_pull.ravel(), np.minimum((e_here[:, None] * weights[l]).sum(axis=0), 0.0), eb)
            else:
                dv = np.vectorize(lambda s: 0.0 if s < 0 else (1 / tau1 if s < tau1 else
                                  (-1 / tau2 if s < tau1 + tau2 else 0.0)))(
                    tstars[l + 1][:, None] - tb[None, :])
                shift = ((e_here * gain(l))[:, None] * weights[l] * dv).sum(axis=0)
                eb = (np.clip(tb + beta * shift, 0, t_max) - tb) / t_max
            eb = np.where((tb < t_max) | can_pull.ravel(), eb, 0.0).reshape(t_below.shape)
        else:
            F, C, k, _ = weights[l].shape
            p = lay["pad"]
            Cb, H, W = t_below.shape
            acc = np.zeros((C, H + 2 * p, W + 2 * p))
            tpad = np.pad(t_below, ((0, 0), (p, p), (p, p)), constant_values=t_max)
            g = gain(l)
            _, Ho, Wo = t_here.shape
            for y in range(Ho):
                for xx in range(Wo):
                    tin = tpad[:, y:y + k, xx:xx + k]
                    for f in range(F):
                        ef = e_here[f, y, xx]
                        if ef == 0:
                            continue
                        if hidden_error == "s4nn":
                            ind = (tin < t_here[f, y, xx]) | (pull & (tin >= t_max))
                            acc[:, y:y + k, xx:xx + k] += ef * weights[l][f] * ind
                        else:
                            s = tstars[l + 1][f, y, xx] - tin
                            d = np.where(s < 0, 0.0, np.where(s < tau1, 1 / tau1,
                                                              np.where(s < tau1 + tau2, -1 / tau2, 0.0)))
                            acc[:, y:y + k, xx:xx + k] += ef * g[f, y, xx] * weights[l][f] * d
            acc = acc[:, p:p + H, p:p + W]
            if hidden_error == "s4nn":
                eb = np.where(can_pull, np.minimum(acc, 0.0), acc)
            else:
                eb = (np.clip(t_below + beta * acc, 0, t_max) - t_below) / t_max
            eb = np.where((t_below < t_max) | can_pull, eb, 0.0)
        errs[l] = norm(eb.ravel(), err_gain).reshape(eb.shape)

    new = []
    for l, lay in enumerate(arch.layers):
        if lay["kind"] == "pool":
            new.append(None)
            continue
        coef = errs[l + 1] * gain(l)
        tin = ts[l]
        if lay["kind"] == "fc":
            tb = tin.ravel()
            eps = psp(tstars[l + 1][:, None] - tb[None, :], tau1, tau2)
            eps[:, tb >= t_max] = 0.0
            new.append(weights[l] - lrs[l] * coef[:, None] * eps)
            continue
        F, C, k, _ = weights[l].shape
        p = lay["pad"]
        tpad = np.pad(tin, ((0, 0), (p, p), (p, p)), constant_values=t_max)
        _, Ho, Wo = ts[l + 1].shape
        dW = np.zeros_like(weights[l])
        for y in range(Ho):
            for xx in range(Wo):
                rf = tpad[:, y:y + k, xx:xx + k]
                for f in range(F):
                    eps = psp(tstars[l + 1][f, y, xx] - rf, tau1, tau2)
                    eps[rf >= t_max] = 0.0
                    dW[f] += coef[f, y, xx] * eps
        if conv_reduce == "mean":
            dW /= Ho * Wo
        new.append(weights[l] - lrs[l] * dW)
    return new


# =============================================================================
# the facade
# =============================================================================
_FORMAT_VERSION = 1


def _bisect_scale(fn, target, mask=None, lo=-4.0, hi=4.0, steps=22):
    """Scale ``s`` with ``median(fn(s)[mask]) == target`` (the median decreases with ``s``)."""
    for _ in range(steps):
        mid = 0.5 * (lo + hi)
        t = fn(10.0 ** mid)
        if np.median(t if mask is None else t[mask]) > target:
            lo = mid
        else:
            hi = mid
    return float(10.0 ** (0.5 * (lo + hi)))


class ConvSpikingClassifier:
    r"""Convolutional single-spike SNN trained with STiDi-BP, real or binary weights.

    Parameters
    ----------
    arch : str, default "28x28-16C5-P2-10"
        Architecture string (see :mod:`stidi.conv`); the last layer's width must
        equal the number of classes.  The default is the network we found to
        learn best in our validation runs (see ``results/conv-candidates.md``).
    binary : bool, default False
        Forward pass with :math:`\alpha_l\,\mathrm{sign}(w)`, learning on real :math:`w`.
    alpha_lr : float, default 0
        Learning rate of the binary scales :math:`\alpha_l` (not decayed; 0:
        calibrated once and fixed, i.e. folded into the threshold).
    binary_backward : {"real", "sign"}, default "real"
        Weights used to send errors to the layer below in binary networks.
    t_max, tau1, tau2, theta, gamma, target, dtdv, hidden_error, normalise, beta,
    lr_decay, epochs, batch_size, optimizer, weight_decay, init_range,
    init_samples, dead_threshold, slope_floor, n_jobs, random_state, verbose
        As in :class:`stidi.SpikingClassifier` (``theta`` and ``lr`` have one
        entry per *weight* layer; pooling layers have neither).
    lr : sequence of float or None
        One learning rate per weight layer, **in units of the layer's calibrated
        initial weight scale** :math:`s_l` (the step applied is ``lr_l * s_l``, so
        one value suits layers of any fan-in; our choice).  ``None``: ``lr_conv``
        for conv layers, ``lr_hidden`` for hidden FC layers, ``lr_output`` for the last.
    lr_conv, lr_hidden, lr_output : float, default 1e-4, 1e-4, 1e-3
        Learning rates (same units as ``lr``) of conv layers, hidden FC layers and
        the output layer when ``lr`` is None.  ``lr_conv`` and ``lr_output`` were
        chosen on a validation split for the default architecture; a conv layer
        deeper in the network has fewer positions to sum over and is unstable at
        ``lr_conv = 1e-4`` in our runs (give ``lr`` per layer, e.g. ``1e-5`` for it).
    conv_reduce : {"sum", "mean"}, default "sum"
        How a filter's update is reduced over the positions that share it.
    init_median : sequence or None
        Median first spike time each weight layer is calibrated to at
        initialisation.  ``None``: hidden weight layers evenly from 48 to 96,
        the output at 128 (for ``t_max = 256``, scaled with ``t_max``).
    dead_threshold : float, default 0.001
        After every epoch, conv filters (resp. hidden FC neurons) that fired
        on fewer than this fraction of (sample, position) pairs get fresh weights.
    silent_target : {"correct", "all"}, default "correct"
        When no output neuron fires: push only the correct one (at ``t_max - gamma``)
        or every output neuron, as in :class:`stidi.SpikingClassifier`.
    silent_hidden : {"none", "pull"}, default "none"
        ``"pull"`` (our addition, S4NN-like errors only): a silent hidden unit whose
        potential rose above 0 gets the "fire earlier" part of its error,
        :math:`\min(0, \sum_j e_j w_{ji})`, applied at the time of its peak
        potential, and a silent pooling window passes its error to the position
        whose potential came closest to threshold.  It keeps maps from going quiet.
    norm_floor : float, default 0
        With ``normalise``, the output error is divided by ``max(|e|, norm_floor)``
        and hidden errors get the same overall gain, so samples whose targets are
        nearly met take small steps (as in :class:`stidi.SpikingClassifier`).
    """

    def __init__(self, arch: str = "28x28-16C5-P2-10", *, binary: bool = False,
                 alpha_lr: float = 0.0, binary_backward: str = "real", t_max: float = 256.0,
                 tau1: float = 128.0, tau2: float = 1024.0,
                 theta: float | Sequence[float] = 1.0, gamma: float = 3.0,
                 target: str = "relative", dtdv: str = "linear", hidden_error: str = "s4nn",
                 normalise: bool = True, beta: float = 1.0, lr: Sequence[float] | None = None,
                 lr_conv: float = 1e-4, lr_hidden: float = 1e-4, lr_output: float = 1e-3,
                 lr_decay: float = 0.7, conv_reduce: str = "sum", epochs: int = 5,
                 batch_size: int = 1, optimizer: str = "sgd", weight_decay: float = 0.0,
                 init_range: tuple[float, float] = (-0.5, 1.0),
                 init_median: Sequence[float] | None = None, init_samples: int = 100,
                 dead_threshold: float = 0.001, slope_floor: float = 1e-3,
                 silent_target: str = "correct", silent_hidden: str = "none",
                 norm_floor: float = 0.0, n_jobs: int = 2,
                 random_state: int | None = None, verbose: bool = True):
        self.arch = arch
        self.binary = binary
        self.alpha_lr = alpha_lr
        self.binary_backward = binary_backward
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
        self.conv_reduce = conv_reduce
        self.epochs = epochs
        self.batch_size = batch_size
        self.optimizer = optimizer
        self.weight_decay = weight_decay
        self.init_range = init_range
        self.init_median = init_median
        self.init_samples = init_samples
        self.dead_threshold = dead_threshold
        self.slope_floor = slope_floor
        self.silent_target = silent_target
        self.silent_hidden = silent_hidden
        self.norm_floor = norm_floor
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.verbose = verbose

    # ------------------------------------------------------------------ config
    def get_params(self) -> dict:
        """Settings as a JSON-friendly dict."""
        code = self.__init__.__code__
        names = code.co_varnames[1:code.co_argcount + code.co_kwonlyargcount]
        out = {}
        for k in names:
            v = getattr(self, k)
            if isinstance(v, (tuple, list, np.ndarray)):
                v = [float(x) if isinstance(x, (float, np.floating)) else int(x) for x in v]
            elif isinstance(v, np.generic):
                v = v.item()
            out[k] = v
        return out

    def set_params(self, **params) -> "ConvSpikingClassifier":
        for k, v in params.items():
            if k not in self.get_params():
                raise ValueError(f"unknown parameter {k!r}")
            setattr(self, k, v)
        return self

    def _validate(self, n_classes: int | None = None) -> dict:
        def choice(name, table):
            v = getattr(self, name)
            if v not in table:
                raise ValueError(f"{name} must be one of {sorted(table)}, got {v!r}")
            return table[v]

        arch = parse_architecture(self.arch)
        if n_classes is not None and arch.n_outputs != n_classes:
            raise ValueError(f"the output layer of {self.arch!r} has {arch.n_outputs} neurons but y "
                             f"has {n_classes} classes")
        wl = [l for l, lay in enumerate(arch.layers) if lay["kind"] != "pool"]
        nw = len(wl)
        for name in ("t_max", "tau1", "tau2"):
            _check_positive(name, getattr(self, name))
        th = np.asarray(self.theta, dtype=np.float64)
        th = np.full(nw, float(th)) if th.ndim == 0 else th
        if th.shape != (nw,) or np.any(~np.isfinite(th)) or np.any(th <= 0):
            raise ValueError(f"theta must be > 0, one value or one per weight layer ({nw}), "
                             f"got {self.theta!r}")
        if self.lr is None:
            lrs = [self.lr_output if l == wl[-1] else
                   (self.lr_conv if arch.layers[l]["kind"] == "conv" else self.lr_hidden) for l in wl]
        else:
            lrs = [float(v) for v in self.lr]
        if len(lrs) != nw or any(not np.isfinite(v) or v < 0 for v in lrs):
            raise ValueError(f"lr needs {nw} non-negative values (one per weight layer), got {self.lr!r}")
        t_max = float(self.t_max)
        if self.init_median is None:
            hid = np.linspace(48.0, 96.0, nw - 1) if nw > 2 else np.full(nw - 1, 48.0)
            med = [*(hid * t_max / 256.0), 128.0 * t_max / 256.0]
        else:
            med = [float(m) for m in self.init_median]
        if len(med) != nw or any(not 0 < m < t_max for m in med):
            raise ValueError(f"init_median needs {nw} values in (0, t_max), got {self.init_median!r}")
        lo, hi = self.init_range
        if not lo < hi:
            raise ValueError(f"init_range must be (low, high) with low < high, got {self.init_range!r}")
        if self.gamma < 0:
            raise ValueError(f"gamma must be >= 0, got {self.gamma!r}")
        if int(self.epochs) < 0 or int(self.batch_size) < 1:
            raise ValueError("epochs must be >= 0 and batch_size >= 1")
        if not self.norm_floor >= 0:
            raise ValueError(f"norm_floor must be >= 0, got {self.norm_floor!r}")
        if self.alpha_lr < 0:
            raise ValueError(f"alpha_lr must be >= 0, got {self.alpha_lr!r}")
        L = len(arch.layers)
        thetas = np.ones(L)
        lr_full = np.zeros(L)
        med_full = np.zeros(L)
        for q, l in enumerate(wl):
            thetas[l], lr_full[l], med_full[l] = th[q], lrs[q], med[q]
        return dict(arch=arch, thetas=thetas, lrs=lr_full, medians=med_full, weight_layers=wl,
                    target=choice("target", _net.TARGET_MODES), dtdv=choice("dtdv", _net.DTDV_MODES),
                    hidden=choice("hidden_error", _net.HIDDEN_MODES),
                    optimizer=choice("optimizer", _net.OPTIMIZERS),
                    conv_mean=choice("conv_reduce", CONV_REDUCE) == 1,
                    silent_mode=choice("silent_target", SILENT_TARGET),
                    silent_pull=choice("silent_hidden", SILENT_HIDDEN) == 1,
                    sign_backward=choice("binary_backward", BINARY_BACKWARD) == 1)

    # ------------------------------------------------------------- inputs
    def _times(self, X) -> np.ndarray:
        arch = self.arch_ if hasattr(self, "arch_") else parse_architecture(self.arch)
        X = np.asarray(X)
        if X.ndim < 2:
            raise ValueError(f"X must have shape (n_samples, ...), got shape {X.shape}")
        if X.shape[0] == 0:
            raise ValueError("X has no samples")
        n_in = arch.n_inputs
        flat = X.reshape(X.shape[0], -1)
        if flat.shape[1] != n_in:
            raise ValueError(f"X has samples of shape {X.shape[1:]} ({flat.shape[1]} values) but "
                             f"the architecture {self.arch!r} expects {arch.input_shape} (C, H, W) = "
                             f"{n_in} values")
        if X.ndim > 2 and X.shape[1:] not in (tuple(arch.input_shape), tuple(arch.input_shape[1:])):
            raise ValueError(f"X has samples of shape {X.shape[1:]}; expected {arch.input_shape} "
                             f"(C, H, W), {arch.input_shape[1:]} or flat")
        return np.ascontiguousarray(encode(flat, self.t_max))

    def _labels(self, y, n: int) -> np.ndarray:
        y = np.asarray(y)
        if y.shape != (n,):
            raise ValueError(f"y must have shape ({n},), got {y.shape}")
        if hasattr(self, "classes_"):
            idx = np.clip(np.searchsorted(self.classes_, y), 0, len(self.classes_) - 1)
            if not np.all(self.classes_[idx] == y):
                raise ValueError("y contains labels not seen during fit")
            return idx.astype(np.int64)
        return y

    # ------------------------------------------------------------- weights
    def _layer_view(self, W: np.ndarray, l: int) -> np.ndarray:
        """Kernel layout of layer ``l``: ``(C*k*k, F)`` or ``(n_in, n_out)``."""
        d = self.desc_[l]
        rows = d[D_C] * d[D_K] * d[D_K] if d[D_KIND] == KIND_CONV else d[D_C]
        return W[self.w_off_[l]:self.w_off_[l + 1]].reshape(int(rows), int(d[D_F]))

    def _to_public(self, WT: np.ndarray, l: int) -> np.ndarray:
        shape = self.arch_.weight_shapes()[l]
        return WT.T.reshape(shape).copy()

    @property
    def coefs_(self) -> list:
        """Real weights per layer: ``(F, C, k, k)``, ``(n_out, n_in)`` or ``None`` (pooling)."""
        return [None if self.desc_[l, D_KIND] == KIND_POOL else
                self._to_public(self._layer_view(self.W_, l), l) for l in range(len(self.desc_))]

    @property
    def forward_coefs_(self) -> list:
        """Weights used by the forward pass (``alpha_l * sign(w)`` when binary)."""
        Wf = self._forward_weights(self.W_)
        return [None if self.desc_[l, D_KIND] == KIND_POOL else
                self._to_public(self._layer_view(Wf, l), l) for l in range(len(self.desc_))]

    def _forward_weights(self, W: np.ndarray) -> np.ndarray:
        if not self.binary:
            return W
        Wf = np.empty_like(W)
        for l in range(len(self.desc_)):
            _refresh_binary(W, Wf, self.w_off_, self.alpha_, l)
        return Wf

    def _layer_times(self, l: int, T_prev: np.ndarray, WT: np.ndarray) -> np.ndarray:
        d = self.desc_[l]
        n = T_prev.shape[0]
        if d[D_KIND] == KIND_FC:
            out = [np.empty((n, int(d[D_F]))) for _ in range(4)]
            from .neuron import _forward_batch
            _forward_batch(T_prev, np.ascontiguousarray(WT), float(self.thetas_[l]), float(self.tau1),
                           float(self.tau2), float(self.t_max), *out)
            return out[0]
        if d[D_KIND] == KIND_POOL:
            out = np.empty((n, int(d[D_F] * d[D_HO] * d[D_WO])))
            win = np.empty(out.shape, dtype=np.int64)
            _pool_batch(T_prev, *[int(v) for v in d[[D_C, D_H, D_W, D_K, D_HO, D_WO]]], out, win)
            return out
        out = [np.empty((n, int(d[D_F] * d[D_HO] * d[D_WO]))) for _ in range(4)]
        _conv_batch(T_prev, np.ascontiguousarray(WT), *[int(v) for v in d[[D_C, D_H, D_W, D_F, D_HO,
                                                                          D_WO, D_K, D_PAD]]],
                    float(self.thetas_[l]), float(self.tau1), float(self.tau2), float(self.t_max), *out)
        return out[0]

    def _driven(self, l: int, t_prev: np.ndarray):
        """Conv layers: mask of the (sample, filter, position) units whose receptive field
        holds at least one spike; units that see nothing (image background) cannot fire
        and are left out of the calibration median."""
        d = self.desc_[l]
        if d[D_KIND] != KIND_CONV:
            return None
        C, H, W, F, Ho, Wo, k, p = (int(v) for v in d[1:])
        act = (t_prev < self.t_max).reshape(-1, C, H, W)
        act = np.pad(act, ((0, 0), (0, 0), (p, p), (p, p)))
        cnt = np.lib.stride_tricks.sliding_window_view(act, (k, k), axis=(2, 3)).sum(axis=(1, 4, 5))
        m = np.broadcast_to((cnt > 0)[:, None], (act.shape[0], F, Ho, Wo)).reshape(act.shape[0], -1)
        return m if m.any() else None

    def _init_weights(self, T: np.ndarray, cfg: dict, rng: np.random.Generator) -> None:
        lo, hi = self.init_range
        self.W_ = np.zeros(int(self.w_off_[-1]))
        L = len(self.desc_)
        self.scales_ = np.ones(L)
        self.alpha_ = np.ones(L) if self.binary else np.empty(0)
        t_prev = np.ascontiguousarray(T[: self.init_samples])
        for l in range(L):
            if self.desc_[l, D_KIND] != KIND_POOL:
                WT = self._layer_view(self.W_, l)
                raw = rng.uniform(lo, hi, size=WT.shape)
                target = cfg["medians"][l]
                mask = self._driven(l, t_prev)
                s = _bisect_scale(lambda s: self._layer_times(l, t_prev, s * raw), target, mask)
                self.scales_[l] = s
                WT[...] = s * raw
                if self.binary:
                    sg = np.sign(raw)
                    a = _bisect_scale(lambda s: self._layer_times(l, t_prev, s * sg), target, mask)
                    self.alpha_[l] = a
                    WT_f = a * sg
                else:
                    WT_f = WT
            else:
                WT_f = None
            t_prev = np.ascontiguousarray(self._layer_times(l, t_prev, WT_f))

    def _reinit_dead(self, fire: np.ndarray, n_seen: int, rng) -> int:
        if self.dead_threshold <= 0 or n_seen == 0:
            return 0
        lo, hi = self.init_range
        total = 0
        L = len(self.desc_)
        for l in range(L - 1):  # hidden weight layers only
            d = self.desc_[l]
            if d[D_KIND] == KIND_POOL:
                continue
            F, npos = int(d[D_F]), int(d[D_HO] * d[D_WO])
            counts = fire[self.a_off_[l + 1]:self.a_off_[l + 2]].reshape(F, npos).sum(axis=1)
            dead = np.flatnonzero(counts < self.dead_threshold * n_seen * npos)
            if dead.size:
                WT = self._layer_view(self.W_, l)
                WT[:, dead] = self.scales_[l] * rng.uniform(lo, hi, size=(WT.shape[0], dead.size))
                total += dead.size
        return total

    # ------------------------------------------------------------- forward
    def _forward(self, T: np.ndarray, chunk: int = 2048):
        a_total = int(self.a_off_[-1])
        Wf = self._forward_weights(self.W_)
        max_rf, max_out = _scratch_sizes(self.desc_)
        out = []
        for s in range(0, T.shape[0], chunk):
            Tc = T[s:s + chunk]
            t_all = np.empty((Tc.shape[0], a_total))
            slope = np.empty_like(t_all)
            vpk = np.empty_like(t_all)
            forward_network(Tc, Wf, self.desc_, self.w_off_, self.a_off_, self.thetas_,
                            float(self.tau1), float(self.tau2), float(self.t_max), max_rf, max_out,
                            t_all, slope, vpk)
            out.append((t_all, slope, vpk))
        return tuple(np.concatenate([o[k] for o in out]) for k in range(3))

    def _decide(self, t_all, slope, vpk, fallback=True):
        o = slice(int(self.a_off_[-2]), int(self.a_off_[-1]))
        n = t_all.shape[0]
        pred = np.empty(n, dtype=np.int64)
        tied = np.empty(n, dtype=np.bool_)
        _net.decide_batch(np.ascontiguousarray(t_all[:, o]), np.ascontiguousarray(slope[:, o]),
                          np.ascontiguousarray(vpk[:, o]), float(self.t_max), bool(fallback), pred, tied)
        return pred, tied

    def _evaluate_times(self, T: np.ndarray, y: np.ndarray) -> dict:
        t_all, slope, vpk = self._forward(T)
        pred, tied = self._decide(t_all, slope, vpk)
        a = self.a_off_
        o = slice(int(a[-2]), int(a[-1]))
        silent = np.all(t_all[:, o] >= self.t_max, axis=1)
        strict = np.where(silent, -1, pred)
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

    def _setup(self, cfg: dict) -> None:
        self.arch_ = cfg["arch"]
        self.desc_ = self.arch_.descriptor()
        self.a_off_, self.w_off_ = _offsets(self.arch_)
        self.thetas_ = cfg["thetas"]

    # ------------------------------------------------------------- public API
    def fit(self, X, y, *, validation_data=None, checkpoint: str | os.PathLike | None = None,
            resume: bool = False) -> "ConvSpikingClassifier":
        """Train on images ``X`` (uint8 0..255 or float 0..1), shape ``(n, H, W)``,
        ``(n, C, H, W)`` or flat ``(n, C*H*W)`` in ``(C, H, W)`` order.

        ``validation_data``, ``checkpoint`` and ``resume`` behave as in
        :meth:`stidi.SpikingClassifier.fit` (the best validation epoch is kept;
        a resumed run ends with the same weights as an uninterrupted one).
        """
        for name in ("arch_", "desc_", "a_off_", "w_off_"):
            self.__dict__.pop(name, None)
        y = np.asarray(y)
        classes = np.unique(y)
        cfg = self._validate(len(classes))
        self._setup(cfg)
        T = self._times(X)
        if y.shape != (T.shape[0],):
            raise ValueError(f"y must have shape ({T.shape[0]},), got {y.shape}")
        if len(classes) < 2:
            raise ValueError("y needs at least two classes")
        self.classes_ = classes
        yi = self._labels(y, T.shape[0])
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
            self.best_alpha_ = self.alpha_.copy()
            self.best_epoch_ = 0
            self.best_score_ = -1.0

        max_rf, max_out = _scratch_sizes(self.desc_)
        lrs0 = cfg["lrs"] * self.scales_
        bar = _progress(self.epochs, start_epoch, self.verbose)
        for epoch in range(start_epoch, int(self.epochs)):
            t0 = time.perf_counter()
            order = rng.permutation(T.shape[0]).astype(np.int64)
            lrs = lrs0 * self.lr_decay ** epoch
            stats = np.zeros(5)
            fire = np.zeros(int(self.a_off_[-1]))
            Wf = self._forward_weights(self.W_)
            if self.binary:
                Wf = np.ascontiguousarray(Wf)
            common = (T, yi, order, self.W_, Wf, self.desc_, self.w_off_, self.a_off_, self.thetas_,
                      lrs, self.alpha_, float(self.alpha_lr), bool(cfg["sign_backward"]),
                      float(self.tau1), float(self.tau2), float(self.t_max), float(self.gamma),
                      cfg["target"], cfg["dtdv"], cfg["hidden"], bool(self.normalise),
                      float(self.beta), float(self.slope_floor), bool(cfg["conv_mean"]),
                      float(self.weight_decay), max_rf, max_out, stats, fire)
            silent = (int(cfg["silent_mode"]), bool(cfg["silent_pull"]), float(self.norm_floor))
            if self.batch_size == 1 and cfg["optimizer"] == 0:
                train_epoch_sgd(*common, *silent)
            else:
                self.step_ = train_epoch_batch(
                    *common, int(self.batch_size), max(1, min(int(self.n_jobs), int(self.batch_size))),
                    cfg["optimizer"], self.m1_, self.m2_, int(self.step_), *silent)
            reinit = self._reinit_dead(fire, T.shape[0], rng)
            train_seconds = time.perf_counter() - t0
            n = max(stats[4], 1)
            a = self.a_off_
            rec = {
                "epoch": epoch + 1,
                "train_accuracy_running": stats[0] / n,
                "train_output_silent_fraction": stats[2] / n,
                "train_hidden_silent_fraction": [
                    float(1 - fire[a[l]:a[l + 1]].mean() / T.shape[0]) for l in range(1, len(a) - 2)],
                "reinitialised": int(reinit),
                "lr": [float(v) for v in lrs],
                "train_seconds": train_seconds,
                "seconds_per_image": train_seconds / T.shape[0],
            }
            if self.binary:
                rec["alpha"] = [float(v) for v in self.alpha_]
            if val is not None:
                ev = self._evaluate_times(*val)
                rec.update({"val_" + k: v for k, v in ev.items()})
                if ev["accuracy"] > self.best_score_:
                    self.best_score_ = ev["accuracy"]
                    self.best_epoch_ = epoch + 1
                    self.best_W_ = self.W_.copy()
                    self.best_alpha_ = self.alpha_.copy()
            else:
                self.best_W_ = self.W_.copy()
                self.best_alpha_ = self.alpha_.copy()
                self.best_epoch_ = epoch + 1
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

    def predict(self, X, *, fallback: bool = True) -> np.ndarray:
        """Class of the first output neuron to fire; -1 for silent outputs when ``fallback=False``."""
        self._check_fitted()
        pred, _ = self._decide(*self._forward(self._times(X)), fallback=fallback)
        dt = self.classes_.dtype
        if np.issubdtype(dt, np.unsignedinteger):  # -1 must fit
            dt = np.result_type(dt, np.int8)
        out = np.full(pred.shape, -1, dtype=dt)
        ok = pred >= 0
        out[ok] = self.classes_[pred[ok]]
        return out

    def spike_times(self, X) -> list:
        """Spike-time maps of every layer (input first): ``(n, C, H, W)`` or ``(n, width)``."""
        self._check_fitted()
        t_all = self._forward(self._times(X))[0]
        a = self.a_off_
        shapes = [self.arch_.input_shape] + [l["out_shape"] for l in self.arch_.layers]
        out = []
        for l in range(len(a) - 1):
            t = t_all[:, int(a[l]):int(a[l + 1])]
            kind = None if l == 0 else self.arch_.layers[l - 1]["kind"]
            out.append(t if kind == "fc" else t.reshape(t.shape[0], *shapes[l]))
        return out

    def score(self, X, y, *, fallback: bool = True) -> float:
        return float(np.mean(self.predict(X, fallback=fallback) == np.asarray(y)))

    def evaluate(self, X, y) -> dict:
        """Same keys as :meth:`stidi.SpikingClassifier.evaluate`; the per-layer lists
        follow the layers of the architecture string (pooling layers included)."""
        self._check_fitted()
        T = self._times(X)
        return self._evaluate_times(T, self._labels(np.asarray(y), T.shape[0]))

    def cost_report(self, X) -> dict:
        """Memory and synaptic operations per inference.

        * ``bits_per_synapse``: 64 (float64 as stored; 32 if cast to float32) for
          real weights, 1 for binary ones (plus one 64-bit ``alpha`` per layer).
        * ``synops``: PSP contributions integrated per image, averaged over ``X``:
          for each input spike that arrives before ``t_max``, one per neuron it
          projects to (conv: the filters at every valid output position whose
          receptive field contains it; FC: every neuron of the layer).  This is the
          number of weight reads the event-driven sweep makes at PSP onsets.  They
          are multiply-accumulates for real weights and, for binary weights,
          additions/subtractions (``alpha`` applied once, at the threshold).
        """
        self._check_fitted()
        T = self._times(X)
        maps = self.spike_times(X)
        layers = []
        total_ops = 0.0
        total_bytes = 0.0
        for l, lay in enumerate(self.arch_.layers):
            t_in = maps[l].reshape(T.shape[0], *lay["in_shape"]) if lay["kind"] != "fc" else \
                maps[l].reshape(T.shape[0], -1)
            active = t_in < self.t_max
            shape = self.arch_.weight_shapes()[l]
            if lay["kind"] == "pool":
                layers.append(dict(layer=lay["token"], kind="pool", synapses=0, bytes=0.0, synops=0.0))
                continue
            n_syn = int(np.prod(shape))
            bits = 1 if self.binary else 64
            nbytes = n_syn * bits / 8 + (8 if self.binary else 0)
            F = lay["out_shape"][0]
            if lay["kind"] == "fc":
                ops = float(active.sum(axis=1).mean()) * F
            else:
                k, p = lay["k"], lay["pad"]
                a = np.pad(active, ((0, 0), (0, 0), (p, p), (p, p))).astype(np.float64)
                win = np.lib.stride_tricks.sliding_window_view(a, (k, k), axis=(2, 3))
                ops = float(win.sum(axis=(1, 4, 5)).sum(axis=(1, 2)).mean()) * F
            total_ops += ops
            total_bytes += nbytes
            layers.append(dict(layer=lay["token"], kind=lay["kind"], synapses=n_syn,
                               bits_per_synapse=bits, bytes=nbytes, synops=ops))
        return {
            "binary": bool(self.binary),
            "bits_per_synapse": 1 if self.binary else 64,
            "bits_per_synapse_float32": 1 if self.binary else 32,
            "weight_bytes": total_bytes,
            "weight_bytes_float32": total_bytes if self.binary else total_bytes / 2,
            "synops_per_image": total_ops,
            "op_kind": "add" if self.binary else "mac",
            "layers": layers,
        }

    def _check_fitted(self):
        if not hasattr(self, "W_"):
            raise RuntimeError("this ConvSpikingClassifier is not fitted yet; call fit() first")

    # ------------------------------------------------------------- persistence
    def _arrays(self) -> dict:
        return dict(
            format_version=np.array(_FORMAT_VERSION), kind=np.array("conv"),
            params=np.array(json.dumps(self.get_params())), thetas=self.thetas_, W=self.W_,
            alpha=self.alpha_, scales=self.scales_, classes=self.classes_,
            history=np.array(json.dumps(self.history_)), best_epoch=np.array(self.best_epoch_),
        )

    def save(self, path: str | os.PathLike) -> None:
        """Save settings, weights and history to ``path`` (``numpy.savez``, atomic, no pickle)."""
        self._check_fitted()
        _atomic_savez(Path(path), **self._arrays())

    @classmethod
    def load(cls, path: str | os.PathLike) -> "ConvSpikingClassifier":
        with np.load(path, allow_pickle=False) as z:
            if "kind" not in z or str(z["kind"]) != "conv":
                raise ValueError(f"{path}: not a ConvSpikingClassifier file")
            if int(z["format_version"]) != _FORMAT_VERSION:
                raise ValueError(f"{path}: unsupported model format {int(z['format_version'])}")
            clf = cls(**json.loads(str(z["params"])))
            clf._restore(z)
        return clf

    def _restore(self, z) -> None:
        cfg = self._validate()
        self._setup(cfg)
        self.thetas_ = z["thetas"].copy()
        self.W_ = z["W"].copy()
        if self.W_.shape != (int(self.w_off_[-1]),):
            raise ValueError(f"stored weights ({self.W_.size}) do not match {self.arch!r}")
        self.alpha_ = z["alpha"].copy()
        self.scales_ = z["scales"].copy()
        self.classes_ = z["classes"].copy()
        self.history_ = json.loads(str(z["history"]))
        self.best_epoch_ = int(z["best_epoch"])

    def _save_state(self, path: Path, *, rng: dict, epoch: int) -> None:
        arrays = self._arrays()
        arrays.update(m1=self.m1_, m2=self.m2_, step=np.array(self.step_), best_W=self.best_W_,
                      best_alpha=self.best_alpha_, best_score=np.array(self.best_score_),
                      epoch=np.array(epoch), rng=np.array(json.dumps(rng)))
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
            self.best_alpha_ = z["best_alpha"].copy()
            self.best_score_ = float(z["best_score"])
            return {"epoch": int(z["epoch"]), "rng": json.loads(str(z["rng"]))}
