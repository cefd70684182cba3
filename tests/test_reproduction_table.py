"""The reproduction table of chapter 8 shows exactly the numbers of the JSON reports.

The table is built by ``book/results_table.py``.  Every cell that comes from a
report is compared, run by run, with the value read here directly from the
JSON file: first for the committed ``results/*.json`` files (rows whose file
is missing must say "not run"), then for fake reports written to a temporary
folder, so that the comparison is exercised whatever has been committed.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "book"))

import results_table as rt  # noqa: E402


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
        dataset = {run.name: run for run in rt.RUNS}[real].dataset
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
        "dataset": name, "model": "conv" if "conv" in name else "fc", "architecture": f"arch-{seed}",
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
    tuple(run.name for run in rt.RUNS),
])
def test_table_matches_fake_results(tmp_path, present):
    for seed, name in enumerate(present):
        (tmp_path / f"{name}.json").write_text(json.dumps(_fake_report(name, seed)))
    table = rt.build_table(tmp_path)
    assert _compare_table(table, tmp_path) == len(present)
    assert (table.status == "run").sum() == len(present)
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
