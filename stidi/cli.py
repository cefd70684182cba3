"""Command line: ``python -m stidi train ...``.

Trains a network on MNIST or Fashion-MNIST with a validation split carved
from the training set, evaluates the selected weights once on the test set,
and writes a JSON report (accuracies as fractions 0..1, timings, the full
configuration and the per-epoch history).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def _nonneg_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text}")
    return value


CONV_DEFAULT_ARCH = "28x28-16C5-P2-10"  # the ConvSpikingClassifier default


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m stidi", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    tr = sub.add_parser("train", help="train a network and write a JSON report")
    tr.add_argument("--dataset", required=True, choices=["mnist", "fashion-mnist"])
    tr.add_argument("--data-dir", default=None,
                    help="folder with the IDX files (default: $STIDI_DATA, else the download cache)")
    tr.add_argument("--subset", action="store_true",
                    help="use the small subset shipped with the package (no download)")
    tr.add_argument("--model", default="fc", choices=["fc", "conv"],
                    help="fc: SpikingClassifier; conv: ConvSpikingClassifier (see --arch)")
    tr.add_argument("--hidden", type=_positive_int, action="append",
                    help="hidden layer width; repeat for several layers (default: 400)")
    tr.add_argument("--arch", default=None,
                    help=f"conv only: architecture string (default: {CONV_DEFAULT_ARCH})")
    tr.add_argument("--binary", action="store_true",
                    help="conv only: binary weights alpha*sign(w) in the forward pass")
    tr.add_argument("--epochs", type=_nonneg_int, default=10)
    tr.add_argument("--train-size", type=_positive_int, default=None,
                    help="training images used after the validation split (default: all)")
    tr.add_argument("--val-size", type=_nonneg_int, default=None,
                    help="validation images carved from the training set, stratified "
                         "(default: 5000, or 500 with --subset)")
    tr.add_argument("--test-size", type=_positive_int, default=None,
                    help="use the first M test images (default: all)")
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--out", required=True, help="JSON report to write")
    tr.add_argument("--checkpoint", default=None, help="checkpoint .npz written after every epoch")
    tr.add_argument("--resume", action="store_true", help="continue from --checkpoint if present")
    tr.add_argument("--save-model", default=None, help="save the selected model (.npz)")
    tr.add_argument("--set", dest="overrides", action="append", default=[], metavar="NAME=VALUE",
                    help="any SpikingClassifier parameter (ConvSpikingClassifier with --model conv), "
                         "value in JSON (e.g. --set lr_decay=0.8)")
    tr.add_argument("--quiet", action="store_true")
    return parser


def _overrides(items: list[str]) -> dict:
    out = {}
    for item in items:
        if "=" not in item:
            raise SystemExit(f"error: --set expects NAME=VALUE, got {item!r}")
        name, value = item.split("=", 1)
        try:
            out[name] = json.loads(value)
        except json.JSONDecodeError:
            out[name] = value
    return out


def _atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the report normal permissions
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _make_model(args: argparse.Namespace):
    common = dict(epochs=args.epochs, random_state=args.seed, verbose=not args.quiet)
    if args.model == "conv":
        from .conv import ConvSpikingClassifier, parse_architecture

        if args.hidden:
            raise SystemExit("error: --hidden applies to --model fc; give conv layer sizes with --arch")
        params = dict(arch=args.arch or CONV_DEFAULT_ARCH, binary=args.binary, **common)
        params.update(_overrides(args.overrides))
        try:
            parse_architecture(params["arch"])
            clf = ConvSpikingClassifier(**params)
            clf._validate()
        except (TypeError, ValueError) as exc:
            raise SystemExit(f"error: {exc}") from None
        return clf
    from .model import SpikingClassifier

    if args.arch is not None or args.binary:
        raise SystemExit("error: --arch and --binary apply to --model conv")
    params = dict(hidden=tuple(args.hidden or [400]), **common)
    params.update(_overrides(args.overrides))
    try:
        return SpikingClassifier(**params)
    except TypeError as exc:
        raise SystemExit(f"error: {exc}") from None


def train(args: argparse.Namespace) -> dict:
    from . import datasets

    clf = _make_model(args)
    if args.val_size is None:
        args.val_size = 500 if args.subset else 5000

    if args.subset:
        X, y = datasets.load_subset(args.dataset, "train")
        Xt, yt = datasets.load_subset(args.dataset, "test")
    else:
        X, y = datasets.load(args.dataset, "train", data_dir=args.data_dir)
        Xt, yt = datasets.load(args.dataset, "test", data_dir=args.data_dir)
    if args.val_size >= len(y):
        raise SystemExit(f"error: --val-size {args.val_size} leaves no training images ({len(y)} in all)")
    if args.val_size:
        tr_idx, va_idx = datasets.train_val_split(y, args.val_size, random_state=args.seed)
    else:
        tr_idx, va_idx = np.arange(len(y)), np.arange(0)
    if args.train_size is not None:
        if args.train_size > len(tr_idx):
            raise SystemExit(f"error: --train-size {args.train_size} exceeds the {len(tr_idx)} "
                             "training images left after the validation split")
        tr_idx = np.sort(np.random.default_rng(args.seed).permutation(tr_idx)[: args.train_size])
    if args.test_size is not None:
        Xt, yt = Xt[: args.test_size], yt[: args.test_size]
    validation = (X[va_idx], y[va_idx]) if len(va_idx) else None
    t0 = time.perf_counter()
    clf.fit(X[tr_idx], y[tr_idx], validation_data=validation, checkpoint=args.checkpoint,
            resume=args.resume)
    train_seconds = sum(h["seconds"] for h in clf.history_)
    wall = time.perf_counter() - t0
    t1 = time.perf_counter()
    test = clf.evaluate(Xt, yt)
    test_seconds = time.perf_counter() - t1
    best = clf.history_[clf.best_epoch_ - 1] if clf.best_epoch_ else {}
    import numba

    report = {
        "dataset": args.dataset + ("-subset" if args.subset else ""),
        "model": args.model,
        "architecture": (clf.arch if args.model == "conv" else
                         "-".join(str(int(s)) for s in clf.layout_.sizes)),
        "test_accuracy": test["accuracy"],
        "test_accuracy_no_fallback": test["accuracy_no_fallback"],
        "test_output_silent_fraction": test["output_silent_fraction"],
        "test_tie_fraction": test["tie_fraction"],
        "val_accuracy": best.get("val_accuracy"),
        "val_accuracy_no_fallback": best.get("val_accuracy_no_fallback"),
        "best_epoch": clf.best_epoch_,
        "epochs": len(clf.history_),
        "train_seconds": train_seconds,
        "wall_seconds_this_run": wall,
        "test_seconds": test_seconds,
        "n_train": int(len(tr_idx)),
        "n_val": int(len(va_idx)),
        "n_test": int(len(yt)),
        "config": clf.get_params(),
        "command": "python -m stidi " + " ".join(shlex.quote(a) for a in args.argv),
        "history": clf.history_,
        "environment": {
            "python": platform.python_version(), "numpy": np.__version__, "numba": numba.__version__,
            "machine": platform.machine(), "processor": platform.processor(),
            "cpu_count": os.cpu_count(), "platform": platform.platform(),
        },
        "decision_rule": ("first output spike; ties -> larger dv/dt at the tie time, then lowest "
                          "index; no output spike -> largest peak potential (test_accuracy) or "
                          "counted as an error (test_accuracy_no_fallback)"),
    }
    if args.model == "conv":
        # memory and synaptic operations per test image (event-driven count)
        cost = clf.cost_report(Xt)
        report["binary"] = cost["binary"]
        report["bits_per_synapse"] = cost["bits_per_synapse"]
        report["weight_bytes"] = cost["weight_bytes"]
        report["synops_per_image"] = cost["synops_per_image"]
        report["cost"] = cost
    _atomic_write_text(Path(args.out), json.dumps(report, indent=2, default=float) + "\n")
    if args.save_model:
        clf.save(args.save_model)
    if not args.quiet:
        print(f"test accuracy {test['accuracy']:.4f} (no fallback {test['accuracy_no_fallback']:.4f}), "
              f"val {report['val_accuracy']}, best epoch {clf.best_epoch_}, "
              f"{train_seconds:.1f} s training -> {args.out}")
    return report


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    if args.command == "train":
        train(args)
    return 0
