"""How the cost of one layer grows with its width, its fan-in and the window t_max.

For each size, the same layer is simulated twice on the same encoded MNIST
images, one right after the other in this process:

* **event-driven**: :func:`stidi.first_spike_times`, the exact sweep over the
  sorted PSP breakpoints;
* **clock-driven**: :func:`stidi.reference.clock_driven_spike_times`, the
  PSPs of every input on the grid ``0, 1, ..., t_max - 1`` and one dense
  matrix product (the S4NN way of simulating).

Both run on one thread (Numba and the BLAS library), so the ratio compares
work, not parallelism.  Three sweeps, each through the full-size point
784 -> 400 at t_max = 256:

* width ``n_out`` with ``n_in = 784``, ``t_max = 256``;
* fan-in ``n_in`` with ``n_out = 400``, ``t_max = 256`` (the inputs are a fixed
  random selection of the pixels of two images side by side, so the
  fraction of pixels that spike stays that of MNIST);
* window ``t_max`` with 784 -> 400, the PSP times scaled with the window
  (``tau1 = t_max / 2``, ``tau2 = 4 t_max``) so that the spike pattern keeps
  its shape.

The weights are ``U(-0.5, 1)`` times a scale calibrated so that the median
first spike time is ``t_max / 2`` (as :class:`stidi.SpikingClassifier`
does for its output layer).  Usage::

    python benchmarks/bench_scaling.py [--quick] [--out results/bench-scaling.json]
    python benchmarks/bench_scaling.py --sweep n_out=25,100 --sweep t_max=32,128 --images 100

``--sweep NAME=V1,V2,...`` (NAME one of n_out, n_in, t_max; repeatable)
replaces the built-in sizes: only the sweeps named are run.
"""

from __future__ import annotations

import os

# one thread for every library, set before NumPy loads its BLAS
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import numba  # noqa: E402
import numpy as np  # noqa: E402

import stidi  # noqa: E402
from stidi import datasets  # noqa: E402
from stidi import calibrate_scale  # noqa: E402
from stidi.reference import clock_driven_spike_times  # noqa: E402

from _common import best_of, load_average, machine_info, now_iso, write_json_atomic  # noqa: E402

FULL = {"n_in": 784, "n_out": 400, "t_max": 256}
SWEEPS = {
    "n_out": [25, 50, 100, 200, 400, 800],
    "n_in": [49, 98, 196, 392, 784, 1568],
    "t_max": [32, 64, 128, 256, 512, 1024],
}
QUICK = {"n_out": [50, 400], "n_in": [196, 784], "t_max": [64, 256]}


def inputs(images: np.ndarray, n_in: int, t_max: float, rng_seed: int = 0) -> np.ndarray:
    """Spike times of ``n_in`` inputs per sample: pixels of two images side by side, permuted."""
    pairs = np.concatenate([images[0::2], images[1::2]], axis=1)  # (n/2, 1568)
    perm = np.random.default_rng(rng_seed).permutation(pairs.shape[1])[:n_in]
    return np.ascontiguousarray(stidi.encode(pairs[:, perm], t_max))


def measure(images, n_in, n_out, t_max, n_event, n_grid, repeat, seed=0):
    tau1, tau2 = t_max / 2.0, 4.0 * t_max
    T = inputs(images, n_in, t_max)
    rng = np.random.default_rng(seed)
    raw = rng.uniform(-0.5, 1.0, size=(n_out, n_in))
    W = calibrate_scale(T[:50], raw, t_max / 2.0, 1.0, tau1, tau2, t_max) * raw
    Te, Tg = T[:n_event], T[:n_grid]
    out = stidi.first_spike_times(Te, W, 1.0, tau1, tau2, t_max)
    t_event = best_of(lambda: stidi.first_spike_times(Te, W, 1.0, tau1, tau2, t_max), repeat) / len(Te)
    t_grid = best_of(lambda: clock_driven_spike_times(Tg, W, 1.0, tau1, tau2, t_max), repeat) / len(Tg)
    k = float(np.mean(np.sum(Te < t_max, axis=1)))
    return {
        "n_in": n_in, "n_out": n_out, "t_max": t_max, "tau1": tau1, "tau2": tau2,
        "event_us_per_image": 1e6 * t_event,
        "grid_us_per_image": 1e6 * t_grid,
        "grid_over_event": t_grid / t_event,
        "mean_active_inputs": k,
        "fired_fraction": float(np.mean(out < t_max)),
        "median_spike_time": float(np.median(out)),
        # operation counts of the two cost models (per image): 3k breakpoints
        # each touching every neuron, against n_in * t_max grid products per neuron
        "event_ops": 3.0 * k * n_out,
        "grid_ops": float(n_in) * t_max * n_out,
        "images_event": len(Te), "images_grid": len(Tg),
    }


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=400, help="images per event-driven timing")
    ap.add_argument("--grid-images", type=int, default=6, help="images per clock-driven timing")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="two sizes per sweep (a check of the script)")
    ap.add_argument("--sweep", action="append", default=[], metavar="NAME=V1,V2,...",
                    help="sizes of one sweep (n_out, n_in or t_max), replacing the built-in ones")
    ap.add_argument("--out", default=None, help="write the results to this JSON file (atomically)")
    args = ap.parse_args(argv)

    load_before = load_average()
    started = time.perf_counter()
    numba.set_num_threads(1)
    images, _ = datasets.load_subset("mnist", "train")
    images = images.reshape(len(images), -1)[: 2 * max(args.images, 50)]
    # compile once, outside the timings
    stidi.first_spike_times(stidi.encode(images[:2], 256), np.ones((3, 784)), 1.0, 128.0, 1024.0, 256.0)

    sweeps = QUICK if args.quick else SWEEPS
    if args.sweep:
        sweeps = {}
        for item in args.sweep:
            name, _, values = item.partition("=")
            if name not in SWEEPS or not values:
                ap.error(f"--sweep needs NAME=V1,V2,... with NAME in {sorted(SWEEPS)}, got {item!r}")
            sweeps[name] = [int(float(v)) for v in values.split(",")]
    results = {}
    for name, values in sweeps.items():
        rows = []
        for v in values:
            size = dict(FULL, **{name: v})
            row = measure(images, size["n_in"], size["n_out"], float(size["t_max"]),
                          args.images, args.grid_images, args.repeat)
            rows.append(row)
            print(f"{name:>6} = {v:5d}: event {row['event_us_per_image']:9.1f} us, "
                  f"grid {row['grid_us_per_image']:10.1f} us, ratio {row['grid_over_event']:7.1f} "
                  f"(k = {row['mean_active_inputs']:.0f} active inputs, "
                  f"{row['fired_fraction']:.0%} fired)", flush=True)
        results[name] = rows
    report = {
        "benchmark": "bench_scaling", "date": now_iso(), "environment": machine_info(),
        "threads": 1, "full_size": FULL, "repeat": args.repeat,
        "data": "shipped MNIST subset (training images)",
        "sweeps": results,
        "load_average_before": load_before, "load_average_after": load_average(),
        "wall_seconds": time.perf_counter() - started,
        "command": "python benchmarks/bench_scaling.py " + " ".join(sys.argv[1:] if argv is None else argv),
    }
    report["environment"]["numba_threads"] = 1
    if args.out:
        write_json_atomic(args.out, report)
        print(f"wrote {args.out}")
    return report


if __name__ == "__main__":
    main()
