"""``python -m stidi``: train and evaluate, the JSON report, and one-line errors for bad input."""

import json
import subprocess
import sys

import numpy as np
import pytest

from stidi.cli import build_parser, main


def run(argv, capsys):
    """Exit code and stderr of ``main(argv)`` (argparse errors included)."""
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code
    return code, capsys.readouterr().err

@pytest.mark.jit

def test_train_on_subset_writes_report_and_evaluate_reads_the_model(tmp_path, capsys):
    out, model = tmp_path / "r.json", tmp_path / "m.npz"
    assert main(["train", "--dataset", "mnist", "--subset", "--arch", "784-50-10", "--epochs", "2",
                 "--val-size", "300", "--train-size", "1000", "--test-size", "400", "--seed", "1",
                 "--out", str(out), "--quiet", "--set", "lr_decay=0.8", "--save-model", str(model)]) == 0
    rep = json.loads(out.read_text())
    for key in ("test_accuracy", "val_accuracy", "epochs", "train_seconds", "config", "history", "command"):
        assert key in rep
    assert 0.0 <= rep["test_accuracy"] <= 1.0 and 0.0 <= rep["val_accuracy"] <= 1.0
    assert rep["test_accuracy_no_fallback"] <= rep["test_accuracy"]
    assert rep["epochs"] == 2 and rep["n_train"] == 1000 and rep["n_val"] == 300 and rep["n_test"] == 400
    assert rep["config"]["lr_decay"] == 0.8 and rep["config"]["arch"] == "784-50-10"
    assert rep["architecture"] == "784-50-10" and rep["model"] == "fc"
    assert rep["command"].startswith("python -m stidi train --dataset mnist")
    capsys.readouterr()
    ev = tmp_path / "e.json"
    assert main(["evaluate", str(model), "--dataset", "mnist", "--subset", "--test-size", "400",
                 "--out", str(ev)]) == 0
    assert "test accuracy" in capsys.readouterr().out
    assert json.loads(ev.read_text())["test_accuracy"] == rep["test_accuracy"]

@pytest.mark.jit

def test_deprecated_hidden_builds_the_arch(tmp_path, capsys):
    out = tmp_path / "r.json"
    assert main(["train", "--dataset", "mnist", "--subset", "--hidden", "20", "--epochs", "1",
                 "--train-size", "200", "--val-size", "100", "--test-size", "100", "--quiet",
                 "--out", str(out)]) == 0
    rep = json.loads(out.read_text())
    assert rep["architecture"] == "784-20-10" and rep["config"]["hidden"] == [20]
    assert rep["history"][0]["lr"] == [1e-3, 2.5e-6]  # the former absolute SGD rates, as old commands had
    err = capsys.readouterr().err
    assert "deprecated" in err and len(err.strip().splitlines()) == 1


def test_tiny_train_evaluate_and_resume(tmp_path, capsys):
    # small enough to run without JIT too (the coverage run of .ci/run)
    out, model, ck = tmp_path / "r.json", tmp_path / "m.npz", tmp_path / "ck.npz"
    argv = ["train", "--dataset", "mnist", "--subset", "--arch", "784-4-10", "--train-size", "100",
            "--val-size", "20", "--test-size", "20", "--set", "init_samples=10", "--quiet",
            "--checkpoint", str(ck), "--out", str(out)]
    assert main(argv + ["--epochs", "1"]) == 0
    assert main(argv + ["--epochs", "2", "--resume", "--save-model", str(model)]) == 0
    rep = json.loads(out.read_text())
    assert rep["epochs"] == 2 and rep["n_train"] == 100 and rep["architecture"] == "784-4-10"
    capsys.readouterr()
    assert main(["evaluate", str(model), "--dataset", "mnist", "--subset", "--test-size", "20"]) == 0
    assert f"{rep['test_accuracy']:.4f}" in capsys.readouterr().out
    code, err = run(["train", "--dataset", "mnist", "--subset", "--arch", "784-4-10", "--epochs", "2",
                     "--set", "gamma=5.0", "--set", "init_samples=10", "--train-size", "100",
                     "--val-size", "20", "--checkpoint", str(ck), "--resume", "--quiet",
                     "--out", str(out)], capsys)
    assert code == 2 and "different settings: ['gamma']" in err


def test_module_entry_point_help():
    res = subprocess.run([sys.executable, "-m", "stidi", "train", "--help"], capture_output=True, text=True)
    assert res.returncode == 0 and "--dataset" in res.stdout and "--arch" in res.stdout


def test_subcommands():
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    assert {"train", "evaluate"} <= set(sub.choices)


# every bad input: exit code 2 and exactly one line on stderr, written before any data is read
BAD = [
    (["--dataset", "cifar10"], "invalid choice"),
    (["--dataset", "mnist", "--epochs", "-1"], "integer >= 0"),
    (["--dataset", "mnist", "--hidden", "0"], "positive integer"),
    (["--dataset", "mnist", "--arch", "32x32-16C5-P2-10"], "mnist images are 28x28"),
    (["--dataset", "mnist", "--arch", "784-400-5"], "has 10 classes"),
    (["--dataset", "mnist", "--arch", "28x28-4Q5-10"], "token 2 '4Q5': unknown token"),
    (["--dataset", "mnist", "--set", "tau1=-5"], "tau1 must be a finite number > 0"),
    (["--dataset", "mnist", "--set", "conv_reduce=\"median\""], "conv_reduce must be one of"),
    (["--dataset", "mnist", "--set", "no_such_option=3"], "unknown parameter 'no_such_option'"),
    (["--dataset", "mnist", "--set", "epochs"], "NAME=VALUE"),
    (["--dataset", "mnist", "--resume"], "--resume needs --checkpoint"),
    (["--dataset", "mnist", "--hidden", "20", "--arch", "784-20-10"], "either with --arch"),
]


@pytest.mark.parametrize("argv, msg", BAD)
def test_bad_arguments_give_one_line(argv, msg, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("stidi.datasets.load", lambda *a, **k: pytest.fail("data loaded"))
    monkeypatch.setattr("stidi.datasets.load_subset", lambda *a, **k: pytest.fail("data loaded"))
    code, err = run(["train", *argv, "--out", str(tmp_path / "x.json"), "--quiet"], capsys)
    assert code == 2
    assert msg in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "x.json").exists()


def test_missing_data_dir_is_one_line(tmp_path, capsys):
    code, err = run(["train", "--dataset", "mnist", "--data-dir", str(tmp_path / "does_not_exist"),
                     "--out", str(tmp_path / "x.json"), "--quiet"], capsys)
    assert code == 2 and "does_not_exist: no such folder" in err and len(err.strip().splitlines()) == 1


def test_corrupt_checkpoint_with_resume_is_one_line(tmp_path, capsys):
    ck = tmp_path / "ck.npz"
    ck.write_bytes(b"PK\x03\x04 truncated")
    code, err = run(["train", "--dataset", "mnist", "--subset", "--checkpoint", str(ck), "--resume",
                     "--out", str(tmp_path / "x.json"), "--quiet"], capsys)
    assert code == 2 and "not a readable model file" in err and len(err.strip().splitlines()) == 1
    np.savez(ck, W=np.zeros(3))
    code, err = run(["train", "--dataset", "mnist", "--subset", "--checkpoint", str(ck), "--resume",
                     "--out", str(tmp_path / "x.json"), "--quiet"], capsys)
    assert code == 2 and "not a stidi model file" in err


def test_evaluate_errors_are_one_line(tmp_path, capsys):
    code, err = run(["evaluate", str(tmp_path / "none.npz"), "--dataset", "mnist", "--subset"], capsys)
    assert code == 2 and "no such file" in err and len(err.strip().splitlines()) == 1

@pytest.mark.jit

def test_train_conv_on_subset_writes_report_and_resumes(tmp_path):
    out, ck = tmp_path / "c.json", tmp_path / "c.npz"
    argv = ["train", "--dataset", "mnist", "--subset", "--arch", "28x28-4C5-P4-10",
            "--binary", "--val-size", "100", "--train-size", "300", "--test-size", "200", "--seed", "2",
            "--quiet", "--checkpoint", str(ck), "--set", "init_samples=50"]
    assert main(argv + ["--epochs", "1", "--out", str(out)]) == 0
    first = json.loads(out.read_text())
    assert first["epochs"] == 1 and ck.exists()
    assert main(argv + ["--epochs", "2", "--resume", "--out", str(out)]) == 0
    rep = json.loads(out.read_text())
    for key in ("test_accuracy", "test_accuracy_no_fallback", "val_accuracy", "best_epoch", "epochs",
                "train_seconds", "config", "history", "command", "environment"):
        assert key in rep, key
    assert rep["model"] == "conv" and rep["architecture"] == "28x28-4C5-P4-10"
    assert rep["epochs"] == 2 and rep["history"][0] == first["history"][0]
    assert rep["config"]["binary"] is True and rep["config"]["init_samples"] == 50
    assert rep["binary"] is True and rep["bits_per_synapse"] == 1
    n_syn = 4 * 25 + 10 * 4 * 6 * 6
    assert rep["weight_bytes"] == pytest.approx(n_syn / 8 + 2 * 8)
    assert rep["synops_per_image"] > 0 and rep["cost"]["op_kind"] == "add"
    assert 0.0 <= rep["test_accuracy_no_fallback"] <= rep["test_accuracy"] <= 1.0


def test_recorded_command_names_paths_inside_the_working_folder_relatively(tmp_path, monkeypatch):
    from stidi.cli import _portable

    monkeypatch.chdir(tmp_path)
    inside, outside = tmp_path / "runs" / "r.json", "/elsewhere/ck.npz"
    argv = ["train", "--dataset", "mnist", "--out", str(inside), "--checkpoint", outside,
            f"--save-model={tmp_path / 'm.npz'}", "--set", f"note={inside}"]
    assert _portable(argv) == ["train", "--dataset", "mnist", "--out", "runs/r.json", "--checkpoint",
                               outside, "--save-model=m.npz", "--set", f"note={inside}"]
    assert _portable(["train", "--out", "rel/x.json"]) == ["train", "--out", "rel/x.json"]


# ---------------------------------------------------------------- check: re-run a report's first epochs
def _tiny_report(tmp_path, *extra):
    out = tmp_path / "r.json"
    assert main(["train", "--dataset", "mnist", "--subset", "--arch", "784-4-10", "--train-size", "100",
                 "--val-size", "20", "--test-size", "20", "--set", "init_samples=10", "--epochs", "2",
                 "--quiet", "--checkpoint", str(tmp_path / "ck.npz"), "--out", str(out), *extra]) == 0
    return out


def test_check_reproduces_a_report_and_catches_a_changed_number(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = _tiny_report(tmp_path, "--set", "lr_decay=0.8")
    capsys.readouterr()
    assert main(["check", str(out), "--epochs", "2"]) == 0
    said = capsys.readouterr().out
    assert "reproduced, 2 epoch(s)" in said and "val_accuracy" in said
    assert not list(tmp_path.glob("check*")), "the re-run must not write beside the report"
    rep = json.loads(out.read_text())
    # the settings come from the report's config: a command that relied on a default
    # (here lr_decay, as if its default had changed since) still re-runs the same training
    rep["command"] = rep["command"].replace("--set lr_decay=0.8", "")
    assert "lr_decay" not in rep["command"] and rep["config"]["lr_decay"] == 0.8
    out.write_text(json.dumps(rep))
    assert main(["check", str(out), "--epochs", "2"]) == 0
    rep["history"][1]["train_accuracy_running"] += 0.01
    out.write_text(json.dumps(rep))
    assert main(["check", str(out)]) == 0        # epoch 1 alone still matches
    capsys.readouterr()
    assert main(["check", str(out), "--epochs", "2"]) == 1
    said = capsys.readouterr().out
    assert "differs" in said and "epoch 2: train_accuracy_running" in said


def test_check_bad_inputs_are_one_line(tmp_path, capsys):
    report = tmp_path / "r.json"
    cases = [(None, "no such report"), ("{not json", "not a JSON report"),
             (json.dumps({"configurations": []}), "not a training report"),
             (json.dumps({"command": "python scripts/ann_reference.py --epochs 2", "history": [{}]}),
              "is not 'python -m stidi train"),
             (json.dumps({"command": "python -m stidi train --dataset mnist --subset --out x.json",
                          "history": [{"epoch": 1}], "epochs": 1}), "fewer than --epochs 2"),
             (json.dumps({"command": "python -m stidi train --dataset mnist --subset --out x.json",
                          "history": [{"epoch": 1}, {"epoch": 2}, {"epoch": 3}], "epochs": 3,
                          "config": {"lr_schedule": "cosine"}}), "check it with --epochs 3")]
    for text, msg in cases:
        if text is not None:
            report.write_text(text)
        code, err = run(["check", str(report), "--epochs", "2"], capsys)
        assert code == 2 and msg in err and len(err.strip().splitlines()) == 1, (msg, err)
