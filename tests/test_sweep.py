"""``python -m stidi sweep``: specs, run names, skipping, resuming, failures, summaries, Dask."""

import hashlib
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from stidi import sweep
from stidi.sweep import SpecError, expand, load_reports, load_spec, options_argv, summarize

# A 784-16-10 network, one epoch, a few hundred images of the shipped MNIST subset.
TINY_BASE = """\
[base]
dataset = "mnist"
subset = true
hidden = 16
epochs = 1
val_size = 60
train_size = 120
test_size = 100
"""
TIMING_KEYS = ("seconds",)


@pytest.fixture(autouse=True)
def _no_scheduler(monkeypatch):
    """Tests choose their executor explicitly."""
    monkeypatch.delenv(sweep.SCHEDULER_ENV, raising=False)


def write(tmp_path, text, name="spec.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def strip_timings(obj):
    """A report without what legitimately differs between two identical runs."""
    if isinstance(obj, dict):
        return {k: strip_timings(v) for k, v in obj.items()
                if k not in ("environment", "command") and not any(t in k for t in TIMING_KEYS)}
    if isinstance(obj, list):
        return [strip_timings(v) for v in obj]
    return obj


def train_direct(argv, out, *extra):
    """Run ``python -m stidi train`` the way a user would, single-threaded."""
    env = dict(__import__("os").environ, **sweep.THREAD_ENV)
    cmd = [sys.executable, "-m", "stidi", "train", *argv, "--out", str(out), "--quiet", *extra]
    subprocess.run(cmd, check=True, env=env, capture_output=True)
    return json.loads(Path(out).read_text())


# ----------------------------------------------------------------------------- specs and names
def test_options_map_generically_to_train_flags():
    argv = options_argv({"val_size": 100, "subset": True, "binary": False, "data_dir": None,
                         "hidden": [400, 200], "arch": "784-16-10", "dataset": "mnist",
                         "set": {"optimizer": "adam", "init_range": [-0.5, 1.0], "lr_decay": 0.8}})
    assert argv == ["--arch", "784-16-10", "--dataset", "mnist", "--hidden", "400", "--hidden", "200",
                    "--subset", "--val-size", "100",
                    "--set", "init_range=[-0.5,1.0]", "--set", "lr_decay=0.8", "--set", 'optimizer="adam"']


def test_grid_and_runs_expand_to_named_runs(tmp_path):
    spec = load_spec(write(tmp_path, "seeds = [0, 1]\n" + TINY_BASE + """\
[base.set]
lr_decay = 0.8
[grid]
hidden = [16, [24, 8]]
set.gamma = [3.0, 10.0]
[[runs]]
name = "slow decay"
set = { lr_decay = 0.95 }
"""))
    runs = expand(spec)
    assert len(runs) == (2 * 2 + 1) * 2
    # seed-major order: every configuration for seed 0 first
    assert [r.seed for r in runs] == [0] * 5 + [1] * 5
    assert [r.label for r in runs[:5]] == ["hidden-16_gamma-3.0", "hidden-16_gamma-10.0",
                                          "hidden-24x8_gamma-3.0", "hidden-24x8_gamma-10.0",
                                          "slow-decay"]
    for run in runs:
        assert run.name == f"{run.label}_seed{run.seed}_{run.config_id}"
    # the seeds of one configuration share its id; configurations differ
    assert [r.config_id for r in runs[:5]] == [r.config_id for r in runs[5:]]
    assert len({r.config_id for r in runs}) == 5
    wide = runs[2].argv
    assert wide[wide.index("--hidden") + 1: wide.index("--hidden") + 4] == ("24", "--hidden", "8")
    assert wide[wide.index("gamma=3.0") - 1] == "--set"
    assert "lr_decay=0.95" in runs[4].argv and "lr_decay=0.8" not in runs[4].argv
    assert runs[0].argv[-2:] == ("--seed", "0") and "--subset" in runs[0].argv


def test_run_names_are_stable_and_independent_of_key_order(tmp_path):
    a = expand(load_spec(write(tmp_path, TINY_BASE + "[grid]\nset.gamma = [3.0]\n", "a.toml")))
    reordered = "\n".join(["[base]"] + sorted(TINY_BASE.splitlines()[1:], reverse=True))
    b = expand(load_spec(write(tmp_path, reordered + "\n[grid]\nset.gamma = [3.0]\n", "b.toml")))
    assert [r.name for r in a] == [r.name for r in b]
    # the name is a function of the configuration only: pinned so renaming is noticed
    assert a[0].name == "gamma-3.0_seed0_" + a[0].config_id
    assert a[0].config_id == sweep._config_id(list(a[0].argv))
    # ... the first 8 hex digits of the SHA-1 of the canonical (flag, value) pairs, seed excluded
    pairs = [["--dataset", "mnist"], ["--epochs", "1"], ["--hidden", "16"], ["--subset", None],
             ["--test-size", "100"], ["--train-size", "120"], ["--val-size", "60"], ["--set", "gamma=3.0"]]
    blob = json.dumps(pairs, separators=(",", ":")).encode()
    assert a[0].config_id == hashlib.sha1(blob).hexdigest()[:8]


def test_yaml_and_toml_specs_agree(tmp_path):
    pytest.importorskip("yaml")
    toml = write(tmp_path, "seeds = [3, 4]\n" + TINY_BASE + "[grid]\nset.gamma = [3.0, 10.0]\n")
    yaml = write(tmp_path, """\
seeds: [3, 4]
base: {dataset: mnist, subset: true, hidden: 16, epochs: 1, val-size: 60, train_size: 120,
       test_size: 100}
grid:
  set: {gamma: [3.0, 10.0]}
""", "spec.yaml")
    assert [(r.name, r.argv) for r in expand(load_spec(toml))] == \
        [(r.name, r.argv) for r in expand(load_spec(yaml))]


def test_repeated_configuration_runs_once(tmp_path):
    spec = load_spec(write(tmp_path, TINY_BASE + "[grid]\nepochs = [1, 2]\n[[runs]]\nepochs = 2\n"))
    with pytest.warns(UserWarning, match="repeats configuration 'epochs-2'"):
        runs = expand(spec)
    assert [r.label for r in runs] == ["epochs-1", "epochs-2"]


@pytest.mark.parametrize("text, name, message", [
    ("grids = 1\n" + TINY_BASE, "spec.toml", "unknown top-level key 'grids'"),
    (TINY_BASE + "seed = 3\n", "spec.toml", "base.seed: not allowed in a sweep (give the seeds"),
    (TINY_BASE + "hiden = 16\n", "spec.toml",
     "unknown option 'hiden' (python -m stidi train has no --hiden)"),
    (TINY_BASE + "[grid]\nepochs = 2\n", "spec.toml", "grid.epochs: a grid entry must be a non-empty list"),
    ("seeds = [\"a\"]\n" + TINY_BASE, "spec.toml", "seeds must be a non-empty list of integers"),
    ("seeds = [1, 1]\n" + TINY_BASE, "spec.toml", "seeds lists a seed twice"),
    (TINY_BASE + "epochs = \n", "spec.toml", "invalid TOML"),
    (TINY_BASE.replace('"mnist"', '"cifar10"'), "spec.toml", "argument --dataset: invalid choice"),
    (TINY_BASE + "[grid]\nepochs = [1, \"ten\"]\n", "spec.toml",
     "configuration 'epochs-ten': argument --epochs"),
    (TINY_BASE + "[[runs]]\nout = \"x.json\"\n", "spec.toml", "runs[0].out: not allowed"),
    (TINY_BASE + "[base.set]\n\"lr-decay\" = 0.8\n", "spec.toml", "invalid parameter name 'lr-decay'"),
    (TINY_BASE + "val-size = 100\n", "spec.toml", "given twice"),
    ("base: [1, 2]\n", "spec.yaml", "base must be a table/mapping"),
    ("{}", "spec.json", "unknown spec format '.json'"),
])
def test_bad_specs_give_one_clear_error(tmp_path, capsys, text, name, message):
    path = write(tmp_path, text, name)
    assert sweep.main([str(path), "--out-dir", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {path}") and message in err, err
    assert "Traceback" not in err and not (tmp_path / "out").exists()


def test_load_spec_raises_spec_error(tmp_path):
    with pytest.raises(SpecError, match=r"spec\.toml: seeds must be a non-empty list"):
        load_spec(write(tmp_path, "seeds = 3\n" + TINY_BASE))


def test_missing_spec_file(tmp_path, capsys):
    assert sweep.main([str(tmp_path / "nope.toml")]) == 2
    assert "nope.toml: cannot read the spec" in capsys.readouterr().err


def test_dry_run_lists_runs_without_running(tmp_path, capsys):
    spec = write(tmp_path, "seeds = [0, 1]\n" + TINY_BASE + "[grid]\nhidden = [16, 24]\n")
    assert sweep.main([str(spec), "--out-dir", str(tmp_path / "out"), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "2 configuration(s) x 2 seed(s) = 4 runs" in out
    assert out.count("python -m stidi train --dataset mnist") == 4
    assert not (tmp_path / "out").exists()


def test_command_line_hooks(tmp_path):
    import argparse

    parser = argparse.ArgumentParser(prog="python -m stidi")
    sub = parser.add_subparsers(dest="command", required=True)
    sweep.add_parser(sub)
    args = parser.parse_args(["sweep", "s.toml", "--jobs", "3", "--scheduler", "tcp://h:8786",
                              "--out-dir", "o", "--dry-run"])
    assert args.func is sweep._command
    assert (args.spec, args.jobs, args.scheduler, args.out_dir, args.dry_run) == \
        ("s.toml", 3, "tcp://h:8786", "o", True)
    with pytest.raises(SystemExit):
        parser.parse_args(["sweep", "s.toml", "--jobs", "0"])
    res = subprocess.run([sys.executable, "-m", "stidi.sweep", "--help"], capture_output=True, text=True)
    assert res.returncode == 0 and "--scheduler" in res.stdout


def test_example_spec_is_valid():
    spec = load_spec(Path(__file__).resolve().parents[1] / "results" / "sweeps" / "example.toml")
    runs = expand(spec)
    assert len(runs) == 4 * 3 and all("--subset" in r.argv for r in runs)


def test_run_task_is_single_threaded_resumes_and_keeps_the_stderr_tail(tmp_path, monkeypatch):
    seen = {}

    def fake_run(cmd, env, **kwargs):
        seen.update(cmd=cmd, env=env)
        return subprocess.CompletedProcess(cmd, 3, "", "\n".join(f"line {i}" for i in range(100)))

    monkeypatch.setattr(sweep.subprocess, "run", fake_run)
    monkeypatch.setenv("NUMBA_NUM_THREADS", "8")
    ckpt = tmp_path / "checkpoints" / "r.npz"
    ckpt.parent.mkdir()
    ckpt.write_bytes(b"")
    task = {"name": "r", "argv": ["--dataset", "mnist", "--seed", "0"], "report": str(tmp_path / "r.json"),
            "checkpoint": str(ckpt), "log": str(tmp_path / "r.log")}
    res = sweep.run_task(task)
    assert res["status"] == "failed" and res["returncode"] == 3 and res["resumed"]
    assert all(seen["env"][k] == "1" for k in sweep.THREAD_ENV)
    assert seen["cmd"][1:4] == ["-m", "stidi", "train"] and seen["cmd"][-1] == "--resume"
    log = (tmp_path / "r.log").read_text().splitlines()
    assert "exit code 3" in log[1] and log[2:] == [f"line {i}" for i in range(40, 100)]
    assert ckpt.exists()  # kept for the next attempt


# ----------------------------------------------------------------------------- summaries
def fake_report(folder, name, *, seed, val, test, best_epoch=2, extra=""):
    command = (f"python -m stidi train --dataset mnist --hidden 16 {extra}--seed {seed} "
               f"--out {folder}/{name}.json --quiet")
    rep = {"dataset": "mnist", "model": "fc", "architecture": "784-16-10", "test_accuracy": test,
           "val_accuracy": val, "best_epoch": best_epoch, "epochs": 3, "train_seconds": 10.0 + seed,
           "config": {"random_state": seed}, "command": command, "history": []}
    (Path(folder) / f"{name}.json").write_text(json.dumps(rep))


def test_summary_takes_list_valued_settings(tmp_path):
    # per-layer settings such as init_range=[[0,5],[0,48]] are JSON lists inside --set
    for seed, val in [(0, 0.80), (1, 0.82)]:
        fake_report(tmp_path, f"u_seed{seed}_dddddddd", seed=seed, val=val, test=0.5,
                    extra="--set 'init_range=[[0.0,5.0],[0.0,48.0]]' ")
    fake_report(tmp_path, "v_seed0_eeeeeeee", seed=0, val=0.9, test=0.5,
                extra="--set 'init_range=[[0.0,1.0],[0.0,48.0]]' ")
    s = summarize(load_reports(tmp_path))
    assert list(s["label"]) == ["v", "u"] and list(s["n_seeds"]) == [1, 2]
    assert "set_init_range" in s.columns  # it differs between the configurations


def test_summary_mean_sd_and_order_ignore_the_test_set(tmp_path):
    # a: best test accuracy but middling validation; c: one seed, best validation; d: no validation
    for seed, val, test in [(0, 0.80, 0.99), (1, 0.82, 0.99), (2, 0.84, 0.99)]:
        fake_report(tmp_path, f"a_seed{seed}_aaaaaaaa", seed=seed, val=val, test=test,
                    extra="--set gamma=3 ")
    for seed, val in [(0, 0.85), (1, 0.83)]:
        fake_report(tmp_path, f"b_seed{seed}_bbbbbbbb", seed=seed, val=val, test=0.5,
                    extra="--set gamma=10 ", best_epoch=1 + seed)
    fake_report(tmp_path, "c_seed0_cccccccc", seed=0, val=0.90, test=0.10, extra="--set gamma=30 ")
    fake_report(tmp_path, "hand-run", seed=0, val=None, test=0.95, extra="--set gamma=1 ")
    (tmp_path / "summary.json").write_text('{"configurations": []}')  # not a report
    (tmp_path / "notes.json").write_text("not json")

    df = load_reports(tmp_path)
    assert len(df) == 7 and set(df["label"]) == {"a", "b", "c", "hand-run"}
    assert df.loc[df["run"] == "a_seed1_aaaaaaaa", "set_gamma"].item() == 3
    s = summarize(df)
    assert list(s["label"]) == ["c", "b", "a", "hand-run"]  # validation only; test never ranks
    assert list(s["rank"]) == [1, 2, 3, 4]
    a, b, c = (s[s["label"] == k].iloc[0] for k in "abc")
    assert a["n_seeds"] == 3 and a["seeds"] == [0, 1, 2]
    assert a["val_accuracy_mean"] == pytest.approx(0.82) and a["val_accuracy_sd"] == pytest.approx(0.02)
    assert b["val_accuracy_sd"] == pytest.approx(math.sqrt(2) * 0.01)  # ddof=1
    assert b["best_epoch_mean"] == 1.5 and b["train_seconds_mean"] == 10.5
    assert math.isnan(c["val_accuracy_sd"]) and c["n_seeds"] == 1
    assert "set_gamma" in s.columns
    table = sweep.format_summary(s)
    assert f"| 1 | c ({c['config_id']}) | mnist | 784-16-10 | 90.00 | 1 |" in table  # sd blank for one seed
    assert "| 82.00 ± 2.00 | 3 |" in table and "info only" in table


# ----------------------------------------------------------------------------- running
def test_sweep_runs_skips_and_records_failures(tmp_path, capsys):
    spec = write(tmp_path, "seeds = [0, 1]\n" + TINY_BASE + """\
[grid]
set.gamma = [3.0, 10.0]
[[runs]]
name = "broken"
set = { lr_schedule = "bogus" }
""")
    out = tmp_path / "out"
    assert sweep.main([str(spec), "--out-dir", str(out), "--jobs", "2"]) == 1
    printed = capsys.readouterr().out
    runs = expand(load_spec(spec))
    good = [r for r in runs if r.label != "broken"]
    bad = [r for r in runs if r.label == "broken"]
    for run in good:
        assert (out / f"{run.name}.json").exists() and not (out / f"{run.name}.log").exists()
    for run in bad:
        assert not (out / f"{run.name}.json").exists()
        log = (out / f"{run.name}.log").read_text()
        assert "lr_schedule must be one of" in log and "exit code 2" in log
        assert f"- {run.name}" in printed
    assert not (out / "checkpoints").exists()  # finished runs leave no checkpoint

    # the report is exactly what train writes for the same arguments
    ref = train_direct(good[0].argv, tmp_path / "direct.json")
    rep = json.loads((out / f"{good[0].name}.json").read_text())
    assert rep.keys() == ref.keys() and strip_timings(rep) == strip_timings(ref)
    assert rep["command"].startswith("python -m stidi train --dataset mnist")

    summary = json.loads((out / "summary.json").read_text())
    assert summary["failed"] == [r.name for r in bad]
    vals = [c["val_accuracy_mean"] for c in summary["configurations"]]
    assert len(vals) == 2 and vals == sorted(vals, reverse=True)
    assert all(c["n_seeds"] == 2 for c in summary["configurations"])
    assert "val acc % (mean ± sd)" in (out / "summary.md").read_text()

    # second pass: finished runs are skipped (reports untouched), the broken one is retried
    stamps = {r.name: (out / f"{r.name}.json").stat().st_mtime_ns for r in good}
    stale = good[1]
    rep = json.loads((out / f"{stale.name}.json").read_text())
    rep["command"] = rep["command"].replace("--epochs 1", "--epochs 3")  # from another configuration
    (out / f"{stale.name}.json").write_text(json.dumps(rep))
    stamps.pop(stale.name)
    assert sweep.main([str(spec), "--out-dir", str(out), "--jobs", "2"]) == 1
    printed = capsys.readouterr().out
    assert f"{len(good) - 1} already done" in printed
    assert {r.name: (out / f"{r.name}.json").stat().st_mtime_ns for r in good if r.name in stamps} == stamps
    assert json.loads((out / f"{stale.name}.json").read_text())["epochs"] == 1


def test_interrupted_run_resumes_from_its_checkpoint(tmp_path, capsys):
    spec = write(tmp_path, TINY_BASE.replace("epochs = 1", "epochs = 2"))
    (run,) = expand(load_spec(spec))
    out = tmp_path / "out"
    ckpt = out / "checkpoints" / f"{run.name}.npz"
    ckpt.parent.mkdir(parents=True)
    # an interrupted run: its checkpoint holds the first of the two epochs
    argv = list(run.argv)
    argv[argv.index("--epochs") + 1] = "1"
    first = train_direct(argv, tmp_path / "first.json", "--checkpoint", str(ckpt))
    assert first["epochs"] == 1 and ckpt.exists()
    assert sweep.main([str(spec), "--out-dir", str(out), "--jobs", "1"]) == 0
    assert "(resumed)" in capsys.readouterr().out
    resumed = json.loads((out / f"{run.name}.json").read_text())
    assert resumed["epochs"] == 2 and "--resume" in resumed["command"]
    assert strip_timings(resumed["history"][0]) == strip_timings(first["history"][0])
    assert not ckpt.exists()
    # the same as a run that was never interrupted
    fresh = tmp_path / "fresh"
    assert sweep.main([str(spec), "--out-dir", str(fresh), "--jobs", "1"]) == 0
    uninterrupted = json.loads((fresh / f"{run.name}.json").read_text())
    assert strip_timings(resumed) == strip_timings(uninterrupted)


def test_missing_dask_is_a_clear_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "distributed", None)
    spec = write(tmp_path, TINY_BASE)
    assert sweep.main([str(spec), "--out-dir", str(tmp_path / "o"), "--scheduler", "tcp://x:1"]) == 2
    assert "--scheduler needs Dask distributed" in capsys.readouterr().err


def test_joblib_and_dask_give_the_same_reports(tmp_path, monkeypatch):
    distributed = pytest.importorskip("distributed")
    spec = write(tmp_path, "seeds = [0, 1]\n" + TINY_BASE + "[base.set]\ngamma = 10.0\n")
    runs = expand(load_spec(spec))
    assert sweep.main([str(spec), "--out-dir", str(tmp_path / "local"), "--jobs", "2"]) == 0
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster:
        monkeypatch.setenv(sweep.SCHEDULER_ENV, cluster.scheduler_address)  # the variable route
        assert sweep.main([str(spec), "--out-dir", str(tmp_path / "dask")]) == 0
    for run in runs:
        local = json.loads((tmp_path / "local" / f"{run.name}.json").read_text())
        remote = json.loads((tmp_path / "dask" / f"{run.name}.json").read_text())
        assert strip_timings(local) == strip_timings(remote)
        assert local["command"].replace(str(tmp_path / "local"), "X") == \
            remote["command"].replace(str(tmp_path / "dask"), "X")
    assert (json.loads((tmp_path / "local" / "summary.json").read_text())["configurations"][0]["config_id"]
            == json.loads((tmp_path / "dask" / "summary.json").read_text())["configurations"][0]["config_id"])
