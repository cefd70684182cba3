"""The reproduction table of chapter 8 shows exactly the numbers of the JSON reports.

The table is built by :mod:`stidi.results`.  Every cell that comes from a
report is compared, run by run, with the value read here directly from the
JSON file: first for the committed ``results/*.json`` files (rows whose file
is missing must say "not run"), then for fake reports written to a temporary
folder, so that the comparison is exercised whatever has been committed.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

import stidi.results as rt

REPO = Path(__file__).resolve().parents[1]


def _expected_row(report: dict, published: float) -> dict:
    env = report.get("environment", {})
    return {
        "test (%)": 100 * report["test_accuracy"],
        "± 95 % (points)": (196 * math.sqrt(report["test_accuracy"] * (1 - report["test_accuracy"])
                                            / report["n_test"]) if "n_test" in report else math.nan),
        "test, no fallback (%)": 100 * report["test_accuracy_no_fallback"],
        "validation (%)": 100 * report["val_accuracy"],
        "best epoch": report["best_epoch"],
        "epochs": report["epochs"],
        "difference (points)": 100 * report["test_accuracy"] - published,
        "training (min)": report["train_seconds"] / 60,
        "command": report["command"],
        "architecture": report.get("architecture", ""),
        "_env": env,
    }


def _compare_table(table, results_dir: Path) -> int:
    """Check every row against the file it comes from; return the number of rows with a report."""
    assert list(table.index) == [run.name for run in rt.RUNS]
    n_run = 0
    for run in rt.RUNS:
        row = table.loc[run.name]
        assert row["published (%)"] == run.published.accuracy
        path = results_dir / f"{run.name}.json"
        if not path.is_file():
            assert row["status"] == rt.NOT_RUN
            for col in ("test (%)", "test, no fallback (%)", "validation (%)", "training (min)"):
                assert math.isnan(row[col]), (run.name, col)
            assert row["command"] == rt.NOT_RUN
            continue
        n_run += 1
        report = json.loads(path.read_text())
        expected = _expected_row(report, run.published.accuracy)
        assert row["status"] == "run"
        for col, value in expected.items():
            if col == "_env":
                continue
            if isinstance(value, str):
                assert row[col] == value, (run.name, col)
            elif math.isnan(value):
                assert math.isnan(row[col]), (run.name, col)
            else:
                assert row[col] == pytest.approx(value, rel=1e-12, abs=1e-12), (run.name, col)
        env = expected["_env"]
        for key in ("machine", "python", "numba"):
            if env.get(key):
                assert str(env[key]) in row["hardware"], (run.name, key)
    return n_run


def _compare_drops(drops, results_dir: Path) -> None:
    for real, binary in rt.BINARY_PAIRS:
        dataset = {run.name: run for run in rt.RUNS}[binary].dataset
        row = drops.loc[dataset]
        assert row["published drop (points)"] == rt.PUBLISHED_BINARY_DROP[dataset]
        pr, pb = results_dir / f"{real}.json", results_dir / f"{binary}.json"
        if pr.is_file() and pb.is_file():
            a = json.loads(pr.read_text())["test_accuracy"]
            b = json.loads(pb.read_text())["test_accuracy"]
            assert row["status"] == "run"
            assert row["real weights (%)"] == pytest.approx(100 * a, rel=1e-12)
            assert row["binary weights (%)"] == pytest.approx(100 * b, rel=1e-12)
            assert row["our drop (points)"] == pytest.approx(100 * (a - b), rel=1e-9, abs=1e-9)
            for side, path in (("real", pr), ("binary", pb)):
                report = json.loads(path.read_text())
                for col, key, scale in ((f"{side} weights (kB)", "weight_bytes", 1e-3),
                                        (f"{side}: synaptic ops per image", "synops_per_image", 1.0)):
                    if key in report:
                        assert row[col] == pytest.approx(scale * report[key], rel=1e-12)
                    else:
                        assert math.isnan(row[col])
        else:
            assert row["status"] == rt.NOT_RUN
            assert math.isnan(row["our drop (points)"])


def _compare_curves(curves, results_dir: Path) -> None:
    for run in rt.RUNS:
        path = results_dir / f"{run.name}.json"
        mine = curves[curves.run == run.name]
        if not path.is_file():
            assert mine.empty
            continue
        history = json.loads(path.read_text())["history"]
        val = mine[mine.metric == "val_accuracy"].sort_values("epoch")
        assert list(val.epoch) == [rec["epoch"] for rec in history if "val_accuracy" in rec]
        assert val.value.tolist() == pytest.approx(
            [100 * rec["val_accuracy"] for rec in history if "val_accuracy" in rec])


def test_published_numbers_are_the_abstracts():
    published = {run.name: run.published.accuracy for run in rt.RUNS}
    assert published["conv-mnist"] == 99.2 and published["conv-fashion-mnist"] == 92.8
    assert published["conv-binary-mnist"] == pytest.approx(99.2 - 0.6)
    assert published["conv-binary-fashion-mnist"] == pytest.approx(92.8 - 0.8)
    assert published["fc-mnist"] == 97.4 and published["fc-fashion-mnist"] == 87.3


def test_table_matches_committed_results():
    results_dir = REPO / "results"
    _compare_table(rt.build_table(results_dir), results_dir)
    _compare_drops(rt.binary_drop_table(results_dir), results_dir)
    _compare_curves(rt.learning_curves(results_dir), results_dir)


def _fake_report(name: str, seed: int) -> dict:
    import random

    rnd = random.Random(seed)
    epochs = rnd.randint(2, 6)
    history = [{"epoch": e + 1, "val_accuracy": rnd.random(), "train_accuracy_running": rnd.random(),
                "train_hidden_silent_fraction": [rnd.random(), rnd.random()], "seconds": rnd.random()}
               for e in range(epochs)]
    return {
        "dataset": name, "model": "conv" if "conv" in name else "fc", "architecture": "arch-" + name.replace("binary-", "").replace("-real", ""),
        "test_accuracy": rnd.random(), "test_accuracy_no_fallback": rnd.random(),
        "val_accuracy": rnd.random(), "best_epoch": rnd.randint(1, epochs), "epochs": epochs,
        "train_seconds": 1000 * rnd.random(), **({"n_test": rnd.randint(100, 10000)} if seed % 2 else {}), "command": f"python -m stidi train --fake {seed}",
        "history": history,
        **({"weight_bytes": rnd.randint(1000, 10 ** 6), "synops_per_image": 1e5 * rnd.random()}
           if "conv" in name and seed % 3 else {}),
        "environment": {"python": "3.0.0", "numpy": "1.0", "numba": "0.1", "machine": f"m{seed}",
                        "cpu_count": 7},
    }


@pytest.mark.parametrize("present", [
    (),
    ("fc-mnist",),
    ("conv-mnist", "conv-binary-mnist", "fc-fashion-mnist"),
    ("conv-binary-mnist-real", "conv-binary-mnist", "conv-fashion-mnist"),
    tuple(run.name for run in rt.RUNS) + tuple(real for real, _ in rt.BINARY_PAIRS),
])
def test_table_matches_fake_results(tmp_path, present):
    for seed, name in enumerate(present):
        (tmp_path / f"{name}.json").write_text(json.dumps(_fake_report(name, seed)))
    table = rt.build_table(tmp_path)
    in_table = [name for name in present if name in {run.name for run in rt.RUNS}]
    assert _compare_table(table, tmp_path) == len(in_table)
    assert (table.status == "run").sum() == len(in_table)
    _compare_drops(rt.binary_drop_table(tmp_path), tmp_path)
    _compare_curves(rt.learning_curves(tmp_path), tmp_path)


def test_a_changed_report_changes_the_table(tmp_path):
    (tmp_path / "conv-mnist.json").write_text(json.dumps(_fake_report("conv-mnist", 3)))
    before = rt.build_table(tmp_path).loc["conv-mnist", "test (%)"]
    report = _fake_report("conv-mnist", 3)
    report["test_accuracy"] = 0.5
    (tmp_path / "conv-mnist.json").write_text(json.dumps(report))
    after = rt.build_table(tmp_path).loc["conv-mnist", "test (%)"]
    assert after == 50.0 and before != after


def test_broken_report_is_an_error_not_a_missing_run(tmp_path):
    (tmp_path / "fc-mnist.json").write_text(json.dumps({"test_accuracy": 0.9}))
    with pytest.raises(ValueError, match="missing"):
        rt.build_table(tmp_path)


# ------------------------------------------------------------ locating the reports


def test_results_dir_order(tmp_path, monkeypatch):
    monkeypatch.delenv(rt.ENV_VAR, raising=False)
    # a checkout: results/ next to the package source wins over the installed copy
    assert rt.results_dir() == rt.CHECKOUT_RESULTS == REPO / "results"
    assert rt.load_report("fc-mnist") == json.loads((REPO / "results" / "fc-mnist.json").read_text())
    assert rt.load_report("fc-mnist.json") == rt.load_report("fc-mnist")
    # the environment variable wins over both
    (tmp_path / "fc-mnist.json").write_text(json.dumps(_fake_report("fc-mnist", 5)))
    monkeypatch.setenv(rt.ENV_VAR, str(tmp_path))
    assert rt.results_dir() == tmp_path
    assert rt.load_report("fc-mnist")["command"].endswith("--fake 5")
    assert rt.load_report("conv-mnist") is None
    with pytest.raises(FileNotFoundError, match="conv-mnist.json"):
        rt.load_report("conv-mnist", required=True)
    assert rt.available_reports() == ["fc-mnist"]
    assert rt.build_table().loc["fc-mnist", "command"].endswith("--fake 5")
    monkeypatch.setenv(rt.ENV_VAR, str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match="STIDI_RESULTS"):
        rt.results_dir()


def test_best_within_reads_only_the_first_epochs():
    run = {"history": [{"val_accuracy": a} for a in (0.91, 0.95, 0.93, 0.97)]}
    assert rt.best_within(run, 1) == 0.91
    assert rt.best_within(run, 3) == 0.95      # the fourth epoch's 0.97 is past the budget
    assert rt.best_within(run, 10) == 0.97     # a longer budget reads every epoch there is
    with pytest.raises(ValueError, match="no epochs"):
        rt.best_within(run, 0)


def test_packaged_copy_is_used_without_a_checkout(tmp_path, monkeypatch):
    monkeypatch.delenv(rt.ENV_VAR, raising=False)
    packaged = tmp_path / "_results"
    packaged.mkdir()
    (packaged / "bench-jit.json").write_text("{}")
    monkeypatch.setattr(rt, "CHECKOUT_RESULTS", tmp_path / "no-checkout")
    monkeypatch.setattr(rt, "PACKAGED_RESULTS", packaged)
    assert rt.results_dir() == packaged
    monkeypatch.setattr(rt, "PACKAGED_RESULTS", tmp_path / "not-installed")
    with pytest.raises(FileNotFoundError, match="no result reports"):
        rt.results_dir()


@pytest.mark.parametrize("bad", ["", "../fc-mnist", "a/b.json", ".hidden"])
def test_report_names_are_plain_file_names(bad):
    with pytest.raises(ValueError, match="report name"):
        rt.load_report(bad)


def test_invalid_json_is_one_clear_error(tmp_path):
    (tmp_path / "x.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        rt.load_report("x", tmp_path)


# ------------------------------------------------------------ seed repeats


class _Toy:
    """A classifier stand-in: its score is a function of its seed, its fit is recorded."""

    def __init__(self, offset=0.0, random_state=None):
        self.offset, self.random_state, self.fitted_on = offset, random_state, None

    def set_params(self, **params):
        for k, v in params.items():
            setattr(self, k, v)
        return self

    def fit(self, X, y, validation_data=None):
        self.fitted_on = (len(X), validation_data is not None)
        self.history_ = [{"epoch": 1, "val_accuracy": 0.1}, {"epoch": 2, "val_accuracy": 0.3 + self.offset}]
        self.best_epoch_ = 2
        return self

    def score(self, X, y):
        return self.offset + self.random_state / 100


def test_over_seeds_with_a_classifier():
    toy = _Toy(offset=0.5)
    df = rt.over_seeds(toy, ([0] * 4, [0] * 4), validation=([0], [0]), test=([0], [0]), seeds=[3, 1],
                       width=100)
    assert list(df.seed) == [3, 1] and list(df.width) == [100, 100]
    assert df.test_accuracy.tolist() == pytest.approx([0.53, 0.51])
    assert df.val_accuracy.tolist() == pytest.approx([0.8, 0.8]) and list(df.best_epoch) == [2, 2]
    assert (df.fit_seconds >= 0).all()
    assert toy.random_state is None and toy.fitted_on is None, "the template must stay untouched"


def test_over_seeds_with_a_function_and_bad_input():
    df = rt.over_seeds(lambda s: {"x": s * 2}, seeds=range(3), rule="chord")
    assert df.to_dict("list") == {"rule": ["chord"] * 3, "seed": [0, 1, 2], "x": [0, 2, 4]}
    with pytest.raises(ValueError, match="repeated seeds"):
        rt.over_seeds(lambda s: {}, seeds=[1, 1])
    with pytest.raises(ValueError, match="at least one seed"):
        rt.over_seeds(lambda s: {}, seeds=[])
    with pytest.raises(TypeError, match="dict"):
        rt.over_seeds(lambda s: 3, seeds=[0])
    with pytest.raises(ValueError, match="train"):
        rt.over_seeds(_Toy())


def test_over_seeds_trains_a_real_network():
    from stidi import SpikingClassifier
    from stidi.datasets import load_subset

    X, y = load_subset("mnist", "train")
    clf = SpikingClassifier(hidden=(10,), epochs=1, init_samples=20, verbose=False, n_jobs=1)
    df = rt.over_seeds(clf, (X[:60], y[:60]), validation=(X[60:90], y[60:90]), test=(X[90:120], y[90:120]),
                       seeds=[0, 1])
    assert set(df.columns) >= {"seed", "fit_seconds", "val_accuracy", "best_epoch", "test_accuracy"}
    assert df.test_accuracy.between(0, 1).all() and len(df) == 2


# ------------------------------------------------------------ prose tied to the committed numbers


def test_introduction_claims_match_the_committed_results():
    """The introduction: the convolutional networks fall short of the papers by under a point
    on MNIST with real weights and with binary ones, and by several on Fashion-MNIST."""
    intro = " ".join((REPO / "book" / "intro.md").read_text(encoding="utf-8").split())
    assert ("for the convolutional networks, by under a point on MNIST with real weights and with "
            "binary ones, and by several on Fashion-MNIST") in intro
    table = rt.build_table(REPO / "results")
    conv = table[table.index.str.startswith("conv-") & (table.status == "run")]
    assert len(conv), "no convolutional report: the introduction's claim has nothing to stand on"
    shown = conv[["test (%)", "published (%)", "difference (points)"]].to_string()
    diff = conv["difference (points)"]
    binary = conv.index.str.contains("binary")
    real_mnist = diff[(conv.dataset == "MNIST") & ~binary]
    binary_mnist = diff[(conv.dataset == "MNIST") & binary]
    fashion = diff[conv.dataset == "Fashion-MNIST"]
    assert len(real_mnist) and real_mnist.between(-1.0, 0.0, inclusive="left").all(), (
        "the real-weight MNIST conv run is not under a point short: update the introduction\n" + shown)
    assert len(binary_mnist) and binary_mnist.between(-1.0, 0.0, inclusive="left").all(), (
        "the binary MNIST conv run is not under a point short: update the introduction\n" + shown)
    assert len(fashion) and (fashion <= -3.0).all(), (
        "a Fashion-MNIST conv run is within 3 points: update the introduction\n" + shown)


def test_ablation_report_matches_the_chapter_claims():
    """Chapter 9: on full MNIST the chord gain beats the rescaled constant gain on every seed."""
    rep = rt.load_report("ablation-dtdv", REPO / "results", required=True)
    assert rep["dataset"] == "mnist" and not rep.get("extra_settings")
    repeats = rep["repeats"]
    assert set(repeats) == {"linear", "constant", "slope"}
    seeds = [r["seed"] for r in repeats["linear"]]
    assert len(seeds) >= 3 and seeds == [r["seed"] for r in repeats["constant"]]
    for lin, const in zip(repeats["linear"], repeats["constant"]):
        assert lin["test_accuracy"] > const["test_accuracy"], (lin, const)
    for mode, run in rep["runs"].items():      # the full report of the first seed
        assert run["config"]["dtdv"] == mode and f"--seed {seeds[0]}" in run["command"]


# ------------------------------------------------------------ runs repeated over seeds


def _seed_report(seed: int, test: float, val: float, epochs: int = 3) -> dict:
    report = _fake_report("fc-mnist", seed)
    report.update(test_accuracy=test, val_accuracy=val,
                  command=f"python -m stidi train --dataset mnist --epochs {epochs} --seed {seed} "
                          f"--out runs/x_seed{seed}.json")
    return report


def test_seed_repeats_enter_the_table(tmp_path):
    (tmp_path / "fc-mnist.json").write_text(json.dumps(_seed_report(0, 0.97, 0.96)))
    table = rt.build_table(tmp_path)
    assert math.isnan(table.loc["fc-mnist", "seeds"]) and rt.seed_repeats("fc-mnist", tmp_path) is None
    folder = tmp_path / rt.SEEDS_FOLDER / "fc-mnist"
    folder.mkdir(parents=True)
    tests, vals = [0.97, 0.98, 0.9830], [0.96, 0.975, 0.97]
    for seed, (t, v) in enumerate(zip(tests, vals)):
        (folder / f"x_seed{seed}_abcdef12.json").write_text(json.dumps(_seed_report(seed, t, v)))
    (folder / "summary.json").write_text(json.dumps({"spec": "x.toml"}))  # not a report: ignored
    reps = rt.seed_repeats("fc-mnist", tmp_path)
    assert list(reps.seed) == [0, 1, 2]
    row = rt.build_table(tmp_path).loc["fc-mnist"]
    assert row["seeds"] == 3
    assert row["test mean (%)"] == pytest.approx(100 * sum(tests) / 3)
    assert row["test sd (points)"] == pytest.approx(100 * float(np.std(tests, ddof=1)))
    assert row["validation mean (%)"] == pytest.approx(100 * sum(vals) / 3)
    assert row["test (%)"] == pytest.approx(97.0)          # the row itself stays the first seed's report
    # a report of another configuration in the folder is an error, not a silent mix
    (folder / "y_seed3_00000000.json").write_text(json.dumps(_seed_report(3, 0.5, 0.5, epochs=9)))
    with pytest.raises(ValueError, match="different configurations"):
        rt.build_table(tmp_path)


def test_binary_drop_over_the_seeds_both_runs_share(tmp_path):
    for name, tests in (("conv-binary-mnist-real", {0: 0.97, 1: 0.975, 2: 0.972}),
                        ("conv-binary-mnist", {0: 0.94, 1: 0.935, 3: 0.9})):
        (tmp_path / f"{name}.json").write_text(json.dumps(_seed_report(0, tests[0], 0.5)))
        folder = tmp_path / rt.SEEDS_FOLDER / name
        folder.mkdir(parents=True)
        for seed, t in tests.items():
            (folder / f"{name}_seed{seed}_abcdef12.json").write_text(json.dumps(_seed_report(seed, t, 0.5)))
    row = rt.binary_drop_table(tmp_path).loc["MNIST"]
    drops = [100 * (0.97 - 0.94), 100 * (0.975 - 0.935)]      # seeds 0 and 1 only: 2 and 3 are unpaired
    assert row["seeds"] == 2
    assert row["drop over seeds (points)"] == pytest.approx(np.mean(drops))
    assert row["drop sd (points)"] == pytest.approx(np.std(drops, ddof=1))
    assert math.isnan(rt.binary_drop_table(tmp_path).loc["Fashion-MNIST", "seeds"])


def test_paired_drops_of_either_metric_over_the_shared_seeds(tmp_path):
    runs = {"real": {0: (0.97, 0.96), 1: (0.975, 0.98), 2: (0.972, 0.95)},
            "binary": {0: (0.94, 0.92), 1: (0.935, 0.97), 3: (0.9, 0.9)}}
    for name, seeds in runs.items():
        folder = tmp_path / rt.SEEDS_FOLDER / name
        folder.mkdir(parents=True)
        for seed, (test, val) in seeds.items():
            (folder / f"{name}_seed{seed}_abcdef12.json").write_text(json.dumps(_seed_report(seed, test, val)))
    test = rt.paired_drops("real", "binary", tmp_path)
    val = rt.paired_drops("real", "binary", tmp_path, metric="val_accuracy")
    assert list(test.index) == list(val.index) == [0, 1]          # seeds 2 and 3 are unpaired
    assert list(test) == pytest.approx([100 * (0.97 - 0.94), 100 * (0.975 - 0.935)])
    assert list(val) == pytest.approx([100 * (0.96 - 0.92), 100 * (0.98 - 0.97)])
    assert rt.paired_drops("real", "none", tmp_path).empty


def test_binary_drop_compares_one_architecture_with_itself(tmp_path):
    """The drop is taken against the binary network's real-weight twin, never against
    the (possibly wider) network of the real-weight row."""
    real = _fake_report("conv-binary-mnist-real", 1)
    binary = _fake_report("conv-binary-mnist", 2)
    wider = {**_fake_report("conv-mnist", 3), "architecture": "arch-wider"}
    for name, report in (("conv-binary-mnist-real", real), ("conv-binary-mnist", binary),
                         ("conv-mnist", wider)):
        (tmp_path / f"{name}.json").write_text(json.dumps(report))
    row = rt.binary_drop_table(tmp_path).loc["MNIST"]
    assert row["real weights (%)"] == pytest.approx(100 * real["test_accuracy"])
    assert row["our drop (points)"] == pytest.approx(100 * (real["test_accuracy"] - binary["test_accuracy"]))
    (tmp_path / "conv-binary-mnist-real.json").write_text(json.dumps({**real, "architecture": "arch-other"}))
    with pytest.raises(ValueError, match="compares one network with itself"):
        rt.binary_drop_table(tmp_path)
