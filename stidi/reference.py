r"""Readable NumPy twins of the Numba kernels.

Nothing here is fast.  Each function states the model as directly as we
could write it, so that it can be read next to the equations and used by the
tests as an independent check of the kernels in :mod:`stidi.neuron` and
:mod:`stidi.network`:

* :func:`first_spike_times_reference` evaluates :math:`v_j` at every
  breakpoint by summing PSPs and interpolates inside the first segment that
  reaches :math:`\theta` (the kernel instead carries a running slope).
* :func:`clock_driven_spike_times` is the clock-driven simulation used by the
  S4NN family: potentials on a grid of step ``dt`` (weights times a spike
  grid), then the first grid point at or above threshold.  It converges to
  the exact time as ``dt -> 0``.
* :func:`conv_forward_reference`, :func:`first_spike_pool_reference` and
  :func:`conv_clock_driven` do the same for convolutional and pooling layers.
* :func:`network_step_reference` is one per-sample STiDi-BP step of any
  network (dense, conv, pooling; real or binary weights; weight decay),
  written layer by layer with NumPy arrays; :func:`train_step_reference` is
  its dense-only form, with the weights as a list of matrices.
* :func:`batch_step_reference` is one mini-batch step (SGD or Adam).
* :func:`step_forward_reference` is the non-leaky integrate-and-fire neuron
  with step PSPs (S4NN's), evaluated at every distinct input time.
"""

from __future__ import annotations

import numpy as np

from .architecture import Architecture, parse_architecture
from .neuron import psp, psp_derivative

__all__ = [
    "first_spike_times_reference",
    "layer_forward_reference",
    "clock_driven_spike_times",
    "output_targets_reference",
    "decide_reference",
    "train_step_reference",
    "conv_forward_reference",
    "first_spike_pool_reference",
    "conv_clock_driven",
    "network_forward_reference",
    "network_step_reference",
    "train_step_conv_reference",
    "batch_step_reference",
    "step_forward_reference",
    "binary_forward_reference",
]


def _potential(t, t_in, w, tau1, tau2, t_max):
    active = t_in < t_max
    return float(np.sum(w[active] * psp(t - t_in[active], tau1, tau2)))


def _slope(t, t_in, w, tau1, tau2, t_max):
    active = t_in < t_max
    return float(np.sum(w[active] * psp_derivative(t - t_in[active], tau1, tau2)))


def _one_neuron(t_in, w, theta, tau1, tau2, t_max):
    active = t_in[t_in < t_max]
    bps = np.concatenate([[0.0], active, active + tau1, active + tau1 + tau2, [t_max]])
    bps = np.unique(bps[(bps >= 0) & (bps <= t_max)])
    v = np.array([_potential(b, t_in, w, tau1, tau2, t_max) for b in bps])
    vpeak, tpeak = 0.0, t_max
    for k in range(len(bps) - 1):
        a, b = bps[k], bps[k + 1]
        if v[k + 1] >= theta:
            tc = a + (theta - v[k]) * (b - a) / (v[k + 1] - v[k])
            s = _slope(0.5 * (a + b), t_in, w, tau1, tau2, t_max)
            return tc, s, theta, tc
        if v[k + 1] > vpeak:
            vpeak, tpeak = v[k + 1], b
    return t_max, 0.0, vpeak, tpeak


def _batched(t_in, W):
    """Input times as a batch ``(B, n_in)``, the weights, whether one pattern was given, and a
    zeroed ``(4, B, n_out)`` result (spike time, slope or potential at the spike, peak, peak time)."""
    t_in = np.asarray(t_in, dtype=np.float64)
    W = np.asarray(W, dtype=np.float64)
    single = t_in.ndim == 1
    T = t_in[None] if single else t_in
    return T, W, single, np.zeros((4, T.shape[0], W.shape[0]))


def layer_forward_reference(t_in, W, theta, tau1, tau2, t_max):
    """Twin of :func:`stidi.neuron.layer_forward`: ``(t, slope, v_peak, t_peak)``."""
    T, W, single, out = _batched(t_in, W)
    for b in range(T.shape[0]):
        for j in range(W.shape[0]):
            out[:, b, j] = _one_neuron(T[b], W[j], theta, tau1, tau2, t_max)
    return tuple(o[0] for o in out) if single else tuple(out)


def first_spike_times_reference(t_in, W, theta, tau1, tau2, t_max):
    """Twin of :func:`stidi.first_spike_times` (same arguments, same result)."""
    return layer_forward_reference(t_in, W, theta, tau1, tau2, t_max)[0]


def clock_driven_spike_times(t_in, W, theta, tau1, tau2, t_max, dt=1.0):
    r"""Clock-driven simulation on the grid :math:`t_k = k\,dt < t_{\max}`.

    Builds the PSP grid :math:`E_{ik} = \varepsilon(t_k - t_i)`, the
    potentials :math:`V = W E`, and returns the first grid time with
    :math:`V \ge \theta` (``t_max`` if none).  The error is below ``dt`` and
    vanishes as ``dt -> 0``.  Cost: :math:`O(n_{out} n_{in} t_{\max}/dt)`.
    """
    t_in = np.asarray(t_in, dtype=np.float64)
    W = np.asarray(W, dtype=np.float64)
    single = t_in.ndim == 1
    T = t_in[None] if single else t_in
    grid = np.arange(0.0, t_max, dt)
    out = np.full((T.shape[0], W.shape[0]), float(t_max))
    for b in range(T.shape[0]):
        # dense, as in S4NN: every input has a grid row (all zeros when it never spikes)
        E = np.where(T[b][:, None] < t_max, psp(grid[None, :] - T[b][:, None], tau1, tau2), 0.0)
        V = W @ E
        above = V >= theta
        fired = above.any(axis=1)
        out[b, fired] = grid[above[fired].argmax(axis=1)]
    return out[0] if single else out


def step_forward_reference(t_in, W, theta, t_max, delay=0.0):
    r"""Twin of :func:`stidi.dense.step_forward`: ``(t, v_spike, v_peak, t_peak)``.

    The potential :math:`v_j(t) = \sum_{i: t_i \le t} w_{ji}` is evaluated at
    every distinct input time before ``t_max`` (it is constant in between);
    the first such time :math:`t_c` with :math:`v_j \ge \theta` gives the spike
    :math:`t_c + d`, silence (``t_max``) when that is not before ``t_max``.
    """
    T, W, single, out = _batched(t_in, W)
    for b in range(T.shape[0]):
        times = np.unique(T[b][T[b] < t_max])
        # V[k, j]: potential of neuron j just after the inputs of time times[k]
        V = np.array([W @ (T[b] <= tk) for tk in times]).reshape(len(times), W.shape[0])
        for j in range(W.shape[0]):
            above = np.flatnonzero(V[:, j] >= theta)
            t, vs, tp = float(t_max), 0.0, float(t_max)
            upto = len(times) if above.size == 0 else above[0] + 1
            vp = max(0.0, float(V[:upto, j].max())) if upto else 0.0
            if above.size and times[above[0]] + delay < t_max:
                t = tp = float(times[above[0]] + delay)
                vs = float(V[above[0], j])
            out[:, b, j] = t, vs, vp, tp
    return tuple(o[0] for o in out) if single else tuple(out)


def output_targets_reference(t, label, gamma, t_max, mode="relative", silent_target="correct",
                             end_margin=0.0):
    """Twin of the output target rule (:func:`stidi.rule._output_targets`)."""
    t = np.asarray(t, dtype=np.float64)
    fired = t < t_max
    tau = t.min()
    if mode == "softmax":
        p = np.exp(-(t - tau) / gamma)
        p /= p.sum()
        return np.minimum(t + gamma * (p - np.eye(t.shape[0])[label]), t_max)
    if mode == "relative":
        if not fired.any():
            T = np.full_like(t, t_max - gamma if silent_target == "all" else t_max)
            T[label] = t_max - gamma
            return T
        T = t.copy()
        T[t - tau < gamma] = min(tau + gamma, t_max)
        T[label] = min(tau, t_max - end_margin)
        return T
    lo = max(tau - gamma, 0.0) if fired.any() else t_max - gamma
    hi = min(t[fired].max() + gamma, t_max) if fired.any() else t_max
    T = np.full_like(t, hi)
    T[label] = lo
    return T


def decide_reference(t, slope, v_peak, t_max, fallback=True):
    """Twin of :func:`stidi.rule.decide`: first spike, ties by slope, silence by peak."""
    t = np.asarray(t)
    if t.min() >= t_max:
        return int(np.argmax(v_peak)) if fallback else -1
    first = np.flatnonzero(t == t.min())
    return int(first[np.argmax(np.asarray(slope)[first])])


def _padded(t_in, filters, padding, t_max):
    """Maps with a batch axis, whether the input had none, the padded maps, the filters as rows, k."""
    t_in = np.asarray(t_in, dtype=np.float64)
    single = t_in.ndim == 3
    T = t_in[None] if single else t_in
    filters = np.asarray(filters, dtype=np.float64)
    p = int(padding)
    Tp = np.pad(T, ((0, 0), (0, 0), (p, p), (p, p)), constant_values=t_max)
    return T, single, Tp, filters.reshape(filters.shape[0], -1), filters.shape[2]


def conv_forward_reference(t_in, filters, theta, tau1, tau2, t_max, padding=0):
    """Twin of :func:`conv_forward`: pad, cut out each receptive field, and call
    :func:`stidi.reference.layer_forward_reference` position by position."""
    T, single, Tp, Wmat, k = _padded(t_in, filters, padding, t_max)
    F = Wmat.shape[0]
    Ho, Wo = Tp.shape[2] - k + 1, Tp.shape[3] - k + 1
    out = np.zeros((4, T.shape[0], F, Ho, Wo))
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
    T, single, Tp, Wmat, k = _padded(t_in, filters, padding, t_max)
    (F, C), (B, _, Hp, Wp) = (Wmat.shape[0], T.shape[1]), Tp.shape
    Ho, Wo = Hp - k + 1, Wp - k + 1
    grid = np.arange(0.0, t_max, dt)
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


def _as_arch(arch) -> Architecture:
    return arch if isinstance(arch, Architecture) else parse_architecture(arch)


def network_forward_reference(x, arch, weights, thetas, tau1, tau2, t_max):
    """Twin of :func:`stidi.network.forward_network` for one sample.

    Returns per layer (input first) the maps ``t``, ``slope``, ``v_peak``, ``t_peak``
    and the pooling winners (``None`` for other kinds), each shaped ``(C, H, W)``
    or ``(n,)`` for dense layers.
    """
    arch = _as_arch(arch)
    x = np.asarray(x, dtype=np.float64).reshape(arch.input_shape)
    out = {"t": [x], "slope": [np.zeros_like(x)], "vpk": [np.zeros_like(x)],
           "tpk": [np.full_like(x, t_max)], "win": [None]}
    for l, lay in enumerate(arch.layers):
        tin = out["t"][-1]
        win = None
        kind = lay.kind.name
        if kind == "CONV":
            t, s, vp, tp = conv_forward_reference(tin, weights[l], thetas[l], tau1, tau2, t_max, lay.pad)
        elif kind == "POOL":
            t, win = first_spike_pool_reference(tin, lay.k)
            s, vp, tp = (np.take(out[k][-1].ravel(), win) for k in ("slope", "vpk", "tpk"))
        else:
            t, s, vp, tp = layer_forward_reference(tin.ravel(), weights[l], thetas[l], tau1, tau2, t_max)
        for k, v in zip(("t", "slope", "vpk", "tpk", "win"), (t, s, vp, tp, win)):
            out[k].append(v)
    return out


def binary_forward_reference(w, alpha_l, binary_scale="layer"):
    r"""Forward weights of one binary layer in the public layout (units on the first axis):
    :math:`\alpha_l\,\mathrm{sign}(w)`, or with ``binary_scale="unit"``
    :math:`\alpha_l r_j\,\mathrm{sign}(w_{j\cdot})`, :math:`r_j` the unit's mean :math:`|w|` over
    the layer's (1 if all weights are 0); ``w`` itself when ``alpha_l`` is 0.

    Twin of :func:`stidi.binary._refresh_binary`. Chapter: book/07_binary.md, eq-bin-forward, eq-bin-unit.
    """
    w = np.asarray(w, dtype=np.float64)
    if alpha_l == 0:
        return w.copy()
    if binary_scale == "layer":
        return alpha_l * np.sign(w)
    per_unit = np.abs(w).reshape(w.shape[0], -1).mean(axis=1)
    total = np.abs(w).mean()
    r = per_unit / total if total > 0 else np.ones(w.shape[0])
    return (alpha_l * r).reshape((-1,) + (1,) * (w.ndim - 1)) * np.sign(w)


def _directions(x, label, arch, weights, thetas, tau1, tau2, t_max, gamma, *, alpha=None,
                target="relative", dtdv="linear", hidden_error="s4nn", normalise=True, beta=1.0,
                slope_floor=1e-3, conv_reduce="sum", silent_target="correct", silent_hidden="none",
                norm_floor=0.0, binary_backward="real", binary_scale="layer", end_margin=0.0):
    r"""Per-layer update directions :math:`D_l = \sum e\,g\,\varepsilon` of one sample (``None`` for
    pooling) and the binary-scale directions; the step is :math:`W_l - \eta_l D_l`."""
    L = len(arch.layers)
    fwd = [None if w is None else (w if alpha is None else binary_forward_reference(w, alpha[l], binary_scale))
           for l, w in enumerate(weights)]
    back = fwd if (alpha is not None and binary_backward == "sign") else weights
    f = network_forward_reference(x, arch, fwd, thetas, tau1, tau2, t_max)
    ts, slopes, vpks = f["t"], f["slope"], f["vpk"]
    tstars = [np.where(t < t_max, t, tp) for t, tp in zip(ts, f["tpk"])]
    pull = silent_hidden == "pull" and hidden_error == "s4nn"

    def gain(l):  # layer index l into arch.layers; activations at l + 1
        t = ts[l + 1]
        if dtdv == "constant":
            return np.ones_like(t)
        if dtdv == "slope":
            return np.where(t < t_max, 1.0 / np.maximum(slopes[l + 1], slope_floor), t / thetas[l])
        return t / thetas[l]

    e = (output_targets_reference(ts[-1], label, gamma, t_max, target, silent_target, end_margin)
         - ts[-1]) / t_max
    if not np.any(e):
        return None, np.zeros(L)        # no error: the sample changes nothing (no decay either)
    n_out = np.linalg.norm(e)
    err_gain = n_out / max(n_out, norm_floor)

    def norm(v):
        n = np.linalg.norm(v)
        return v * (err_gain / n) if (normalise and n > 0) else v

    errs = [None] * (L + 1)
    errs[L] = e / max(n_out, norm_floor) if normalise else e
    for l in range(L - 1, 0, -1):
        lay, t_below, t_here, e_here = arch.layers[l], ts[l], ts[l + 1], errs[l + 1]
        can_pull = pull & (t_below >= t_max) & (vpks[l] > 0)     # silent units that may be pulled
        if lay.kind.name == "POOL":
            win = f["win"][l + 1].ravel().copy()
            if pull:
                k = lay.k
                for q in np.flatnonzero((t_here.ravel() >= t_max) & (e_here.ravel() != 0)):
                    c, Y, X = np.unravel_index(q, t_here.shape)
                    block = vpks[l][c, Y * k:(Y + 1) * k, X * k:(X + 1) * k]
                    u, v = np.unravel_index(np.argmax(block), block.shape)
                    win[q] = np.ravel_multi_index((c, Y * k + u, X * k + v), t_below.shape)
            eb = np.zeros(t_below.size)
            eb[win] = e_here.ravel()
            errs[l] = eb.reshape(t_below.shape)
            continue
        if lay.kind.name == "DENSE":
            tb = t_below.ravel()
            if hidden_error == "s4nn":
                eb = (e_here[:, None] * back[l] * (tb[None, :] < t_here[:, None])).sum(axis=0)
                eb = np.where(can_pull.ravel(), np.minimum((e_here[:, None] * back[l]).sum(axis=0), 0.0), eb)
            else:
                dv = psp_derivative(tstars[l + 1][:, None] - tb[None, :], tau1, tau2)
                shift = ((e_here * gain(l))[:, None] * back[l] * dv).sum(axis=0)
                eb = (np.clip(tb + beta * shift, 0, t_max) - tb) / t_max
            eb = np.where((tb < t_max) | can_pull.ravel(), eb, 0.0).reshape(t_below.shape)
        else:
            F, C, k, _ = back[l].shape
            p = lay.pad
            _, H, W = t_below.shape
            acc = np.zeros((C, H + 2 * p, W + 2 * p))
            tpad = np.pad(t_below, ((0, 0), (p, p), (p, p)), constant_values=t_max)
            g = gain(l)
            for (fo, y, xx), ef in np.ndenumerate(e_here):
                if ef == 0:
                    continue
                tin = tpad[:, y:y + k, xx:xx + k]
                if hidden_error == "s4nn":
                    ind = (tin < t_here[fo, y, xx]) | (pull & (tin >= t_max))
                    acc[:, y:y + k, xx:xx + k] += ef * back[l][fo] * ind
                else:
                    d = psp_derivative(tstars[l + 1][fo, y, xx] - tin, tau1, tau2)
                    acc[:, y:y + k, xx:xx + k] += ef * g[fo, y, xx] * back[l][fo] * d
            acc = acc[:, p:p + H, p:p + W]
            if hidden_error == "s4nn":
                eb = np.where(can_pull, np.minimum(acc, 0.0), acc)
            else:
                eb = (np.clip(t_below + beta * acc, 0, t_max) - t_below) / t_max
            eb = np.where((t_below < t_max) | can_pull, eb, 0.0)
        errs[l] = norm(eb.ravel()).reshape(eb.shape)

    D, dalpha = [], np.zeros(L)
    for l, lay in enumerate(arch.layers):
        if lay.kind.name == "POOL":
            D.append(None)
            continue
        coef = errs[l + 1] * gain(l)
        tin = ts[l]
        if lay.kind.name == "DENSE":
            tb = tin.ravel()
            eps = psp(tstars[l + 1][:, None] - tb[None, :], tau1, tau2)
            eps[:, tb >= t_max] = 0.0
            d = coef[:, None] * eps
        else:
            F, C, k, _ = weights[l].shape
            p = lay.pad
            tpad = np.pad(tin, ((0, 0), (p, p), (p, p)), constant_values=t_max)
            d = np.zeros_like(weights[l])
            for (fo, y, xx), c in np.ndenumerate(coef):
                rf = tpad[:, y:y + k, xx:xx + k]
                eps = psp(tstars[l + 1][fo, y, xx] - rf, tau1, tau2)
                eps[rf >= t_max] = 0.0
                d[fo] += c * eps
            if conv_reduce == "mean":
                d /= coef.shape[1] * coef.shape[2]
        D.append(d)
        if alpha is not None:
            dalpha[l] = np.sum(d * fwd[l])      # sum_j e_j g_j sum_i alpha sign(w_ji) eps
    return D, dalpha


def network_step_reference(x, label, arch, weights, thetas, tau1, tau2, t_max, gamma, lrs, *,
                           alpha=None, alpha_lr=0.0, weight_decay=0.0, binary_clip=0.0, **rule):
    r"""One per-sample (online) STiDi-BP step of any network; returns the updated weight list.

    ``arch`` is an architecture string or :class:`stidi.architecture.Architecture`;
    ``weights[l]`` is ``(F, C, k, k)`` for conv, ``(n_out, n_in)`` for dense and
    ``None`` for pooling layers; ``thetas`` and ``lrs`` have one entry per layer.
    The steps:

    1. forward: spike times of every layer (silent = ``t_max``), with the forward
       weights :math:`\alpha_l \mathrm{sign}(w)` when ``alpha`` (one value per layer) is given
       (:math:`w` itself where :math:`\alpha_l = 0`, a real layer of a partly binary network);
    2. output targets :math:`T` and errors :math:`e = (T - t)/t_{\max}`;
    3. from the top down, the errors of the layer below with the weights before the
       update (dense or transposed conv form; pooling routes to the winners);
    4. every weight layer: :math:`w \leftarrow (w - \eta_l\, e\, g\, \varepsilon(t^* - t_{in}))
       (1 - \eta_l \lambda_l)` (``weight_decay``: one :math:`\lambda` or one per layer); with ``alpha``, :math:`\alpha_l \leftarrow \max(\alpha_l -
       \eta_\alpha D^\alpha_l / \alpha_l, 10^{-12})` for layers with :math:`\eta_l > 0` and
       :math:`\alpha_l > 0`; then, with ``binary_clip`` :math:`= c > 0`, the real weights
       of those layers are clipped to :math:`[-c\alpha_l, c\alpha_l]` (the new :math:`\alpha_l`).
       A sample with no error at all changes nothing (no decay either).

    ``rule`` takes the options of :class:`stidi.SpikingClassifier` that shape the rule
    (``target``, ``dtdv``, ``hidden_error``, ``normalise``, ``beta``, ``slope_floor``,
    ``conv_reduce``, ``silent_target``, ``end_margin``, ``silent_hidden``, ``norm_floor``,
    ``binary_backward``, ``binary_scale``).  With ``alpha``, returns ``(weights, alpha)``.
    """
    arch = _as_arch(arch)
    D, dalpha = _directions(x, label, arch, weights, thetas, tau1, tau2, t_max, gamma, alpha=alpha, **rule)
    no_error = D is None
    wds = np.broadcast_to(np.asarray(weight_decay, dtype=np.float64), (len(weights),))
    if no_error:
        D, wds = [None if w is None else np.zeros_like(w) for w in weights], np.zeros(len(weights))
    new = [None if w is None else (w - lr * d) * (1.0 - lr * wd) if wd > 0
           else w - lr * d for w, d, lr, wd in zip(weights, D, lrs, wds)]
    if alpha is None:
        return new
    a = np.array(alpha, dtype=np.float64)
    for l, lr in enumerate(lrs):
        if weights[l] is not None and alpha_lr > 0 and lr > 0 and a[l] != 0:
            a[l] = max(a[l] - alpha_lr * dalpha[l] / a[l], 1e-12)
        if weights[l] is not None and binary_clip > 0 and lr > 0 and a[l] != 0 and not no_error:
            new[l] = np.clip(new[l], -binary_clip * a[l], binary_clip * a[l])
    return new, a


train_step_conv_reference = network_step_reference


def train_step_reference(x, label, weights, thetas, tau1, tau2, t_max, gamma, lrs, *,
                         target="relative", dtdv="linear", hidden_error="s4nn",
                         normalise=True, beta=1.0, slope_floor=1e-3, weight_decay=0.0, **rule):
    r"""One per-sample STiDi-BP step of a fully connected network; returns the updated weights.

    ``weights[l]`` has shape ``(n_out, n_in)``: this is :func:`network_step_reference` (read
    its steps there) on the architecture ``n_0-n_1-...-n_L``, with :math:`\Delta w_{ji} =
    -\eta_l e_j g_j \varepsilon(t^*_j - t_i)` and :math:`g_j = t_j/\theta_l` (or 1, or :math:`1/\dot v_j`).
    """
    arch = "-".join(str(n) for n in [np.shape(weights[0])[1], *(np.shape(w)[0] for w in weights)])
    return network_step_reference(x, label, arch, [np.asarray(w, dtype=np.float64) for w in weights],
                                  thetas, tau1, tau2, t_max, gamma, lrs, target=target, dtdv=dtdv,
                                  hidden_error=hidden_error, normalise=normalise, beta=beta,
                                  slope_floor=slope_floor, weight_decay=weight_decay, **rule)


def batch_step_reference(X, labels, arch, weights, thetas, tau1, tau2, t_max, gamma, lrs, *,
                         optimizer="sgd", state=None, weight_decay=0.0, **rule):
    r"""One mini-batch step: the mean of the per-sample directions, then SGD or Adam.

    Twin of :func:`stidi.network.train_epoch_batch` for one batch (real weights).
    :math:`g = \bar D_l + \lambda_l w` (``weight_decay``: one :math:`\lambda` or one per layer); SGD: :math:`w \leftarrow w - \eta_l g`; Adam
    (:math:`\beta = (0.9, 0.999)`, :math:`\epsilon = 10^{-8}`) with the moments in
    ``state = {"m1": [...], "m2": [...], "step": k}``, updated in place.
    """
    arch = _as_arch(arch)
    dirs = [_directions(x, lab, arch, weights, thetas, tau1, tau2, t_max, gamma, **rule)[0]
            for x, lab in zip(X, labels)]
    dirs = [[None if w is None else np.zeros_like(w) for w in weights] if d is None else d for d in dirs]
    if state is not None:
        state["step"] += 1
    new = []
    wds = np.broadcast_to(np.asarray(weight_decay, dtype=np.float64), (len(weights),))
    for l, (w, lr) in enumerate(zip(weights, lrs)):
        if w is None:
            new.append(None)
            continue
        g = np.mean([d[l] for d in dirs], axis=0) + wds[l] * w
        if optimizer == "sgd":
            new.append(w - lr * g)
            continue
        b1, b2, eps, k = 0.9, 0.999, 1e-8, state["step"]
        state["m1"][l] = b1 * state["m1"][l] + (1 - b1) * g
        state["m2"][l] = b2 * state["m2"][l] + (1 - b2) * g * g
        new.append(w - lr * (state["m1"][l] / (1 - b1 ** k)) / (np.sqrt(state["m2"][l] / (1 - b2 ** k)) + eps))
    return new
