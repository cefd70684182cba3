r"""The network engine: one forward pass, one backward pass, one update, one training loop.

A network is an :class:`stidi.architecture.Architecture`; the kernels read it
as a ``(L, 9)`` descriptor table (columns :class:`stidi._codes.Col`) and
dispatch on :class:`stidi._codes.LayerKind` in exactly three places --
forward, backward and update -- to the kernels of the layer-kind modules
:mod:`stidi.dense`, :mod:`stidi.conv` and :mod:`stidi.pool`.  The output side
of the rule (targets, errors, gains, decision) is :mod:`stidi.rule`; binary
weights are :mod:`stidi.binary`.

Layout: all weights live in one flat ``float64`` vector, layer ``l`` in
``W[w_off[l]:w_off[l+1]]`` as a C-ordered ``(n_in, n_out)`` (dense) or
``(C*k*k, F)`` (conv) block; the activations of one sample live in flat
vectors, layer ``l`` (``l = 0`` is the input) at ``a_off[l]:a_off[l+1]``.

``Wf`` holds the forward weights: the same array as ``W`` for real-valued
networks; for binary ones (``alpha`` has one entry per layer)
``alpha_l * sign(W)`` (``W`` itself in layers with ``alpha_l = 0``, real layers of a
partly binary network), refreshed after every update.  Errors use the weights
*before* the sample's update.  Online training (:func:`train_epoch_sgd`) is
serial and deterministic; mini-batches (:func:`train_epoch_batch`) split each
batch into ``n_chunks`` fixed, contiguous shares computed in parallel, so the
result depends on ``n_chunks`` but not on thread scheduling.
"""

from __future__ import annotations

import numpy as np

from ._codes import ADAM_BETAS, Col, LayerKind, Optimizer
from ._jit import njit, prange
from ._scratch import _alloc_scratch
from .binary import _alpha_step, _clip_binary, _refresh_binary
from .conv import _conv_errors_below, _conv_forward, _conv_update
from .dense import _dense_errors_below, _dense_forward, _dense_update
from .pool import _pool_errors_below, _pool_forward
from .rule import _layer_gains, _normalise, _output_errors, _record, decide  # noqa: F401

__all__ = ["train_epoch_sgd", "train_epoch_batch", "forward_network", "decide"]


@njit
def _scratch_sizes(desc):
    """Largest dense fan-in and layer width, and the largest conv input map, output and position count.

    Chapter: book/09_speed.md.
    """
    max_rf = 1
    max_out = 1
    max_in = 1
    max_conv = 1
    max_pos = 1
    for l in range(desc.shape[0]):
        kind = desc[l, Col.KIND]
        if kind == LayerKind.CONV:
            max_in = max(max_in, desc[l, Col.C] * desc[l, Col.H] * desc[l, Col.W])
            max_pos = max(max_pos, desc[l, Col.HO] * desc[l, Col.WO])
            max_conv = max(max_conv, desc[l, Col.F] * desc[l, Col.HO] * desc[l, Col.WO])
        elif kind == LayerKind.DENSE:
            max_rf = max(max_rf, desc[l, Col.C])
        max_out = max(max_out, desc[l, Col.F])
    return max_rf, max_out, max_in, max_conv, max_pos


@njit
def _new_scratch(desc, a_off):
    """Scratch buffers sized for the network ``desc``. Chapter: book/09_speed.md."""
    max_rf, max_out, max_in, max_conv, max_pos = _scratch_sizes(desc)
    return _alloc_scratch(a_off[a_off.shape[0] - 1], max_rf, max_out, max_in, max_conv, max_pos)


@njit
def _block(W, desc, w_off, l):
    """Layer ``l``'s weights as the 2-D block the kernels read (a view into ``W``).

    Chapter: book/05_deep_fc.md.
    """
    rows = desc[l, Col.C]
    if desc[l, Col.KIND] == LayerKind.CONV:
        rows *= desc[l, Col.K] * desc[l, Col.K]
    return W[w_off[l]:w_off[l + 1]].reshape((rows, desc[l, Col.F]))


@njit
def _forward_sample(x, Wf, desc, w_off, a_off, thetas, neuron, sc, track_all):
    """Forward pass of one sample through every layer into ``sc``.

    Peaks (``v_peak``, ``t_peak``) are tracked at the output always and in hidden
    layers only when ``track_all`` (they matter there only for ``silent_hidden="pull"``).
    Chapter: book/05_deep_fc.md.
    """
    L = desc.shape[0]
    for i in range(a_off[1]):
        sc.t[i] = x[i]
        sc.slope[i] = 0.0
        sc.vpk[i] = 0.0
        sc.tpk[i] = neuron.t_max
    for l in range(L):
        kind = desc[l, Col.KIND]
        a0, a1, a2 = a_off[l], a_off[l + 1], a_off[l + 2]
        track = track_all or l == L - 1
        if kind == LayerKind.POOL:
            _pool_forward(sc.t[a0:a1], sc.slope[a0:a1], sc.vpk[a0:a1], sc.tpk[a0:a1], desc[l],
                          sc.t[a1:a2], sc.slope[a1:a2], sc.vpk[a1:a2], sc.tpk[a1:a2], sc.win[a1:a2])
        # the peak flag is passed as a literal, one call per value: the compiled kernels are
        # then specialised to it (a flag read at run time made the conv layer ~25 % slower)
        elif kind == LayerKind.CONV and track:
            _conv_forward(sc.t[a0:a1], _block(Wf, desc, w_off, l), desc[l], thetas[l], neuron,
                          sc.t[a1:a2], sc.slope[a1:a2], sc.vpk[a1:a2], sc.tpk[a1:a2], sc, True)
        elif kind == LayerKind.CONV:
            _conv_forward(sc.t[a0:a1], _block(Wf, desc, w_off, l), desc[l], thetas[l], neuron,
                          sc.t[a1:a2], sc.slope[a1:a2], sc.vpk[a1:a2], sc.tpk[a1:a2], sc, False)
        elif track:
            _dense_forward(sc.t[a0:a1], _block(Wf, desc, w_off, l), thetas[l], neuron,
                           sc.t[a1:a2], sc.slope[a1:a2], sc.vpk[a1:a2], sc.tpk[a1:a2], sc, True)
        else:
            _dense_forward(sc.t[a0:a1], _block(Wf, desc, w_off, l), thetas[l], neuron,
                           sc.t[a1:a2], sc.slope[a1:a2], sc.vpk[a1:a2], sc.tpk[a1:a2], sc, False)


@njit
def _backward_sample(label, Wb, desc, w_off, a_off, thetas, neuron, rule, sc):
    """Errors, gains and :math:`t^*` of every layer into ``sc`` (weights before the update).

    Returns False when the sample carries no error at all.  With ``rule.normalise``
    the output error is divided by ``max(|e|, norm_floor)`` and every hidden error
    vector is scaled to the resulting norm (1 when ``norm_floor`` is 0).
    Twin: :func:`stidi.reference.train_step_reference`.
    Chapter: book/04_stidi_bp_rule.md, eq-rule-error.
    """
    L = desc.shape[0]
    t_max = neuron.t_max
    a, b = a_off[L], a_off[L + 1]
    gain = _output_errors(sc.t[a:b], label, t_max, rule, sc.err[a:b], sc.T[:b - a])
    if gain < 0.0:
        return False
    for l in range(L - 1, -1, -1):
        kind = desc[l, Col.KIND]
        a0, a1, a2 = a_off[l], a_off[l + 1], a_off[l + 2]
        if kind != LayerKind.POOL:
            _layer_gains(sc.t[a1:a2], sc.slope[a1:a2], sc.tpk[a1:a2], thetas[l], t_max, rule,
                         sc.g[a1:a2], sc.tstar[a1:a2])
        if l == 0:
            break
        if kind == LayerKind.POOL:
            _pool_errors_below(sc.t[a1:a2], sc.err[a1:a2], sc.win[a1:a2], sc.vpk[a0:a1], desc[l],
                               t_max, rule.silent_pull, sc.err[a0:a1])
            continue
        args = (sc.t[a0:a1], sc.t[a1:a2], sc.err[a1:a2], sc.g[a1:a2], sc.tstar[a1:a2],
                _block(Wb, desc, w_off, l))
        if kind == LayerKind.CONV:
            _conv_errors_below(*args, desc[l], neuron, rule, sc.err[a0:a1], sc.vpk[a0:a1])
        else:
            _dense_errors_below(*args, neuron, rule, sc.err[a0:a1], sc.vpk[a0:a1])
        if rule.normalise:
            _normalise(sc.err[a0:a1], 0.0, gain)
    return True


@njit
def _update_layer(W, Wsign, desc, w_off, a_off, l, scale, neuron, sc):
    """``W_l += scale * e g eps(t* - t_in)``; returns the binary-scale direction (0 if ``Wsign`` is empty).

    Chapter: book/04_stidi_bp_rule.md, eq-rule-update.
    """
    a0, a1, a2 = a_off[l], a_off[l + 1], a_off[l + 2]
    WT = _block(W, desc, w_off, l)
    WS = _block(Wsign, desc, w_off, l) if Wsign.shape[0] > 0 else np.empty((0, 0))
    args = (sc.t[a0:a1], sc.err[a1:a2], sc.g[a1:a2], sc.tstar[a1:a2], scale, neuron, sc.coef)
    if desc[l, Col.KIND] == LayerKind.CONV:
        return _conv_update(WT, WS, desc[l], *args)
    return _dense_update(WT, WS, *args)


@njit
def _layer_scale(desc, l, rule, base):
    """``base``, divided by ``H_out W_out`` for a conv layer with ``conv_reduce="mean"``.

    Chapter: book/06_conv.md, eq-conv-update.
    """
    if rule.conv_mean and desc[l, Col.KIND] == LayerKind.CONV:
        return base / (desc[l, Col.HO] * desc[l, Col.WO])
    return base


@njit
def _decay_layer(W, w_off, l, factor):
    """L2 weight decay of layer ``l``: its weights times ``factor`` (``1 - lrs[l] * decays[l]``).

    Chapter: book/06_conv.md, eq-weight-decay.
    """
    for q in range(w_off[l], w_off[l + 1]):
        W[q] *= factor


@njit
def train_epoch_sgd(X, y, order, W, Wf, alpha, desc, w_off, a_off, thetas, lrs, decays, neuron, rule,
                    stats, fire_counts):
    """One pass of per-sample (online) STiDi-BP over ``X[order]``; serial and deterministic.

    ``lrs[l]`` is layer ``l``'s step; after each of its updates its weights are multiplied
    by ``1 - lrs[l] * decays[l]`` (L2 weight decay; ``decays`` all zero: none).

    Twin: :func:`stidi.reference.train_step_reference` (one sample).
    Chapter: book/04_stidi_bp_rule.md, eq-rule-update.
    """
    L = desc.shape[0]
    binary = alpha.shape[0] > 0
    sc = _new_scratch(desc, a_off)
    Wb = Wf if (binary and rule.sign_backward) else W
    Wsign = Wf if (binary and rule.alpha_lr > 0.0) else np.empty(0)
    a, b = a_off[L], a_off[L + 1]
    for k in range(order.shape[0]):
        n = order[k]
        _forward_sample(X[n], Wf, desc, w_off, a_off, thetas, neuron, sc, rule.silent_pull)
        _record(sc.t[a:b], sc.slope[a:b], sc.vpk[a:b], sc.t[a_off[1]:b], y[n], neuron.t_max, stats,
                fire_counts[a_off[1]:b])
        if not _backward_sample(y[n], Wb, desc, w_off, a_off, thetas, neuron, rule, sc):
            if rule.decay_every_sample:
                # S4NN decays after every sample, with or without an error (positive scaling
                # leaves alpha * sign(W) unchanged; only real layers of a binary network
                # need their forward weights refreshed)
                for l in range(L):
                    if decays[l] == 0.0:
                        continue
                    _decay_layer(W, w_off, l, 1.0 - lrs[l] * decays[l])
                    if binary and alpha[l] == 0.0:
                        _refresh_binary(W, Wf, w_off, alpha, l, desc[l, Col.F], rule.binary_unit)
            continue
        for l in range(L - 1, -1, -1):
            if desc[l, Col.KIND] == LayerKind.POOL:
                continue
            # alpha's direction is taken before W changes (Wsign aliases Wf, refreshed below)
            da = _update_layer(W, Wsign, desc, w_off, a_off, l, _layer_scale(desc, l, rule, -lrs[l]),
                               neuron, sc)
            if decays[l] > 0.0:
                _decay_layer(W, w_off, l, 1.0 - lrs[l] * decays[l])
            if binary:
                if rule.alpha_lr > 0.0 and lrs[l] > 0.0:
                    _alpha_step(alpha, l, rule.alpha_lr, da / -lrs[l])
                if lrs[l] > 0.0:
                    _clip_binary(W, w_off, alpha, l, rule.binary_clip)
                _refresh_binary(W, Wf, w_off, alpha, l, desc[l, Col.F], rule.binary_unit)


@njit(parallel=True)
def _batch_gradient(X, y, idx, W, Wf, alpha, desc, w_off, a_off, thetas, neuron, rule, n_chunks,
                    grads, galpha, stats, fire_counts):
    """Summed per-sample update directions over ``X[idx]`` in ``n_chunks`` fixed, contiguous shares.

    ``grads`` has shape ``(n_chunks, W.size)``, ``galpha`` ``(n_chunks, L)``.
    Chapter: book/09_speed.md.
    """
    L = desc.shape[0]
    binary = alpha.shape[0] > 0
    m = idx.shape[0]
    a, b = a_off[L], a_off[L + 1]
    cstats = np.zeros((n_chunks, stats.shape[0]))
    cfire = np.zeros((n_chunks, fire_counts.shape[0]))
    for c in prange(n_chunks):
        G = grads[c]
        G[:] = 0.0
        galpha[c, :] = 0.0
        sc = _new_scratch(desc, a_off)
        Wb = Wf if (binary and rule.sign_backward) else W
        Wsign = Wf if (binary and rule.alpha_lr > 0.0) else np.empty(0)
        for k in range((c * m) // n_chunks, ((c + 1) * m) // n_chunks):
            n = idx[k]
            _forward_sample(X[n], Wf, desc, w_off, a_off, thetas, neuron, sc, rule.silent_pull)
            _record(sc.t[a:b], sc.slope[a:b], sc.vpk[a:b], sc.t[a_off[1]:b], y[n], neuron.t_max,
                    cstats[c], cfire[c, a_off[1]:b])
            if not _backward_sample(y[n], Wb, desc, w_off, a_off, thetas, neuron, rule, sc):
                continue
            for l in range(L):
                if desc[l, Col.KIND] != LayerKind.POOL:
                    galpha[c, l] += _update_layer(G, Wsign, desc, w_off, a_off, l,
                                                  _layer_scale(desc, l, rule, 1.0), neuron, sc)
    for c in range(n_chunks):
        for q in range(stats.shape[0]):
            stats[q] += cstats[c, q]
        for q in range(fire_counts.shape[0]):
            fire_counts[q] += cfire[c, q]


@njit(parallel=True)
def _optimizer_step(W, grads, w_off, lrs, batch, optimizer, decays, m1, m2, step):
    """Apply the mean update direction: plain SGD or Adam, with L2 weight decay.

    The kernels accumulate :math:`+e g \\varepsilon`, so ``W -= lr * mean`` descends.
    Chapter: book/04_stidi_bp_rule.md, eq-rule-update.
    """
    beta1, beta2, eps = ADAM_BETAS
    L = w_off.shape[0] - 1
    n_chunks = grads.shape[0]
    bc1 = 1.0 - beta1 ** step
    bc2 = 1.0 - beta2 ** step
    for l in range(L):
        lr = lrs[l]
        wd = decays[l]
        for q in prange(w_off[l], w_off[l + 1]):
            g = 0.0
            for c in range(n_chunks):
                g += grads[c, q]
            g = g / batch + wd * W[q]
            if optimizer == Optimizer.SGD:
                W[q] -= lr * g
            else:
                m1[q] = beta1 * m1[q] + (1.0 - beta1) * g
                m2[q] = beta2 * m2[q] + (1.0 - beta2) * g * g
                W[q] -= lr * (m1[q] / bc1) / (np.sqrt(m2[q] / bc2) + eps)


def train_epoch_batch(X, y, order, W, Wf, alpha, desc, w_off, a_off, thetas, lrs, decays, neuron, rule,
                      stats, fire_counts, batch_size, n_chunks, optimizer, m1, m2, step):
    """Mini-batch STiDi-BP: per-sample directions averaged over each batch of ``X[order]``.

    Samples of a batch are spread over ``n_chunks`` fixed shares (in parallel), then the
    optimizer takes one step.  Returns the updated optimizer step counter.
    """
    binary = alpha.shape[0] > 0
    L = desc.shape[0]
    grads = np.zeros((n_chunks, W.shape[0]))
    galpha = np.zeros((n_chunks, L))
    for start in range(0, order.shape[0], batch_size):
        idx = order[start:start + batch_size]
        _batch_gradient(X, y, idx, W, Wf, alpha, desc, w_off, a_off, thetas, neuron, rule, n_chunks,
                        grads, galpha, stats, fire_counts)
        step += 1
        _optimizer_step(W, grads, w_off, lrs, float(idx.shape[0]), int(optimizer), decays,
                        m1, m2, float(step))
        if binary:
            direction = galpha.sum(axis=0) / idx.shape[0]
            for l in range(L):
                if rule.alpha_lr > 0.0 and lrs[l] > 0.0:
                    _alpha_step(alpha, l, rule.alpha_lr, direction[l])
                if lrs[l] > 0.0:
                    _clip_binary(W, w_off, alpha, l, rule.binary_clip)
                _refresh_binary(W, Wf, w_off, alpha, l, desc[l, Col.F], rule.binary_unit)
    return step


@njit(parallel=True)
def forward_network(X, Wf, desc, w_off, a_off, thetas, neuron, t_all, slope_all, vpk_all):
    """Forward pass of a whole network over a batch (parallel over samples).

    Writes every layer's spike times, crossing slopes and peak potentials into
    ``(batch, a_total)`` arrays laid out by ``a_off`` (peaks at the output only).
    Twin: :func:`stidi.reference.network_forward_reference`. Chapter: book/05_deep_fc.md.
    """
    N = X.shape[0]
    chunk = 16
    for c in prange((N + chunk - 1) // chunk):
        sc = _new_scratch(desc, a_off)
        for n in range(c * chunk, min(N, (c + 1) * chunk)):
            _forward_sample(X[n], Wf, desc, w_off, a_off, thetas, neuron, sc, False)
            t_all[n] = sc.t
            slope_all[n] = sc.slope
            vpk_all[n] = sc.vpk
