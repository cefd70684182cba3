"""The result scripts of ``scripts/``: their arguments, their error paths and small runs.

The scripts are not part of the package; each is loaded from its file.  Runs on
real data are marked ``slow`` and skipped without ``STIDI_DATA``.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


def _script(name: str):
    spec = importlib.util.spec_from_file_location(f"script_{name}", REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def hidden_error():
    return _script("fc_hidden_error")


@pytest.fixture(scope="module")
def s4nn():
    return _script("s4nn_pretrained_eval")


@pytest.fixture(scope="module")
def ablation():
    return _script("ablation_dtdv")


def _fails(main, argv, capsys, expected: str):
    """``main(argv)`` stops with exit code 2 and one ``error:`` line naming ``expected``."""
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 1 and expected in errors[0], err


# --- scripts/fc_hidden_error.py ---------------------------------------------------------------------------

@pytest.mark.parametrize("argv, expected", [
    (["--train", "0"], "--train and --val"),
    (["--train", "59000", "--val", "5000"], "at most 60000"),
    (["--epochs", "0"], "--epochs positive"),
    (["--seeds", "1", "1"], "repeats a seed"),
    (["--arch", "784-x-10"], "--arch"),
    (["--arch", "784-10"], "hidden layer"),
    (["--arch", "28x28-8C5-P2-10"], "fully connected"),
    (["--dataset", "cifar"], "invalid choice"),
])
def test_hidden_error_rejects_bad_arguments_before_reading_data(hidden_error, capsys, tmp_path, monkeypatch,
                                                                argv, expected):
    import stidi.datasets

    def no_data(*args, **kwargs):
        raise AssertionError("data read before the arguments were checked")

    monkeypatch.setattr(stidi.datasets, "load", no_data)
    _fails(hidden_error.main, [*argv, "--out", str(tmp_path / "r.json")], capsys, expected)
    assert not (tmp_path / "r.json").exists()


def test_hidden_error_needs_out(hidden_error, capsys):
    _fails(hidden_error.main, [], capsys, "--out")


@pytest.mark.jit
def test_hidden_error_runs_both_forms_on_a_tiny_slice(hidden_error, tmp_path, monkeypatch):
    """On a slice of the shipped subset (standing in for the full training set) the report is complete."""
    import stidi.datasets

    def subset(name, split, download=False):
        return stidi.datasets.load_subset(name, split)

    monkeypatch.setattr(stidi.datasets, "load", subset)
    out = tmp_path / "deep" / "report.json"
    argv = ["--train", "60", "--val", "30", "--arch", "784-6-10", "--epochs", "2", "--seeds", "0", "1",
            "--out", str(out)]
    assert hidden_error.main(argv) == 0
    report = json.loads(out.read_text())
    assert [p.name for p in out.parent.iterdir()] == ["report.json"]  # no temporary file left behind
    assert report["architecture"] == "784-6-10" and report["seeds"] == [0, 1]
    assert sorted((r["hidden_error"], r["seed"]) for r in report["runs"]) == [
        ("displacement", 0), ("displacement", 1), ("s4nn", 0), ("s4nn", 1)]
    for run in report["runs"]:
        curve = run["val_accuracy_per_epoch"]
        assert len(curve) == 2 and all(0.0 <= v <= 1.0 for v in curve)
        assert run["best_val_accuracy"] == max(curve) and curve[run["best_epoch"] - 1] == max(curve)
    for form in ("s4nn", "displacement"):
        best = [r["best_val_accuracy"] for r in report["runs"] if r["hidden_error"] == form]
        assert report["summary"][form]["n"] == 2
        assert report["summary"][form]["mean"] == pytest.approx(np.mean(best))
        assert report["summary"][form]["sd"] == pytest.approx(np.std(best, ddof=1))
    assert "--arch 784-6-10" in report["command"] and "--hidden" not in report["command"]


@pytest.mark.slow
@pytest.mark.jit
def test_hidden_error_on_real_data(hidden_error, stidi_data, tmp_path):
    out = tmp_path / "r.json"
    argv = ["--train", "200", "--val", "100", "--arch", "784-10-10", "--epochs", "1", "--seeds", "0",
            "--out", str(out)]
    assert hidden_error.main(argv) == 0
    report = json.loads(out.read_text())
    assert report["n_train"] == 200 and len(report["runs"]) == 2


# --- scripts/s4nn_pretrained_eval.py ----------------------------------------------------------------------

def test_s4nn_layer_times_by_hand(s4nn):
    # inputs at steps 3 and 5; the potential is 60 after step 3 and 110 after step 5 (> 100): spike at 6
    t_in = np.array([3, 5, s4nn.T_MAX])
    W = np.array([[60.0, 50.0, 1000.0],     # fires; the silent input's weight never counts
                  [10.0, 10.0, 0.0],        # silent; potential 20 at step 253
                  [101.0, -200.0, 0.0]])    # fires at 4 although the potential falls later
    t, v_late = s4nn.layer_times(t_in, W)
    assert t.tolist() == [6, s4nn.T_MAX, 4]
    assert v_late.tolist() == [110.0, 20.0, -99.0]


def test_s4nn_layer_times_without_input_spikes(s4nn):
    t, v_late = s4nn.layer_times(np.full(3, s4nn.T_MAX), np.ones((2, 3)))
    assert t.tolist() == [s4nn.T_MAX] * 2 and v_late.tolist() == [0.0, 0.0]


def _two_pixel_network(s4nn):
    """Hidden neuron i copies pixel i; output slot i (class CLASS_ORDER[i]) copies hidden neuron i."""
    hidden = np.zeros((2, 784))
    hidden[0, 0] = hidden[1, 1] = 200.0
    output = np.zeros((10, 2))
    output[0, 0] = output[1, 1] = 200.0
    return hidden, output


def test_s4nn_evaluate_counts_ties_and_silence(s4nn):
    hidden, output = _two_pixel_network(s4nn)
    first, second = s4nn.CLASS_ORDER[0], s4nn.CLASS_ORDER[1]
    images = np.zeros((5, 28, 28), dtype=np.uint8)
    images[0, 0, 0] = 255                  # only slot 0 fires: correct for `first`
    images[1, 0, 1] = 255                  # only slot 1 fires: correct for `second`
    images[2, 0, :2] = 255                 # slots 0 and 1 tie: correct only when ties count as correct
    images[4, 0, 1] = 255                  # slot 1 fires, the label is `first`: wrong
    # image 3 is black: no output spike, all potentials 0, argmax picks slot 0 = `first`
    labels = np.array([first, second, first, first, first])
    report = s4nn.evaluate(images, labels, hidden, output)
    assert report["n_test"] == 5
    assert report["accuracy_ties_correct"] == pytest.approx(4 / 5)
    assert report["accuracy_ties_wrong"] == pytest.approx(3 / 5)
    assert report["tie_fraction"] == pytest.approx(1 / 5)
    assert report["output_silent_fraction"] == pytest.approx(1 / 5)


def test_s4nn_weights_file_round_trip(s4nn, tmp_path):
    rng = np.random.default_rng(0)
    hidden, output = rng.normal(size=(3, 784)), rng.normal(size=(10, 3))
    layers = np.empty(2, dtype=object)
    layers[0], layers[1] = hidden, output
    path = tmp_path / "weights.npy"
    np.save(path, layers, allow_pickle=True)
    got_hidden, got_output = s4nn.load_weights(path)
    assert np.array_equal(got_hidden, hidden) and np.array_equal(got_output, output)


def test_s4nn_weights_file_refuses_other_pickled_objects(s4nn, tmp_path):
    layers = np.empty(2, dtype=object)
    layers[0], layers[1] = {"a": 1}, Path("x")
    path = tmp_path / "weights.npy"
    np.save(path, layers, allow_pickle=True)
    with pytest.raises(ValueError, match="not a readable"):
        s4nn.load_weights(path)


@pytest.mark.parametrize("content, expected", [
    (b"not an npy file", "not a readable .npy weights file"),
    (None, "unexpected shapes"),
])
def test_s4nn_rejects_bad_weights_files(s4nn, capsys, tmp_path, monkeypatch, content, expected):
    import stidi.datasets

    monkeypatch.setattr(stidi.datasets, "load", lambda *a, **k: pytest.fail("data read for bad weights"))
    path = tmp_path / "weights.npy"
    if content is None:
        layers = np.empty(2, dtype=object)
        layers[0], layers[1] = np.zeros((3, 100)), np.zeros((10, 3))   # 100 inputs, not 784
        np.save(path, layers, allow_pickle=True)
    else:
        path.write_bytes(content)
    _fails(s4nn.main, ["--weights", str(path), "--out", str(tmp_path / "r.json")], capsys, expected)
    assert not (tmp_path / "r.json").exists()


def test_s4nn_rejects_missing_file_and_negative_limit(s4nn, capsys, tmp_path):
    out = str(tmp_path / "r.json")
    _fails(s4nn.main, ["--weights", str(tmp_path / "absent.npy"), "--out", out], capsys, "no such file")
    _fails(s4nn.main, ["--weights", str(tmp_path / "absent.npy"), "--limit", "-1", "--out", out], capsys,
           "--limit")


@pytest.mark.slow
def test_s4nn_main_on_real_test_images(s4nn, stidi_data, tmp_path):
    hidden, output = _two_pixel_network(s4nn)
    layers = np.empty(2, dtype=object)
    layers[0], layers[1] = hidden, output
    weights = tmp_path / "weights.npy"
    np.save(weights, layers, allow_pickle=True)
    out = tmp_path / "r.json"
    assert s4nn.main(["--weights", str(weights), "--limit", "20", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["n_test"] == 20 and report["architecture"] == "784-2-10"
    assert 0.0 <= report["accuracy_ties_wrong"] <= report["accuracy_ties_correct"] <= 1.0
    assert "--limit 20" in report["command"]


# --- scripts/ablation_dtdv.py (arguments only; its runs go through the command-line tool) -----------------

@pytest.mark.parametrize("argv, expected", [
    (["--arch", "28x28-8C5-P2-10"], "fully connected"),
    (["--arch", "784-x-10"], "--arch"),
    (["--constant-lr", "[0.1]"], "2 positive numbers"),
    (["--constant-lr", "0.1,0.2"], "JSON list"),
    (["--seeds", "0,0"], "repeats a seed"),
])
def test_ablation_rejects_bad_arguments(ablation, capsys, tmp_path, monkeypatch, argv, expected):
    import subprocess

    monkeypatch.setattr(subprocess, "run", lambda *a, **k: pytest.fail("a run started"))
    _fails(ablation.main, [*argv, "--out", str(tmp_path / "r.json")], capsys, expected)


# --- scripts/ann_reference.py -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ann():
    return _script("ann_reference")


@pytest.mark.parametrize("text", ["6x6-2C3-P2-3-2", "7x7x2-2C3p1-P2-3C2-2", "12-5-3"])
def test_ann_backward_matches_finite_differences(ann, text):
    """Every parameter's gradient of the cross-entropy equals its central difference."""
    from stidi.architecture import parse_architecture

    arch = parse_architecture(text)
    rng = np.random.default_rng(3)
    net = ann.ReluNet(arch, rng)
    for p in net.params:
        if p is not None:
            p[1][:] = rng.normal(0.0, 0.1, size=p[1].shape)   # biases away from 0
    x = rng.random((4, *arch.input_shape))
    y = np.array([0, 1, 1, 0]) % arch.n_outputs

    def loss():
        return ann._softmax_xent_grad(net.forward(x)[0], y)[0]

    logits, cache = net.forward(x)
    grads = net.backward(ann._softmax_xent_grad(logits, y)[1], cache)
    h = 1e-6
    checked = 0
    for l, p in enumerate(net.params):
        if p is None:
            assert grads[l] is None
            continue
        for q in range(2):
            flat, g = p[q].reshape(-1), grads[l][q].reshape(-1)
            for i in range(flat.size):
                old = flat[i]
                flat[i] = old + h
                up = loss()
                flat[i] = old - h
                down = loss()
                flat[i] = old
                assert g[i] == pytest.approx((up - down) / (2 * h), abs=1e-6), (l, q, i)
                checked += 1
    assert checked == sum(a.size for p in net.params if p is not None for a in p)


def _subset_load(monkeypatch):
    """``stidi.datasets.load`` reads the shipped subset instead of the full files."""
    import stidi.datasets

    monkeypatch.setattr(stidi.datasets, "load", lambda name, split, data_dir=None, download=False:
                        stidi.datasets.load_subset(name, split))


def test_ann_runs_on_a_slice_and_selects_on_validation(ann, tmp_path, monkeypatch):
    _subset_load(monkeypatch)
    out = tmp_path / "ann.json"
    report = ann.main(["--arch", "28x28-4C5-P4-10", "--dataset", "mnist", "--epochs", "3",
                       "--val-size", "100", "--train-size", "200", "--out", str(out), "--quiet"])
    assert json.loads(out.read_text()) == json.loads(json.dumps(report))
    curve = [h["val_accuracy"] for h in report["history"]]
    assert report["val_accuracy"] == max(curve) and curve[report["best_epoch"] - 1] == max(curve)
    assert report["n_train"] == 200 and report["n_val"] == 100 and 0.0 <= report["test_accuracy"] <= 1.0
    assert report["history"][-1]["train_loss"] < report["history"][0]["train_loss"]
    assert [p.name for p in tmp_path.iterdir()] == ["ann.json"]
    # without biases (as the spiking layers) the run differs
    nobias = ann.main(["--arch", "28x28-4C5-P4-10", "--dataset", "mnist", "--epochs", "3", "--val-size",
                       "100", "--train-size", "200", "--out", str(out), "--quiet", "--no-bias"])
    assert nobias["config"]["bias"] is False and report["config"]["bias"] is True
    assert [h["train_loss"] for h in nobias["history"]] != [h["train_loss"] for h in report["history"]]


@pytest.mark.parametrize("argv, expected", [
    (["--arch", "32x32-4C5-P2-10"], "inputs"),
    (["--arch", "28x28-4Q5-10"], "error"),
    (["--arch", "28x28-4C5-P2-10", "--val-size", "100", "--train-size", "0"], "--train-size"),
])
def test_ann_rejects_bad_architectures(ann, capsys, tmp_path, monkeypatch, argv, expected):
    _subset_load(monkeypatch)
    with pytest.raises(SystemExit) as exc:
        ann.main([*argv, "--dataset", "mnist", "--out", str(tmp_path / "r.json")])
    assert expected in str(exc.value)
    assert not (tmp_path / "r.json").exists()


# --- scripts/gradient_alignment.py ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def alignment():
    return _script("gradient_alignment")


@pytest.mark.jit
@pytest.mark.parametrize("norm_floor", [0.0, 1.0])
def test_alignment_exact_chain_is_the_numerical_gradient(alignment, norm_floor):
    """With every unit firing, the chain-rule variant of the rule is the gradient of its loss.

    One sample, so the per-layer normalisation of the hidden error only scales each layer's
    direction: the cosine is 1 and the output layer matches in size too, for the loss
    ||t - T|| (no floor) as for its quadratic part (a floor above every error).  The rule as
    configured (gain t/theta) is not the gradient in the hidden layer.
    """
    import stidi
    from stidi.datasets import load_subset

    X, y = load_subset("mnist", "train")
    clf = stidi.SpikingClassifier("784-12-10", epochs=1, init_median=[40.0, 100.0], random_state=1,
                                  n_jobs=1, norm_floor=norm_floor).fit(X[:300], y[:300])
    checked = 0
    for i in range(300, 340):
        probe = alignment.Probe(clf, clf._times(X[i:i + 1]), y[i:i + 1])
        t_all = clf._forward(probe.T_in)[0][0]
        if np.any(t_all[784:] >= clf.t_max) or np.all(probe.t_out == probe.targets):
            continue                    # a silent unit, or nothing to learn: not this test's case
        exact = probe.direction(dtdv="slope", hidden_error="displacement")
        rule = probe.direction()
        for l in clf.arch_.weight_layers:
            lo, hi = int(probe.w_off[l]), int(probe.w_off[l + 1])
            q = np.arange(lo, hi)
            grad = probe.numerical_gradient(q, 1e-6 * float(clf.scales_[l]))
            assert alignment._cos(exact[q], grad) == pytest.approx(1.0, abs=1e-6), (i, l)
            if l == clf.arch_.weight_layers[-1]:
                np.testing.assert_allclose(exact[q], grad, rtol=1e-5, atol=1e-9 * np.abs(grad).max())
            else:
                assert alignment._cos(rule[q], grad) < 1.0 - 1e-6
        checked += 1
        if checked == 3:
            break
    assert checked == 3


@pytest.mark.jit
def test_alignment_script_writes_one_row_per_weight_layer(alignment, tmp_path, monkeypatch):
    _subset_load(monkeypatch)
    out = tmp_path / "a.json"
    res = alignment.main(["--arch", "784-16-10", "--dataset", "mnist", "--train-size", "200",
                          "--val-size", "100", "--n", "20", "--per-layer", "8", "--out", str(out),
                          "--quiet"])
    assert json.loads(out.read_text()) == json.loads(json.dumps(res))
    assert [r["layer"] for r in res["layers"]] == ["16", "10"]
    for row in res["layers"]:
        assert row["sampled"] == 8
        assert set(row["cosine_with_gradient"]) == set(alignment.VARIANTS)
        assert all(-1.0 <= c <= 1.0 for c in row["cosine_with_gradient"].values() if c == c)
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]
    coll = tmp_path / "all.json"
    alignment.file_into(coll, "b", res)
    alignment.file_into(coll, "a", res)
    alignment.file_into(coll, "b", {**res, "seed": 5})
    runs = json.loads(coll.read_text())["runs"]
    assert [r["name"] for r in runs] == ["a", "b"] and runs[1]["seed"] == 5


@pytest.mark.parametrize("argv, expected", [
    (["--into", "x.json"], "--name"),
    (["--n", "0"], "--n"),
    (["--n", "500"], "exceeds"),
    (["--set", "normalise=false"], "normalise"),
    (["--set", "tau1=-5"], "tau1"),
])
def test_alignment_rejects_bad_input(alignment, capsys, tmp_path, monkeypatch, argv, expected):
    _subset_load(monkeypatch)
    _fails(alignment.main, ["--arch", "784-16-10", "--dataset", "mnist", "--train-size", "100",
                            "--val-size", "100", "--n", "20", "--per-layer", "4", "--out", str(tmp_path / "a.json"),
                            *argv], capsys, expected)
    assert not (tmp_path / "a.json").exists()


# --- scripts/binarise_after.py ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def binarise():
    return _script("binarise_after")


@pytest.fixture()
def subset_loader(monkeypatch):
    import stidi.datasets

    def subset(name, split, data_dir=None, download=False):
        return stidi.datasets.load_subset(name, split)

    monkeypatch.setattr(stidi.datasets, "load", subset)


@pytest.mark.jit
def test_binarise_after_scores_a_checkpoint_on_its_own_split(binarise, subset_loader, tmp_path):
    """The real score is the run's own validation score of the kept weights; the binary scores
    use the scales of stidi.init.calibrate_binary; a checkpoint also scores its last weights."""
    import stidi.datasets
    from stidi.model import SpikingClassifier

    X, y = stidi.datasets.load_subset("mnist", "train")
    tr, va = stidi.datasets.train_val_split(y, 300, random_state=5)
    ck = tmp_path / "ck.npz"
    clf = SpikingClassifier("784-16-10", epochs=2, random_state=5, init_samples=50).fit(
        X[tr], y[tr], validation_data=(X[va], y[va]), checkpoint=ck)
    out = tmp_path / "r.json"
    assert binarise.main([str(ck), "--dataset", "mnist", "--val-size", "300", "--seed", "5",
                          "--out", str(out)]) == 0
    rep = json.loads(out.read_text())
    kept, last = rep["weights"]["kept"], rep["weights"]["last"]
    assert kept["real"] == pytest.approx(clf.history_[clf.best_epoch_ - 1]["val_accuracy"])
    assert kept["real"] == pytest.approx(clf.score(X[va], y[va]))
    assert all(0.0 <= r[k] <= 1.0 for r in (kept, last)
               for k in ("binary_all", "binary_only_layer0", "binary_only_layer1"))
    assert kept["alpha"][0] > 0 and kept["alpha"][1] > 0 and rep["n_val"] == 300
    # a saved model holds the kept weights only
    model = tmp_path / "m.npz"
    clf.save(model)
    assert binarise.main([str(model), "--dataset", "mnist", "--val-size", "300", "--seed", "5",
                          "--out", str(out)]) == 0
    again = json.loads(out.read_text())
    assert list(again["weights"]) == ["kept"] and again["weights"]["kept"] == kept


@pytest.mark.parametrize("argv, expected", [
    (["missing.npz"], "no such file"),
    (["{model}", "--val-size", "0"], "--val-size must be positive"),
    (["{binary}"], "already a binary network"),
    (["{model}", "--dataset", "cifar"], "invalid choice"),
])
def test_binarise_after_rejects_bad_input(binarise, subset_loader, tmp_path, capsys, argv, expected):
    import stidi.datasets
    from stidi.model import SpikingClassifier

    X, y = stidi.datasets.load_subset("mnist", "train")
    paths = {}
    for name, binary in (("model", False), ("binary", True)):
        paths[name] = tmp_path / f"{name}.npz"
        if "{" + name + "}" in " ".join(argv):
            SpikingClassifier("784-4-10", epochs=1, binary=binary, random_state=0,
                              init_samples=30).fit(X[:100], y[:100]).save(paths[name])
    argv = [a.format(**paths) for a in argv]
    if "--dataset" not in argv:
        argv += ["--dataset", "mnist"]
    _fails(binarise.main, [*argv, "--seed", "0", "--out", str(tmp_path / "r.json")], capsys, expected)
    assert not (tmp_path / "r.json").exists()


def test_bench_conv_counts_the_work_the_kernel_skips():
    """The sweep-work model of ``benchmarks/bench_conv.py`` on one 3x3 field (one position,
    one filter): breakpoints at 0, 1, 2, 3, 5, 6, 7, 7 and 11 (spikes at 0, 1 and 5,
    tau1 = 2, tau2 = 4).  Once the filter has fired, the position stops at the first
    breakpoint at or after its spike, and a breakpoint at 0 moves nothing forward."""
    spec = importlib.util.spec_from_file_location("bench_conv", REPO / "benchmarks" / "bench_conv.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    from stidi.architecture import parse_architecture

    layer = parse_architecture("3x3-1C3-2").layers[0]
    T = np.full((1, 9), 20.0)
    T[0, :3] = [0.0, 1.0, 5.0]

    def work(t_spike):
        return bench.sweep_work(T, layer, 9, 2.0, 4.0, 20.0, t_out=np.full((1, 1, 1, 1), t_spike))

    silent = work(20.0)
    assert silent["conv_slope_rows"] * 9 == pytest.approx(9) and silent["conv_advances"] * 9 == pytest.approx(8)
    assert silent["conv_slope_rows_live"] * 9 == pytest.approx(9)
    assert silent["conv_advances_live"] * 9 == pytest.approx(7)
    early = work(4.5)                      # found at 5: rows 0, 1, 2, 3, 5
    assert early["conv_slope_rows_live"] * 9 == pytest.approx(5)
    assert early["conv_advances_live"] * 9 == pytest.approx(4)
    tie = work(7.0)                        # found at the first 7; the second 7 is skipped
    assert tie["conv_slope_rows_live"] * 9 == pytest.approx(7)
    assert tie["conv_advances_live"] * 9 == pytest.approx(6)
