"""S4NN as a configuration of the engine: the step-PSP neuron and its twin, one training step
checked against an independent NumPy computation, the uniform initialisation, the constant
schedule, per-sample decay, the dead-neuron reset and S4NN's evaluation rule."""

import numpy as np
import pytest

from stidi import network as net
from stidi._codes import N_STATS, Neuron, Psp, make_rule
from stidi.architecture import parse_architecture
from stidi.dense import step_forward
from stidi.model import SpikingClassifier
from stidi.neuron import encode
from stidi.reference import step_forward_reference

STEP = int(Psp.STEP)


def _twin(t, W, theta, t_max, delay):
    got = step_forward(t, W, theta, t_max, delay)
    want = step_forward_reference(t, W, theta, t_max, delay)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=0, atol=1e-12)
    return got


@pytest.mark.parametrize("delay", [0.0, 1.0, 2.5])
def test_step_kernel_matches_its_twin_on_random_layers(delay):
    rng = np.random.default_rng(3)
    for _ in range(20):
        n_in, n_out = rng.integers(1, 40), rng.integers(1, 12)
        t = rng.uniform(0, 60, (5, n_in))
        t[rng.random(t.shape) < 0.3] = 50.0           # no spike
        W = rng.uniform(-1, 2, (n_out, n_in))
        _twin(t, W, float(rng.uniform(0.5, 4)), 50.0, delay)


def test_step_kernel_ties_integer_times_and_negative_weights():
    rng = np.random.default_rng(4)
    t = rng.integers(0, 8, (6, 60)).astype(float)      # many inputs share a time
    t[:, :5] = 8.0                                      # t_max: no spike
    W = rng.uniform(-1.0, 1.0, (9, 60))
    got = _twin(t, W, 1.5, 8.0, 1.0)
    # simultaneous inputs are added together: +3 and -2.5 at the same time never cross 1
    t1, v1, _, _ = step_forward(np.array([2.0, 2.0]), np.array([[3.0, -2.5]]), 1.0, 10.0)
    assert t1[0] == 10.0 and v1[0] == 0.0
    assert np.all(got[0][got[0] < 8] >= 1)              # delay 1: nothing fires at 0


def test_step_kernel_silent_and_delay_past_the_window():
    W = np.array([[1.0, 1.0], [0.2, 0.2], [-1.0, 3.0]])
    t, vs, vp, tp = _twin(np.array([3.0, 9.0]), W, 1.5, 10.0, 1.0)
    # neuron 0 crosses at 9, its spike would land at 10 = t_max: silent
    np.testing.assert_array_equal(t, [10.0, 10.0, 10.0])
    np.testing.assert_array_equal(tp, [10.0, 10.0, 10.0])
    np.testing.assert_allclose(vp, [2.0, 0.4, 2.0])
    t, vs, _, _ = _twin(np.array([3.0, 9.0]), W, 1.5, 20.0, 1.0)
    np.testing.assert_array_equal(t, [10.0, 20.0, 10.0])
    np.testing.assert_allclose(vs, [2.0, 0.0, 2.0])
    with pytest.raises(ValueError, match="delay"):
        step_forward(np.array([1.0]), np.array([[1.0]]), 1.0, 10.0, -1.0)


# --------------------------------------------------------------------------- one S4NN step
def s4nn_step_numpy(x, label, W_h, W_o, thr, lr, gamma, t_max, lam):
    """S4NN's algorithm for one sample, written from its description (clock-driven, dense
    spike arrays, cumulative sums, a forced spike at t_max, one step of delay).

    One deliberate difference from S4NN's code: the hidden error uses the output weights
    *before* this sample's update (as stidi does), not after it.
    """
    def layer(t_prev, W):
        S = np.zeros((t_prev.size, t_max + 1))
        S[np.arange(t_prev.size), t_prev.astype(int)] = 1.0
        V = np.cumsum(W @ S, axis=1)
        V[:, t_max] = thr + 1.0                          # forced spike
        return np.minimum(np.argmax(V > thr, axis=1) + 1.0, t_max), V
    t_h, _ = layer(x, W_h)
    t_o, _ = layer(t_h, W_o)
    tmin = t_o.min()
    if tmin == t_max:
        T = np.full(t_o.shape, float(t_max))
        T[label] = t_max - gamma
    else:
        T = t_o.copy()
        T[t_o - tmin < gamma] = min(tmin + gamma, t_max)
        T[label] = tmin
    d_o = (T - t_o) / t_max
    if np.linalg.norm(d_o):
        d_o = d_o / np.linalg.norm(d_o)
    fired_o = (t_h[None, :] < t_o[:, None]).astype(float)
    d_h = (d_o[:, None] * fired_o * W_o).sum(axis=0)   # weights before the update
    W_o = W_o - lr * d_o[:, None] * fired_o
    W_o = W_o - lr * lam * W_o
    if np.linalg.norm(d_h):
        d_h = d_h / np.linalg.norm(d_h)
    W_h = W_h - lr * d_h[:, None] * (x[None, :] < t_h[:, None])
    W_h = W_h - lr * lam * W_h
    return W_h, W_o, t_h, t_o


def engine_step(x, label, W_h, W_o, thr, lr, gamma, t_max, lam, **rule):
    a = parse_architecture(f"{W_h.shape[1]}-{W_h.shape[0]}-{W_o.shape[0]}")
    a_off, w_off = a.offsets()
    W = a.pack([W_h, W_o])
    rule = make_rule(gamma=gamma, dtdv="constant", **rule)
    net.train_epoch_sgd(x[None].astype(float), np.array([label]), np.arange(1), W, W, np.empty(0),
                        a.descriptor(), w_off, a_off, np.array([thr, thr]), np.array([lr, lr]),
                        np.array([lam, lam]), Neuron(1.0, 1.0, float(t_max), STEP, 1.0), rule, np.zeros(N_STATS),
                        np.zeros(a_off[-1]))
    return a.unpack(W)


@pytest.mark.parametrize("seed", range(6))
def test_one_s4nn_step_matches_an_independent_numpy_step(seed):
    rng = np.random.default_rng(seed)
    t_max, thr = 32, 10.0
    x = rng.integers(0, t_max + 1, 30).astype(float)
    x[rng.random(30) < 0.3] = t_max
    W_h = rng.uniform(0, 1.2, (12, 30))
    W_o = rng.uniform(0, 3.0, (4, 12))
    label = int(rng.integers(0, 4))
    want_h, want_o, t_h, t_o = s4nn_step_numpy(x, label, W_h, W_o, thr, 0.2, 3.0, t_max, 1e-3)
    assert np.any(t_h < t_max)
    # S4NN's code decays after every sample, with or without an error
    got_h, got_o = engine_step(x, label, W_h, W_o, thr, 0.2, 3.0, t_max, 1e-3, decay_every="sample")
    np.testing.assert_allclose(got_o, want_o, rtol=0, atol=1e-12)
    np.testing.assert_allclose(got_h, want_h, rtol=0, atol=1e-12)
    assert not np.allclose(got_h, W_h)


def test_s4nn_step_with_silent_outputs_pushes_the_label_and_decay_every_sample():
    t_max, thr = 32, 10.0
    x = np.array([0.0, 2.0, 5.0, 32.0])
    W_h = np.full((3, 4), 4.0)
    W_o = np.full((2, 3), 1.0)                          # outputs reach 3 < thr: silent
    want_h, want_o, _, t_o = s4nn_step_numpy(x, 1, W_h, W_o, thr, 0.2, 3.0, t_max, 1e-3)
    assert np.all(t_o == t_max)
    got_h, got_o = engine_step(x, 1, W_h, W_o, thr, 0.2, 3.0, t_max, 1e-3, decay_every="sample")
    np.testing.assert_allclose(got_o, want_o, atol=1e-12)
    np.testing.assert_allclose(got_h, want_h, atol=1e-12)
    # a sample without error: decayed only with decay_every="sample"
    W_o2 = np.array([[5.0, 5.0, 5.0], [0.1, 0.1, 0.1]])
    h1, o1 = engine_step(x, 0, W_h, W_o2, thr, 0.2, 3.0, t_max, 1e-3)
    np.testing.assert_array_equal(o1, W_o2)
    h2, o2 = engine_step(x, 0, W_h, W_o2, thr, 0.2, 3.0, t_max, 1e-3, decay_every="sample")
    np.testing.assert_allclose(o2, W_o2 * (1 - 0.2e-3))
    np.testing.assert_allclose(h2, W_h * (1 - 0.2e-3))


# --------------------------------------------------------------------------- estimator options
# S4NN's settings, with a threshold suited to 64 inputs (S4NN: 100 for 784)
S4NN = dict(psp="step", delay=1.0, theta=10.0, init="uniform", init_range=[(0, 5), (0, 48)],
            lr=[0.2, 0.2], lr_schedule="constant", dtdv="constant", weight_decay=1e-6,
            decay_every="sample", shuffle=False, weight_average=0.0)


def small_data(n=120, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    X = (rng.random((n, 8, 8)) < 0.15 + 0.25 * (np.arange(64).reshape(8, 8) % 3 == y[:, None, None]))
    return (X * rng.integers(100, 256, X.shape)).astype(np.uint8), y


def test_s4nn_configuration_trains_and_reports_both_accuracies():
    X, y = small_data()
    clf = SpikingClassifier("64-20-3", epochs=2, random_state=0, **S4NN).fit(X, y)
    np.testing.assert_array_equal(clf.scales_, [1.0, 1.0])
    assert clf.history_[-1]["train_hidden_silent_fraction"][0] < 0.5
    assert [h["lr"] for h in clf.history_] == [[0.2, 0.2], [0.2, 0.2]]
    ev = clf.evaluate(X, y)
    assert 0 <= ev["accuracy_s4nn"] <= 1 and ev["accuracy_s4nn"] >= ev["accuracy"] - ev["tie_fraction"]
    # uniform init draws from the absolute per-layer ranges, unscaled
    W0 = SpikingClassifier("64-20-3", epochs=0, random_state=0, **S4NN).fit(X, y).coefs_
    assert 0 <= W0[0].min() and W0[0].max() <= 5 and W0[0].max() > 4
    assert 0 <= W0[1].min() and W0[1].max() <= 48 and W0[1].max() > 30


def test_shuffle_false_visits_samples_in_order_and_is_the_same_for_any_seed():
    X, y = small_data()
    a = SpikingClassifier("64-20-3", epochs=1, random_state=0, **S4NN).fit(X, y)
    b = SpikingClassifier("64-20-3", epochs=1, random_state=0, **{**S4NN, "shuffle": True}).fit(X, y)
    c = SpikingClassifier("64-20-3", epochs=1, random_state=0, **S4NN).fit(X[::-1], y[::-1])
    assert not np.allclose(a.W_, b.W_) and not np.allclose(a.W_, c.W_)


def test_dead_hidden_neurons_are_redrawn_from_the_uniform_range():
    X, y = small_data()
    cfg = {**S4NN, "init_range": [(0, 0.01), (0, 48)], "dead_threshold": 0.5, "lr": [0.0, 0.0]}
    clf = SpikingClassifier("64-20-3", epochs=1, random_state=0, **cfg).fit(X, y)
    assert clf.history_[0]["reinitialised"] == 20
    W = clf.last_W_[:64 * 20]
    assert 0 <= W.min() and W.max() <= 0.01


def test_eval_before_reset_scores_the_epoch_before_dead_neurons_are_redrawn():
    X, y = small_data()
    cfg = {**S4NN, "init_range": [(0, 0.01), (0, 48)], "dead_threshold": 0.5, "lr": [0.0, 0.0]}
    after = SpikingClassifier("64-20-3", epochs=1, random_state=0, eval_before_reset=False,
                              **cfg).fit(X, y, validation_data=(X, y))
    before = SpikingClassifier("64-20-3", epochs=1, random_state=0, eval_before_reset=True,
                               **cfg).fit(X, y, validation_data=(X, y))
    assert after.history_[0]["reinitialised"] == before.history_[0]["reinitialised"] == 20
    np.testing.assert_array_equal(after.last_W_, before.last_W_)       # same draws, same order
    np.testing.assert_array_equal(after.W_, after.last_W_)             # kept weights include the reset
    init = SpikingClassifier("64-20-3", epochs=0, random_state=0, **cfg).fit(X, y)
    np.testing.assert_array_equal(before.W_, init.W_)                   # scored and kept before the reset
    assert not np.array_equal(before.W_, before.last_W_)


def test_s4nn_accuracy_counts_ties_as_correct_and_reads_the_potential_when_silent():
    X, y = small_data()
    clf = SpikingClassifier("64-20-3", epochs=0, random_state=0, **S4NN).fit(X, y)
    a = clf.arch_.offsets()[0]
    t_all = np.full((3, int(a[-1])), 256.0)
    W_o = clf.coefs_[1]                                  # (3, 20)
    t_all[:, a[1]:a[2]] = 256.0
    t_all[0, a[2]:] = [40.0, 40.0, 90.0]                 # tie between 0 and 1
    t_all[1, a[2]:] = [40.0, 30.0, 90.0]                 # 1 wins
    t_all[2, a[1]:a[1] + 3] = [10.0, 250.0, 254.0]       # silent outputs: potential at 253
    v = W_o[:, 0] + W_o[:, 1]
    labels = np.array([1, 0, int(np.argmax(v))])
    assert clf._s4nn_accuracy(t_all, labels) == pytest.approx(2 / 3)
    labels[1] = 1
    assert clf._s4nn_accuracy(t_all, labels) == 1.0


@pytest.mark.parametrize("bad, match", [
    (dict(arch="8x8-2C3-3", psp="step"), "dense layers only"),
    (dict(psp="step", hidden_error="displacement"), "displacement"),
    (dict(psp="step", dtdv="slope"), "slope"),
    (dict(delay=1.0), "psp='step'"),
    (dict(psp="step", delay=-1.0), "delay must be a number >= 0"),
    (dict(psp="step", delay=float("nan")), "delay must be a number >= 0"),
    (dict(shuffle="yes"), "shuffle must be True or False"),
    (dict(eval_before_reset=1), "eval_before_reset must be True or False"),
    (dict(psp="square"), "psp"),
    (dict(init="he"), "init"),
    (dict(init_range=[(0, 5)]), "init_range"),
    (dict(init_range=[(0, 5), (3, 1)]), "init_range"),
    (dict(input_window=0), "input_window"),
    (dict(lr_schedule="step"), "lr_schedule"),
    (dict(decay_every="epoch"), "decay_every"),
])
def test_bad_s4nn_options_are_one_clear_error(bad, match):
    X, y = small_data(30)
    kw = {"arch": "64-20-3", **bad}
    with pytest.raises(ValueError, match=match):
        SpikingClassifier(epochs=1, **{k: v for k, v in kw.items() if k != "arch"}, arch=kw["arch"]).fit(X, y)


def test_input_window_compresses_the_code_and_keeps_black_silent():
    X = np.array([[0, 255, 128, 1]], dtype=np.uint8)
    clf = SpikingClassifier("4-2-2", input_window=128)
    clf.arch_ = parse_architecture("4-2-2")
    np.testing.assert_array_equal(clf._times(X), [[256.0, 0.0, 63.0, 127.0]])
    clf.input_window = None
    np.testing.assert_array_equal(clf._times(X), encode(X, 256))


@pytest.mark.slow
def test_s4nn_steps_on_real_mnist_match_the_independent_numpy_steps(stidi_data):
    """150 consecutive S4NN steps, 784-400-10 with S4NN's settings, on real MNIST images."""
    from stidi import datasets

    X, y = datasets.load("mnist", "train", data_dir=stidi_data, download=False)
    t = encode(X[:150].reshape(150, -1), 256)
    rng = np.random.default_rng(0)
    W_h, W_o = rng.uniform(0, 5, (400, 784)), rng.uniform(0, 48, (10, 400))
    A_h, A_o = W_h.copy(), W_o.copy()
    for n in range(150):
        W_h, W_o, _, _ = s4nn_step_numpy(t[n], int(y[n]), W_h, W_o, 100.0, 0.2, 3.0, 256, 1e-6)
        A_h, A_o = engine_step(t[n], int(y[n]), A_h, A_o, 100.0, 0.2, 3.0, 256, 1e-6,
                               decay_every="sample")
    np.testing.assert_allclose(A_h, W_h, rtol=0, atol=1e-9)
    np.testing.assert_allclose(A_o, W_o, rtol=0, atol=1e-9)
