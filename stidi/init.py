r"""Initialisation: weight scales calibrated on data, and re-initialisation of dead units.

Every weight layer starts as :math:`s_l\,U(\text{low}, \text{high})`.  The scale
:math:`s_l` is chosen so that the median first spike time of the layer, over
(unit, sample) pairs of a few training images, equals a target
(``init_median``).  The median decreases with :math:`s`, so one log-scale
bisection in :math:`[10^{-4}, 10^{4}]` finds it.  Conv units whose receptive
field holds no spike at all (image background) cannot fire and are left out
of the median.  Binary layers calibrate :math:`\alpha_l` the same way, with
:math:`\alpha_l\,\mathrm{sign}(w)`.

With ``uniform=True`` (the estimator's ``init="uniform"``, S4NN's scheme) nothing
is calibrated: layer ``l`` starts as :math:`U(\text{low}_l, \text{high}_l)` in
absolute units and its scale :math:`s_l` is defined as 1, so learning rates
"in units of :math:`s_l`" are absolute.  ``init_range`` is one ``(low, high)``
pair for every layer or one pair per layer (indexed like the layers).
"""

from __future__ import annotations

import numpy as np

from ._codes import BISECT_STEPS, Col, LayerKind, Neuron
from .binary import forward_weights
from .conv import _conv_batch
from .dense import _forward_batch, first_spike_times
from .pool import _pool_batch

__all__ = ["calibrate_binary", "calibrate_scale", "init_weights", "reinit_dead"]


def _bisect(fn, target: float, mask=None, steps: int = BISECT_STEPS) -> float:
    """Scale ``s`` with ``median(fn(s)[mask]) == target`` (the median decreases with ``s``)."""
    lo, hi = -4.0, 4.0
    for _ in range(steps):
        mid = 0.5 * (lo + hi)
        t = fn(10.0 ** mid)
        if np.median(t if mask is None else t[mask]) > target:
            lo = mid
        else:
            hi = mid
    return float(10.0 ** (0.5 * (lo + hi)))


def calibrate_scale(t_in: np.ndarray, W_raw: np.ndarray, target: float, theta: float,
                    tau1: float, tau2: float, t_max: float, steps: int = BISECT_STEPS) -> float:
    r"""Scale :math:`s` such that the median first spike time of ``s * W_raw`` is ``target``.

    ``W_raw`` has shape ``(n_out, n_in)``.  The median is taken over all
    (neuron, sample) pairs, silent pairs counting as ``t_max``; we bisect on a
    log scale in :math:`[10^{-4}, 10^{4}]` (``steps`` halvings).
    """
    return _bisect(lambda s: first_spike_times(t_in, s * W_raw, theta, tau1, tau2, t_max), target,
                   steps=steps)


def layer_times(d: np.ndarray, T_prev: np.ndarray, WT, theta: float, neuron: Neuron) -> np.ndarray:
    """Spike times of one layer (descriptor row ``d``, kernel-layout weights ``WT``) for a batch."""
    n = T_prev.shape[0]
    width = int(d[Col.F] * d[Col.HO] * d[Col.WO])
    if d[Col.KIND] == LayerKind.POOL:
        out = np.empty((n, width))
        _pool_batch(T_prev, d, out, np.empty(out.shape, dtype=np.int64))
        return out
    outs = [np.empty((n, width)) for _ in range(4)]
    if d[Col.KIND] == LayerKind.CONV:
        _conv_batch(T_prev, np.ascontiguousarray(WT), d, float(theta), neuron, *outs)
    else:
        _forward_batch(T_prev, np.ascontiguousarray(WT), float(theta), neuron.tau1, neuron.tau2,
                       neuron.t_max, *outs, int(neuron.psp), float(neuron.delay), False)
    return outs[0]


def driven_mask(d: np.ndarray, t_prev: np.ndarray, t_max: float):
    """Conv layers: mask of the (sample, unit) pairs whose receptive field holds at least one spike."""
    if d[Col.KIND] != LayerKind.CONV:
        return None
    _, C, H, W, F, Ho, Wo, k, p = (int(v) for v in d)
    act = (t_prev < t_max).reshape(-1, C, H, W)
    act = np.pad(act, ((0, 0), (0, 0), (p, p), (p, p)))
    cnt = np.lib.stride_tricks.sliding_window_view(act, (k, k), axis=(2, 3)).sum(axis=(1, 4, 5))
    m = np.broadcast_to((cnt > 0)[:, None], (act.shape[0], F, Ho, Wo)).reshape(act.shape[0], -1)
    return m if m.any() else None


def default_medians(n_weight_layers: int, t_max: float, *, fully_connected: bool = False) -> list[float]:
    """Median first spike times the weight layers are calibrated to by default, for
    ``t_max = 256`` and in proportion otherwise.

    Networks with a convolution (and the exact-gradient networks): hidden layers evenly
    from 48 to 96 (48 for a single one), the output at 128.  Fully connected networks
    (``fully_connected=True``): the later calibration, hidden layers evenly from 160 to
    192 (160 for a single one), the output at 224; measured with one hidden layer only
    (chapter 5: on Fashion-MNIST it gains several points, on MNIST it loses a few tenths).
    """
    n_hidden = n_weight_layers - 1
    first, last, out = (160.0, 192.0, 224.0) if fully_connected else (48.0, 96.0, 128.0)
    hid = np.linspace(first, last, n_hidden) if n_hidden > 1 else np.full(n_hidden, first)
    return [*(hid * t_max / 256.0), out * t_max / 256.0]


def layer_range(init_range, l: int):
    """``(low, high)`` of layer ``l``: ``init_range`` is one pair or one pair per layer."""
    r = np.asarray(init_range, dtype=np.float64)
    return (float(r[0]), float(r[1])) if r.ndim == 1 else (float(r[l][0]), float(r[l][1]))


def _block_signs(WT: np.ndarray, binary_unit: bool) -> np.ndarray:
    """Forward weights of one layer block ``WT`` (n_in, n_out) at :math:`\alpha = 1`: its
    signs, times the per-unit factors :math:`r_j` with ``binary_unit`` (:mod:`stidi.binary`)."""
    return forward_weights(np.ascontiguousarray(WT).ravel(), np.array([0, WT.size]), np.ones(1),
                           [WT.shape[1]], binary_unit).reshape(WT.shape)


def init_weights(arch, T: np.ndarray, medians, thetas, init_range, binary, neuron: Neuron,
                 rng: np.random.Generator, uniform: bool = False, binary_unit: bool = False):
    """Initial weights; returns ``(W, scales, alpha)`` (``alpha`` empty unless a layer is binary).

    ``medians[l]``, ``thetas[l]`` and ``binary[l]`` (or one ``binary`` for all) are
    indexed by layer (pooling entries unused).  ``alpha[l]`` is 0 for a layer with
    real weights in a partly binary network (:mod:`stidi.binary`).
    Calibrated (default) or, with ``uniform``, drawn from ``init_range`` as they are
    (scales 1; binary networks need the calibration).  With ``binary_unit`` a binary
    layer's :math:`\alpha_l` is calibrated with the per-unit factors of :mod:`stidi.binary`
    (computed by the same kernel as in training).
    """
    desc = arch.descriptor()
    L = len(desc)
    binary = np.broadcast_to(np.asarray(binary, dtype=bool), (L,))
    is_weight = desc[:, Col.KIND] != LayerKind.POOL
    if uniform and binary[is_weight].any():
        raise ValueError("binary weights need the calibrated initialisation (init='calibrated')")
    W = np.zeros(int(arch.offsets()[1][-1]))
    scales = np.ones(L)
    alpha = np.where(binary | ~is_weight, 1.0, 0.0) if binary[is_weight].any() else np.empty(0)
    t_prev = np.ascontiguousarray(T)
    for l in range(L):
        WT_f = None
        if desc[l, Col.KIND] != LayerKind.POOL:
            WT = arch.layer_view(W, l)
            lo, hi = layer_range(init_range, l)
            raw = rng.uniform(lo, hi, size=WT.shape)
            if uniform:
                WT[...] = raw
                t_prev = np.ascontiguousarray(layer_times(desc[l], t_prev, WT, thetas[l], neuron))
                continue
            mask = driven_mask(desc[l], t_prev, neuron.t_max)

            def calibrated(base):
                return _bisect(lambda s: layer_times(desc[l], t_prev, s * base, thetas[l], neuron),
                               medians[l], mask)

            scales[l] = calibrated(raw)
            WT[...] = scales[l] * raw
            WT_f = WT
            if binary[l]:
                signs = _block_signs(raw, binary_unit)
                alpha[l] = calibrated(signs)
                WT_f = alpha[l] * signs
        t_prev = np.ascontiguousarray(layer_times(desc[l], t_prev, WT_f, thetas[l], neuron))
    return W, scales, alpha


def calibrate_binary(arch, W: np.ndarray, T: np.ndarray, thetas, binary, neuron: Neuron,
                     binary_unit: bool = False) -> np.ndarray:
    r"""Scales :math:`\alpha_l` that turn trained real weights ``W`` into binary ones.

    Used when a network trained with real weights switches to
    :math:`\alpha_l\,\mathrm{sign}(w)` (the estimator's ``binary_warmup``).  Bottom up,
    each binary layer's :math:`\alpha_l` is bisected, with the layers below it already
    binary, so that over the (sample, unit) pairs of ``T`` at which the real network's
    layer fires, the median of :math:`t_\text{binary} - t_\text{real}` is zero: the
    binary layer fires neither earlier nor later than the real one, in the median.
    A silent binary unit counts as firing at ``t_max``.  A binary layer at which the
    real network fires nowhere keeps :math:`\alpha_l = 1`.
    Returns ``alpha`` as :func:`init_weights` does (0 for real layers, 1 for pooling).
    """
    desc = arch.descriptor()
    L = len(desc)
    binary = np.broadcast_to(np.asarray(binary, dtype=bool), (L,))
    is_weight = desc[:, Col.KIND] != LayerKind.POOL
    alpha = np.where(binary | ~is_weight, 1.0, 0.0)
    t_real = t_bin = np.ascontiguousarray(T)
    for l in range(L):
        if not is_weight[l]:
            t_real = layer_times(desc[l], t_real, None, thetas[l], neuron)
            t_bin = layer_times(desc[l], t_bin, None, thetas[l], neuron)
            continue
        WT = arch.layer_view(W, l)
        nxt = np.ascontiguousarray(layer_times(desc[l], t_real, WT, thetas[l], neuron))
        WT_f = WT
        if binary[l]:
            signs = _block_signs(WT, binary_unit)
            fired = nxt < neuron.t_max
            if fired.any():
                t_in = t_bin
                alpha[l] = _bisect(lambda s: layer_times(desc[l], t_in, s * signs, thetas[l], neuron)
                                   - nxt, 0.0, fired)
            WT_f = alpha[l] * signs
        t_real = nxt
        t_bin = np.ascontiguousarray(layer_times(desc[l], t_bin, WT_f, thetas[l], neuron))
    return alpha


def _hidden_unit_spikes(arch, fire: np.ndarray):
    """``(l, counts, npos)`` for every hidden weight layer ``l``, bottom up: ``counts[f]`` sums
    ``fire`` (spikes per activation, laid out by ``arch.offsets()[0]``) over the ``npos``
    positions of unit ``f`` (one for a dense neuron, the map of a conv filter)."""
    a_off, _ = arch.offsets()
    desc = arch.descriptor()
    for l in range(len(desc) - 1):
        d = desc[l]
        if d[Col.KIND] == LayerKind.POOL:
            continue
        F, npos = int(d[Col.F]), int(d[Col.HO] * d[Col.WO])
        yield l, fire[a_off[l + 1]:a_off[l + 2]].reshape(F, npos).sum(axis=1), npos


def reinit_dead(arch, W: np.ndarray, fire: np.ndarray, n_seen: int, threshold: float,
                scales: np.ndarray, init_range, rng: np.random.Generator) -> int:
    """Fresh weights for hidden units that fired too rarely; returns how many.

    A dense neuron (resp. a conv filter, counted over all its positions) is dead
    when it fired on fewer than ``threshold`` of the (sample, position) pairs of
    the epoch.  The output layer is never touched.  The fresh weights are drawn
    like the initial ones: ``scales[l] * U(low_l, high_l)`` (``scales`` are 1 for
    an uncalibrated, uniform initialisation).
    """
    if threshold <= 0 or n_seen == 0:
        return 0
    total = 0
    for l, counts, npos in _hidden_unit_spikes(arch, fire):
        dead = np.flatnonzero(counts < threshold * n_seen * npos)
        if dead.size:
            lo, hi = layer_range(init_range, l)
            WT = arch.layer_view(W, l)
            WT[:, dead] = scales[l] * rng.uniform(lo, hi, size=(WT.shape[0], dead.size))
            total += dead.size
    return total


def bump_silent(arch, W: np.ndarray, fire: np.ndarray, amount: float, scales: np.ndarray,
                level: np.ndarray, per_unit: bool = False, cap: int | None = None,
                floor=0.0, n_seen: int = 0) -> int:
    """Raise the input weights of silent hidden units, lowest layer first; returns how many.

    ``fire`` counts each hidden unit's spikes over the last window of training samples.
    A dense neuron (a conv filter: counted over all its positions) that never fired in
    the window is silent.  Only the lowest hidden weight layer with a silent unit is
    changed (the layers above it see different inputs once it fires): each input
    weight of its silent units grows by ``amount * scales[l] * 2**k``.  ``level`` (laid
    out like ``fire``) counts the windows in a row that led to a bump, updated here:

    * ``per_unit=False`` (Göltz et al. 2021): ``k = level[a_off[l + 1]]``, the windows
      in a row in which layer ``l`` was bumped, whichever of its units were silent; it
      falls back to 0 once the layer has no silent unit (and for the layers above a
      bumped one);
    * ``per_unit=True``: ``k`` is the number of windows in a row in which that unit was
      bumped (entry ``f`` of the layer's slice), 0 again once it fires.

    ``cap`` bounds the doublings: the step is at most ``amount * scales[l] * 2**cap``
    (``level`` still counts on).  ``None``: no bound.  The output layer is never touched.

    ``floor > 0`` widens "silent" to a unit that fired on fewer than ``floor`` of the
    ``n_seen * npos`` (sample, position) pairs of the window (a conv filter silent at
    most of its positions, not only at all of them); 0: no spike at all.  One value, or
    an array with one entry per layer of ``arch`` (entry ``l`` for weight layer ``l``).
    """
    if amount <= 0:
        return 0
    a_off, _ = arch.offsets()
    for l, counts, npos in _hidden_unit_spikes(arch, fire):
        f = float(floor[l]) if np.ndim(floor) else float(floor)
        silent = counts < f * n_seen * npos if f > 0 else counts == 0
        lev = level[a_off[l + 1]:a_off[l + 1] + counts.shape[0]]
        if not silent.any():
            lev[:] = 0
            continue
        idx = np.flatnonzero(silent)
        WT = arch.layer_view(W, l)
        k = lev if cap is None else np.minimum(lev, cap)
        if per_unit:
            WT[:, idx] += amount * scales[l] * 2.0 ** k[idx]
            lev[idx] += 1
            lev[~silent] = 0
        else:
            WT[:, idx] += amount * scales[l] * 2.0 ** k[0]
            lev[0] += 1
            level[a_off[l + 2]:] = 0
        return int(idx.size)
    return 0
