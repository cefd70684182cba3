"""``python -m stidi train``: the JSON report and argument errors."""

import json
import subprocess
import sys

import pytest

from stidi.cli import main


def test_train_on_subset_writes_report(tmp_path):
    out = tmp_path / "r.json"
    main(["train", "--dataset", "mnist", "--subset", "--hidden", "50", "--epochs", "2",
          "--val-size", "300", "--train-size", "1000", "--test-size", "400", "--seed", "1",
          "--out", str(out), "--quiet", "--set", "lr_decay=0.8", "--save-model", str(tmp_path / "m.npz")])
    rep = json.loads(out.read_text())
    for key in ("test_accuracy", "val_accuracy", "epochs", "train_seconds", "config", "history", "command"):
        assert key in rep
    assert 0.0 <= rep["test_accuracy"] <= 1.0 and 0.0 <= rep["val_accuracy"] <= 1.0
    assert rep["test_accuracy_no_fallback"] <= rep["test_accuracy"]
    assert rep["epochs"] == 2 and rep["n_train"] == 1000 and rep["n_val"] == 300 and rep["n_test"] == 400
    assert rep["config"]["lr_decay"] == 0.8 and rep["config"]["hidden"] == [50]
    assert rep["architecture"] == "784-50-10"
    assert rep["command"].startswith("python -m stidi train --dataset mnist")
    assert (tmp_path / "m.npz").exists()


def test_module_entry_point_help():
    res = subprocess.run([sys.executable, "-m", "stidi", "train", "--help"], capture_output=True, text=True)
    assert res.returncode == 0 and "--dataset" in res.stdout


@pytest.mark.parametrize("argv, msg", [
    (["train", "--dataset", "cifar10", "--out", "x.json"], "invalid choice"),
    (["train", "--dataset", "mnist", "--epochs", "-1", "--out", "x.json"], "integer >= 0"),
    (["train", "--dataset", "mnist", "--hidden", "0", "--out", "x.json"], "positive integer"),
])
def test_bad_arguments(argv, msg, capsys):
    with pytest.raises(SystemExit):
        main(argv)
    assert msg in capsys.readouterr().err


def test_missing_data_dir_is_a_clear_error(tmp_path):
    with pytest.raises(Exception, match="does_not_exist"):
        main(["train", "--dataset", "mnist", "--data-dir", str(tmp_path / "does_not_exist"),
              "--out", str(tmp_path / "x.json"), "--quiet"])


def test_unknown_parameter_override(tmp_path):
    with pytest.raises(SystemExit, match="unexpected keyword"):
        main(["train", "--dataset", "mnist", "--subset", "--epochs", "1", "--out", str(tmp_path / "x.json"),
              "--quiet", "--set", "no_such_option=3"])
    assert not (tmp_path / "x.json").exists()


def test_train_conv_on_subset_writes_report_and_resumes(tmp_path):
    out, ck = tmp_path / "c.json", tmp_path / "c.npz"
    argv = ["train", "--dataset", "mnist", "--subset", "--model", "conv", "--arch", "28x28-4C5-P4-10",
            "--binary", "--val-size", "100", "--train-size", "300", "--test-size", "200", "--seed", "2",
            "--quiet", "--checkpoint", str(ck), "--set", "init_samples=50"]
    main(argv + ["--epochs", "1", "--out", str(out)])
    first = json.loads(out.read_text())
    assert first["epochs"] == 1 and ck.exists()
    main(argv + ["--epochs", "2", "--resume", "--out", str(out)])
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


@pytest.mark.parametrize("argv, msg", [
    (["--model", "conv", "--hidden", "20"], "--hidden applies to --model fc"),
    (["--model", "fc", "--arch", "28x28-4C5-10"], "--arch and --binary apply to --model conv"),
    (["--model", "conv", "--arch", "28x28-4Q5-10"], "unknown token"),
    (["--model", "conv", "--set", "conv_reduce=\"median\""], "conv_reduce must be one of"),
])
def test_conv_argument_errors(argv, msg, tmp_path):
    with pytest.raises(SystemExit, match=msg):
        main(["train", "--dataset", "mnist", "--subset", "--epochs", "1", "--quiet",
              "--out", str(tmp_path / "x.json"), *argv])
    assert not (tmp_path / "x.json").exists()
