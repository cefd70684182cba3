"""The PL-PSP neuron: exact kernel against its NumPy twin, the grid twin, and bad input."""

import numpy as np
import pytest

import stidi
from stidi import reference as ref
from stidi.neuron import layer_forward

TAU1, TAU2, TMAX = 16.0, 48.0, 100.0


def random_case(rng, batch=5, n_in=30, n_out=12, silent_frac=0.3, integer=False):
    t = rng.uniform(0, TMAX, size=(batch, n_in))
    if integer:
        t = np.floor(t)
    t[rng.random(t.shape) < silent_frac] = TMAX
    W = rng.normal(0.15, 0.3, size=(n_out, n_in))
    W[::3] *= 0.05  # weak neurons that stay silent
    return t, W


# ----------------------------------------------------------------------------- encode and psp
def test_encode_uint8_and_float_agree():
    x = np.array([[0, 1, 128, 254, 255]], dtype=np.uint8)
    t = stidi.encode(x, t_max=256)
    assert t.dtype == np.float64 and t.shape == x.shape
    np.testing.assert_array_equal(t, [[256, 254, 127, 1, 0]])
    np.testing.assert_array_equal(stidi.encode(x / 255.0, t_max=256), t)


def test_encode_any_leading_shape():
    x = np.random.default_rng(0).integers(0, 256, size=(2, 3, 28, 28), dtype=np.uint8)
    assert stidi.encode(x).shape == x.shape


@pytest.mark.parametrize("bad, msg", [
    (np.array([0.5, np.nan]), "NaN"),
    (np.array([0.5, 1.5]), r"\[0, 1\]"),
    (np.array([-0.1]), r"\[0, 1\]"),
    (np.array(["a"]), "uint8 or float"),
])
def test_encode_rejects_bad_pixels(bad, msg):
    with pytest.raises((ValueError, TypeError), match=msg):
        stidi.encode(bad)


def test_encode_rejects_bad_tmax():
    with pytest.raises(ValueError, match="t_max"):
        stidi.encode(np.zeros(3), t_max=0)


def test_psp_shape_and_values():
    s = np.array([-1.0, 0.0, 5.0, 10.0, 20.0, 30.0, 31.0])
    np.testing.assert_allclose(stidi.psp(s, 10.0, 20.0), [0, 0, 0.5, 1.0, 0.5, 0.0, 0.0])
    np.testing.assert_allclose(stidi.psp_derivative(s, 10.0, 20.0),
                               [0, 0.1, 0.1, -0.05, -0.05, 0, 0])


@pytest.mark.parametrize("tau1, tau2", [(0, 1), (1, 0), (-1, 1), (np.nan, 1)])
def test_psp_rejects_bad_tau(tau1, tau2):
    with pytest.raises(ValueError, match="tau"):
        stidi.psp(np.zeros(2), tau1, tau2)


# ----------------------------------------------------------------------------- exact spike times
def test_docstring_example():
    t = stidi.first_spike_times(np.array([0.0, 10.0]), np.array([[1.0, 1.0]]), 1.5, 10.0, 20.0, 100.0)
    # v(t) = 1.5 - t/20 + (t - 10)/10 on [10, 30)  ->  v = 1.5 at t = 20
    np.testing.assert_allclose(t, [20.0])


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("integer", [False, True])
def test_kernel_matches_twin_random(seed, integer):
    rng = np.random.default_rng(seed)
    t, W = random_case(rng, integer=integer)
    theta = rng.uniform(0.2, 1.5)
    got = layer_forward(t, W, theta, TAU1, TAU2, TMAX)
    want = ref.layer_forward_reference(t, W, theta, TAU1, TAU2, TMAX)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=0, atol=1e-9)
    assert (got[0] < TMAX).any() and (got[0] == TMAX).any()  # both regimes exercised


@pytest.mark.parametrize("seed", range(3))
def test_kernel_matches_twin_many_inputs_with_ties(seed):
    """Beyond 96 active inputs the kernel sorts by radix; integer times give groups of many
    equal breakpoints (onsets, peaks and ends at the same time, added four rows per walk)."""
    rng = np.random.default_rng(100 + seed)
    t, W = random_case(rng, batch=4, n_in=300, n_out=40, silent_frac=0.2, integer=True)
    t[:, :20] = 0.0                                   # a group of 20 onsets at t = 0
    t[:, 20:40] = 40.0 - TAU1                         # onsets whose peaks meet other onsets
    W *= 0.1
    theta = 0.8
    got = layer_forward(t, W, theta, TAU1, TAU2, TMAX)
    want = ref.layer_forward_reference(t, W, theta, TAU1, TAU2, TMAX)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=0, atol=1e-9)
    assert (got[0] < TMAX).any() and (got[0] == TMAX).any()
    # first_spike_times skips the peak bookkeeping and gives the same times
    np.testing.assert_array_equal(stidi.first_spike_times(t, W, theta, TAU1, TAU2, TMAX), got[0])


@pytest.mark.parametrize("n", [97, 150, 1000])
def test_radix_sort_matches_stable_argsort(n):
    from stidi.neuron import _radix_sort_times
    rng = np.random.default_rng(n)
    t = np.floor(rng.uniform(0, 30, n)) * rng.choice([1.0, 0.37], n)   # many ties
    t[:5] = 0.0
    t[5] = -0.0
    t[6:9] = rng.uniform(1e-300, 1e-200, 3)                               # tiny, subnormal-adjacent
    t[9] = 255.999
    idx = rng.permutation(n) + 1000
    act_t, act_i = t.copy(), idx.copy()
    _radix_sort_times(act_t, act_i, n)
    order = np.argsort(t, kind="stable")
    np.testing.assert_array_equal(act_i, idx[order])
    np.testing.assert_array_equal(act_t, t[order])
    assert not np.signbit(act_t).any()


def test_single_input_vector_returns_vector():
    rng = np.random.default_rng(1)
    t, W = random_case(rng, batch=1)
    out = stidi.first_spike_times(t[0], W, 0.5, TAU1, TAU2, TMAX)
    assert out.shape == (W.shape[0],)
    np.testing.assert_allclose(out, stidi.first_spike_times(t, W, 0.5, TAU1, TAU2, TMAX)[0])


def test_all_inputs_silent():
    W = np.ones((3, 4))
    out = stidi.first_spike_times(np.full(4, TMAX), W, 0.5, TAU1, TAU2, TMAX)
    np.testing.assert_array_equal(out, TMAX)


def test_inputs_after_tmax_are_no_spike():
    W = np.ones((1, 2))
    a = stidi.first_spike_times(np.array([5.0, TMAX]), W, 0.5, TAU1, TAU2, TMAX)
    b = stidi.first_spike_times(np.array([5.0, TMAX + 50]), W, 0.5, TAU1, TAU2, TMAX)
    c = stidi.first_spike_times(np.array([5.0, TMAX]), np.array([[1.0, 0.0]]), 0.5, TAU1, TAU2, TMAX)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, c)


def test_one_input_closed_form():
    # w * s / tau1 = theta  ->  t = t_i + theta * tau1 / w  (on the rise)
    t = stidi.first_spike_times(np.array([7.0]), np.array([[2.0], [0.5]]), 1.0, TAU1, TAU2, TMAX)
    np.testing.assert_allclose(t, [7.0 + TAU1 / 2.0, TMAX])  # w = 0.5 peaks at 0.5 < theta


def test_threshold_reached_exactly_at_a_breakpoint():
    # a single weight-1 input peaks at exactly theta = 1 at t_i + tau1
    t = stidi.first_spike_times(np.array([3.0]), np.array([[1.0]]), 1.0, TAU1, TAU2, TMAX)
    want = ref.first_spike_times_reference(np.array([3.0]), np.array([[1.0]]), 1.0, TAU1, TAU2, TMAX)
    np.testing.assert_allclose(t, [3.0 + TAU1], atol=1e-9)
    np.testing.assert_allclose(t, want, atol=1e-9)
    # two inputs whose slopes change exactly when v reaches theta
    t2 = stidi.first_spike_times(np.array([0.0, 8.0]), np.array([[0.5, 1.0]]), 1.0, TAU1, TAU2, TMAX)
    want2 = ref.first_spike_times_reference(np.array([0.0, 8.0]), np.array([[0.5, 1.0]]), 1.0,
                                            TAU1, TAU2, TMAX)
    np.testing.assert_allclose(t2, want2, atol=1e-9)


def test_equal_input_times_and_negative_weights():
    t = np.array([[4.0, 4.0, 4.0, 9.0]])
    W = np.array([[1.0, -0.5, 0.2, 0.7], [-1.0, -1.0, 3.0, 0.0], [-2.0, 0.0, 0.0, 0.1]])
    got = stidi.first_spike_times(t, W, 0.6, TAU1, TAU2, TMAX)
    want = ref.first_spike_times_reference(t, W, 0.6, TAU1, TAU2, TMAX)
    np.testing.assert_allclose(got, want, atol=1e-9)
    assert got[0, 2] == TMAX  # purely inhibitory drive never fires


def test_inhibition_can_delay_or_cancel_a_spike():
    base = stidi.first_spike_times(np.array([0.0, 2.0]), np.array([[1.0, 0.0]]), 0.5, TAU1, TAU2, TMAX)
    inhib = stidi.first_spike_times(np.array([0.0, 2.0]), np.array([[1.0, -0.4]]), 0.5, TAU1, TAU2, TMAX)
    assert inhib[0] > base[0]


@pytest.mark.parametrize("dt", [1.0, 0.25, 0.05])
def test_clock_driven_is_late_by_less_than_dt(dt):
    rng = np.random.default_rng(3)
    t, W = random_case(rng, batch=3, n_in=20, n_out=10)
    exact = stidi.first_spike_times(t, W, 0.5, TAU1, TAU2, TMAX)
    grid = ref.clock_driven_spike_times(t, W, 0.5, TAU1, TAU2, TMAX, dt=dt)
    fired = exact < TMAX - dt
    assert fired.any()
    assert np.all(grid[fired] >= exact[fired] - 1e-9)
    assert np.all(grid[fired] - exact[fired] <= dt + 1e-9)


def test_clock_driven_converges():
    rng = np.random.default_rng(4)
    t, W = random_case(rng, batch=2, n_in=20, n_out=8)
    exact = stidi.first_spike_times(t, W, 0.5, TAU1, TAU2, TMAX)
    errs = []
    for dt in (2.0, 0.5, 0.125, 1 / 32):
        grid = ref.clock_driven_spike_times(t, W, 0.5, TAU1, TAU2, TMAX, dt=dt)
        fired = exact < TMAX - 2
        errs.append(np.abs(grid[fired] - exact[fired]).max())
    assert all(b <= a for a, b in zip(errs, errs[1:]))
    assert errs[-1] < 1 / 32 + 1e-9


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("t_in, W, msg", [
    (np.zeros(3), np.ones((2, 4)), "n_in"),
    (np.zeros((2, 3, 4)), np.ones((2, 4)), "shape"),
    (np.zeros(4), np.ones(4), r"W must have shape \(n_out, n_in\)"),
    (np.array([0, 1, np.nan, 2.0]), np.ones((2, 4)), "NaN"),
    (np.array([0, 1, np.inf, 2.0]), np.ones((2, 4)), "infinite"),
    (np.array([0, -1, 3, 2.0]), np.ones((2, 4)), "negative"),
    (np.zeros(4), np.full((2, 4), np.nan), "NaN"),
])
def test_first_spike_times_rejects_bad_arrays(t_in, W, msg):
    with pytest.raises(ValueError, match=msg):
        stidi.first_spike_times(t_in, W, 1.0, TAU1, TAU2, TMAX)


@pytest.mark.parametrize("kw", [dict(theta=0), dict(theta=-1), dict(tau1=0), dict(tau2=-3),
                                dict(t_max=0), dict(theta=np.nan)])
def test_first_spike_times_rejects_bad_scalars(kw):
    args = dict(theta=1.0, tau1=TAU1, tau2=TAU2, t_max=TMAX)
    args.update(kw)
    name = next(iter(kw))
    with pytest.raises(ValueError, match=name):
        stidi.first_spike_times(np.zeros(2), np.ones((1, 2)), **args)
