"""Run one validation-selected training configuration of the FC search.

Usage::

    STIDI_DATA=/path/to/datasets python scripts/fc_search.py NAME DATASET \
        '{"arch": "784-400-10", "epochs": 20}' [--test]

Carves a stratified validation split (5,000 images, seed 0) from the training
set, trains ``SpikingClassifier(**params)`` with per-epoch validation and
keeps the best-validation epoch.  The record (settings, per-epoch validation
accuracy, timings) is written to ``runs/NAME.json``.  ``--test`` also
evaluates the selected weights once on the test set.  ``params`` are the
keyword arguments of ``stidi.SpikingClassifier``: the network is ``arch``
(default 784-400-10) and learning rates are in units of each layer's
calibrated initial scale.  The probes logged in ``results/fc-search.md`` were
run with an earlier engine, whose fully connected networks were given as
``hidden`` and whose rates were absolute steps.
"""

import json
import sys
import time
from pathlib import Path

from stidi import SpikingClassifier, datasets
from stidi._io import atomic_write_text

USAGE = "usage: fc_search.py NAME DATASET PARAMS_JSON [--test]"


def _arguments(argv):
    """(name, dataset, params, test) from the command line; one clear error otherwise."""
    if len(argv) < 3 or any(a.startswith("--") and a != "--test" for a in argv):
        sys.exit(f"{USAGE}\nerror: expected NAME DATASET PARAMS_JSON and optionally --test")
    name, dataset = argv[0], argv[1]
    if dataset not in datasets.DATASETS:
        sys.exit(f"error: unknown dataset {dataset!r}; choose from {sorted(datasets.DATASETS)}")
    try:
        params = json.loads(argv[2])
    except json.JSONDecodeError as exc:
        sys.exit(f"error: PARAMS_JSON is not JSON ({exc})")
    if not isinstance(params, dict):
        sys.exit("error: PARAMS_JSON must be a JSON object of SpikingClassifier settings")
    if "hidden" in params:
        sys.exit('error: give the network as "arch" (e.g. "784-400-10"), not "hidden"')
    return name, dataset, params, "--test" in argv[3:]


def main(argv):
    name, dataset, params, test = _arguments(argv)
    try:
        clf = SpikingClassifier(**params)
    except TypeError as exc:
        sys.exit(f"error: PARAMS_JSON: {exc}")
    X, y = datasets.load(dataset, "train")
    tr, va = datasets.train_val_split(y, 5000, random_state=0)
    clf.set_params(**{k: v for k, v in (("random_state", 0), ("verbose", True)) if k not in params})
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
    atomic_write_text(Path(f"runs/{name}.json"), json.dumps(rec, indent=1))
    print(name, "best", clf.best_epoch_, f"{clf.best_score_:.4f}",
          " ".join(f"{v * 100:.2f}" for v in rec["val"]), f"{wall:.0f}s",
          "test" if test else "", json.dumps(rec.get("test", {})))


if __name__ == "__main__":
    main(sys.argv[1:])
