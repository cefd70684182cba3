"""Compare the two hidden-error forms of STiDi-BP on a validation split.

Trains the same fully connected network with ``hidden_error="s4nn"`` (the
package default, S4NN-like error, book chapter 4) and with
``hidden_error="displacement"`` (spike-time displacement), every other
setting at the package defaults (learning rates in units of each layer's
calibrated scale), over several seeds.  The data are a slice
of the official MNIST training set: a stratified validation split carved
from the 60,000 training images with the seed, and the first ``--train``
images of the rest for training.  Only validation accuracy is measured: the
test set is not touched, because this comparison chooses a default.

Usage::

    STIDI_DATA=../shared/datasets python scripts/fc_hidden_error.py \\
        --train 20000 --val 5000 --arch 784-400-10 --epochs 5 --seeds 0 1 2 \\
        --out results/fc-hidden-error.json

The report holds, per form and seed, the validation accuracy after every
epoch, the best one and its epoch, and the training time; and per form the
mean and sample standard deviation of the best validation accuracy.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

from stidi._io import atomic_write_text

FORMS = ("s4nn", "displacement")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="mnist", choices=["mnist", "fashion-mnist"])
    parser.add_argument("--train", type=int, default=20000, help="training images")
    parser.add_argument("--val", type=int, default=5000, help="validation images")
    parser.add_argument("--arch", default="784-400-10",
                        help="fully connected architecture with at least one hidden layer, e.g. 784-400-10")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.train <= 0 or args.val <= 0 or args.epochs <= 0 or args.train + args.val > 60000:
        parser.error("--train and --val must be positive and sum to at most 60000; --epochs positive")
    if len(set(args.seeds)) != len(args.seeds):
        parser.error(f"--seeds repeats a seed: {args.seeds}")

    from stidi import SpikingClassifier, parse_architecture
    from stidi._codes import LayerKind

    try:
        arch = parse_architecture(args.arch)
    except ValueError as exc:
        parser.error(f"--arch: {exc}")
    if len(arch.layers) < 2 or any(layer.kind != LayerKind.DENSE for layer in arch.layers):
        parser.error(f"--arch {args.arch!r}: needs a fully connected network with a hidden layer")
    from stidi.datasets import load, train_val_split

    X, y = load(args.dataset, "train", download=False)
    runs = []
    for seed in args.seeds:
        tr, va = train_val_split(y, args.val, random_state=seed)
        tr = tr[:args.train]
        for form in FORMS:
            clf = SpikingClassifier(args.arch, epochs=args.epochs, hidden_error=form,
                                    random_state=seed, verbose=False)
            start = time.perf_counter()
            clf.fit(X[tr], y[tr], validation_data=(X[va], y[va]))
            seconds = time.perf_counter() - start
            curve = [float(h["val_accuracy"]) for h in clf.history_]
            runs.append({"hidden_error": form, "seed": seed, "val_accuracy_per_epoch": curve,
                         "best_val_accuracy": float(clf.best_score_), "best_epoch": int(clf.best_epoch_),
                         "fit_seconds": seconds})
            print(f"{form:>12} seed {seed}: best validation {clf.best_score_:.4f} "
                  f"(epoch {clf.best_epoch_}), {seconds:.0f} s", flush=True)
    summary = {}
    for form in FORMS:
        best = np.array([r["best_val_accuracy"] for r in runs if r["hidden_error"] == form])
        summary[form] = {"mean": float(best.mean()), "sd": float(best.std(ddof=1)) if len(best) > 1 else 0.0,
                         "n": int(len(best))}
    report = {
        "comparison": "hidden_error", "dataset": args.dataset, "architecture": arch.text,
        "n_train": args.train, "n_val": args.val, "epochs": args.epochs, "seeds": args.seeds,
        "settings": "package defaults of SpikingClassifier except hidden_error",
        "selection": "validation split carved from the training set; test set not used",
        "runs": runs, "summary": summary,
        "command": "python scripts/fc_hidden_error.py " + " ".join(
            [f"--dataset {args.dataset}", f"--train {args.train}", f"--val {args.val}",
             f"--arch {args.arch}", f"--epochs {args.epochs}",
             "--seeds " + " ".join(map(str, args.seeds)), f"--out {args.out.as_posix()}"]),
        "environment": {"machine": platform.machine(), "cpu_count": os.cpu_count(),
                        "python": platform.python_version(), "numpy": np.__version__},
    }
    atomic_write_text(args.out, json.dumps(report, indent=2) + "\n")
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
