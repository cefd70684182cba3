"""First-call cost of the Numba kernels: compiling them against loading them from the on-disk cache.

Runs the same small workload in fresh Python processes that share one empty
cache folder (``NUMBA_CACHE_DIR``): the first process compiles every kernel
and writes the cache, the following ones load it.  Each process reports

* ``import_seconds``: ``import stidi`` (Numba included);
* ``layer_first_call_seconds``: the first :func:`stidi.first_spike_times` call;
* ``fit_first_call_seconds``: the first :meth:`stidi.SpikingClassifier.fit` on
  40 random images (784-8-10, one epoch), which brings in the training,
  forward and decision kernels;
* ``layer_second_call_seconds``: the same layer call again (already compiled).

Usage::

    python benchmarks/bench_jit.py [--warm-runs 2] [--out results/bench-jit.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import load_average, machine_info, now_iso, write_json_atomic

WORKLOAD = r"""
import json, time
t0 = time.perf_counter()
import numpy as np
import stidi
from stidi import SpikingClassifier
t1 = time.perf_counter()
rng = np.random.default_rng(0)
X = rng.integers(0, 256, size=(40, 784)).astype(np.uint8)
y = np.arange(40) % 10
W = rng.uniform(-0.5, 1.0, size=(5, 784)) * 0.01
T = stidi.encode(X[:2])
stidi.first_spike_times(T, W, 1.0, 128.0, 1024.0, 256.0)
t2 = time.perf_counter()
stidi.first_spike_times(T, W, 1.0, 128.0, 1024.0, 256.0)
t3 = time.perf_counter()
SpikingClassifier("*-8-*", epochs=1, init_samples=20, random_state=0).fit(X, y)
t4 = time.perf_counter()
from stidi._jit import CACHE_ENABLED
print(json.dumps({"import_seconds": t1 - t0, "layer_first_call_seconds": t2 - t1,
                  "layer_second_call_seconds": t3 - t2, "fit_first_call_seconds": t4 - t3,
                  "cache_enabled": CACHE_ENABLED}))
"""


def run_once(cache_dir: str) -> dict:
    env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir)
    repo = Path(__file__).resolve().parents[1]
    env["PYTHONPATH"] = os.pathsep.join([str(repo), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", WORKLOAD], env=env, check=True,
                         capture_output=True, text=True).stdout
    rec = json.loads(out.strip().splitlines()[-1])
    rec["process_seconds"] = time.perf_counter() - t0
    return rec


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--warm-runs", type=int, default=2, help="processes that load the cache")
    ap.add_argument("--out", default=None, help="write the results to this JSON file (atomically)")
    args = ap.parse_args(argv)
    load_before = load_average()
    with tempfile.TemporaryDirectory() as cache:
        cold = run_once(cache)
        print("cold (compiles):", json.dumps({k: round(v, 2) if isinstance(v, float) else v
                                              for k, v in cold.items()}), flush=True)
        warm = []
        for _ in range(args.warm_runs):
            warm.append(run_once(cache))
            print("warm (cache):   ", json.dumps({k: round(v, 2) if isinstance(v, float) else v
                                                  for k, v in warm[-1].items()}), flush=True)
        cache_files = sum(1 for _ in Path(cache).rglob("*.nbc"))
    report = {
        "benchmark": "bench_jit", "date": now_iso(), "environment": machine_info(),
        "cold": cold, "warm": warm, "cache_files": cache_files,
        "load_average_before": load_before, "load_average_after": load_average(),
        "command": "python benchmarks/bench_jit.py " + " ".join(sys.argv[1:] if argv is None else argv),
    }
    if args.out:
        write_json_atomic(args.out, report)
        print(f"wrote {args.out}")
    return report


if __name__ == "__main__":
    main()
