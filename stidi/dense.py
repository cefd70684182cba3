r"""Dense (fully connected) layers: forward pass, errors to the layer below, weight update.

The forward pass is the exact event-driven sweep of :mod:`stidi.neuron`
applied to the whole layer; the weights of layer ``l`` are stored transposed,
as a C-ordered ``(n_in, n_out)`` block, so that the sweep and the update walk
contiguous memory.

Errors of the layer below (:class:`stidi._codes.HiddenError`), computed with
the weights *before* the sample's update:

* ``S4NN``: :math:`e_i = \sum_j e_j w_{ji} [t_i < t_j]`;
* ``DISPLACEMENT``: :math:`T_i = \mathrm{clip}(t_i + \beta \sum_j e_j g_j w_{ji}
  \varepsilon'(t^*_j - t_i), 0, t_{\max})`, :math:`e_i = (T_i - t_i)/t_{\max}`.

Silent units get no error, unless ``Rule.silent_pull`` (S4NN-like errors
only): a silent unit whose potential rose above 0 then gets
:math:`\min(0, \sum_j e_j w_{ji})`, applied at its peak time.

The update is :math:`\Delta w_{ji} = s\, e_j g_j\, \varepsilon(t^*_j - t_i)`
with :math:`s = -\eta_l` (online) or 1 (a batch direction).

With step PSPs (``Neuron.psp == Psp.STEP``, :mod:`stidi.neuron`) the forward
pass is :func:`stidi.neuron._step_sweep`, :math:`\varepsilon(t^*_j - t_i)` is
:math:`[t_i \le t^*_j - d]`, and the S4NN-like hidden error uses the same
causality gate :math:`[t_i \le t_j - d]` (for integer times and :math:`d = 1`
this is S4NN's :math:`[t_i < t_j]`).
"""

from __future__ import annotations

import numpy as np

from ._codes import HiddenError, Psp
from ._jit import njit, prange
from .neuron import _check_positive, _check_times, _deps, _eps_step, _step_sweep, _sweep, _triangle

__all__ = ["layer_forward", "first_spike_times", "step_forward"]


@njit
def _dense_forward(t_in, WT, theta, neuron, t_out, slope_out, vpk_out, tpk_out, sc, track_peak):
    """Exact first spikes of a dense layer for one sample (the sweep of :mod:`stidi.neuron`).

    Twin: :func:`stidi.reference.layer_forward_reference`.
    Chapter: book/02_pl_psp_neuron.md, eq-pl-crossing.
    """
    if neuron.psp == Psp.STEP:
        _step_sweep(t_in, WT, theta, neuron.t_max, neuron.delay, t_out, slope_out, vpk_out, tpk_out,
                    sc.act_t, sc.act_i, sc.V, track_peak)
        return
    _sweep(t_in, WT, theta, neuron.tau1, neuron.tau2, neuron.t_max, t_out, slope_out, vpk_out,
           tpk_out, sc.act_t, sc.act_i, sc.V, sc.S, track_peak)


@njit
def _dense_errors_below(t_in, t_out, err_out, g_out, ts_out, WT, neuron, rule, err_in, vpk_in):
    """Errors of the layer below a dense layer (S4NN-like or displacement form, optional pull).

    Twin: :func:`stidi.reference.train_step_reference`.
    Chapter: book/04_stidi_bp_rule.md, eq-rule-s4nn-hidden, eq-rule-displacement.
    """
    n_in, n_l = WT.shape
    t_max = neuron.t_max
    s4nn = rule.hidden == HiddenError.S4NN
    step = neuron.psp == Psp.STEP
    for i in range(n_in):
        ti = t_in[i]
        acc = 0.0
        if ti >= t_max and rule.silent_pull and s4nn and vpk_in[i] > 0.0:
            for j in range(n_l):
                acc += err_out[j] * WT[i, j]
            err_in[i] = min(acc, 0.0)
        elif ti < t_max:
            if s4nn:
                for j in range(n_l):
                    ej = err_out[j]
                    if ej != 0.0 and (ti <= t_out[j] - neuron.delay if step else ti < t_out[j]):
                        acc += ej * WT[i, j]
                err_in[i] = acc
            else:
                for j in range(n_l):
                    ej = err_out[j]
                    if ej != 0.0:
                        acc += ej * g_out[j] * WT[i, j] * _deps(ts_out[j] - ti, neuron.tau1, neuron.tau2)
                Ti = min(max(ti + rule.beta * acc, 0.0), t_max)
                err_in[i] = (Ti - ti) / t_max
        else:
            err_in[i] = 0.0


@njit
def _dense_update(WT, Wsign, t_in, err_out, g_out, ts_out, scale, neuron, coef):
    """``WT += scale * e_j g_j eps(t*_j - t_i)`` for every synapse ``i -> j``.

    Returns the binary-scale direction :math:`\\sum_j c_j \\sum_i \\mathrm{sign}(w_{ji})
    \\varepsilon(t^*_j - t_i)` (with :math:`c_j` = ``scale * e_j g_j``) when
    ``Wsign`` (same layout as ``WT``) has entries, else 0.
    Twin: :func:`stidi.reference.train_step_reference`.
    Chapter: book/04_stidi_bp_rule.md, eq-rule-update.
    """
    n_in, n_out = WT.shape
    t_max = neuron.t_max
    any_err = False
    for j in range(n_out):
        coef[j] = scale * err_out[j] * g_out[j]
        any_err |= coef[j] != 0.0
    if not any_err:
        return 0.0
    inv1 = 1.0 / neuron.tau1
    inv2 = 1.0 / neuron.tau2
    t12 = neuron.tau1 + neuron.tau2
    want_alpha = Wsign.shape[0] > 0
    dalpha = 0.0
    step = neuron.psp == Psp.STEP
    for i in range(n_in):
        ti = t_in[i]
        if ti >= t_max:
            continue
        row = WT[i]
        if step:
            for j in range(n_out):
                e = _eps_step(ts_out[j] - ti, neuron.delay)
                row[j] += coef[j] * e
                if want_alpha:
                    dalpha += coef[j] * Wsign[i, j] * e
            continue
        for j in range(n_out):
            row[j] += coef[j] * _triangle(ts_out[j] - ti, inv1, inv2, t12)
        if want_alpha:
            srow = Wsign[i]
            for j in range(n_out):
                dalpha += coef[j] * srow[j] * _triangle(ts_out[j] - ti, inv1, inv2, t12)
    return dalpha


@njit
def _forward_rows(T_in, WT, theta, tau1, tau2, t_max, t_out, slope_out, vpeak_out, tpeak_out,
                  psp, delay, track_peak, lo, hi):
    """The sweep for rows ``lo:hi`` of ``T_in``, with one set of scratch arrays.

    Twins: :func:`stidi.reference.layer_forward_reference`,
    :func:`stidi.reference.step_forward_reference` (``psp`` = STEP).
    Chapter: book/02_pl_psp_neuron.md, eq-pl-crossing.
    """
    n_in = T_in.shape[1]
    n_out = WT.shape[1]
    act_t = np.empty(n_in)
    act_i = np.empty(n_in, dtype=np.int64)
    V = np.empty(n_out)
    S = np.empty(n_out)
    for b in range(lo, hi):
        if psp == Psp.STEP:
            _step_sweep(T_in[b], WT, theta, t_max, delay, t_out[b], slope_out[b], vpeak_out[b],
                        tpeak_out[b], act_t, act_i, V)
        else:
            _sweep(T_in[b], WT, theta, tau1, tau2, t_max, t_out[b], slope_out[b], vpeak_out[b],
                   tpeak_out[b], act_t, act_i, V, S, track_peak)


@njit(parallel=True)
def _forward_batch(T_in, WT, theta, tau1, tau2, t_max, t_out, slope_out, vpeak_out, tpeak_out,
                   psp=0, delay=0.0, track_peak=True):
    """The sweep for every row of ``T_in``, in parallel over shares of 16 rows.

    ``psp`` is a :class:`stidi._codes.Psp` code.  With ``track_peak=False`` the peak
    outputs of silent neurons are not computed (``v_peak`` 0, ``t_peak`` ``t_max``).
    Twins: :func:`stidi.reference.layer_forward_reference`,
    :func:`stidi.reference.step_forward_reference` (``psp`` = STEP).
    Chapter: book/02_pl_psp_neuron.md, eq-pl-crossing.
    """
    batch = T_in.shape[0]
    chunk = 16
    for c in prange((batch + chunk - 1) // chunk):
        _forward_rows(T_in, WT, theta, tau1, tau2, t_max, t_out, slope_out, vpeak_out, tpeak_out,
                      psp, delay, track_peak, c * chunk, min(batch, (c + 1) * chunk))


# ---------------------------------------------------------------------------
# public wrappers
# ---------------------------------------------------------------------------
def _prepare(t_in, W, theta, tau1, tau2, t_max):
    t_max = _check_positive("t_max", t_max)
    theta = _check_positive("theta", theta)
    tau1 = _check_positive("tau1", tau1)
    tau2 = _check_positive("tau2", tau2)
    W = np.asarray(W, dtype=np.float64)
    if W.ndim != 2:
        raise ValueError(f"W must have shape (n_out, n_in), got shape {W.shape}")
    if not np.all(np.isfinite(W)):
        raise ValueError("W contains NaN or infinite weights")
    t_in = _check_times(t_in)
    single = t_in.ndim == 1
    T = t_in[None, :] if single else t_in
    if T.ndim != 2 or T.shape[1] != W.shape[1]:
        raise ValueError(
            f"t_in must have shape (n_in,) or (batch, n_in) with n_in = W.shape[1] = {W.shape[1]}, "
            f"got shape {t_in.shape}"
        )
    return np.ascontiguousarray(T), np.ascontiguousarray(W.T), theta, tau1, tau2, t_max, single


def layer_forward(t_in, W, theta, tau1, tau2, t_max):
    r"""First spike times plus the by-products learning needs.

    Same model and arguments as :func:`first_spike_times`.

    Returns
    -------
    t : ndarray
        First spike times (``t_max`` when silent).
    slope : ndarray
        :math:`\dot v_j(t_j)` at the crossing, 0 for silent neurons.
    v_peak : ndarray
        Highest potential reached in :math:`[0, t_j]` (equal to
        :math:`\theta` for neurons that fired).
    t_peak : ndarray
        Time of that peak (equal to :math:`t_j` for neurons that fired,
        ``t_max`` when the potential never rose above 0).
    """
    return _layer_outputs(t_in, W, theta, tau1, tau2, t_max, True)


def _layer_outputs(t_in, W, theta, tau1, tau2, t_max, track_peak):
    """Checked arguments, the batch sweep, and ``(t, slope, v_peak, t_peak)`` shaped like ``t_in``."""
    T, WT, theta, tau1, tau2, t_max, single = _prepare(t_in, W, theta, tau1, tau2, t_max)
    outs = [np.empty((T.shape[0], WT.shape[1])) for _ in range(4)]
    _forward_batch(T, WT, theta, tau1, tau2, t_max, *outs, int(Psp.TRIANGLE), 0.0, track_peak)
    return tuple(o[0] for o in outs) if single else tuple(outs)


def step_forward(t_in, W, theta, t_max, delay=0.0):
    r"""First spikes of non-leaky integrate-and-fire neurons with step PSPs (S4NN's neuron).

    :math:`v_j(t) = \sum_{i: t_i \le t} w_{ji}`; the neuron fires at
    :math:`t_c + d`, :math:`t_c` the first input time with :math:`v_j \ge \theta`
    (``t_max`` when silent or when :math:`t_c + d \ge t_{\max}`).  Inputs at
    :math:`t_i \ge t_{\max}` are no spike.

    Returns
    -------
    t, v_spike, v_peak, t_peak : ndarray
        Spike times; the potential reached at the crossing (0 when silent);
        the highest potential before the spike; the spike time (``t_max`` when silent).
    """
    delay = float(delay)
    if not np.isfinite(delay) or delay < 0:
        raise ValueError(f"delay must be a finite number >= 0, got {delay!r}")
    T, WT, theta, _, _, t_max, single = _prepare(t_in, W, theta, 1.0, 1.0, t_max)
    shape = (T.shape[0], WT.shape[1])
    outs = [np.empty(shape) for _ in range(4)]
    _forward_batch(T, WT, theta, 1.0, 1.0, t_max, *outs, int(Psp.STEP), delay)
    return tuple(o[0] for o in outs) if single else tuple(outs)


def first_spike_times(t_in, W, theta, tau1, tau2, t_max):
    r"""Exact first spike times of a layer of PL-PSP neurons.

    Solves :math:`t_j = \min\{t \in [0, t_{\max}) : \sum_i w_{ji}\,
    \varepsilon(t - t_i) \ge \theta\}` exactly by an event-driven sweep
    over the sorted PSP breakpoints (no time grid).

    Parameters
    ----------
    t_in : array_like, shape ``(n_in,)`` or ``(batch, n_in)``
        Input spike times, :math:`\ge 0`.  Values :math:`\ge t_{\max}` mean
        "no spike".
    W : array_like, shape ``(n_out, n_in)``
        Synaptic weights (any sign).
    theta : float
        Firing threshold, > 0.
    tau1, tau2 : float
        PSP rise and decay times, > 0.
    t_max : float
        End of the simulation window, > 0.

    Returns
    -------
    numpy.ndarray
        ``float64`` spike times, shape ``(n_out,)`` or ``(batch, n_out)``;
        ``t_max`` for neurons that stay below threshold.

    Examples
    --------
    >>> import numpy as np, stidi
    >>> stidi.first_spike_times(np.array([0.0, 10.0]), np.array([[1.0, 1.0]]),
    ...                         theta=1.0, tau1=10.0, tau2=20.0, t_max=100.0)
    array([7.5])
    """
    return _layer_outputs(t_in, W, theta, tau1, tau2, t_max, False)[0]
