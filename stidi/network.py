r"""STiDi-BP for fully connected networks of any depth: the Numba core.

This module holds the per-sample kernels (forward pass, output targets,
layer-local errors, weight updates) and the epoch loops that call them.  The
friendly entry point is :class:`stidi.SpikingClassifier`; the readable NumPy
twin of one training step is :func:`stidi.reference.train_step_reference`.

Layout
------
All weights live in one flat ``float64`` vector.  Layer ``l`` (``l = 0`` is
the first hidden layer) occupies ``W[w_off[l]:w_off[l+1]]`` and is stored
*transposed*, as a C-ordered ``(n_in, n_out)`` block, so that the event sweep
and the update both walk contiguous memory.  Activations of one sample live
in flat vectors too: layer ``l`` (``l = 0`` is the input) occupies
``a_off[l]:a_off[l+1]``.

The learning rule
-----------------
For a layer with firing times :math:`t_j`, targets :math:`T_j` and threshold
:math:`\theta`,

.. math::

    e_j = \frac{T_j - t_j}{t_{\max}}, \qquad
    \Delta w_{ji} = -\eta\, e_j\, g_j\, \varepsilon(t^*_j - t_i),
    \qquad g_j = -\frac{\partial t_j}{\partial v_j} \approx \frac{t_j}{\theta},

where :math:`t^*_j = t_j` for a neuron that fired and its peak-potential
time otherwise.  ``dtdv`` selects :math:`g_j`: 0 = :math:`t_j/\theta` (the
STiDi-BP linear approximation), 1 = 1 (S4NN), 2 = :math:`1/\dot v_j(t_j)`
(the exact local slope, SpikeProp-style).

Errors of the layer below (``hidden``): 0 = the S4NN-like form
:math:`e_i = \sum_j e_j w_{ji} [t_i < t_j]`; 1 = spike-time displacement,
:math:`T_i = \mathrm{clip}(t_i + \beta \sum_j e_j g_j w_{ji}
\varepsilon'(t^*_j - t_i), 0, t_{\max})`.  Both use the weights *before*
the sample's update.

Output targets (``target``): 0 = relative target with margin
:math:`\gamma` (the correct neuron at the earliest output time
:math:`\tau`, every wrong neuron that fires before :math:`\tau + \gamma`
pushed to :math:`\tau + \gamma`; when no output fires, the correct neuron is
asked for :math:`t_{\max} - \gamma`); 1 = min/max target (correct neuron at
:math:`\max(\tau_{\min} - \gamma, 0)`, every other neuron at
:math:`\min(\tau_{\max} + \gamma, t_{\max})`).
"""

from __future__ import annotations

import numpy as np

from ._jit import njit, prange
from .neuron import _deps, _sweep

# integer codes shared with the Python layer
TARGET_MODES = {"relative": 0, "minmax": 1}
DTDV_MODES = {"linear": 0, "constant": 1, "slope": 2}
HIDDEN_MODES = {"s4nn": 0, "displacement": 1}
OPTIMIZERS = {"sgd": 0, "adam": 1}

# stats vector layout returned by the epoch kernels
ST_CORRECT, ST_CORRECT_STRICT, ST_OUT_SILENT, ST_TIES, ST_N = range(5)
N_STATS = 5


@njit
def _forward_sample(x, W, w_off, a_off, sizes, thetas, tau1, tau2, t_max,
                    t_all, slope_all, vpk_all, tpk_all, act_t, act_i, V, S):
    L = sizes.shape[0] - 1
    n0 = sizes[0]
    for i in range(n0):
        t_all[i] = x[i]
    for l in range(L):
        n_in = sizes[l]
        n_out = sizes[l + 1]
        WT = W[w_off[l]:w_off[l + 1]].reshape((n_in, n_out))
        a, b = a_off[l + 1], a_off[l + 2]
        # peaks matter only at the output (decision fallback, update of a silent
        # output); a silent hidden neuron always has zero error
        _sweep(t_all[a_off[l]:a_off[l + 1]], WT, thetas[l], tau1, tau2, t_max,
               t_all[a:b], slope_all[a:b], vpk_all[a:b], tpk_all[a:b],
               act_t, act_i, V, S, l == L - 1)


@njit
def decide(t, slope, vpeak, t_max, fallback):
    """Predicted class from output spike times.

    First spike wins.  Neurons that cross at exactly the same time all sit
    at :math:`\\theta` then, so the tie goes to the one whose potential is
    higher just after the tie time, i.e. the larger slope :math:`\\dot v`;
    a remaining tie goes to the lowest index.  When no output fires the
    prediction is ``argmax(v_peak)`` if ``fallback`` else -1 (an error).
    Returns ``(prediction, tied)``.
    """
    n = t.shape[0]
    best = -1
    tied = False
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


@njit
def _output_targets(t, label, gamma, t_max, mode, T, silent_mode=0):
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
    if mode == 0:
        if not any_fired:
            for j in range(n):
                T[j] = t_max - gamma if silent_mode == 1 else t_max
            T[label] = t_max - gamma
            return
        for j in range(n):
            T[j] = t[j]
            if t[j] - tmin < gamma:
                T[j] = min(tmin + gamma, t_max)
        T[label] = tmin
    else:
        lo = max(tmin - gamma, 0.0) if any_fired else t_max - gamma
        hi = min(tmax_fired + gamma, t_max) if any_fired else t_max
        for j in range(n):
            T[j] = hi
        T[label] = lo


@njit
def _normalise(e, floor=0.0, gain=1.0):
    """``e *= gain / max(|e|, floor)``; returns the norm of ``e`` before scaling (0: nothing to do)."""
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
def _gain(t, slope, theta, t_max, dtdv, slope_floor):
    """g = -dt/dv under the selected approximation."""
    if dtdv == 1:
        return 1.0
    if dtdv == 2 and t < t_max:
        return 1.0 / max(slope, slope_floor)
    return t / theta


@njit
def _backward_sample(label, W, w_off, a_off, sizes, thetas, tau1, tau2, t_max,
                     gamma, target_mode, dtdv, hidden_mode, normalise, beta, slope_floor,
                     t_all, slope_all, tpk_all, err_all, g_all, tstar_all,
                     norm_floor=0.0, silent_mode=0):
    """Fill ``err_all`` (normalised errors), ``g_all`` and ``tstar_all`` for every layer.

    With ``normalise``, the output error is divided by ``max(|e|, norm_floor)``
    and every hidden error vector is scaled to the same overall gain,
    ``|e| / max(|e|, norm_floor)`` (1 when ``norm_floor`` is 0).
    Returns False when the sample carries no error at all.
    """
    L = sizes.shape[0] - 1
    # output layer
    a, b = a_off[L], a_off[L + 1]
    n_out = sizes[L]
    T = np.empty(n_out)
    _output_targets(t_all[a:b], label, gamma, t_max, target_mode, T, silent_mode)
    for j in range(n_out):
        err_all[a + j] = (T[j] - t_all[a + j]) / t_max
    gain = 1.0
    if normalise:
        nrm = _normalise(err_all[a:b], norm_floor)
        if nrm == 0.0:
            return False
        gain = nrm / max(nrm, norm_floor)
    else:
        nz = False
        for j in range(n_out):
            if err_all[a + j] != 0.0:
                nz = True
        if not nz:
            return False
    for l in range(L, 0, -1):
        a, b = a_off[l], a_off[l + 1]
        theta = thetas[l - 1]
        for j in range(b - a):
            tj = t_all[a + j]
            g_all[a + j] = _gain(tj, slope_all[a + j], theta, t_max, dtdv, slope_floor)
            tstar_all[a + j] = tj if tj < t_max else tpk_all[a + j]
        if l == 1:
            break
        # errors of layer l-1 from layer l, with the weights before this update
        n_in = sizes[l - 1]
        n_l = sizes[l]
        WT = W[w_off[l - 1]:w_off[l]].reshape((n_in, n_l))
        pa = a_off[l - 1]
        for i in range(n_in):
            ti = t_all[pa + i]
            acc = 0.0
            if ti < t_max:
                if hidden_mode == 0:
                    for j in range(n_l):
                        ej = err_all[a + j]
                        if ej != 0.0 and ti < t_all[a + j]:
                            acc += ej * WT[i, j]
                    err_all[pa + i] = acc
                else:
                    for j in range(n_l):
                        ej = err_all[a + j]
                        if ej != 0.0:
                            acc += ej * g_all[a + j] * WT[i, j] * _deps(tstar_all[a + j] - ti, tau1, tau2)
                    Ti = min(max(ti + beta * acc, 0.0), t_max)
                    err_all[pa + i] = (Ti - ti) / t_max
            else:
                err_all[pa + i] = 0.0
        if normalise:
            _normalise(err_all[pa:a], 0.0, gain)
    return True


@njit
def _apply_update(W, w_off, a_off, sizes, l, scale, tau1, tau2, t_max,
                  t_all, err_all, g_all, tstar_all, coef):
    """``W_l += scale * e_j g_j eps(t*_j - t_i)`` for every synapse i -> j.

    ``coef`` is scratch of length ``n_out``.
    """
    n_in = sizes[l]
    n_out = sizes[l + 1]
    WT = W[w_off[l]:w_off[l + 1]].reshape((n_in, n_out))
    a = a_off[l + 1]
    pa = a_off[l]
    any_err = False
    for j in range(n_out):
        coef[j] = scale * err_all[a + j] * g_all[a + j]
        if coef[j] != 0.0:
            any_err = True
    if not any_err:
        return
    inv1 = 1.0 / tau1
    inv2 = 1.0 / tau2
    t12 = tau1 + tau2
    ts = tstar_all[a:a + n_out]
    for i in range(n_in):
        ti = t_all[pa + i]
        if ti >= t_max:
            continue
        row = WT[i]
        for j in range(n_out):
            # branch-free triangle: max(0, min(s/tau1, (tau1+tau2-s)/tau2))
            d = ts[j] - ti
            e = min(d * inv1, (t12 - d) * inv2)
            row[j] += coef[j] * max(e, 0.0)


@njit
def _record(t_all, slope_all, vpk_all, a_off, sizes, label, t_max, stats, fire_counts):
    L = sizes.shape[0] - 1
    a, b = a_off[L], a_off[L + 1]
    pred, tied = decide(t_all[a:b], slope_all[a:b], vpk_all[a:b], t_max, True)
    pred_strict, _ = decide(t_all[a:b], slope_all[a:b], vpk_all[a:b], t_max, False)
    stats[ST_N] += 1
    if pred == label:
        stats[ST_CORRECT] += 1
    if pred_strict == label:
        stats[ST_CORRECT_STRICT] += 1
    if pred_strict < 0:
        stats[ST_OUT_SILENT] += 1
    if tied:
        stats[ST_TIES] += 1
    for k in range(a_off[1], a_off[L + 1]):
        if t_all[k] < t_max:
            fire_counts[k] += 1


@njit
def train_epoch_sgd(X, y, order, W, w_off, a_off, sizes, thetas, lrs, tau1, tau2, t_max,
                    gamma, target_mode, dtdv, hidden_mode, normalise, beta, slope_floor,
                    weight_decay, stats, fire_counts, norm_floor=0.0, silent_mode=0):
    """One pass of per-sample (online) STiDi-BP over ``X[order]``, serial and deterministic."""
    L = sizes.shape[0] - 1
    a_total = a_off[L + 1]
    max_n = 0
    for l in range(L + 1):
        max_n = max(max_n, sizes[l])
    t_all = np.empty(a_total)
    slope_all = np.empty(a_total)
    vpk_all = np.empty(a_total)
    tpk_all = np.empty(a_total)
    err_all = np.zeros(a_total)
    g_all = np.zeros(a_total)
    tstar_all = np.zeros(a_total)
    act_t = np.empty(max_n)
    act_i = np.empty(max_n, dtype=np.int64)
    V = np.empty(max_n)
    S = np.empty(max_n)
    coef = np.empty(max_n)
    for k in range(order.shape[0]):
        n = order[k]
        _forward_sample(X[n], W, w_off, a_off, sizes, thetas, tau1, tau2, t_max,
                        t_all, slope_all, vpk_all, tpk_all, act_t, act_i, V, S)
        _record(t_all, slope_all, vpk_all, a_off, sizes, y[n], t_max, stats, fire_counts)
        if not _backward_sample(y[n], W, w_off, a_off, sizes, thetas, tau1, tau2, t_max,
                                gamma, target_mode, dtdv, hidden_mode, normalise, beta, slope_floor,
                                t_all, slope_all, tpk_all, err_all, g_all, tstar_all,
                                norm_floor, silent_mode):
            continue
        for l in range(L - 1, -1, -1):
            _apply_update(W, w_off, a_off, sizes, l, -lrs[l], tau1, tau2, t_max,
                          t_all, err_all, g_all, tstar_all, coef)
            if weight_decay > 0.0:
                f = 1.0 - lrs[l] * weight_decay
                for q in range(w_off[l], w_off[l + 1]):
                    W[q] *= f


@njit(parallel=True)
def _batch_gradient(X, y, idx, W, w_off, a_off, sizes, thetas, tau1, tau2, t_max,
                    gamma, target_mode, dtdv, hidden_mode, normalise, beta, slope_floor,
                    n_chunks, grads, stats, fire_counts, norm_floor=0.0, silent_mode=0):
    """Sum of per-sample update directions over ``X[idx]``, split into ``n_chunks``.

    ``grads`` has shape ``(n_chunks, W.size)``; chunk ``c`` handles a fixed,
    contiguous share of the batch, so the result does not depend on thread
    scheduling.
    """
    L = sizes.shape[0] - 1
    a_total = a_off[L + 1]
    max_n = 0
    for l in range(L + 1):
        max_n = max(max_n, sizes[l])
    m = idx.shape[0]
    cstats = np.zeros((n_chunks, stats.shape[0]))
    cfire = np.zeros((n_chunks, fire_counts.shape[0]))
    for c in prange(n_chunks):
        G = grads[c]
        G[:] = 0.0
        t_all = np.empty(a_total)
        slope_all = np.empty(a_total)
        vpk_all = np.empty(a_total)
        tpk_all = np.empty(a_total)
        err_all = np.zeros(a_total)
        g_all = np.zeros(a_total)
        tstar_all = np.zeros(a_total)
        act_t = np.empty(max_n)
        act_i = np.empty(max_n, dtype=np.int64)
        V = np.empty(max_n)
        S = np.empty(max_n)
        coef = np.empty(max_n)
        lo = (c * m) // n_chunks
        hi = ((c + 1) * m) // n_chunks
        for k in range(lo, hi):
            n = idx[k]
            _forward_sample(X[n], W, w_off, a_off, sizes, thetas, tau1, tau2, t_max,
                            t_all, slope_all, vpk_all, tpk_all, act_t, act_i, V, S)
            _record(t_all, slope_all, vpk_all, a_off, sizes, y[n], t_max, cstats[c], cfire[c])
            if not _backward_sample(y[n], W, w_off, a_off, sizes, thetas, tau1, tau2, t_max,
                                    gamma, target_mode, dtdv, hidden_mode, normalise, beta,
                                    slope_floor, t_all, slope_all, tpk_all, err_all, g_all,
                                    tstar_all, norm_floor, silent_mode):
                continue
            for l in range(L):
                _apply_update(G, w_off, a_off, sizes, l, 1.0, tau1, tau2, t_max,
                              t_all, err_all, g_all, tstar_all, coef)
    for c in range(n_chunks):
        for q in range(stats.shape[0]):
            stats[q] += cstats[c, q]
        for q in range(fire_counts.shape[0]):
            fire_counts[q] += cfire[c, q]


@njit(parallel=True)
def _optimizer_step(W, grads, w_off, lrs, batch, optimizer, weight_decay, m1, m2, step,
                    beta1, beta2, eps):
    """Apply the summed update direction (``-grad`` descends the layer losses)."""
    L = w_off.shape[0] - 1
    n_chunks = grads.shape[0]
    bc1 = 1.0 - beta1 ** step
    bc2 = 1.0 - beta2 ** step
    for l in range(L):
        lr = lrs[l]
        for q in prange(w_off[l], w_off[l + 1]):
            g = 0.0
            for c in range(n_chunks):
                g += grads[c, q]
            g = g / batch + weight_decay * W[q]
            if optimizer == 0:
                W[q] -= lr * g
            else:
                m1[q] = beta1 * m1[q] + (1.0 - beta1) * g
                m2[q] = beta2 * m2[q] + (1.0 - beta2) * g * g
                W[q] -= lr * (m1[q] / bc1) / (np.sqrt(m2[q] / bc2) + eps)


def train_epoch_batch(X, y, order, W, w_off, a_off, sizes, thetas, lrs, tau1, tau2, t_max,
                      gamma, target_mode, dtdv, hidden_mode, normalise, beta, slope_floor,
                      weight_decay, stats, fire_counts, batch_size, n_chunks, optimizer,
                      m1, m2, step, beta1=0.9, beta2=0.999, eps=1e-8, norm_floor=0.0,
                      silent_mode=0):
    """Mini-batch STiDi-BP: per-sample update directions averaged over a batch.

    Samples of a batch are processed in parallel (``n_chunks`` fixed shares),
    then the optimizer (plain SGD or Adam) takes one step.  Returns the
    updated Adam step counter.
    """
    grads = np.zeros((n_chunks, W.shape[0]))
    for start in range(0, order.shape[0], batch_size):
        idx = order[start:start + batch_size]
        _batch_gradient(X, y, idx, W, w_off, a_off, sizes, thetas, tau1, tau2, t_max,
                        gamma, target_mode, dtdv, hidden_mode, normalise, beta, slope_floor,
                        n_chunks, grads, stats, fire_counts, norm_floor, silent_mode)
        step += 1
        _optimizer_step(W, grads, w_off, lrs, float(idx.shape[0]), optimizer, weight_decay,
                        m1, m2, float(step), beta1, beta2, eps)
    return step


@njit(parallel=True)
def forward_network(X, W, w_off, a_off, sizes, thetas, tau1, tau2, t_max, t_all, slope_all, vpk_all):
    """Forward pass of a whole network over a batch (parallel over samples).

    Writes every layer's spike times, crossing slopes and peak potentials
    into ``(batch, a_total)`` arrays laid out by ``a_off``.
    """
    L = sizes.shape[0] - 1
    max_n = 0
    for l in range(L + 1):
        max_n = max(max_n, sizes[l])
    a_total = a_off[L + 1]
    for n in prange(X.shape[0]):
        tpk = np.empty(a_total)
        act_t = np.empty(max_n)
        act_i = np.empty(max_n, dtype=np.int64)
        V = np.empty(max_n)
        S = np.empty(max_n)
        _forward_sample(X[n], W, w_off, a_off, sizes, thetas, tau1, tau2, t_max,
                        t_all[n], slope_all[n], vpk_all[n], tpk, act_t, act_i, V, S)


@njit(parallel=True)
def decide_batch(t, slope, vpeak, t_max, fallback, pred, tied):
    for n in prange(t.shape[0]):
        p, ti = decide(t[n], slope[n], vpeak[n], t_max, fallback)
        pred[n] = p
        tied[n] = ti
