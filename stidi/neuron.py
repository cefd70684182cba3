r"""The piecewise-linear PSP neuron and its exact, event-driven first spike.

Model
-----
Every presynaptic neuron :math:`i` fires at most once, at :math:`t_i`.  Its
post-synaptic potential (PSP) is the triangular kernel

.. math::

    \varepsilon(s) = \begin{cases}
        s/\tau_1, & 0 \le s < \tau_1, \\
        (\tau_1 + \tau_2 - s)/\tau_2, & \tau_1 \le s < \tau_1 + \tau_2, \\
        0, & \text{otherwise,}
    \end{cases}

which rises to a peak of 1 at :math:`s = \tau_1` and decays back to 0 at
:math:`s = \tau_1 + \tau_2`.  The membrane potential of neuron :math:`j` is

.. math::  v_j(t) = \sum_i w_{ji}\, \varepsilon(t - t_i),

and the neuron fires once, at its first threshold crossing
:math:`t_j = \min\{t \ge 0 : v_j(t) \ge \theta\}`; it is never reset.

Because :math:`\varepsilon` is piecewise linear, so is :math:`v_j`.  Its slope
only changes at the *breakpoints* :math:`t_i`, :math:`t_i + \tau_1` and
:math:`t_i + \tau_1 + \tau_2`.  Sorting the breakpoints once and walking
through them while carrying the potential and the slope gives the crossing
time exactly, by solving one linear equation in the segment where it
happens.  No time grid is involved.  Since the breakpoints depend only on the
input times, one sort serves every neuron of the layer.

Conventions (ours, documented here once)
----------------------------------------
* The window is :math:`[0, t_{\max})`.  An input at :math:`t_i \ge t_{\max}`
  is "no spike" and contributes nothing.  A neuron that does not reach
  :math:`\theta` before :math:`t_{\max}` is silent and gets :math:`t_{\max}`.
* The threshold test is :math:`v \ge \theta` in continuous time.

Step PSP (the S4NN neuron)
--------------------------
With ``psp="step"`` the PSP is the Heaviside step :math:`\varepsilon(s) = [s \ge 0]`:
a non-leaky integrate-and-fire neuron, :math:`v_j(t) = \sum_{i: t_i \le t} w_{ji}`,
which only changes at input times.  :func:`_step_sweep` sorts the inputs once,
adds all inputs of one time together (so simultaneous inputs are never split),
and the neuron crosses at the first input time :math:`t_c` after which
:math:`v_j \ge \theta`.  It fires at :math:`t_j = t_c + d` (``delay`` :math:`d`,
default 0; S4NN uses one time step); a spike at or after :math:`t_{\max}`
is silence.  For learning, the step kernel counts an input when
:math:`t_i \le t_j - d`, i.e. when it had arrived by the crossing; a silent
neuron counts every input (it is treated as firing at :math:`t_{\max}`, S4NN's
forced spike).  Its derivative :math:`\varepsilon'` is 0 (a Dirac at the onset),
so only S4NN's hidden error (which does not use it) is defined.
S4NN tests :math:`v > \theta` rather than :math:`v \ge \theta`; with
real-valued weights the two differ only when :math:`v` equals :math:`\theta`
exactly.
"""

from __future__ import annotations

import numpy as np

from ._jit import njit

__all__ = ["encode", "psp", "psp_derivative"]


# ---------------------------------------------------------------------------
# validation helpers
# ---------------------------------------------------------------------------
def _check_positive(name: str, value: float) -> float:
    value = float(value)
    if not np.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return value


def _check_times(t: np.ndarray, name: str = "t_in") -> np.ndarray:
    t = np.asarray(t, dtype=np.float64)
    if not np.all(np.isfinite(t)):
        raise ValueError(f"{name} contains NaN or infinite spike times")
    if t.size and t.min() < 0:
        raise ValueError(f"{name} contains negative spike times (min {t.min():g}); times start at 0")
    return t


# ---------------------------------------------------------------------------
# encoding and kernel
# ---------------------------------------------------------------------------
def encode(images: np.ndarray, t_max: float = 256) -> np.ndarray:
    r"""Time-to-first-spike encoding of pixel intensities.

    .. math::  t = \lfloor t_{\max} (1 - p) \rfloor, \qquad p \in [0, 1],

    so the brightest pixel fires at 0 and a black pixel at :math:`t_{\max}`,
    which means "no spike".  ``uint8`` images are read as :math:`p = x/255`.

    Parameters
    ----------
    images : array_like
        ``uint8`` values 0..255 or floats in [0, 1], any shape.
    t_max : float, default 256
        Length of the coding window.

    Returns
    -------
    numpy.ndarray
        ``float64`` spike times of the same shape, in :math:`\{0, 1, \dots, t_{\max}\}`.
    """
    t_max = _check_positive("t_max", t_max)
    x = np.asarray(images)
    if x.dtype == np.uint8:
        p = x.astype(np.float64) / 255.0
    elif np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.floating):
        p = x.astype(np.float64)
        if not np.all(np.isfinite(p)):
            raise ValueError("images contain NaN or infinite values")
        if p.size and (p.min() < 0 or p.max() > 1):
            raise ValueError(
                "float images must lie in [0, 1] (pass uint8 arrays for 0..255 intensities); "
                f"got range [{p.min():g}, {p.max():g}]"
            )
    else:
        raise TypeError(f"images must be uint8 or float, got dtype {x.dtype}")
    # the small epsilon keeps floor() from dropping a step on values like 256*(1-1/255)
    return np.floor(t_max * (1.0 - p) + 1e-9)


def psp(s: np.ndarray, tau1: float, tau2: float) -> np.ndarray:
    r"""Triangular post-synaptic potential :math:`\varepsilon(s)`.

    .. math::

        \varepsilon(s) = \begin{cases} s/\tau_1 & 0 \le s < \tau_1 \\
        (\tau_1+\tau_2-s)/\tau_2 & \tau_1 \le s < \tau_1+\tau_2 \\
        0 & \text{otherwise} \end{cases}

    Parameters
    ----------
    s : array_like
        Time since the presynaptic spike.
    tau1, tau2 : float
        Rise and decay times (> 0).

    Returns
    -------
    numpy.ndarray
        Kernel values in [0, 1], same shape as ``s``.
    """
    tau1 = _check_positive("tau1", tau1)
    tau2 = _check_positive("tau2", tau2)
    s = np.asarray(s, dtype=np.float64)
    rise = (s >= 0) & (s < tau1)
    fall = (s >= tau1) & (s < tau1 + tau2)
    return np.where(rise, s / tau1, np.where(fall, (tau1 + tau2 - s) / tau2, 0.0))


def psp_derivative(s: np.ndarray, tau1: float, tau2: float) -> np.ndarray:
    r""":math:`\varepsilon'(s)`: :math:`1/\tau_1` on the rise, :math:`-1/\tau_2` on the decay, 0 elsewhere."""
    tau1 = _check_positive("tau1", tau1)
    tau2 = _check_positive("tau2", tau2)
    s = np.asarray(s, dtype=np.float64)
    rise = (s >= 0) & (s < tau1)
    fall = (s >= tau1) & (s < tau1 + tau2)
    return np.where(rise, 1.0 / tau1, np.where(fall, -1.0 / tau2, 0.0))


# ---------------------------------------------------------------------------
# Numba kernels
# ---------------------------------------------------------------------------
@njit
def _triangle(s, inv1, inv2, t12):
    """Triangular PSP :math:`\\varepsilon(s)` from precomputed ``1/tau1``, ``1/tau2``, ``tau1 + tau2``.

    Branch-free form :math:`\\max(0, \\min(s/\\tau_1, (\\tau_1+\\tau_2-s)/\\tau_2))`,
    used by every weight update. Chapter: book/02_pl_psp_neuron.md, eq-pl-kernel.
    """
    return max(min(s * inv1, (t12 - s) * inv2), 0.0)


@njit
def _deps(s, tau1, tau2):
    """:math:`\\varepsilon'(s)` (twin: :func:`psp_derivative`). Chapter: book/02_pl_psp_neuron.md, eq-pl-slope."""
    if s < 0.0:
        return 0.0
    if s < tau1:
        return 1.0 / tau1
    if s < tau1 + tau2:
        return -1.0 / tau2
    return 0.0


@njit
def _radix_sort_times(act_t, act_i, n):
    """Sort ``act_t[:n]`` (times >= 0) in place, stably, carrying ``act_i[:n]`` along.

    A least-significant-digit radix sort on the bits of the float64 times, one byte per
    pass, skipping the bytes on which all times agree: for non-negative floats the bit
    patterns, read as unsigned integers, are in the order of the values.  Stable, so
    equal times keep the order of their inputs; that order fixes the order in which the
    sweep adds their PSPs.  Twin: ``np.argsort(t, kind="stable")``
    (tests/test_neuron.py).  Chapter: book/02_pl_psp_neuron.md, eq-pl-segment.
    """
    for a in range(n):
        if act_t[a] == 0.0:
            act_t[a] = 0.0      # -0.0 would sort after every positive time
    bits = act_t[:n].view(np.uint64)
    k0 = bits.copy()
    i0 = act_i[:n].copy()
    k1 = np.empty(n, np.uint64)
    i1 = np.empty(n, np.int64)
    diff = np.uint64(0)
    for a in range(n):
        diff |= k0[a] ^ k0[0]
    byte = np.uint64(255)
    count = np.empty(257, np.int64)
    for p in range(8):
        shift = np.uint64(8 * p)
        if (diff >> shift) & byte == np.uint64(0):
            continue
        count[:] = 0
        for a in range(n):
            count[np.int64((k0[a] >> shift) & byte) + 1] += 1
        for d in range(256):
            count[d + 1] += count[d]
        for a in range(n):
            d = np.int64((k0[a] >> shift) & byte)
            q = count[d]
            count[d] = q + 1
            k1[q] = k0[a]
            i1[q] = i0[a]
        k0, k1 = k1, k0
        i0, i1 = i1, i0
    bits[:] = k0
    act_i[:n] = i0


@njit
def _active_sorted(t_in, t_max, act_t, act_i):
    """Times and indices of the inputs that spike before ``t_max``, sorted by time.

    Sorting the spike times once is enough: the rise, peak and end
    breakpoints are the same sequence shifted by 0, tau1 and tau1 + tau2, so
    the sweep merges three sorted streams.  Returns the number of active
    inputs; ``act_t``/``act_i`` hold them in time order, equal times in the
    order of their indices.
    Chapter: book/02_pl_psp_neuron.md, eq-pl-segment.
    """
    n = 0
    for i in range(t_in.shape[0]):
        if t_in[i] < t_max:
            act_t[n] = t_in[i]
            act_i[n] = i
            n += 1
    if n <= 96:
        # stable insertion sort in place, no allocation: faster than the radix sort
        # up to about 100 inputs (a receptive field of a convolution usually has fewer)
        for a in range(1, n):
            tv = act_t[a]
            iv = act_i[a]
            b = a - 1
            while b >= 0 and act_t[b] > tv:
                act_t[b + 1] = act_t[b]
                act_i[b + 1] = act_i[b]
                b -= 1
            act_t[b + 1] = tv
            act_i[b + 1] = iv
        return n
    _radix_sort_times(act_t, act_i, n)
    return n


@njit
def _sweep(t_in, WT, theta, tau1, tau2, t_max, t_out, slope_out, vpeak_out, tpeak_out,
           act_t, act_i, V, S, track_peak=True):
    """Exact first crossing for every neuron of one layer and one input pattern.

    ``WT`` is the transposed weight matrix ``(n_in, n_out)`` so that the inner
    loops over neurons read contiguous memory.  The breakpoints are visited
    in time order by merging three sorted streams (PSP onsets, peaks, ends).
    Between two consecutive breakpoints every potential is advanced
    linearly; a neuron whose potential reaches ``theta`` inside the segment
    gets the exact crossing time and is then parked at ``-inf`` so that it
    never fires again.  Writes the spike time, the slope of ``v`` at the
    crossing, and the peak potential and its time over ``[0, min(t_j, t_max)]``
    (only when ``track_peak``; otherwise ``v_peak`` stays 0 and ``t_peak``
    ``t_max`` for silent neurons).  Twin: :func:`stidi.reference.layer_forward_reference`.
    Chapter: book/02_pl_psp_neuron.md, eq-pl-crossing.
    """
    n_act = _active_sorted(t_in, t_max, act_t, act_i)
    _sweep_sorted(n_act, act_t, act_i, WT, theta, tau1, tau2, t_max, t_out, slope_out, vpeak_out,
                  tpeak_out, V, S, track_peak)


@njit
def _at_rest(n_out, t_max, t_out, v_out, vpeak_out, tpeak_out, V):
    """Start of a sweep: the first ``n_out`` neurons silent (``t_max``), at rest, no peak yet.

    ``v_out`` is the slope (triangle PSP) or the potential reached at the spike (step PSP).
    Chapter: book/02_pl_psp_neuron.md, eq-pl-crossing.
    """
    for j in range(n_out):
        V[j] = 0.0
        t_out[j] = t_max
        v_out[j] = 0.0
        vpeak_out[j] = 0.0
        tpeak_out[j] = t_max


@njit
def _group_row(k, n0, n1, g0, g1, g2, act_i, inv1, inv12, inv2):
    """Row of ``WT`` and slope coefficient of the ``k``-th breakpoint of a group of equal times.

    A group is the onsets ``act_i[g0:g0 + n0]``, then the peaks ``act_i[g1:g1 + n1]``, then
    the ends ``act_i[g2:]``: the order in which the merge of :func:`_sweep_sorted` meets them.
    Chapter: book/02_pl_psp_neuron.md, eq-pl-segment.
    """
    if k < n0:
        return act_i[g0 + k], inv1
    if k < n0 + n1:
        return act_i[g1 + k - n0], -inv12
    return act_i[g2 + k - n0 - n1], inv2


@njit
def _sweep_sorted(n_act, act_t, act_i, WT, theta, tau1, tau2, t_max, t_out, slope_out, vpeak_out,
                  tpeak_out, V, S, track_peak):
    """The sweep of :func:`_sweep` over ``n_act`` inputs already sorted by time.

    ``act_t[:n_act]`` are the spike times in increasing order and ``act_i`` the
    matching rows of ``WT``.  Breakpoints that fall at the same time form a group;
    the slope changes of a group are added four rows per walk over the neurons, the
    last (up to) four in the same walk that advances the potentials to the next
    group, in the order of the breakpoints, so every sum is the one a breakpoint-by-
    breakpoint sweep computes.
    Twin: :func:`stidi.reference.layer_forward_reference`.
    Chapter: book/02_pl_psp_neuron.md, eq-pl-crossing.
    """
    n_out = WT.shape[1]
    _at_rest(n_out, t_max, t_out, slope_out, vpeak_out, tpeak_out, V)
    for j in range(n_out):
        S[j] = 0.0
    remaining = n_out
    prev = 0.0
    inv1 = 1.0 / tau1
    inv12 = 1.0 / tau1 + 1.0 / tau2
    inv2 = 1.0 / tau2
    t12 = tau1 + tau2
    p0 = 0
    p1 = 0
    p2 = 0
    g0 = 0   # the group met last, not yet added to S: act_i[g0:p0], [g1:p1], [g2:p2]
    g1 = 0
    g2 = 0
    while True:
        b0 = act_t[p0] if p0 < n_act else np.inf
        b1 = act_t[p1] + tau1 if p1 < n_act else np.inf
        b2 = act_t[p2] + t12 if p2 < n_act else np.inf
        b = min(b0, b1, b2)
        last = b >= t_max
        if last:
            b = t_max
        n0 = p0 - g0
        n1 = p1 - g1
        n_pend = n0 + n1 + p2 - g2
        if b > prev and n_pend > 0:
            k = 0
            while n_pend - k > 4:
                ra, ca = _group_row(k, n0, n1, g0, g1, g2, act_i, inv1, inv12, inv2)
                rb, cb = _group_row(k + 1, n0, n1, g0, g1, g2, act_i, inv1, inv12, inv2)
                rc, cc = _group_row(k + 2, n0, n1, g0, g1, g2, act_i, inv1, inv12, inv2)
                rd, cd = _group_row(k + 3, n0, n1, g0, g1, g2, act_i, inv1, inv12, inv2)
                for j in range(n_out):
                    S[j] = S[j] + WT[ra, j] * ca + WT[rb, j] * cb + WT[rc, j] * cc + WT[rd, j] * cd
                k += 4
            # the last one to four rows, padded with zero steps (S + 0 = S), and the advance
            ra, ca = _group_row(k, n0, n1, g0, g1, g2, act_i, inv1, inv12, inv2)
            rb, cb, rc, cc, rd, cd = ra, 0.0, ra, 0.0, ra, 0.0
            if n_pend - k > 1:
                rb, cb = _group_row(k + 1, n0, n1, g0, g1, g2, act_i, inv1, inv12, inv2)
            if n_pend - k > 2:
                rc, cc = _group_row(k + 2, n0, n1, g0, g1, g2, act_i, inv1, inv12, inv2)
            if n_pend - k > 3:
                rd, cd = _group_row(k + 3, n0, n1, g0, g1, g2, act_i, inv1, inv12, inv2)
            dt = b - prev
            crossed = False
            if track_peak:
                for j in range(n_out):
                    s = S[j] + WT[ra, j] * ca + WT[rb, j] * cb + WT[rc, j] * cc + WT[rd, j] * cd
                    S[j] = s
                    v = V[j] + s * dt
                    V[j] = v
                    crossed |= v >= theta
                    up = v > vpeak_out[j]
                    vpeak_out[j] = v if up else vpeak_out[j]
                    tpeak_out[j] = b if up else tpeak_out[j]
            else:
                for j in range(n_out):
                    s = S[j] + WT[ra, j] * ca + WT[rb, j] * cb + WT[rc, j] * cc + WT[rd, j] * cd
                    S[j] = s
                    v = V[j] + s * dt
                    V[j] = v
                    crossed |= v >= theta
            if crossed:
                for j in range(n_out):
                    if V[j] >= theta:
                        s = S[j]
                        tc = b - (V[j] - theta) / s
                        if tc < prev:
                            tc = prev
                        t_out[j] = tc
                        slope_out[j] = s
                        vpeak_out[j] = theta
                        tpeak_out[j] = tc
                        V[j] = -np.inf
                        remaining -= 1
                if remaining == 0:
                    return
            g0, g1, g2 = p0, p1, p2
        prev = b if b > prev else prev
        if last:
            return
        while p0 < n_act and act_t[p0] == b:
            p0 += 1
        while p1 < n_act and act_t[p1] + tau1 == b:
            p1 += 1
        while p2 < n_act and act_t[p2] + t12 == b:
            p2 += 1


@njit
def _eps_step(s, delay):
    r"""Step PSP seen by the update: 1 when the input arrived by the crossing (:math:`s \ge d`), else 0.

    Chapter: book/03_linear_approximation.md, eq-lin-s4nn.
    """
    return 1.0 if s >= delay else 0.0


@njit
def _step_sweep(t_in, WT, theta, t_max, delay, t_out, vspike_out, vpeak_out, tpeak_out,
                act_t, act_i, V, track_peak=True):
    r"""Exact first spikes of a layer of non-leaky IF neurons with step PSPs (one input pattern).

    Inputs are visited in time order; all inputs that share a time are added
    together before the threshold test, so a neuron crosses at the first input
    time :math:`t_c` where :math:`\sum_{t_i \le t_c} w_{ji} \ge \theta` and fires at
    :math:`t_c + d` (silent, ``t_max``, when that is :math:`\ge t_{\max}`).
    ``vspike_out`` gets the potential reached at the crossing (it breaks ties
    between neurons firing at the same time; 0 when silent).  ``vpeak_out`` is
    the highest potential over the window before the spike (``theta`` .. the
    crossing value for neurons that fired; only when ``track_peak``), and
    ``tpeak_out`` the spike time, or ``t_max`` for silent neurons (the time the
    update treats them as firing).  Twin: :func:`stidi.reference.step_forward_reference`.
    Chapter: book/03_linear_approximation.md, eq-lin-s4nn.
    """
    n_out = WT.shape[1]
    n_act = _active_sorted(t_in, t_max, act_t, act_i)
    _at_rest(n_out, t_max, t_out, vspike_out, vpeak_out, tpeak_out, V)
    remaining = n_out
    p = 0
    while p < n_act and remaining > 0:
        tc = act_t[p]
        while p < n_act and act_t[p] == tc:
            row = WT[act_i[p]]
            for j in range(n_out):
                V[j] += row[j]
            p += 1
        fire = tc + delay < t_max
        for j in range(n_out):
            v = V[j]
            if v >= theta:
                if fire:
                    t_out[j] = tc + delay
                    vspike_out[j] = v
                    tpeak_out[j] = tc + delay
                if track_peak and v > vpeak_out[j]:
                    vpeak_out[j] = v
                V[j] = -np.inf
                remaining -= 1
            elif track_peak and v > vpeak_out[j]:
                vpeak_out[j] = v


def __getattr__(name):
    # the dense forward pass moved to stidi.dense; these names stay importable from here
    if name in ("layer_forward", "first_spike_times", "_forward_batch", "_prepare"):
        from . import dense
        return getattr(dense, name)
    raise AttributeError(f"module 'stidi.neuron' has no attribute {name!r}")
