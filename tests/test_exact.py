"""Exact-gradient trainer: kernel vs NumPy twin, finite differences, floors, silence, learning."""

from __future__ import annotations

import numpy as np
import pytest

from stidi.exact import (
    ExactGradientClassifier,
    exact_layer_backward,
    layer_backward_reference,
    network_forward,
    network_gradient,
    softmax_time_loss,
)
from stidi.neuron import layer_forward

TAU1, TAU2, T_MAX, THETA = 8.0, 20.0, 40.0, 1.0


def _random_net(rng, sizes, scale=(0.15, 0.9)):
    """Weights whose neurons mostly fire in the window for inputs spread over [0, 15)."""
    Ws = []
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        Ws.append(rng.uniform(-0.3, 1.0, size=(n_out, n_in)) * rng.uniform(*scale) * 8.0 / n_in)
    return Ws


def _loss(T, Ws, y, s):
    acts = network_forward(T, Ws, [THETA] * len(Ws), TAU1, TAU2, T_MAX)
    return softmax_time_loss(acts[-1][0], y, s)[0], acts


def test_kernel_matches_numpy_twin():
    rng = np.random.default_rng(0)
    B, n_in, n_out = 7, 13, 5
    t_in = rng.uniform(0, 30, size=(B, n_in))
    t_in[rng.random((B, n_in)) < 0.3] = T_MAX          # silent inputs
    t_in[0, :4] = [3.0, 3.0 + TAU1, 3.0 + TAU1 + TAU2, 0.0]  # exact breakpoints
    t_star = rng.uniform(0, 40, size=(B, n_out))
    t_star[0, 0] = 3.0 + TAU1                           # s == tau1 exactly
    t_star[1, 1] = T_MAX
    W = rng.normal(size=(n_out, n_in))
    coef = rng.normal(size=(B, n_out))
    coef[2] = 0.0
    gW, g_in = exact_layer_backward(t_in, t_star, W, coef, TAU1, TAU2, T_MAX)
    rW, r_in = layer_backward_reference(t_in, t_star, W, coef, TAU1, TAU2, T_MAX)
    np.testing.assert_allclose(gW, rW, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(g_in, r_in, rtol=1e-12, atol=1e-14)
    gW2, none = exact_layer_backward(t_in, t_star, W, coef, TAU1, TAU2, T_MAX, need_input_grad=False)
    np.testing.assert_array_equal(gW2, gW)
    assert none is None
    with pytest.raises(ValueError, match="inconsistent shapes"):
        exact_layer_backward(t_in, t_star, W.T, coef, TAU1, TAU2, T_MAX)


def test_numba_and_numpy_backends_agree_on_a_network():
    rng = np.random.default_rng(1)
    Ws = _random_net(rng, [10, 6, 3])
    T = rng.uniform(0, 15, size=(9, 10))
    y = rng.integers(0, 3, size=9)
    _, acts = _loss(T, Ws, y, 2.0)
    l1, g1 = network_gradient(acts, Ws, y, 2.0, TAU1, TAU2, T_MAX, 1e-3, 0.5, "numba")
    l2, g2 = network_gradient(acts, Ws, y, 2.0, TAU1, TAU2, T_MAX, 1e-3, 0.5, "numpy")
    assert l1 == l2
    for a, b in zip(g1, g2):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("sizes", [[10, 6, 3], [8, 5, 4, 3]])
def test_gradient_matches_central_differences(sizes):
    """Exact gradient vs central differences wherever the spike set and the crossing segments stay put."""
    rng = np.random.default_rng(2 + len(sizes))
    h = 1e-6
    checked = 0
    for _ in range(6):
        Ws = _random_net(rng, sizes)
        T = rng.uniform(0, 15, size=(4, sizes[0]))
        y = rng.integers(0, sizes[-1], size=4)
        L0, acts = _loss(T, Ws, y, 3.0)
        fired0 = [a[0] < T_MAX for a in acts[1:]]
        slopes0 = [a[1] for a in acts[1:]]
        _, grads = network_gradient(acts, Ws, y, 3.0, TAU1, TAU2, T_MAX, 1e-9)
        for l, W in enumerate(Ws):
            for j in range(W.shape[0]):
                for i in range(W.shape[1]):
                    vals = []
                    ok = True
                    for sgn in (1, -1):
                        Wp = [w.copy() for w in Ws]
                        Wp[l][j, i] += sgn * h
                        Lp, ap = _loss(T, Wp, y, 3.0)
                        # same neurons fire, in the same linear segment (slope changes only
                        # through the perturbed weight, by O(h))
                        for a, f0, s0 in zip(ap[1:], fired0, slopes0):
                            if not np.array_equal(a[0] < T_MAX, f0) or np.max(np.abs(a[1] - s0)) > 1e-4:
                                ok = False
                        vals.append(Lp)
                    if not ok:
                        continue
                    fd = (vals[0] - vals[1]) / (2 * h)
                    assert grads[l][j, i] == pytest.approx(fd, rel=1e-4, abs=1e-7), (l, j, i)
                    checked += 1
        assert np.isfinite(L0)
    total = sum(a * b for a, b in zip(sizes[:-1], sizes[1:])) * 6
    assert checked > 0.8 * total


def test_slope_floor_caps_the_gain():
    # output 0 crosses almost grazing (slope 1e-5 around t = 3), output 1 crosses at t = 4
    a = 3.99996
    t_in = np.array([[0.0, 2.0]])
    W = np.array([[a, -(a - 8e-5)], [2.0, 0.0]])
    t, slope, vpk, tpk = layer_forward(t_in, W, THETA, TAU1, TAU2, T_MAX)
    assert 2.0 < t[0, 0] < TAU1 and 0 < slope[0, 0] < 1e-4
    assert t[0, 1] == pytest.approx(4.0) and slope[0, 1] == pytest.approx(2.0 / TAU1)
    acts = [(t_in,), (t, slope, vpk, tpk)]
    y = np.array([1])
    floor = 0.05
    _, (g,) = network_gradient(acts, [W], y, 1.0, TAU1, TAU2, T_MAX, floor)
    _, dL_dt = softmax_time_loss(t, y, 1.0)
    assert dL_dt[0, 0] != 0.0
    # the grazing neuron's gain is 1/floor, not 1/slope; the other keeps 1/slope
    assert g[0, 0] == pytest.approx(-dL_dt[0, 0] * (t[0, 0] / TAU1) / floor)
    assert g[1, 0] == pytest.approx(-dL_dt[0, 1] * (t[0, 1] / TAU1) / slope[0, 1])
    _, (g_raw,) = network_gradient(acts, [W], y, 1.0, TAU1, TAU2, T_MAX, 1e-12)
    assert g_raw[0, 0] == pytest.approx(-dL_dt[0, 0] * (t[0, 0] / TAU1) / slope[0, 0])
    assert abs(g_raw[0, 0]) > 100 * abs(g[0, 0])
    np.testing.assert_array_equal(g_raw[1], g[1])


def test_silent_neurons_pass_no_gradient():
    rng = np.random.default_rng(5)
    Ws = _random_net(rng, [10, 6, 3])
    Ws[0][2] = -0.5            # hidden neuron 2 never fires
    Ws[1] = rng.uniform(0.3, 0.8, size=Ws[1].shape)
    Ws[1][1] = -0.5            # output neuron 1 never fires
    T = rng.uniform(0, 15, size=(6, 10))
    y = np.array([0, 1, 2, 0, 1, 2])
    _, acts = _loss(T, Ws, y, 2.0)
    assert np.all(acts[1][0][:, 2] == T_MAX) and np.all(acts[2][0][:, 1] == T_MAX)
    assert np.mean(acts[1][0] < T_MAX) > 0.5 and np.mean(acts[2][0] < T_MAX) > 0.5
    _, g = network_gradient(acts, Ws, y, 2.0, TAU1, TAU2, T_MAX, 1e-3)
    assert np.all(g[0][2] == 0.0)        # silent hidden neuron: no weight gradient
    assert np.all(g[1][1] == 0.0)        # silent output neuron: no weight gradient
    assert np.all(g[1][:, 2] == 0.0)     # silent hidden neuron is a silent input: nothing through it
    assert np.any(g[0] != 0.0) and np.any(g[1] != 0.0)
    # the optional surrogate does give them a gradient
    _, gs = network_gradient(acts, Ws, y, 2.0, TAU1, TAU2, T_MAX, 1e-3, silent_surrogate=5.0)
    assert np.any(gs[1][1] != 0.0)
    np.testing.assert_array_equal(gs[1][0], g[1][0])   # firing neurons unchanged


def _toy_data(n=240, seed=0):
    """Three classes of 6x6 images: a bright bar in a class-specific place, plus noise."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, size=n)
    X = rng.integers(0, 90, size=(n, 6, 6)).astype(np.uint8)
    for k in range(n):
        X[k, 2 * y[k]:2 * y[k] + 2, :] = rng.integers(180, 256, size=(2, 6))
    return X, y


def test_loss_decreases_and_learns_a_toy_problem():
    X, y = _toy_data()
    clf = ExactGradientClassifier(hidden=(12,), epochs=6, batch_size=16, lr=0.02, temperature=4.0,
                                  init_samples=100, train_eval_size=100, random_state=0)
    clf.fit(X[:180], y[:180], X[180:], y[180:])
    losses = [h["train_loss_running"] for h in clf.history_]
    assert losses[-1] < 0.7 * losses[0]
    assert clf.score(X[180:], y[180:]) > 0.9
    h = clf.history_[-1]
    for key in ("train_accuracy_running", "train_eval_accuracy", "val_accuracy", "val_silent_fraction",
                "val_median_spike_time", "train_hidden_silent_fraction", "seconds"):
        assert key in h
    assert len(h["val_silent_fraction"]) == 2
    assert clf.best_epoch_ == 1 + int(np.argmax([r["val_accuracy"] for r in clf.history_]))
    assert clf.score(X[180:], y[180:]) == pytest.approx(clf.history_[clf.best_epoch_ - 1]["val_accuracy"])


def test_seed_reproducible_and_resume(tmp_path):
    X, y = _toy_data(120, seed=1)
    kw = dict(hidden=(8,), batch_size=16, lr=0.01, init_samples=60, train_eval_size=50, random_state=3)
    a = ExactGradientClassifier(epochs=3, **kw).fit(X[:90], y[:90], X[90:], y[90:])
    b = ExactGradientClassifier(epochs=3, **kw).fit(X[:90], y[:90], X[90:], y[90:])
    for wa, wb in zip(a.last_W_, b.last_W_):
        np.testing.assert_array_equal(wa, wb)
    ck = tmp_path / "ck.npz"
    ExactGradientClassifier(epochs=2, **kw).fit(X[:90], y[:90], X[90:], y[90:], checkpoint=ck)
    r = ExactGradientClassifier(epochs=3, **kw).fit(X[:90], y[:90], X[90:], y[90:], checkpoint=ck,
                                                    resume=True)
    for wa, wr in zip(a.last_W_, r.last_W_):
        np.testing.assert_array_equal(wa, wr)
    assert [h["val_accuracy"] for h in r.history_] == [h["val_accuracy"] for h in a.history_]
    d = ExactGradientClassifier(epochs=3, **{**kw, "random_state": 4}).fit(X[:90], y[:90])
    assert not np.array_equal(d.last_W_[0], a.last_W_[0])
    with pytest.raises(ValueError, match="different settings"):
        ExactGradientClassifier(epochs=3, **{**kw, "lr": 0.5}).fit(X[:90], y[:90], checkpoint=ck,
                                                                   resume=True)


def test_bad_input_and_unfitted():
    X, y = _toy_data(30)
    with pytest.raises(RuntimeError, match="not fitted"):
        ExactGradientClassifier().predict(X)
    with pytest.raises(ValueError, match="temperature"):
        ExactGradientClassifier(temperature=0).fit(X, y)
    with pytest.raises(ValueError, match="slope_floor"):
        ExactGradientClassifier(slope_floor=-1.0).fit(X, y)
    with pytest.raises(ValueError, match="y must have shape"):
        ExactGradientClassifier().fit(X, y[:-1])
    with pytest.raises(ValueError, match="both X_val and y_val"):
        ExactGradientClassifier().fit(X, y, X)
    with pytest.raises(ValueError, match="backend"):
        ExactGradientClassifier(backend="torch").fit(X, y)


def test_directional_derivative_on_the_calibrated_image_network():
    """On the package's 784-H-10 network at its calibrated initialisation, with real images,
    the exact gradient predicts the loss change along random weight directions."""
    from stidi.datasets import load_subset

    X, y = load_subset("fashion-mnist", "train")
    clf = ExactGradientClassifier(hidden=(40,), init_samples=60)
    clf.classes_ = np.arange(10)
    sizes = clf._validate(784, 10)
    T = clf._times(X[:60])
    Ws, _ = clf._init_weights(T, sizes, np.random.default_rng(0))
    Tb, yb = T[:32], y[:32].astype(np.int64)

    def loss(Wl):
        acts = network_forward(Tb, Wl, [1.0, 1.0], 128.0, 1024.0, 256.0)
        return softmax_time_loss(acts[-1][0], yb, 4.0)[0], acts

    _, acts = loss(Ws)
    assert np.mean(acts[1][0] < 256) > 0.5 and np.mean(acts[2][0] < 256) > 0.5
    _, g = network_gradient(acts, Ws, yb, 4.0, 128.0, 1024.0, 256.0, 1e-3)
    rng = np.random.default_rng(1)
    h = 1e-6
    for _ in range(3):
        D = [rng.normal(size=W.shape) * W.std() for W in Ws]
        pred = sum(float(np.sum(gi * di)) for gi, di in zip(g, D))
        lp = loss([W + h * d for W, d in zip(Ws, D)])[0]
        lm = loss([W - h * d for W, d in zip(Ws, D)])[0]
        assert pred == pytest.approx((lp - lm) / (2 * h), rel=1e-4)
