"""Safety net of the network engine: golden pins, dense = conv kernels, batch of one = online.

The pinned numbers were computed with the code as it stood before the fully
connected and convolutional programs were merged into one engine (the dense
pin moved once, on purpose, as explained next to it); a change that moves them
must say why in its commit message.
"""

import hashlib

import numpy as np
import pytest

import stidi
from stidi import network as net
from stidi._codes import N_STATS, Neuron, make_rule
from stidi.architecture import parse_architecture
from stidi.model import SpikingClassifier

TAU1, TAU2, TMAX = 16.0, 64.0, 100.0
SIZES = [20, 15, 12, 4]
THETAS = np.array([0.8, 0.6, 0.5])
LRS = np.array([1e-2, 5e-3, 1e-3])


def dense_problem():
    rng = np.random.default_rng(20261129)
    X = rng.uniform(0, TMAX, (12, SIZES[0]))
    X[rng.random(X.shape) < 0.3] = TMAX
    y = rng.integers(0, SIZES[-1], 12)
    ws = [rng.uniform(-0.3, 1.0, (o, i)) * 0.6 for i, o in zip(SIZES[:-1], SIZES[1:])]
    return X, y, np.concatenate([w.T.ravel() for w in ws])


def engine_epoch(X, y, W, hidden, arch="20-15-12-4", batch_size=None, n_chunks=1):
    """One epoch of the engine; ``arch`` spells the same all-dense network in either grammar."""
    a = parse_architecture(arch)
    a_off, w_off = a.offsets()
    rule = make_rule(gamma=3.0, hidden_error=hidden, beta=2.0)
    args = (X, y, np.arange(len(y)), W, W, np.empty(0), a.descriptor(), w_off, a_off, THETAS, LRS,
            np.zeros(len(a.layers)), Neuron(TAU1, TAU2, TMAX), rule, np.zeros(N_STATS), np.zeros(a_off[-1]))
    if batch_size is None:
        net.train_epoch_sgd(*args)
    else:
        net.train_epoch_batch(*args, batch_size, n_chunks, 0, np.zeros_like(W), np.zeros_like(W), 0)
    return W


# sum of the weights and of |W - W0| after one online epoch (12 samples) of the
# all-dense network 20-15-12-4, for the S4NN-like (0) and displacement (1) hidden errors
# (computed with the former fully connected kernels, which the former conv kernels matched bit for bit)
DENSE_PINS = {"s4nn": (100.69668285322058, 49.54448204248209),
              "displacement": (80.34850668486467, 57.858550461984166)}


@pytest.mark.parametrize("hidden", ["s4nn", "displacement"])
def test_dense_and_conv_grammar_agree_with_the_former_kernels(hidden):
    X, y, W0 = dense_problem()
    a = engine_epoch(X, y, W0.copy(), hidden)
    b = engine_epoch(X, y, W0.copy(), hidden, arch="20x1-15-12-4")
    np.testing.assert_array_equal(a, b)
    total, moved = DENSE_PINS[hidden]
    assert float(a.sum()) == pytest.approx(total, rel=1e-12)
    assert float(np.abs(a - W0).sum()) == pytest.approx(moved, rel=1e-12)


@pytest.mark.parametrize("hidden", ["s4nn", "displacement"])
def test_dense_batch_of_one_equals_online(hidden):
    X, y, W0 = dense_problem()
    online = engine_epoch(X, y, W0.copy(), hidden)
    batch = engine_epoch(X, y, W0.copy(), hidden, batch_size=1)
    np.testing.assert_allclose(batch, online, rtol=0, atol=1e-12)
    assert np.abs(batch - W0).max() > 1e-3
    # shares of a batch are fixed: two chunks give the same result on any number of threads
    two = [engine_epoch(X, y, W0.copy(), hidden, batch_size=4, n_chunks=2) for _ in range(2)]
    np.testing.assert_array_equal(two[0], two[1])


# ----------------------------------------------------------------------------- golden pins
@pytest.fixture(scope="module")
def subset():
    return stidi.datasets.load_subset("mnist", "train")


def _check_pins(clf, pins, digest):
    # bit for bit first: a change in the order of floating-point additions (for instance of
    # equal spike times) moves the last bits only, passes the 1e-9 comparisons below, and
    # still makes every committed long run train to other numbers
    assert hashlib.sha256(np.ascontiguousarray(clf.W_).tobytes()).hexdigest()[:16] == digest
    coefs = [c for c in clf.coefs_ if c is not None]
    assert len(coefs) == len(pins)
    for c, (shape, total, absolute, picks) in zip(coefs, pins):
        assert c.shape == shape
        assert float(c.sum()) == pytest.approx(total, rel=1e-9)
        assert float(np.abs(c).sum()) == pytest.approx(absolute, rel=1e-9)
        np.testing.assert_allclose(c.ravel()[[0, 7, 1234 % c.size]], picks, rtol=1e-9)


# The defaults before version 0.2 (the pins were computed with them): no averaged weights,
# dead units re-drawn before scoring, and for fully connected networks the early calibration.
FORMER = dict(weight_average=0.0, eval_before_reset=False)

# default 784-400-10, one online epoch over the first 200 shipped MNIST images, seed 0:
# (shape, sum, sum of |w|, three entries of the flattened (n_out, n_in) matrix).
# Moved on purpose when the two programs became one engine: learning rates are now in
# units of each layer's calibrated scale (defaults re-expressed), the calibration uses
# the shared bisection (22 steps, 100 images) and draws the initial weights in the
# kernel layout, as the conv network always did.
FC_PINS = [
    ((400, 784), 12258.281567683072, 21233.224683083994,
     [0.07441669754484434, 0.029559960948654644, 0.07018412350446249]),
    ((10, 400), 13.802042071030623, 25.930094707220803,
     [-0.006548141043003542, -0.00741175597145816, 0.005774894590855179]),
]
FC_DIGEST = "40c0cd4d3d26cec4"   # SHA-256 of the weights (all layers), first 16 hex digits
# default 28x28-16C5-P2-10, same data and seed
CONV_PINS = [
    ((16, 1, 5, 5), 294.1427423293545, 450.0961272581885,
     [1.122099284277243, 1.4379664885628263, 2.164720426883551]),
    ((10, 2304), 30.17450763120999, 46.224709969523964,
     [-0.0008983457464962092, 0.000189307277949198, 0.004780030428638973]),
]
CONV_DIGEST = "360f36a415a07109"

@pytest.mark.jit

def test_golden_default_dense_network(subset):
    X, y = subset
    clf = SpikingClassifier(epochs=1, random_state=0, init_median=[48.0, 128.0], **FORMER).fit(X[:200], y[:200])
    _check_pins(clf, FC_PINS, FC_DIGEST)

@pytest.mark.jit

def test_golden_default_conv_network(subset):
    X, y = subset
    clf = SpikingClassifier("28x28-16C5-P2-10", epochs=1, random_state=0, **FORMER).fit(X[:200], y[:200])
    _check_pins(clf, CONV_PINS, CONV_DIGEST)


@pytest.mark.jit
@pytest.mark.parametrize("arch, medians", [("784-400-10", [160.0, 224.0]),
                                           ("784-64-32-10", [160.0, 192.0, 224.0]),
                                           ("28x28-16C5-P2-10", [48.0, 128.0])])
def test_defaults_are_the_documented_settings(subset, arch, medians):
    """The defaults since version 0.2 train exactly as these settings spelled out."""
    X, y = subset
    a = SpikingClassifier(arch, epochs=2, random_state=0).fit(X[:120], y[:120], validation_data=(X[200:260], y[200:260]))
    b = SpikingClassifier(arch, epochs=2, random_state=0, weight_average=0.95, average_every=100,
                          eval_before_reset=True, init_median=medians).fit(
        X[:120], y[:120], validation_data=(X[200:260], y[200:260]))
    for ca, cb in zip(a.coefs_, b.coefs_):
        np.testing.assert_array_equal(ca, cb)
    c = SpikingClassifier(arch, epochs=2, random_state=0, init_median=medians, **FORMER).fit(
        X[:120], y[:120], validation_data=(X[200:260], y[200:260]))
    assert any(not np.array_equal(ca, cc) for ca, cc in zip(a.coefs_, c.coefs_))


# ------------------------------------------------------------ the schedule within an epoch


@pytest.mark.parametrize("batch", [1, 4])
def test_lr_steps_cut_the_epoch_without_changing_the_updates(subset, batch):
    """With a constant schedule, cutting each epoch into parts changes nothing."""
    X, y = subset
    kw = dict(arch="784-16-10", epochs=2, random_state=3, lr_schedule="constant", batch_size=batch)
    one = SpikingClassifier(**kw).fit(X[:60], y[:60])
    parts = SpikingClassifier(lr_steps=7, **kw).fit(X[:60], y[:60])
    np.testing.assert_array_equal(one.W_, parts.W_)
    assert [h["train_accuracy_running"] for h in one.history_] == \
        [h["train_accuracy_running"] for h in parts.history_]


def test_lr_steps_use_the_schedule_at_fractional_epochs(subset, monkeypatch):
    """Part j of epoch k trains at lr0 * decay ** (k + j / lr_steps) on its share of the order."""
    X, y = subset
    seen = []
    real = net.train_epoch_sgd

    def spy(X_, y_, order, *args):
        seen.append((order.shape[0], args[7].copy()))   # args[7]: the rates
        return real(X_, y_, order, *args)

    monkeypatch.setattr("stidi.model.train_epoch_sgd", spy)
    clf = SpikingClassifier("784-16-10", epochs=2, random_state=0, lr_decay=0.5, lr_steps=4)
    clf.fit(X[:50], y[:50])
    assert [n for n, _ in seen] == [12, 13, 12, 13] * 2      # whole samples, the epoch covered once
    base = seen[0][1]
    for i, (_, lrs) in enumerate(seen):
        np.testing.assert_allclose(lrs, base * 0.5 ** (i / 4), rtol=1e-12)
    for bad in (0, 1.5, True):
        with pytest.raises(ValueError, match="lr_steps"):
            SpikingClassifier("784-4-*", lr_steps=bad).fit(X[:20], y[:20])
