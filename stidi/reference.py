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
* :func:`train_step_reference` is one per-sample STiDi-BP step, written
  layer by layer with NumPy arrays.
"""

from __future__ import annotations

import numpy as np

from .neuron import psp, psp_derivative

__all__ = [
    "first_spike_times_reference",
    "layer_forward_reference",
    "clock_driven_spike_times",
    "output_targets_reference",
    "decide_reference",
    "train_step_reference",
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


def layer_forward_reference(t_in, W, theta, tau1, tau2, t_max):
    """Twin of :func:`stidi.neuron.layer_forward`: ``(t, slope, v_peak, t_peak)``."""
    t_in = np.asarray(t_in, dtype=np.float64)
    W = np.asarray(W, dtype=np.float64)
    single = t_in.ndim == 1
    T = t_in[None] if single else t_in
    out = np.zeros((4, T.shape[0], W.shape[0]))
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


def output_targets_reference(t, label, gamma, t_max, mode="relative"):
    """Twin of the output target rule (see :mod:`stidi.network`)."""
    t = np.asarray(t, dtype=np.float64)
    fired = t < t_max
    tau = t.min()
    if mode == "relative":
        if not fired.any():
            T = np.full_like(t, t_max)
            T[label] = t_max - gamma
            return T
        T = t.copy()
        T[t - tau < gamma] = min(tau + gamma, t_max)
        T[label] = tau
        return T
    lo = max(tau - gamma, 0.0) if fired.any() else t_max - gamma
    hi = min(t[fired].max() + gamma, t_max) if fired.any() else t_max
    T = np.full_like(t, hi)
    T[label] = lo
    return T


def decide_reference(t, slope, v_peak, t_max, fallback=True):
    """Twin of :func:`stidi.network.decide`: first spike, ties by slope, silence by peak."""
    t = np.asarray(t)
    if t.min() >= t_max:
        return int(np.argmax(v_peak)) if fallback else -1
    first = np.flatnonzero(t == t.min())
    return int(first[np.argmax(np.asarray(slope)[first])])


def train_step_reference(x, label, weights, thetas, tau1, tau2, t_max, gamma, lrs, *,
                         target="relative", dtdv="linear", hidden_error="s4nn",
                         normalise=True, beta=1.0, slope_floor=1e-3, weight_decay=0.0):
    r"""One per-sample STiDi-BP step; returns the updated weight list.

    ``weights[l]`` has shape ``(n_out, n_in)``.  The steps:

    1. forward: spike times :math:`t^l` of every layer (silent = ``t_max``);
    2. output targets :math:`T^L` and errors :math:`e^L = (T^L - t^L)/t_{\max}`;
    3. for :math:`l = L, \dots, 2`: errors of layer :math:`l-1` from layer
       :math:`l` with the weights before the update;
    4. every layer: :math:`\Delta w_{ji} = -\eta_l e_j g_j
       \varepsilon(t^*_j - t_i)`, :math:`g_j = t_j/\theta_l` (or 1, or
       :math:`1/\dot v_j`).
    """
    L = len(weights)
    ts, slopes, tstars = [np.asarray(x, dtype=np.float64)], [], []
    for l in range(L):
        t, s, _, tp = layer_forward_reference(ts[-1], weights[l], thetas[l], tau1, tau2, t_max)
        ts.append(t)
        slopes.append(s)
        tstars.append(np.where(t < t_max, t, tp))

    def gain(l):
        t = ts[l + 1]
        if dtdv == "constant":
            return np.ones_like(t)
        if dtdv == "slope":
            return np.where(t < t_max, 1.0 / np.maximum(slopes[l], slope_floor), t / thetas[l])
        return t / thetas[l]

    def norm(e):
        n = np.linalg.norm(e)
        return e / n if (normalise and n > 0) else e

    errors = [None] * L
    e = (output_targets_reference(ts[-1], label, gamma, t_max, target) - ts[-1]) / t_max
    if not np.any(e):
        return [w.copy() for w in weights]
    errors[L - 1] = norm(e)
    for l in range(L - 1, 0, -1):
        t_below, t_here = ts[l], ts[l + 1]
        active = t_below < t_max
        if hidden_error == "s4nn":
            causal = t_below[None, :] < t_here[:, None]
            e_below = (errors[l][:, None] * weights[l] * causal).sum(axis=0)
        else:
            dv = psp_derivative(tstars[l][:, None] - t_below[None, :], tau1, tau2)
            shift = ((errors[l] * gain(l))[:, None] * weights[l] * dv).sum(axis=0)
            T_below = np.clip(t_below + beta * shift, 0.0, t_max)
            e_below = (T_below - t_below) / t_max
        errors[l - 1] = norm(np.where(active, e_below, 0.0))

    new = []
    for l in range(L):
        eps = psp(tstars[l][:, None] - ts[l][None, :], tau1, tau2)
        eps[:, ts[l] >= t_max] = 0.0
        w = weights[l] - lrs[l] * (errors[l] * gain(l))[:, None] * eps
        if weight_decay > 0:
            w = w * (1.0 - lrs[l] * weight_decay)
        new.append(w)
    return new
