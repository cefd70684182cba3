"""Train the package's dense single-spike network with the exact gradient, on real data.

Example::

    python scripts/exact_gradient.py --dataset fashion-mnist --hidden 400 --epochs 30 \
        --val-size 5000 --seed 0 --out results/exact-fashion-mnist.json \
        --checkpoint runs/exact-fashion-mnist.npz --resume

A stratified validation split carved from the official training set selects
the epoch (:func:`stidi.datasets.train_val_split`); the official test set is
evaluated once, with the selected weights, at the end.  The report has the
layout of the package's ``train`` reports (command, config, history,
val/test accuracy, timings).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import time
from pathlib import Path

import numpy as np

from stidi._io import atomic_write_text


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", choices=("mnist", "fashion-mnist"), required=True)
    p.add_argument("--hidden", type=int, nargs="+", default=[400])
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=3e-3, help="Adam step relative to each layer's init scale")
    p.add_argument("--lr-decay", type=float, default=1.0)
    p.add_argument("--temperature", type=float, default=4.0, help="s in the logits -t/s (time steps)")
    p.add_argument("--slope-floor", type=float, default=1e-3)
    p.add_argument("--silent-surrogate", type=float, default=0.0)
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--clip", type=float, default=None)
    p.add_argument("--val-size", type=int, default=5000)
    p.add_argument("--train-size", type=int, default=None,
                   help="use a random subset of this many training images (after the split)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-test", action="store_true", help="skip the test set (probes)")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--checkpoint", type=Path, default=None)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--quiet", action="store_true")
    return p


def main(argv: list[str] | None = None) -> dict:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    from stidi import datasets
    from stidi.exact import ExactGradientClassifier

    X, y = datasets.load(args.dataset, "train")
    tr_idx, va_idx = datasets.train_val_split(y, args.val_size, random_state=args.seed)
    if args.train_size is not None:
        if not 0 < args.train_size <= len(tr_idx):
            raise SystemExit(f"error: --train-size must lie in 1..{len(tr_idx)}")
        tr_idx = np.sort(np.random.default_rng(args.seed).permutation(tr_idx)[: args.train_size])
    clf = ExactGradientClassifier(
        hidden=tuple(args.hidden), epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
        lr_decay=args.lr_decay, temperature=args.temperature, slope_floor=args.slope_floor,
        silent_surrogate=args.silent_surrogate, weight_decay=args.weight_decay, clip=args.clip,
        random_state=args.seed, verbose=not args.quiet)
    t0 = time.perf_counter()
    clf.fit(X[tr_idx], y[tr_idx], X[va_idx], y[va_idx], checkpoint=args.checkpoint, resume=args.resume)
    wall = time.perf_counter() - t0
    best = clf.history_[clf.best_epoch_ - 1] if clf.best_epoch_ else {}
    report = {
        "dataset": args.dataset,
        "model": "fc-exact-gradient",
        "architecture": "-".join(str(s) for s in [784, *args.hidden, 10]),
        "val_accuracy": best.get("val_accuracy"),
        "val_accuracy_no_fallback": best.get("val_accuracy_no_fallback"),
        "best_epoch": clf.best_epoch_,
        "epochs": len(clf.history_),
        "train_seconds": float(sum(h["seconds"] for h in clf.history_)),
        "seconds_per_epoch_median": float(np.median([h["seconds"] for h in clf.history_])),
        "wall_seconds_this_run": wall,
        "n_train": int(len(tr_idx)),
        "n_val": int(len(va_idx)),
    }
    if not args.no_test:
        Xt, yt = datasets.load(args.dataset, "test")
        t1 = time.perf_counter()
        test = clf.evaluate(Xt, yt)
        report.update({
            "test_accuracy": test["accuracy"],
            "test_accuracy_no_fallback": test["accuracy_no_fallback"],
            "test_output_silent_fraction": test["output_silent_fraction"],
            "test_silent_fraction": test["silent_fraction"],
            "test_median_spike_time": test["median_spike_time"],
            "test_seconds": time.perf_counter() - t1,
            "n_test": int(len(yt)),
        })
    import numba

    report.update({
        "config": clf.get_params(),
        "init_scales": [float(s) for s in clf.scales_],
        "command": "python scripts/exact_gradient.py " + " ".join(shlex.quote(a) for a in argv),
        "history": clf.history_,
        "environment": {
            "python": platform.python_version(), "numpy": np.__version__, "numba": numba.__version__,
            "machine": platform.machine(), "cpu_count": os.cpu_count(), "platform": platform.platform(),
            "numba_num_threads": int(numba.config.NUMBA_NUM_THREADS),
        },
        "gradient": ("exact (SpikeProp-style) dt_j/dw_ji = -eps(t_j - t_i)/max(vdot_j, slope_floor), "
                     "dt_j/dt_i = w_ji eps'(t_j - t_i)/max(vdot_j, slope_floor); silent neurons pass no "
                     "gradient unless silent_surrogate > 0; loss = softmax cross-entropy on -t_out/temperature"),
        "decision_rule": ("first output spike; ties -> larger dv/dt at the tie time, then lowest "
                          "index; no output spike -> largest peak potential (accuracy) or counted as "
                          "an error (accuracy_no_fallback)"),
    })
    atomic_write_text(args.out, json.dumps(report, indent=2, default=float) + "\n")
    if not args.quiet:
        print(f"val {report['val_accuracy']} (epoch {clf.best_epoch_}), test "
              f"{report.get('test_accuracy')}, {report['train_seconds']:.0f} s -> {args.out}")
    return report


if __name__ == "__main__":
    main()
