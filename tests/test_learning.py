"""STiDi-BP: kernel training step against its twin, targets, decisions, gradient signs, dt/dv."""

import itertools
import zlib

import numpy as np
import pytest

import stidi
from stidi import network as net
from stidi import reference as ref
from stidi import rule
from stidi._codes import SilentTarget, Target
from helpers import kernel_step as _engine_step

TAU1, TAU2, TMAX = 16.0, 64.0, 100.0


def kernel_step(x, label, weights, thetas, lrs, gamma, target, dtdv, hidden, normalise, beta, wd=0.0):
    arch = "-".join(str(n) for n in [weights[0].shape[1], *(w.shape[0] for w in weights)])
    return _engine_step(x, label, arch, weights, thetas, lrs, (TAU1, TAU2, TMAX), gamma=gamma,
                        target=target, dtdv=dtdv, hidden_error=hidden, normalise=normalise, beta=beta,
                        weight_decay=wd)


def random_net(rng, sizes=(20, 15, 12, 4)):
    x = rng.uniform(0, TMAX, sizes[0])  # continuous: no spike lands exactly on a kink of eps
    x[rng.random(sizes[0]) < 0.3] = TMAX
    weights = [rng.uniform(-0.3, 1.0, (o, i)) * 0.6 for i, o in zip(sizes[:-1], sizes[1:])]
    return x, weights


def on_a_kink(x, weights, thetas):
    """True when a silent neuron's peak time sits on the kink of an input's PSP.

    The peak of a silent neuron is reached where some input PSP turns from
    rising to decaying, i.e. exactly where eps' jumps from 1/tau1 to
    -1/tau2.  The displacement error evaluates eps' there, and two codes may
    round t_peak - t_i to different sides of the jump; both values are right.
    """
    t = x
    for w, th in zip(weights, thetas):
        t_out, _, _, tpk = stidi.layer_forward(t, w, th, TAU1, TAU2, TMAX)
        s = tpk[t_out >= TMAX][:, None] - t[None, t < TMAX]
        if np.any(np.abs(s - TAU1) < 1e-9):
            return True
        t = t_out
    return False


@pytest.mark.parametrize("target, dtdv, hidden, normalise",
                         list(itertools.product(["relative", "minmax"], ["linear", "constant", "slope"],
                                                ["s4nn", "displacement"], [True, False])))
def test_kernel_step_matches_twin(target, dtdv, hidden, normalise):
    rng = np.random.default_rng(zlib.crc32(f"{target}{dtdv}{hidden}{normalise}".encode()))
    compared = 0
    for trial in range(8):
        x, weights = random_net(rng)
        label = int(rng.integers(4))
        kw = dict(thetas=[0.8, 0.6, 0.5], lrs=[1e-2, 5e-3, 1e-3], gamma=3.0)
        if hidden == "displacement" and on_a_kink(x, weights, kw["thetas"]):
            continue
        got = kernel_step(x, label, weights, target=target, dtdv=dtdv, hidden=hidden,
                          normalise=normalise, beta=2.0, wd=1e-3, **kw)
        want = ref.train_step_reference(x, label, weights, kw["thetas"], TAU1, TAU2, TMAX, kw["gamma"],
                                        kw["lrs"], target=target, dtdv=dtdv, hidden_error=hidden,
                                        normalise=normalise, beta=2.0, weight_decay=1e-3)
        for g, w, w0 in zip(got, want, weights):
            np.testing.assert_allclose(g, w, rtol=0, atol=1e-9)
        compared += 1
    assert compared >= 5


def test_twin_step_moves_each_weight_by_the_rule():
    # a single dense layer: every weight moves by exactly -lr e_j g_j eps(t_j - t_i), by hand
    rng = np.random.default_rng(0)
    x = np.floor(rng.uniform(0, 40, 8))
    W = rng.uniform(0.0, 1.0, (3, 8)) * 0.4
    t = stidi.first_spike_times(x, W, 0.8, TAU1, TAU2, TMAX)
    assert np.all(t < TMAX)
    label = int(np.argmax(t))
    new = ref.train_step_reference(x, label, [W], [0.8], TAU1, TAU2, TMAX, 3.0, [1e-2])[0]
    e = (ref.output_targets_reference(t, label, 3.0, TMAX) - t) / TMAX
    e /= np.linalg.norm(e)
    want = W - 1e-2 * (e * t / 0.8)[:, None] * stidi.psp(t[:, None] - x[None, :], TAU1, TAU2)
    np.testing.assert_allclose(new, want, rtol=0, atol=1e-15)
    assert np.abs(new - W).max() > 1e-6


# ----------------------------------------------------------------------------- targets and decision
@pytest.mark.parametrize("mode", ["relative", "minmax", "softmax"])
def test_output_targets_kernel_matches_twin(mode):
    rng = np.random.default_rng(5)
    for _ in range(50):
        t = np.floor(rng.uniform(0, TMAX + 20, 6)).clip(max=TMAX)
        if rng.random() < 0.2:
            t[:] = TMAX  # a silent output layer
        label = int(rng.integers(6))
        T = np.empty(6)
        for silent in ("correct", "all"):
            for end in (0.0, 20.0):
                rule._output_targets(t, label, 3.0, TMAX, Target.parse("target", mode), T,
                                     SilentTarget.parse("silent_target", silent), end)
                np.testing.assert_allclose(
                    T, ref.output_targets_reference(t, label, 3.0, TMAX, mode, silent, end),
                    rtol=0, atol=1e-12)


def test_end_margin_pulls_a_late_first_output_earlier():
    # the correct output fires first but late: without end_margin it is asked for nothing
    t = np.array([TMAX - 5.0, TMAX, TMAX, TMAX])
    T0 = ref.output_targets_reference(t, 0, 3.0, TMAX)
    np.testing.assert_array_equal(T0, t)
    T = np.empty(4)
    rule._output_targets(t, 0, 3.0, TMAX, Target.RELATIVE, T, SilentTarget.CORRECT, 20.0)
    np.testing.assert_array_equal(T, [TMAX - 20.0, TMAX, TMAX, TMAX])
    # an early correct output, and the wrong outputs, keep the targets of the published rule
    t = np.array([10.0, 11.0, 30.0, TMAX])
    np.testing.assert_array_equal(ref.output_targets_reference(t, 2, 3.0, TMAX, end_margin=20.0),
                                  ref.output_targets_reference(t, 2, 3.0, TMAX))
    # a correct output that is not first gets min(tau, t_max - m)
    T = ref.output_targets_reference(np.array([TMAX - 8.0, TMAX - 2.0]), 1, 3.0, TMAX, end_margin=20.0)
    np.testing.assert_array_equal(T, [TMAX - 5.0, TMAX - 20.0])


def test_relative_target_rule():
    t = np.array([10.0, 11.0, 30.0, TMAX])
    T = ref.output_targets_reference(t, 2, 3.0, TMAX)
    # correct neuron asked for the earliest time; close competitors pushed to tau + gamma
    np.testing.assert_array_equal(T, [13.0, 13.0, 10.0, TMAX])
    silent = ref.output_targets_reference(np.full(4, TMAX), 1, 3.0, TMAX)
    np.testing.assert_array_equal(silent, [TMAX, TMAX - 3, TMAX, TMAX])


def test_softmax_target_is_a_cross_entropy_step():
    """T - t is -gamma^2 times the gradient of -log softmax(-t / gamma) at the label."""
    t = np.array([10.0, 11.0, 30.0, TMAX])
    gamma = 4.0

    def loss(tt):
        z = -tt / gamma
        return -(z[2] - np.log(np.exp(z).sum()))

    grad = np.array([(loss(t + h) - loss(t - h)) / 2e-6 for h in np.eye(4) * 1e-6])
    T = ref.output_targets_reference(t, 2, gamma, TMAX, "softmax")
    np.testing.assert_allclose(T[:3] - t[:3], -gamma ** 2 * grad[:3], rtol=1e-6)
    assert T[3] == TMAX                       # a silent wrong neuron is left alone
    assert T[2] < t[2] and T[0] > t[0] and T[1] > t[1]
    # nothing is ever learned perfectly: a clear win still carries a small error
    clear = ref.output_targets_reference(np.array([TMAX, TMAX, 5.0, TMAX]), 2, gamma, TMAX, "softmax")
    assert 0 < 5.0 - clear[2] < 1e-6 * gamma
    silent = ref.output_targets_reference(np.full(4, TMAX), 1, gamma, TMAX, "softmax")
    np.testing.assert_allclose(silent, [TMAX, TMAX - 0.75 * gamma, TMAX, TMAX])


def test_decision_rules():
    t = np.array([5.0, 3.0, 3.0, TMAX])
    slope = np.array([1.0, 0.2, 0.9, 0.0])
    vpk = np.zeros(4)
    assert net.decide(t, slope, vpk, TMAX, True) == (2, True)       # tie -> larger slope
    assert ref.decide_reference(t, slope, vpk, TMAX) == 2
    silent = np.full(4, TMAX)
    vpk = np.array([0.1, 0.7, 0.3, 0.2])
    assert net.decide(silent, slope, vpk, TMAX, True) == (1, False)  # fallback: highest peak
    assert net.decide(silent, slope, vpk, TMAX, False) == (-1, False)
    assert ref.decide_reference(silent, slope, vpk, TMAX, fallback=False) == -1


# ----------------------------------------------------------------------------- gradient signs
def test_late_neuron_is_pulled_earlier_and_early_wrong_neuron_pushed_later():
    rng = np.random.default_rng(2)
    x = np.floor(rng.uniform(0, 40, 30))
    W = [rng.uniform(0.0, 1.0, (3, 30)) * 0.15]
    t0 = stidi.first_spike_times(x, W[0], 1.0, TAU1, TAU2, TMAX)
    assert np.all(t0 < TMAX)
    label = int(np.argmax(t0))  # the latest neuron is the correct one
    wrong = int(np.argmin(t0))
    new = ref.train_step_reference(x, label, W, [1.0], TAU1, TAU2, TMAX, 3.0, [2e-3])
    assert np.all(new[0][label] >= W[0][label]) and np.any(new[0][label] > W[0][label])
    assert np.all(new[0][wrong] <= W[0][wrong])
    t1 = stidi.first_spike_times(x, new[0], 1.0, TAU1, TAU2, TMAX)
    assert t1[label] < t0[label]
    assert t1[wrong] > t0[wrong]


def test_hidden_error_sign_follows_weights():
    rng = np.random.default_rng(3)
    x = np.floor(rng.uniform(0, 30, 10))
    W1 = rng.uniform(0.2, 1.0, (4, 10)) * 0.4
    W2 = np.abs(rng.uniform(0.5, 1.0, (2, 4))) * 0.5
    t1 = stidi.first_spike_times(x, W1, 1.0, TAU1, TAU2, TMAX)
    t2 = stidi.first_spike_times(t1, W2, 1.0, TAU1, TAU2, TMAX)
    assert np.all(t1 < TMAX) and np.all(t2 < TMAX)
    label = int(np.argmax(t2))  # correct output is late: it must fire earlier
    new = ref.train_step_reference(x, label, [W1, W2], [1.0, 1.0], TAU1, TAU2, TMAX, 3.0, [1e-2, 0.0])
    # hidden neuron i gets the error sum_j e_j w_ji over the outputs it fired before: its
    # input weights move against that sign (grow when it must fire earlier), exactly
    # where the input's PSP is non-zero at its spike, and nowhere else
    e2 = ref.output_targets_reference(t2, label, 3.0, TMAX) - t2
    s = (e2[:, None] * W2 * (t1[None, :] < t2[:, None])).sum(axis=0)
    assert np.any(s < 0) or np.any(s > 0)
    eps = stidi.psp(t1[:, None] - x[None, :], TAU1, TAU2)
    np.testing.assert_array_equal(np.sign(new[0] - W1), -np.sign(s)[:, None] * (eps > 0))


# ----------------------------------------------------------------------------- what -t/theta approximates
def _shift(x, w, theta, delta):
    """True spike-time change when the potential at t is raised by ``delta * theta``."""
    t0 = stidi.first_spike_times(x, w[None], theta, TAU1, TAU2, TMAX)[0]
    t1 = stidi.first_spike_times(x, (w * (1 + delta))[None], theta, TAU1, TAU2, TMAX)[0]
    return t0, (t1 - t0) / (delta * theta)


def test_linear_approximation_is_exact_for_a_potential_linear_from_zero():
    # one input at t=0, still rising when the threshold is met: v(t) = w t / tau1 is the chord itself
    x = np.array([0.0])
    t, dtdv = _shift(x, np.array([2.0]), 1.0, 1e-7)
    np.testing.assert_allclose(dtdv, -t / 1.0, rtol=1e-5)


def test_exact_local_slope_matches_finite_differences():
    rng = np.random.default_rng(7)
    for _ in range(20):
        x = np.floor(rng.uniform(0, 50, 12))
        w = rng.uniform(-0.2, 1.0, 12) * 0.2
        t, s, _, _ = stidi.layer_forward(x, w[None], 0.7, TAU1, TAU2, TMAX)
        if t[0] >= TMAX:
            continue
        _, dtdv = _shift(x, w, 0.7, 1e-8)
        np.testing.assert_allclose(dtdv, -1.0 / s[0], rtol=1e-4)


def test_linear_approximation_has_the_right_sign_and_scale():
    rng = np.random.default_rng(8)
    true, approx = [], []
    for _ in range(200):
        x = np.floor(rng.uniform(0, 60, 20))
        w = rng.uniform(-0.3, 1.0, 20) * 0.3
        t, dtdv = _shift(x, w, 1.0, 1e-6)
        if t < TMAX:
            true.append(dtdv)
            approx.append(-t / 1.0)
    true, approx = np.array(true), np.array(approx)
    assert len(true) > 50
    assert np.all(true < 0) and np.all(approx < 0)
    # the chord slope theta/t is the mean depolarisation rate: same order of magnitude as the truth
    assert 0.1 < np.median(approx / true) < 10
