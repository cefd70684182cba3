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
