"""Run one validation-selected training configuration of the FC search.

Usage::

    STIDI_DATA=/work/shared/datasets python scripts/fc_search.py NAME DATASET '{"epochs": 20}' [--test]

Carves a stratified validation split (5,000 images, seed 0) from the training
set, trains ``SpikingClassifier(**params)`` with per-epoch validation and
keeps the best-validation epoch.  The record (settings, per-epoch validation
accuracy, timings) is written to ``runs/NAME.json``.  ``--test`` also
evaluates the selected weights once on the test set.
"""

import json
import sys
import time
from pathlib import Path

import numpy as np

from stidi import datasets
from stidi.model import SpikingClassifier


def main(argv):
    name, dataset, params = argv[0], argv[1], json.loads(argv[2])
    test = "--test" in argv
    X, y = datasets.load(dataset, "train")
    tr, va = datasets.train_val_split(y, 5000, random_state=0)
    params.setdefault("random_state", 0)
    params.setdefault("verbose", True)
    clf = SpikingClassifier(**params)
    t0 = time.perf_counter()
    clf.fit(X[tr], y[tr], validation_data=(X[va], y[va]))
    wall = time.perf_counter() - t0
    rec = {"name": name, "dataset": dataset, "params": clf.get_params(), "wall_seconds": wall,
           "best_epoch": clf.best_epoch_, "best_val": clf.best_score_,
           "val": [h["val_accuracy"] for h in clf.history_],
           "val_no_fallback": [h["val_accuracy_no_fallback"] for h in clf.history_],
           "train_seconds": [h["train_seconds"] for h in clf.history_],
           "history": clf.history_}
    if test:
        Xt, yt = datasets.load(dataset, "test")
        rec["test"] = clf.evaluate(Xt, yt)
    Path("runs").mkdir(exist_ok=True)
    Path(f"runs/{name}.json").write_text(json.dumps(rec, indent=1))
    print(name, "best", clf.best_epoch_, f"{clf.best_score_:.4f}",
          " ".join(f"{v * 100:.2f}" for v in rec["val"]), f"{wall:.0f}s",
          "test" if test else "", json.dumps(rec.get("test", {})))


if __name__ == "__main__":
    main(sys.argv[1:])
