"""Safety net of the network engine: golden pins, dense = conv kernels, batch of one = online.

The pinned numbers were computed with the code as it stood before the fully
connected and convolutional programs were merged into one engine; a change
that moves them must say why in its commit message.
"""

import numpy as np
import pytest

import stidi
from stidi import conv
from stidi import network as net
from stidi.model import _Layout

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


def fc_kernel_epoch(X, y, W, hidden, batch_size=None):
    lay = _Layout.from_sizes(SIZES)
    common = (X, y, np.arange(len(y)), W, lay.w_off, lay.a_off, lay.sizes, THETAS, LRS, TAU1, TAU2,
              TMAX, 3.0, 0, 0, hidden, True, 2.0, 1e-3, 0.0, np.zeros(5), np.zeros(lay.a_off[-1]))
    if batch_size is None:
        net.train_epoch_sgd(*common)
    else:
        net.train_epoch_batch(*common, batch_size, 1, 0, np.zeros_like(W), np.zeros_like(W), 0)
    return W


def conv_kernel_epoch(X, y, W, hidden):
    arch = conv.parse_architecture("20x1-15-12-4")
    desc = arch.descriptor()
    a_off, w_off = conv._offsets(arch)
    mr, mo = conv._scratch_sizes(desc)
    conv.train_epoch_sgd(X, y, np.arange(len(y)), W, W, desc, w_off, a_off, THETAS, LRS, np.empty(0),
                         0.0, False, TAU1, TAU2, TMAX, 3.0, 0, 0, hidden, True, 2.0, 1e-3, False, 0.0,
                         mr, mo, np.zeros(5), np.zeros(a_off[-1]), 0, False, 0.0)
    return W


# sum of the weights and of |W - W0| after one online epoch (12 samples) of the
# all-dense network 20-15-12-4, for the S4NN-like (0) and displacement (1) hidden errors
DENSE_PINS = {0: (100.69668285322058, 49.54448204248209), 1: (80.34850668486467, 57.858550461984166)}


@pytest.mark.parametrize("hidden", [0, 1])
def test_dense_and_conv_kernels_agree_on_an_all_dense_network(hidden):
    X, y, W0 = dense_problem()
    a = fc_kernel_epoch(X, y, W0.copy(), hidden)
    b = conv_kernel_epoch(X, y, W0.copy(), hidden)
    np.testing.assert_array_equal(a, b)
    total, moved = DENSE_PINS[hidden]
    assert float(a.sum()) == pytest.approx(total, rel=1e-12)
    assert float(np.abs(a - W0).sum()) == pytest.approx(moved, rel=1e-12)


@pytest.mark.parametrize("hidden", [0, 1])
def test_dense_batch_of_one_equals_online(hidden):
    X, y, W0 = dense_problem()
    online = fc_kernel_epoch(X, y, W0.copy(), hidden)
    batch = fc_kernel_epoch(X, y, W0.copy(), hidden, batch_size=1)
    np.testing.assert_allclose(batch, online, rtol=0, atol=1e-12)
    assert np.abs(batch - W0).max() > 1e-3


# ----------------------------------------------------------------------------- golden pins
@pytest.fixture(scope="module")
def subset():
    return stidi.datasets.load_subset("mnist", "train")


def _check_pins(clf, pins):
    coefs = [c for c in clf.coefs_ if c is not None]
    assert len(coefs) == len(pins)
    for c, (shape, total, absolute, picks) in zip(coefs, pins):
        assert c.shape == shape
        assert float(c.sum()) == pytest.approx(total, rel=1e-9)
        assert float(np.abs(c).sum()) == pytest.approx(absolute, rel=1e-9)
        np.testing.assert_allclose(c.ravel()[[0, 7, 1234 % c.size]], picks, rtol=1e-9)


# default 784-400-10, one online epoch over the first 200 shipped MNIST images, seed 0:
# (shape, sum, sum of |w|, three entries of the flattened (n_out, n_in) matrix)
FC_PINS = [
    ((400, 784), 13038.701475041777, 22635.83159171663,
     [0.07933907922920377, 0.10351874353441612, 0.16794590665673434]),
    ((10, 400), 12.999331170975255, 25.73151820649137,
     [-0.007027766815096702, 0.009816312093240659, -0.001040315023831033]),
]
# default 28x28-16C5-P2-10, same data and seed
CONV_PINS = [
    ((16, 1, 5, 5), 294.1427423293545, 450.0961272581885,
     [1.122099284277243, 1.4379664885628263, 2.164720426883551]),
    ((10, 2304), 30.17450763120999, 46.224709969523964,
     [-0.0008983457464962092, 0.000189307277949198, 0.004780030428638973]),
]


def test_golden_default_dense_network(subset):
    from stidi.model import SpikingClassifier
    X, y = subset
    clf = SpikingClassifier(hidden=(400,), epochs=1, random_state=0, verbose=False).fit(X[:200], y[:200])
    _check_pins(clf, FC_PINS)


def test_golden_default_conv_network(subset):
    X, y = subset
    clf = conv.ConvSpikingClassifier(epochs=1, random_state=0, verbose=False).fit(X[:200], y[:200])
    _check_pins(clf, CONV_PINS)
