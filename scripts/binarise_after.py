"""Binarise a trained real-weight network after the fact and score it on its validation split.

Reads a model saved by ``python -m stidi train --save-model`` or a training
checkpoint (``--checkpoint``; the sweep tool keeps them with
``--keep-checkpoints``), rebuilds the validation split its run was scored on
(stratified, carved from the training set with the run's seed), and scores:

* the network as trained (real weights);
* the network with every weight layer replaced by :math:`\\alpha_l\\,\\mathrm{sign}(w)`,
  and with one weight layer at a time replaced, the others real.

The scales :math:`\\alpha_l` are those the estimator's ``binary_warmup`` would choose
at that point (:func:`stidi.init.calibrate_binary`, on the run's first
``init_samples`` training images): each binary layer fires, in the median, when the
real layer did.  No weight is trained.  For a checkpoint both the weights the run
keeps (its best validation epoch; averaged weights when the run averages) and its
last training weights are scored.  The test set is not read.

Usage::

    STIDI_DATA=../shared/datasets python scripts/binarise_after.py \\
        runs/sweeps/conv-binary-fashion-average/checkpoints/real-average_seed0_5c71c08d.npz \\
        --dataset fashion-mnist --val-size 5000 --seed 0 --out results/binarise-after.json
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

from stidi._io import ModelFileError, atomic_write_text


def _score(clf, Tv, yv, alpha) -> float:
    clf.alpha_ = alpha
    return float(clf._evaluate_times(Tv, yv)["accuracy"])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", type=Path, help="saved model or training checkpoint (.npz)")
    parser.add_argument("--dataset", required=True, choices=["mnist", "fashion-mnist"])
    parser.add_argument("--data-dir", default=None, help="folder with the IDX files (default: $STIDI_DATA)")
    parser.add_argument("--val-size", type=int, default=5000)
    parser.add_argument("--seed", type=int, required=True, help="the run's seed (it drew the split)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.val_size <= 0:
        parser.error("--val-size must be positive")
    if not args.model.is_file():
        parser.error(f"{args.model}: no such file")

    from stidi import datasets
    from stidi._io import read_model
    from stidi.init import calibrate_binary
    from stidi.model import SpikingClassifier

    try:
        stored = read_model(args.model)
        clf = SpikingClassifier._from_stored(stored)
    except (ModelFileError, ValueError, OSError) as exc:
        parser.error(f"{args.model}: {exc}")
    if clf.alpha_.size:
        parser.error(f"{args.model}: already a binary network")
    X, y = datasets.load(args.dataset, "train", data_dir=args.data_dir)
    if X[0].size != clf.n_features_in_:
        parser.error(f"{args.model}: its input does not match {args.dataset}")
    if args.val_size >= len(y):
        parser.error(f"--val-size {args.val_size} leaves no training images")
    tr, va = datasets.train_val_split(y, args.val_size, random_state=args.seed)
    t0 = time.perf_counter()
    cfg = clf._validate(clf.arch_)
    T = clf._times(X[tr][: int(clf.init_samples)])
    Tv, yv = clf._times(X[va]), clf._labels(y[va], len(va))
    L = len(clf.arch_.layers)
    weight_layers = clf.arch_.weight_layers
    every = np.isin(np.arange(L), weight_layers)      # binary at every weight layer
    kinds = {"kept": stored["best_W"], "last": stored["W"]} if "best_W" in stored else {"kept": stored["W"]}
    results = {}
    for name, W in kinds.items():
        clf.W_ = np.asarray(W, dtype=np.float64).copy()
        alpha = calibrate_binary(clf.arch_, clf.W_, T, cfg["thetas"], every, cfg["neuron"])
        row = {"real": _score(clf, Tv, yv, np.empty(0)),
               "binary_all": _score(clf, Tv, yv, alpha),
               "alpha": [float(a) for a in alpha]}
        for q, l in enumerate(weight_layers):
            # alpha is 1 at pooling layers: keep it there and at layer l, 0 (real) elsewhere
            one = np.where((np.arange(L) == l) | ~every, alpha, 0.0)
            row[f"binary_only_layer{q}"] = _score(clf, Tv, yv, one)
        results[name] = row
        print(f"{name:>5s} weights: real {100 * row['real']:.2f} %, all binary {100 * row['binary_all']:.2f} %, "
              + ", ".join(f"only weight layer {q} binary {100 * row[f'binary_only_layer{q}']:.2f} %"
                          for q in range(len(weight_layers))))
    report = {
        "script": "scripts/binarise_after.py",
        "model": os.path.relpath(args.model) if not args.model.is_absolute() else args.model.name,
        "architecture": clf.arch_.text,
        "dataset": args.dataset, "seed": args.seed, "n_val": int(len(va)),
        "calibration_images": int(T.shape[0]),
        "best_epoch": int(clf.best_epoch_), "epochs_trained": len(clf.history_),
        "weights": results,
        "seconds": time.perf_counter() - t0,
        "command": "python scripts/binarise_after.py " + " ".join(
            shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:])),
        "environment": {"python": platform.python_version(), "numpy": np.__version__,
                        "platform": platform.platform()},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out, json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
