"""Shared test helpers: run the engine's kernels on public-layout weights."""

import numpy as np

from stidi import network as net
from stidi._codes import N_STATS, Col, Neuron, Optimizer, make_rule
from stidi.architecture import parse_architecture
from stidi.binary import forward_weights


def kernel_epoch(X, y, arch, weights, thetas, lrs, tau=(16.0, 64.0, 100.0), *, alpha=None,
                 batch_size=None, n_chunks=1, optimizer="sgd", order=None, **rule):
    """Train the engine for one epoch over ``X`` from public-layout ``weights``; returns the new
    public weights (and ``alpha`` when given)."""
    a = parse_architecture(arch) if isinstance(arch, str) else arch
    a_off, w_off = a.offsets()
    W = a.pack(weights)
    al = np.empty(0) if alpha is None else np.array(alpha, dtype=np.float64)
    unit = rule.get("binary_scale", "layer") == "unit"
    Wf = np.ascontiguousarray(forward_weights(W, w_off, al, a.descriptor()[:, Col.F], unit)) \
        if alpha is not None else W
    rule.setdefault("gamma", 3.0)
    decays = np.array(np.broadcast_to(np.asarray(rule.pop("weight_decay", 0.0), dtype=np.float64),
                                      (len(a.layers),)))
    order = np.arange(len(y)) if order is None else order
    args = (np.ascontiguousarray(X, dtype=np.float64), np.asarray(y, dtype=np.int64), order, W, Wf, al,
            a.descriptor(), w_off, a_off, np.asarray(thetas, float), np.asarray(lrs, float),
            decays, Neuron(*tau), make_rule(**rule), np.zeros(N_STATS), np.zeros(a_off[-1]))
    if batch_size is None:
        net.train_epoch_sgd(*args)
    else:
        net.train_epoch_batch(*args, batch_size, n_chunks, int(Optimizer.parse("optimizer", optimizer)),
                              np.zeros_like(W), np.zeros_like(W), 0)
    new = a.unpack(W)
    return new if alpha is None else (new, al)


def kernel_step(x, label, arch, weights, thetas, lrs, tau=(16.0, 64.0, 100.0), **kw):
    """One online step on one sample."""
    return kernel_epoch(np.asarray(x, dtype=np.float64)[None], [label], arch, weights, thetas, lrs, tau, **kw)
