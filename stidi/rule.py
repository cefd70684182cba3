r"""The output side of STiDi-BP, shared by every layer kind: targets, errors, gains, decisions.

For the output layer with firing times :math:`t_j`, targets :math:`T_j` and
threshold :math:`\theta`,

.. math::

    e_j = \frac{T_j - t_j}{t_{\max}}, \qquad
    g_j = -\frac{\partial t_j}{\partial v_j} \approx \frac{t_j}{\theta},

and the update of a weight into neuron :math:`j` is
:math:`\Delta w_{ji} = -\eta\, e_j\, g_j\, \varepsilon(t^*_j - t_i)`, with
:math:`t^*_j = t_j` for a neuron that fired and its peak-potential time
otherwise.  ``Rule.dtdv`` selects :math:`g_j` (:class:`stidi._codes.DtDv`):
``LINEAR`` :math:`t_j/\theta` (the STiDi-BP linear approximation), ``CONSTANT``
1 (S4NN), ``SLOPE`` :math:`1/\dot v_j(t_j)` (the exact local slope).

Output targets (:class:`stidi._codes.Target`): ``RELATIVE`` puts the correct
neuron at the earliest output time :math:`\tau` and pushes every wrong neuron
that fires before :math:`\tau + \gamma` to :math:`\tau + \gamma`; when no output
fires, the correct neuron (``SilentTarget.CORRECT``) or every neuron
(``SilentTarget.ALL``) is asked for :math:`t_{\max} - \gamma`; with
``Rule.end_margin`` :math:`= m > 0` the correct neuron's target is
:math:`\min(\tau, t_{\max} - m)` instead of :math:`\tau`.  ``MINMAX`` puts
the correct neuron at :math:`\max(\tau_{\min} - \gamma, 0)` and every other one
at :math:`\min(\tau_{\max} + \gamma, t_{\max})`.  ``SOFTMAX`` gives every
output a graded target from the cross-entropy of a softmax over :math:`-t/\gamma`:
with :math:`p_j = e^{-t_j/\gamma} / \sum_k e^{-t_k/\gamma}`,
:math:`T_j = \min(t_j + \gamma\,(p_j - y_j),\ t_{\max})` (:math:`y` one-hot), i.e.
one gradient step of size :math:`\gamma^2` on :math:`-\log p_{\text{label}}`, so a
sample is never fully learned and silent wrong neurons are left alone.

With ``Rule.normalise`` each layer's error vector is divided by its L2 norm
(the output one by :math:`\max(|e|, \text{norm\_floor})`, hidden ones scaled to
the same overall gain).
"""

from __future__ import annotations

import numpy as np

from ._codes import DtDv, SilentTarget, Stat, Target
from ._jit import njit, prange

__all__ = ["decide", "decide_batch"]


@njit
def decide(t, slope, vpeak, t_max, fallback):
    """Predicted class from output spike times; returns ``(prediction, tied)``.

    First spike wins.  Neurons that cross at exactly the same time all sit
    at :math:`\\theta` then, so the tie goes to the one whose potential is
    higher just after the tie time, i.e. the larger slope :math:`\\dot v`;
    a remaining tie goes to the lowest index.  When no output fires the
    prediction is ``argmax(v_peak)`` if ``fallback`` else -1 (an error).
    Twin: :func:`stidi.reference.decide_reference`. Chapter: book/04_stidi_bp_rule.md.
    """
    n = t.shape[0]
    best = -1
    tmin = t_max
    for j in range(n):
        if t[j] < tmin:
            tmin = t[j]
    if tmin >= t_max:
        if not fallback:
            return -1, False
        vbest = -np.inf
        for j in range(n):
            if vpeak[j] > vbest:
                vbest = vpeak[j]
                best = j
        return best, False
    sbest = -np.inf
    count = 0
    for j in range(n):
        if t[j] == tmin:
            count += 1
            if slope[j] > sbest:
                sbest = slope[j]
                best = j
    return best, count > 1


@njit(parallel=True)
def decide_batch(t, slope, vpeak, t_max, fallback, pred, tied):
    """:func:`decide` for every row of ``(batch, n_out)`` arrays, in parallel.

    Twin: :func:`stidi.reference.decide_reference`. Chapter: book/04_stidi_bp_rule.md.
    """
    for n in prange(t.shape[0]):
        p, ti = decide(t[n], slope[n], vpeak[n], t_max, fallback)
        pred[n] = p
        tied[n] = ti


@njit
def _output_targets(t, label, gamma, t_max, mode, T, silent_mode, end_margin=0.0):
    """Targets ``T`` of the output layer (see the module docstring).

    Twin: :func:`stidi.reference.output_targets_reference`.
    Chapter: book/04_stidi_bp_rule.md, eq-rule-targets.
    """
    n = t.shape[0]
    tmin = t_max
    tmax_fired = 0.0
    any_fired = False
    for j in range(n):
        if t[j] < tmin:
            tmin = t[j]
        if t[j] < t_max:
            any_fired = True
            if t[j] > tmax_fired:
                tmax_fired = t[j]
    if mode == Target.SOFTMAX:
        z = 0.0
        for j in range(n):  # T holds the unnormalised probabilities first
            T[j] = np.exp(-(t[j] - tmin) / gamma)
            z += T[j]
        for j in range(n):
            T[j] = min(t[j] + gamma * (T[j] / z - (1.0 if j == label else 0.0)), t_max)
        return
    if mode == Target.RELATIVE:
        if not any_fired:
            for j in range(n):
                T[j] = t_max - gamma if silent_mode == SilentTarget.ALL else t_max
            T[label] = t_max - gamma
            return
        for j in range(n):
            T[j] = t[j]
            if t[j] - tmin < gamma:
                T[j] = min(tmin + gamma, t_max)
        T[label] = min(tmin, t_max - end_margin)
    else:
        lo = max(tmin - gamma, 0.0) if any_fired else t_max - gamma
        hi = min(tmax_fired + gamma, t_max) if any_fired else t_max
        for j in range(n):
            T[j] = hi
        T[label] = lo


@njit
def _normalise(e, floor, gain):
    """``e *= gain / max(|e|, floor)``; returns the norm of ``e`` before scaling (0: nothing to do).

    Chapter: book/04_stidi_bp_rule.md, eq-rule-error.
    """
    s = 0.0
    for j in range(e.shape[0]):
        s += e[j] * e[j]
    if s > 0.0:
        s = np.sqrt(s)
        f = gain / max(s, floor)
        for j in range(e.shape[0]):
            e[j] *= f
    return s


@njit
def _output_errors(t, label, t_max, rule, err, T):
    """Output errors :math:`e = (T - t)/t_{\\max}`, normalised when ``rule.normalise``.

    Returns the gain that hidden error vectors are scaled to, or -1 when the
    sample carries no error at all.  Chapter: book/04_stidi_bp_rule.md, eq-rule-error.
    """
    _output_targets(t, label, rule.gamma, t_max, rule.target, T, rule.silent_target, rule.end_margin)
    nz = False
    for j in range(t.shape[0]):
        err[j] = (T[j] - t[j]) / t_max
        nz |= err[j] != 0.0
    if not nz:
        return -1.0
    if not rule.normalise:
        return 1.0
    nrm = _normalise(err, rule.norm_floor, 1.0)
    return nrm / max(nrm, rule.norm_floor)


@njit
def _gain(t, slope, theta, t_max, dtdv, slope_floor):
    """:math:`g = -\\partial t/\\partial v` under the selected approximation.

    Chapter: book/03_linear_approximation.md, eq-lin-dtdv.
    """
    if dtdv == DtDv.CONSTANT:
        return 1.0
    if dtdv == DtDv.SLOPE and t < t_max:
        return 1.0 / max(slope, slope_floor)
    return t / theta


@njit
def _layer_gains(t, slope, tpk, theta, t_max, rule, g, tstar):
    """Gains :math:`g_j` and :math:`t^*_j` (spike time, or peak time when silent) of one layer.

    Chapter: book/04_stidi_bp_rule.md, eq-rule-update.
    """
    for j in range(t.shape[0]):
        tj = t[j]
        g[j] = _gain(tj, slope[j], theta, t_max, rule.dtdv, rule.slope_floor)
        tstar[j] = tj if tj < t_max else tpk[j]


@njit
def _record(t_out, slope_out, vpk_out, t_hidden, label, t_max, stats, fire_counts):
    """Running statistics of one sample (columns of :class:`stidi._codes.Stat`) and firing counts.

    ``t_hidden`` holds every non-input unit (output last); ``fire_counts`` matches it.
    Chapter: book/04_stidi_bp_rule.md.
    """
    pred, tied = decide(t_out, slope_out, vpk_out, t_max, True)
    strict, _ = decide(t_out, slope_out, vpk_out, t_max, False)
    stats[Stat.N] += 1
    if pred == label:
        stats[Stat.CORRECT] += 1
    if strict == label:
        stats[Stat.CORRECT_STRICT] += 1
    if strict < 0:
        stats[Stat.OUT_SILENT] += 1
    if tied:
        stats[Stat.TIES] += 1
    for q in range(t_hidden.shape[0]):
        if t_hidden[q] < t_max:
            fire_counts[q] += 1
