"""Packaging behaviour: lazy import and a Numba cache that never breaks a read-only install."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

import stidi

ROOT = Path(stidi.__file__).resolve().parent
needs_jit = pytest.mark.skipif(os.environ.get("NUMBA_DISABLE_JIT") == "1",
                               reason="the on-disk cache is off when Numba's JIT is disabled")


def run(code, env, cwd):
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=cwd)


def test_import_is_lazy():
    res = run("import sys, stidi; print('numba' in sys.modules, 'stidi.neuron' in sys.modules)",
              dict(os.environ), cwd=str(ROOT.parent))
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["False", "False"]


CODE = ("import numpy as np, stidi; from stidi import _jit; "
        "t = stidi.first_spike_times(np.array([0.0, 1.0]), np.ones((2, 2)), 0.5, 4.0, 8.0, 20.0); "
        "print(_jit.CACHE_ENABLED, t.tolist())")


@needs_jit
def test_fallback_to_user_cache_when_package_dir_is_read_only(monkeypatch, tmp_path):
    from stidi import _jit

    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    real = _jit._writable
    monkeypatch.setattr(_jit, "_writable", lambda p: False if ROOT in Path(p).parents or Path(p) == ROOT
                        else real(p))
    monkeypatch.setattr(_jit.numba.config, "CACHE_DIR", _jit.numba.config.CACHE_DIR)
    assert _jit._configure_cache() is True
    assert os.environ["NUMBA_CACHE_DIR"] == str(tmp_path / "stidi" / "numba")
    monkeypatch.setattr(_jit, "_writable", lambda p: False)
    monkeypatch.delenv("NUMBA_CACHE_DIR")
    assert _jit._configure_cache() is False


def test_unwritable_cache_dir_still_imports_and_runs(tmp_path):
    env = dict(os.environ, NUMBA_CACHE_DIR="/proc/stidi-no-cache", PYTHONPATH=str(ROOT.parent))
    res = run(CODE, env, cwd=str(tmp_path))
    assert res.returncode == 0, res.stderr
    assert res.stdout.split()[0] == "False"
    assert "[1.5, 1.5]" in res.stdout


@needs_jit
def test_numba_cache_dir_is_honoured(tmp_path):
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "nc"), PYTHONPATH=str(ROOT.parent))
    res = run(CODE, env, cwd=str(tmp_path))
    assert res.returncode == 0, res.stderr
    assert res.stdout.split()[0] == "True"
    assert list((tmp_path / "nc").rglob("*.nbi"))


@needs_jit
@pytest.mark.slow
def test_engine_kernels_are_loaded_from_the_cache_in_a_new_process(tmp_path):
    # the kernels take typed NamedTuples (Neuron, Rule): their signatures must hit the cache
    code = ("import stidi; from stidi import network as n; "
            "X, y = stidi.datasets.load_subset('mnist', 'train'); "
            "stidi.SpikingClassifier('*-8-*', epochs=1, init_samples=20).fit(X[:40], y[:40]); "
            "print(sum(n.train_epoch_sgd.stats.cache_hits.values()))")
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "nc"), PYTHONPATH=str(ROOT.parent))
    first, second = run(code, env, str(tmp_path)), run(code, env, str(tmp_path))
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    assert first.stdout.split()[-1] == "0" and int(second.stdout.split()[-1]) >= 1


def test_option_enums_carry_the_names_they_are_bound_to():
    from enum import IntEnum

    from stidi import _codes

    enums = {name: obj for name, obj in vars(_codes).items()
             if isinstance(obj, type) and issubclass(obj, IntEnum) and obj is not IntEnum}
    assert len(enums) >= 13
    assert all(obj.__name__ == name for name, obj in enums.items()), enums


def test_stale_kernels_are_dropped_when_the_sources_change(tmp_path):
    from stidi import _jit

    cache = tmp_path / "cache"
    cache.mkdir()
    for name in ("m.f-1.py311.nbi", "m.f-1.py311.1.nbc", "keep.txt"):
        (cache / name).write_text("x")
    assert _jit.drop_stale_kernels(cache, "aaaa") == 2          # no stamp yet: everything cached is stale
    assert sorted(p.name for p in cache.iterdir()) == ["keep.txt", "stidi-kernels.stamp"]
    (cache / "m.f-1.py311.nbi").write_text("x")
    assert _jit.drop_stale_kernels(cache, "aaaa") == 0          # same sources: the cache is kept
    assert (cache / "m.f-1.py311.nbi").exists()
    sub = cache / "deep"
    sub.mkdir()
    (sub / "g.nbc").write_text("x")
    assert _jit.drop_stale_kernels(cache, "bbbb", recursive=True) == 2
    assert (cache / "stidi-kernels.stamp").read_text() == "bbbb"


def test_source_stamp_follows_every_module(tmp_path):
    from stidi import _jit

    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "a.py").write_text("x = 1\n")
    (pkg / "b.py").write_text("y = 2\n")
    s0 = _jit.source_stamp(pkg)
    assert _jit.source_stamp(pkg) == s0
    (pkg / "b.py").write_text("y = 3\n")
    assert _jit.source_stamp(pkg) != s0
    assert _jit.source_stamp(ROOT) == _jit.source_stamp()


@needs_jit
def test_a_changed_module_invalidates_the_cached_kernels_of_the_others(tmp_path):
    import shutil

    shutil.copytree(ROOT, tmp_path / "stidi", ignore=shutil.ignore_patterns("__pycache__", "data"))
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    env["PYTHONPATH"] = str(tmp_path)
    res = run(CODE, env, cwd=str(tmp_path))
    assert res.returncode == 0 and res.stdout.split()[0] == "True", res.stderr
    cache = tmp_path / "stidi" / "__pycache__"
    neuron_kernels = list(cache.glob("neuron.*.nbi"))
    assert neuron_kernels
    with open(tmp_path / "stidi" / "_scratch.py", "a") as f:      # a module the cached kernels did not use
        f.write("\n# changed\n")
    res = run("import stidi._jit", env, cwd=str(tmp_path))
    assert res.returncode == 0, res.stderr
    assert not any(p.exists() for p in neuron_kernels)
    res = run(CODE, env, cwd=str(tmp_path))                        # and the package recompiles and runs
    assert res.returncode == 0 and "[1.5, 1.5]" in res.stdout, res.stderr
