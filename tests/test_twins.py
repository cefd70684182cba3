"""Numba kernels against their NumPy twins on the paths the older tests left out:
binary weights and alpha, mini-batch SGD and Adam, weight decay, norm_floor and silent
targets on dense networks, the whole-network forward pass, the decision rule, augmentation."""

import zlib

import numpy as np
import pytest

import stidi

from stidi import network as net
from stidi import reference as ref
from stidi._codes import Col, Neuron
from stidi.architecture import parse_architecture
from stidi.binary import forward_weights
from stidi.datasets import shift_images
from stidi.rule import decide, decide_batch
from helpers import kernel_epoch, kernel_step

TAU = (16.0, 64.0, 100.0)
TMAX = TAU[2]
ARCHS = ["8x8x2-3C3p1-P2-4C2-5-3", "20-15-12-4"]


def maps(rng, n, silent=0.3):
    t = rng.uniform(0, 60, n)
    t[rng.random(n) < silent] = TMAX
    return t


def network(rng, arch, scale=0.6):
    return [None if s is None else rng.uniform(-0.3, 1.0, s) * scale for s in arch.weight_shapes()]


def ambiguous(x, arch, weights, thetas):
    """True when kernel and twin may both be right and still differ.

    Binary weights make two things common that real weights almost never produce:
    exact ties between the first spikes of a pooling window (the winner then depends
    on the last bit of two equal times, computed in a different order by the kernel
    and the twin), and flat peaks of a silent neuron's potential (its peak time t*
    is then the start of the plateau for the twin but may be a later point for the
    kernel, by rounding; it matters at the output, where silent neurons get errors).
    Such samples are not compared.
    """
    f = ref.network_forward_reference(x, arch, weights, thetas, *TAU)
    for l, lay in enumerate(arch.layers):
        t_in, t = f["t"][l], f["t"][l + 1]
        if lay.kind.name == "POOL":
            k = lay.k
            C, H, W = t_in.shape
            w = t_in[:, :H // k * k, :W // k * k].reshape(C, H // k, k, W // k, k).transpose(0, 1, 3, 2, 4)
            w = np.sort(w.reshape(C, H // k, W // k, k * k), axis=-1)
            if np.any((w[..., 1] - w[..., 0] < 1e-6) & (w[..., 0] < TMAX)):
                return True
            continue
        if l == len(arch.layers) - 1:
            tpk = stidi.layer_forward(t_in.ravel(), weights[l], thetas[l], *TAU)[3]
            if np.any(np.abs(tpk - f["tpk"][l + 1])[t >= TMAX] > 1e-9):
                return True
    return False


def setup(arch, case):
    """Parsed architecture, a generator seeded by the case, layer count, thresholds, rates."""
    a = parse_architecture(arch)
    L = len(a.layers)
    return (a, np.random.default_rng(zlib.crc32(f"{arch}{case}".encode())), L, [1.0] * L,
            [1e-2, 0.0, 5e-3, 3e-3, 1e-3][:L])


def close(got, want):
    for g, w in zip(got, want):
        if w is not None:
            np.testing.assert_allclose(g, w, rtol=0, atol=1e-9)


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("backward, partly", [("real", False), ("sign", False), ("sign", True)])
def test_binary_step_with_alpha_matches_twin(arch, backward, partly):
    """``partly``: the first weight layer keeps real weights (alpha 0) and must not move its alpha."""
    a, rng, L, thetas, lrs = setup(arch, backward + str(partly))
    moved, compared = 0.0, 0
    for _ in range(24):
        x, label = maps(rng, a.n_inputs), int(rng.integers(a.n_outputs))
        ws = network(rng, a, 0.3)
        alpha = rng.uniform(*((0.15, 0.3) if a.has_conv else (0.3, 0.8)), L)  # few ties in the conv maps
        if partly:
            alpha[0] = 0.0
        if ambiguous(x, a, [None if w is None else alpha[l] * np.sign(w) for l, w in enumerate(ws)], thetas):
            continue
        compared += 1
        got, galpha = kernel_step(x, label, a, ws, thetas, lrs, TAU, alpha=alpha, alpha_lr=0.05,
                                  binary_backward=backward, weight_decay=1e-3)
        want, walpha = ref.network_step_reference(x, label, a, ws, thetas, *TAU, 3.0, lrs, alpha=alpha,
                                                  alpha_lr=0.05, binary_backward=backward,
                                                  weight_decay=1e-3)
        close(got, want)
        np.testing.assert_allclose(galpha, walpha, rtol=0, atol=1e-12)
        assert not partly or galpha[0] == 0.0
        moved += np.abs(walpha - alpha).max()
    assert compared >= 3 and moved > 0, "too few samples compared, or alpha never moved"


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("alpha_lr", [0.0, 0.05])
def test_binary_unit_scale_step_matches_twin(arch, alpha_lr):
    """``binary_scale="unit"``: every unit's sign weights are scaled by its relative mean |w|,
    recomputed after each update; a partly binary network keeps its real layer as it is."""
    a, rng, L, thetas, lrs = setup(arch, f"unit{alpha_lr}")
    compared = 0
    for _ in range(24):
        x, label = maps(rng, a.n_inputs), int(rng.integers(a.n_outputs))
        ws = network(rng, a, 0.3)
        alpha = rng.uniform(*((0.15, 0.3) if a.has_conv else (0.3, 0.8)), L)
        alpha[0] = 0.0 if compared % 2 else alpha[0]
        fwd = [None if w is None else ref.binary_forward_reference(w, alpha[l], "unit") for l, w in enumerate(ws)]
        if ambiguous(x, a, fwd, thetas):
            continue
        compared += 1
        got, galpha = kernel_step(x, label, a, ws, thetas, lrs, TAU, alpha=alpha, alpha_lr=alpha_lr,
                                  binary_scale="unit")
        want, walpha = ref.network_step_reference(x, label, a, ws, thetas, *TAU, 3.0, lrs, alpha=alpha,
                                                  alpha_lr=alpha_lr, binary_scale="unit")
        close(got, want)
        np.testing.assert_allclose(galpha, walpha, rtol=0, atol=1e-12)
    assert compared >= 3


def test_binary_unit_forward_weights_match_twin():
    """The kernel's per-unit forward weights against the twin, dense and conv layouts, with an
    all-zero layer (factor 1) and a real layer (alpha 0) in between."""
    a = parse_architecture("6x6x2-3C3-P2-4-3")
    rng = np.random.default_rng(11)
    ws = [rng.normal(size=(3, 2, 3, 3)) * rng.uniform(0.1, 2.0, (3, 1, 1, 1)), None,
          np.zeros((4, 12)), rng.normal(size=(3, 4))]
    alpha = np.array([0.7, 1.0, 0.4, 0.0])
    _, w_off = a.offsets()
    got = a.unpack(forward_weights(a.pack(ws), w_off, alpha, a.descriptor()[:, Col.F], True))
    for l, w in enumerate(ws):
        if w is not None:
            np.testing.assert_allclose(got[l], ref.binary_forward_reference(w, alpha[l], "unit"), rtol=1e-12)
    # a filter with larger weights gets the larger scale; a uniform rescaling changes nothing
    mags = np.abs(got[0]).reshape(3, -1).max(axis=1)
    assert np.argsort(mags).tolist() == np.argsort(np.abs(ws[0]).reshape(3, -1).mean(axis=1)).tolist()
    again = a.unpack(forward_weights(a.pack([None if w is None else 3.0 * w for w in ws]), w_off, alpha,
                                     a.descriptor()[:, Col.F], True))
    np.testing.assert_allclose(again[0], got[0], rtol=1e-12)
    np.testing.assert_array_equal(got[2], np.zeros((4, 12)))
    np.testing.assert_array_equal(got[3], ws[3])


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("alpha_lr", [0.0, 0.05])
def test_binary_clip_step_matches_twin(arch, alpha_lr):
    """``binary_clip``: after an update, the real weights of the updated binary layers lie in
    ``[-c alpha_l, c alpha_l]`` (with the new alpha); frozen layers keep theirs."""
    a, rng, L, thetas, lrs = setup(arch, f"clip{alpha_lr}")
    c, clipped, compared = 0.9, 0, 0
    for _ in range(24):
        x, label = maps(rng, a.n_inputs), int(rng.integers(a.n_outputs))
        ws = network(rng, a, 0.6)
        alpha = rng.uniform(*((0.15, 0.3) if a.has_conv else (0.3, 0.8)), L)
        if ambiguous(x, a, [None if w is None else alpha[l] * np.sign(w) for l, w in enumerate(ws)], thetas):
            continue
        got, galpha = kernel_step(x, label, a, ws, thetas, lrs, TAU, alpha=alpha, alpha_lr=alpha_lr,
                                  binary_clip=c)
        want, walpha = ref.network_step_reference(x, label, a, ws, thetas, *TAU, 3.0, lrs, alpha=alpha,
                                                  alpha_lr=alpha_lr, binary_clip=c)
        close(got, want)
        np.testing.assert_allclose(galpha, walpha, rtol=0, atol=1e-12)
        for l, (w0, w1) in enumerate(zip(ws, want)):
            if w0 is None:
                continue
            if lrs[l] == 0.0:
                np.testing.assert_array_equal(w1, w0)  # a frozen layer is not clipped
            elif not np.array_equal(w1, w0):           # the sample carried an error
                assert np.abs(w1).max() <= c * walpha[l] + 1e-15
                clipped += int(np.abs(w0).max() > c * alpha[l])
        compared += 1
    assert compared >= 3 and clipped > 0, "too few samples compared, or nothing was clipped"


def test_binary_clip_batch_of_one_equals_online():
    a, rng, L, thetas, lrs = setup("20-15-12-4", "clip-batch-of-one")
    ws = network(rng, a, 0.6)
    alpha = rng.uniform(0.3, 0.8, L)
    X = np.stack([maps(rng, a.n_inputs) for _ in range(6)])
    y = rng.integers(0, a.n_outputs, 6)
    w1, _ = kernel_epoch(X, y, a, ws, thetas, lrs, TAU, alpha=alpha, binary_clip=0.5)
    w2, _ = kernel_epoch(X, y, a, ws, thetas, lrs, TAU, alpha=alpha, binary_clip=0.5, batch_size=1)
    close(w2, w1)
    assert np.abs(w1[0]).max() <= 0.5 * alpha[0] < np.abs(ws[0]).max()


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_minibatch_step_matches_twin(arch, optimizer):
    a, rng, L, thetas, lrs = setup(arch, optimizer)
    ws = network(rng, a)
    X = np.stack([maps(rng, a.n_inputs) for _ in range(5)])
    y = rng.integers(0, a.n_outputs, 5)
    got = kernel_epoch(X, y, a, ws, thetas, lrs, TAU, batch_size=5, n_chunks=2, optimizer=optimizer,
                       weight_decay=1e-2, conv_reduce="mean", beta=2.0)
    state = {"m1": [None if w is None else np.zeros_like(w) for w in ws],
             "m2": [None if w is None else np.zeros_like(w) for w in ws], "step": 0}
    want = ref.batch_step_reference(X, y, a, ws, thetas, *TAU, 3.0, lrs, optimizer=optimizer, state=state,
                                    weight_decay=1e-2, conv_reduce="mean", beta=2.0)
    close(got, want)
    assert any(np.abs(w - w0).max() > 0 for w, w0 in zip(want, ws) if w is not None)


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("batch_size", [None, 4])
def test_per_layer_weight_decay_matches_twin(arch, batch_size):
    """One decay coefficient per layer (``decay_units="relative"`` passes lambda / s_l): each
    layer shrinks by its own ``1 - lr_l * lambda_l``, online and in a mini-batch step."""
    a, rng, L, thetas, lrs = setup(arch, f"decays{batch_size}")
    decays = np.array([0.5, 0.0, 2.0, 0.25, 40.0][:L])
    ws = network(rng, a)
    n = 1 if batch_size is None else batch_size
    X = np.stack([maps(rng, a.n_inputs) for _ in range(n)])
    y = rng.integers(0, a.n_outputs, n)
    got = kernel_epoch(X, y, a, ws, thetas, lrs, TAU, batch_size=batch_size, weight_decay=decays)
    if batch_size is None:
        want = ref.network_step_reference(X[0], int(y[0]), a, ws, thetas, *TAU, 3.0, lrs,
                                          weight_decay=decays)
        plain = ref.network_step_reference(X[0], int(y[0]), a, ws, thetas, *TAU, 3.0, lrs)
    else:
        want = ref.batch_step_reference(X, y, a, ws, thetas, *TAU, 3.0, lrs, weight_decay=decays)
        plain = ref.batch_step_reference(X, y, a, ws, thetas, *TAU, 3.0, lrs)
    close(got, want)
    # the decay did something, and differently per layer: the ratio to the undecayed step is
    # 1 - lr_l lambda_l (online), which differs between the first and last weight layers
    wl = [l for l, w in enumerate(ws) if w is not None]
    shrink = [np.abs(want[l]).sum() / np.abs(plain[l]).sum() for l in (wl[0], wl[-1])]
    assert shrink[0] < 1.0 and shrink[1] < 1.0 and abs(shrink[0] - shrink[1]) > 1e-3


@pytest.mark.parametrize("norm_floor, silent_target, end_margin",
                         [(0.5, "all", 0.0), (0.2, "correct", 0.0), (0.0, "all", 0.0), (0.0, "correct", 80.0)])
def test_dense_norm_floor_and_silent_target_match_twin(norm_floor, silent_target, end_margin):
    rng = np.random.default_rng(int(norm_floor * 10) + len(silent_target) + int(end_margin))
    sizes = [20, 15, 12, 4]
    silent_outputs = end_changed = 0
    for trial in range(6):
        x = maps(rng, 20)
        scale = 0.6 if trial % 2 else 0.12     # every other network has silent outputs
        ws = [rng.uniform(-0.3, 1.0, (o, i)) * scale for i, o in zip(sizes[:-1], sizes[1:])]
        label = int(rng.integers(4))
        kw = dict(norm_floor=norm_floor, silent_target=silent_target, weight_decay=1e-3)
        if end_margin:
            kw["end_margin"] = end_margin
        got = kernel_step(x, label, "20-15-12-4", ws, [0.8, 0.6, 0.5], [1e-2, 5e-3, 1e-3], TAU, **kw)
        want = ref.train_step_reference(x, label, ws, [0.8, 0.6, 0.5], *TAU, 3.0, [1e-2, 5e-3, 1e-3], **kw)
        close(got, want)
        f = ref.network_forward_reference(x, "20-15-12-4", ws, [0.8, 0.6, 0.5], *TAU)
        silent_outputs += bool(np.all(f["t"][-1] >= TMAX))
        if end_margin:
            kw.pop("end_margin")
            plain = ref.train_step_reference(x, label, ws, [0.8, 0.6, 0.5], *TAU, 3.0, [1e-2, 5e-3, 1e-3], **kw)
            end_changed += any(np.abs(a - b).max() > 0 for a, b in zip(want, plain))
    assert silent_outputs > 0, "no silent output layer: the silent target was never exercised"
    assert end_changed > 0 or not end_margin, "end_margin never changed a step: the test is blind to it"


@pytest.mark.parametrize("arch", ARCHS)
def test_network_forward_matches_twin(arch):
    a = parse_architecture(arch)
    rng = np.random.default_rng(len(arch))
    ws = network(rng, a)
    thetas = np.ones(len(a.layers))
    X = np.stack([maps(rng, a.n_inputs) for _ in range(4)] + [np.full(a.n_inputs, TMAX)])  # + a silent input
    a_off, w_off = a.offsets()
    out = np.empty((3, len(X), a_off[-1]))
    net.forward_network(X, a.pack(ws), a.descriptor(), w_off, a_off, thetas, Neuron(*TAU), *out)
    for n, x in enumerate(X):
        f = ref.network_forward_reference(x, a, ws, thetas, *TAU)
        np.testing.assert_allclose(out[0, n], np.concatenate([t.ravel() for t in f["t"]]), atol=1e-9)
        np.testing.assert_allclose(out[2, n, a_off[-2]:], f["vpk"][-1], atol=1e-9)
    assert np.all(out[0, -1] == TMAX)


def test_forward_weights_are_alpha_sign():
    a = parse_architecture("8x8x2-3C3p1-P2-4C2-5-3")
    rng = np.random.default_rng(3)
    ws = network(rng, a)
    ws[0][0, 0, 0, 0] = 0.0   # sign(0) = 0
    alpha = np.array([0.5, 1.0, 2.0, 3.0, 4.0])
    Wf = forward_weights(a.pack(ws), a.offsets()[1], alpha)
    for l, (w, f) in enumerate(zip(ws, a.unpack(Wf))):
        if w is not None:
            np.testing.assert_array_equal(f, alpha[l] * np.sign(w))


def test_decide_matches_twin_on_random_and_tied_outputs():
    rng = np.random.default_rng(11)
    t = np.floor(rng.uniform(0, 12, (400, 5))).clip(max=10) * 10   # many ties and silent rows
    t[rng.random(400) < 0.1] = TMAX
    slope = rng.integers(0, 3, (400, 5)).astype(float)               # tied slopes too
    vpk = rng.random((400, 5))
    for fallback in (True, False):
        pred, tied = np.empty(400, dtype=np.int64), np.empty(400, dtype=np.bool_)
        decide_batch(t, slope, vpk, TMAX, fallback, pred, tied)
        want = [ref.decide_reference(t[n], slope[n], vpk[n], TMAX, fallback) for n in range(400)]
        np.testing.assert_array_equal(pred, want)
        assert all(decide(t[n], slope[n], vpk[n], TMAX, fallback)[0] == want[n] for n in range(0, 400, 37))
    first = t.min(axis=1, keepdims=True)
    np.testing.assert_array_equal(tied, ((t == first).sum(axis=1) > 1) & (first[:, 0] < TMAX))


def test_shift_images_matches_a_direct_shift():
    rng = np.random.default_rng(5)
    img = rng.integers(0, 256, (6, 5, 7)).astype(float)
    dx, dy = rng.integers(-2, 3, 6), rng.integers(-2, 3, 6)
    got = shift_images(img.reshape(6, -1), (5, 7), dx, dy, -1.0).reshape(6, 5, 7)
    for n in range(6):
        want = np.full((5, 7), -1.0)
        for r in range(5):
            for c in range(7):
                if 0 <= r - dy[n] < 5 and 0 <= c - dx[n] < 7:
                    want[r, c] = img[n, r - dy[n], c - dx[n]]
        np.testing.assert_array_equal(got[n], want)
    assert np.any(dx != 0) and np.any(dy != 0)


def test_binary_batch_of_one_equals_online():
    # the mini-batch and the online loops share one alpha rule (a dense network: in binary
    # conv maps exact ties are common, and rounding then picks different pooling winners)
    a, rng, L, thetas, lrs = setup("20-15-12-4", "batch-of-one")
    ws = network(rng, a, 0.3)
    alpha = rng.uniform(*((0.15, 0.3) if a.has_conv else (0.3, 0.8)), L)
    X = np.stack([maps(rng, a.n_inputs) for _ in range(6)])
    y = rng.integers(0, a.n_outputs, 6)
    kw = dict(alpha=alpha, alpha_lr=0.05)
    w1, a1 = kernel_epoch(X, y, a, ws, thetas, lrs, TAU, **kw)
    w2, a2 = kernel_epoch(X, y, a, ws, thetas, lrs, TAU, batch_size=1, **kw)
    close(w2, w1)
    np.testing.assert_allclose(a2, a1, rtol=0, atol=1e-12)
    assert np.abs(a1 - alpha).max() > 0
    assert a1[1] == alpha[1] and a2[1] == alpha[1]  # a layer with rate 0 is frozen, alpha included
