"""Command line: ``python -m stidi train ...``, ``evaluate MODEL.npz ...`` and ``check REPORT.json``.

``train`` trains a network on MNIST or Fashion-MNIST with a validation split
carved from the training set, evaluates the selected weights once on the test
set, and writes a JSON report (accuracies as fractions 0..1, timings, the full
configuration and the per-epoch history).  ``evaluate`` scores a saved model.
``check`` re-runs the first epochs of a report's recorded command and says
whether this version of the package trains them to the same numbers.
Every setting is checked before any data is read; a bad input ends in one
line on stderr and exit code 2 (set ``STIDI_DEBUG=1`` for the traceback).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import shlex
import sys
import time
import warnings
from pathlib import Path

import numpy as np

DEFAULT_ARCH = "784-400-10"
CONV_DEFAULT_ARCH = "28x28-16C5-P2-10"  # deprecated name (``--model conv`` without ``--arch``)
_INPUT, _CLASSES = 784, 10  # both datasets: 28x28 images, 10 classes


class CliError(Exception):
    """A bad command-line input, reported as one line."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line instead of usage + message
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


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


def _data_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", required=True, choices=["mnist", "fashion-mnist"])
    p.add_argument("--data-dir", default=None,
                   help="folder with the IDX files (default: $STIDI_DATA, else the download cache)")
    p.add_argument("--subset", action="store_true",
                   help="use the small subset shipped with the package (no download)")
    p.add_argument("--test-size", type=_positive_int, default=None,
                   help="use the first M test images (default: all)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m stidi", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    tr = sub.add_parser("train", help="train a network and write a JSON report")
    _data_arguments(tr)
    tr.add_argument("--arch", default=None,
                    help=f"architecture string, e.g. {DEFAULT_ARCH} (the default), 784-800-400-10, "
                         f"{CONV_DEFAULT_ARCH} or 28x28-32C5-P2-64C5-P2-10")
    tr.add_argument("--binary", action="store_true",
                    help="binary weights alpha*sign(w) in the forward pass")
    tr.add_argument("--model", default=None, choices=["fc", "conv"],
                    help=f"deprecated: 'conv' means --arch {CONV_DEFAULT_ARCH}, 'fc' the default")
    tr.add_argument("--hidden", type=_positive_int, action="append",
                    help="deprecated: hidden layer width, repeatable (--hidden 400 builds 784-400-10, with "
                         "the former absolute SGD learning rates, so that old commands train as before)")
    tr.add_argument("--epochs", type=_nonneg_int, default=10)
    tr.add_argument("--train-size", type=_positive_int, default=None,
                    help="training images used after the validation split (default: all)")
    tr.add_argument("--val-size", type=_nonneg_int, default=None,
                    help="validation images carved from the training set, stratified "
                         "(default: 5000, or 500 with --subset)")
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--out", required=True, help="JSON report to write")
    tr.add_argument("--checkpoint", default=None, help="checkpoint .npz written after every epoch")
    tr.add_argument("--resume", action="store_true",
                    help="continue from --checkpoint if it exists (needs --checkpoint)")
    tr.add_argument("--save-model", default=None, help="save the selected model (.npz)")
    tr.add_argument("--set", dest="overrides", action="append", default=[], metavar="NAME=VALUE",
                    help="any SpikingClassifier parameter, value in JSON (e.g. --set lr_decay=0.8)")
    tr.add_argument("--quiet", action="store_true")
    tr.set_defaults(func=train)
    ev = sub.add_parser("evaluate", help="score a model saved with train --save-model")
    ev.add_argument("model", help="model file (.npz)")
    _data_arguments(ev)
    ev.add_argument("--out", default=None, help="also write the scores to this JSON file")
    ev.set_defaults(func=evaluate)
    ck = sub.add_parser("check", help="re-run the first epochs of a report's command and compare them")
    ck.add_argument("report", help="JSON report written by train (or by sweep)")
    ck.add_argument("--epochs", type=_positive_int, default=1,
                    help="epochs to re-run and compare (default 1)")
    ck.add_argument("--data-dir", default=None,
                    help="folder with the IDX files (default: $STIDI_DATA, else the download cache)")
    ck.set_defaults(func=check)
    if importlib.util.find_spec("stidi.sweep") is not None:
        from . import sweep as _sweep

        _sweep.add_parser(sub)
    return parser


def _overrides(items: list[str]) -> dict:
    out = {}
    for item in items:
        if "=" not in item:
            raise CliError(f"--set expects NAME=VALUE, got {item!r}")
        name, value = item.split("=", 1)
        try:
            out[name.strip()] = json.loads(value)
        except json.JSONDecodeError:
            out[name.strip()] = value
    return out


def _arch(args: argparse.Namespace) -> str:
    if args.arch is not None and args.hidden:
        raise CliError("give the layers either with --arch or with the deprecated --hidden, not both")
    if args.arch is not None:
        return args.arch
    if args.hidden or args.model:
        print("warning: --hidden and --model are deprecated; give the network with --arch",
              file=sys.stderr)
    if args.hidden:
        if args.model == "conv":
            raise CliError("--hidden builds a fully connected network; give conv layers with --arch")
        return "-".join(str(v) for v in [_INPUT, *args.hidden, _CLASSES])
    return CONV_DEFAULT_ARCH if args.model == "conv" else DEFAULT_ARCH


def _check_data_dir(args) -> None:
    if args.data_dir is not None and not Path(args.data_dir).is_dir():
        raise CliError(f"--data-dir {args.data_dir}: no such folder")


def _make_model(args: argparse.Namespace):
    """The estimator of ``train``, with every setting checked against the dataset (no data read)."""
    from ._io import read_model
    from .architecture import parse_architecture
    from .model import SpikingClassifier

    if args.resume and not args.checkpoint:
        raise CliError("--resume needs --checkpoint FILE")
    _check_data_dir(args)
    params = dict(arch=_arch(args), binary=args.binary, epochs=args.epochs, random_state=args.seed,
                  verbose=not args.quiet)
    if args.hidden:  # the deprecated spelling keeps the former learning-rate meaning (see SpikingClassifier)
        params["hidden"] = tuple(args.hidden)
    params.update(_overrides(args.overrides))
    unknown = sorted(set(params) - set(SpikingClassifier._param_names()))
    if unknown:
        raise CliError(f"--set: unknown parameter {unknown[0]!r} of SpikingClassifier")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # --hidden already said it is deprecated
        clf = SpikingClassifier(**params)
        arch = parse_architecture(clf._arch_string(), n_inputs=_INPUT, n_classes=_CLASSES)
    if arch.n_inputs != _INPUT:
        raise CliError(f"architecture {arch.text!r} expects inputs of shape {arch.input_shape} "
                       f"({arch.n_inputs} values) but {args.dataset} images are 28x28 ({_INPUT})")
    if arch.n_outputs != _CLASSES:
        raise CliError(f"architecture {arch.text!r} has {arch.n_outputs} outputs but {args.dataset} "
                       f"has {_CLASSES} classes")
    clf._validate(arch)
    if args.resume and Path(args.checkpoint).exists():
        state = read_model(args.checkpoint)
        if "epoch" not in state:
            raise CliError(f"--checkpoint {args.checkpoint}: a saved model, not a training checkpoint")
    return clf, arch


def _load(args, split: str):
    from . import datasets

    if args.subset:
        return datasets.load_subset(args.dataset, split)
    return datasets.load(args.dataset, split, data_dir=args.data_dir)


def _environment() -> dict:
    import numba

    from . import __version__

    return {"stidi": __version__, "python": platform.python_version(), "numpy": np.__version__,
            "numba": numba.__version__,
            "machine": platform.machine(), "processor": platform.processor(),
            "cpu_count": os.cpu_count(), "platform": platform.platform()}


def _splits(args, y):
    from . import datasets

    val_size = args.val_size if args.val_size is not None else (500 if args.subset else 5000)
    if val_size >= len(y):
        raise CliError(f"--val-size {val_size} leaves no training images ({len(y)} in all)")
    if val_size:
        tr_idx, va_idx = datasets.train_val_split(y, val_size, random_state=args.seed)
    else:
        tr_idx, va_idx = np.arange(len(y)), np.arange(0)
    if args.train_size is not None:
        if args.train_size > len(tr_idx):
            raise CliError(f"--train-size {args.train_size} exceeds the {len(tr_idx)} training "
                           "images left after the validation split")
        tr_idx = np.sort(np.random.default_rng(args.seed).permutation(tr_idx)[: args.train_size])
    return tr_idx, va_idx


def train(args: argparse.Namespace) -> dict:
    """``python -m stidi train``: returns the report it writes."""
    from ._io import atomic_write_text, params_json

    clf, arch = _make_model(args)
    X, y = _load(args, "train")
    Xt, yt = _load(args, "test")
    tr_idx, va_idx = _splits(args, y)
    if args.test_size is not None:
        Xt, yt = Xt[: args.test_size], yt[: args.test_size]
    validation = (X[va_idx], y[va_idx]) if len(va_idx) else None
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # deprecations were reported in one line
        clf.fit(X[tr_idx], y[tr_idx], validation_data=validation, checkpoint=args.checkpoint,
                resume=args.resume)
    wall = time.perf_counter() - t0
    t1 = time.perf_counter()
    test = clf.evaluate(Xt, yt)
    test_seconds = time.perf_counter() - t1
    best = clf.history_[clf.best_epoch_ - 1] if clf.best_epoch_ else {}
    cost = clf.cost_report(Xt)  # memory and synaptic operations per test image (event-driven count)
    report = {
        "dataset": args.dataset + ("-subset" if args.subset else ""),
        "model": "conv" if arch.has_conv else "fc",
        "architecture": clf.arch_.text,
        "binary": cost["binary"],
        "test_accuracy": test["accuracy"],
        "test_accuracy_no_fallback": test["accuracy_no_fallback"],
        "test_output_silent_fraction": test["output_silent_fraction"],
        "test_tie_fraction": test["tie_fraction"],
        "val_accuracy": best.get("val_accuracy"),
        "val_accuracy_no_fallback": best.get("val_accuracy_no_fallback"),
        "test_accuracy_s4nn": test.get("accuracy_s4nn"),
        "val_accuracy_s4nn": best.get("val_accuracy_s4nn"),
        "best_epoch": clf.best_epoch_,
        "epochs": len(clf.history_),
        "train_seconds": sum(h["seconds"] for h in clf.history_),
        "wall_seconds_this_run": wall,
        "test_seconds": test_seconds,
        "n_train": int(len(tr_idx)),
        "n_val": int(len(va_idx)),
        "n_test": int(len(yt)),
        "config": json.loads(params_json(clf.get_params())),
        "command": "python -m stidi " + " ".join(shlex.quote(a) for a in _portable(args.argv)),
        "history": clf.history_,
        "environment": _environment(),
        "decision_rule": ("first output spike; ties -> larger dv/dt at the tie time, then lowest "
                          "index; no output spike -> largest peak potential (test_accuracy) or "
                          "counted as an error (test_accuracy_no_fallback)"),
        "bits_per_synapse": cost["bits_per_synapse"],
        "weight_bytes": cost["weight_bytes"],
        "synops_per_image": cost["synops_per_image"],
        "cost": cost,
    }
    atomic_write_text(Path(args.out), json.dumps(report, indent=2, default=float) + "\n")
    if args.save_model:
        clf.save(args.save_model)
    if not args.quiet:
        print(f"test accuracy {test['accuracy']:.4f} (no fallback {test['accuracy_no_fallback']:.4f}), "
              f"val {report['val_accuracy']}, best epoch {clf.best_epoch_}, "
              f"{report['train_seconds']:.1f} s training -> {args.out}")
    return report


def evaluate(args: argparse.Namespace) -> dict:
    """``python -m stidi evaluate MODEL.npz``: scores on the test split; returns them."""
    from ._io import atomic_write_text, params_json
    from .model import SpikingClassifier

    _check_data_dir(args)
    clf = SpikingClassifier.load(args.model)
    if clf.n_features_in_ != _INPUT:
        raise CliError(f"{args.model}: the model expects {clf.n_features_in_} inputs but "
                       f"{args.dataset} images have {_INPUT}")
    Xt, yt = _load(args, "test")
    if args.test_size is not None:
        Xt, yt = Xt[: args.test_size], yt[: args.test_size]
    unseen = sorted(set(np.unique(yt).tolist()) - set(clf.classes_.tolist()))
    if unseen:
        raise CliError(f"{args.model}: {args.dataset} has labels {unseen} the model never saw")
    t0 = time.perf_counter()
    scores = clf.evaluate(Xt, yt)
    report = {"model_file": str(args.model), "dataset": args.dataset + ("-subset" if args.subset else ""),
              "architecture": clf.arch_.text, "n_test": int(len(yt)),
              **{"test_" + k: v for k, v in scores.items()},
              "test_seconds": time.perf_counter() - t0, "config": json.loads(params_json(clf.get_params())),
              "environment": _environment()}
    if args.out:
        atomic_write_text(Path(args.out), json.dumps(report, indent=2, default=float) + "\n")
    print(f"test accuracy {scores['accuracy']:.4f} (no fallback {scores['accuracy_no_fallback']:.4f}) "
          f"on {len(yt)} {args.dataset} images, {clf.arch_.text}")
    return report


#: Per-epoch fields that ``check`` compares, exactly: everything the training itself
#: decides (times and rates are left out: the first is the machine's, the second the command's).
CHECKED_FIELDS = ("train_accuracy_running", "train_output_silent_fraction", "train_hidden_silent_fraction",
                  "reinitialised", "bumped", "val_accuracy", "val_accuracy_no_fallback", "alpha")


def check(args: argparse.Namespace) -> int:
    """``python -m stidi check REPORT.json``: 0 if the re-run epochs match the report, 1 if not.

    The report's ``command`` is parsed as ``train`` would parse it; its output,
    checkpoint and saved-model paths are dropped (a ``--resume`` too: the re-run
    starts from scratch, which a resumed run equals), every setting of the report's
    ``config`` is passed explicitly (a default changed since then is not a
    difference), and it trains for ``--epochs`` epochs into a temporary folder.  Rates that decay per epoch do not
    depend on the number of epochs; a cosine schedule does, so it is only checked
    over the report's full length.
    """
    import tempfile

    path = Path(args.report)
    if not path.is_file():
        raise CliError(f"{path}: no such report")
    try:
        rep = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CliError(f"{path}: not a JSON report ({err})") from None
    if not isinstance(rep, dict) or "command" not in rep or "history" not in rep:
        raise CliError(f"{path}: not a training report (it needs the 'command' and 'history' of one run)")
    words = shlex.split(str(rep["command"]))
    if words[:4] != ["python", "-m", "stidi", "train"]:
        raise CliError(f"{path}: its command is not 'python -m stidi train ...' (got {' '.join(words[:4])!r})")
    history = rep["history"]
    if len(history) < args.epochs:
        raise CliError(f"{path}: the report has {len(history)} epoch(s), fewer than --epochs {args.epochs}")
    config = rep.get("config") or {}
    if config.get("lr_schedule") == "cosine" and args.epochs != int(rep["epochs"]):
        raise CliError(f"{path}: a cosine schedule depends on the number of epochs; "
                       f"check it with --epochs {rep['epochs']}")
    from .sweep import _pairs

    drop = set(_PATH_FLAGS) | {"--epochs", "--resume", "--quiet"}
    argv = [tok for flag, value in _pairs(words[4:]) if flag not in drop
            for tok in (flag, value) if tok is not None]
    # every setting as the report recorded it, so that a default changed since then does not
    # count as a difference; settings added since count as the value that reproduces the
    # behaviour of the time
    from .model import _ABSENT_MEANS

    for name, value in {**_ABSENT_MEANS, **config}.items():
        if name not in ("epochs", "verbose"):
            argv += ["--set", f"{name}={json.dumps(value)}"]
    with tempfile.TemporaryDirectory() as tmp:
        argv += ["--epochs", str(args.epochs), "--quiet", "--out", str(Path(tmp) / "check.json")]
        if args.data_dir is not None:
            argv += ["--data-dir", args.data_dir]
        targs = build_parser().parse_args(["train", *argv])
        targs.argv = ["train", *argv]
        again = train(targs)
    differences = []
    for old, new in zip(history[:args.epochs], again["history"]):
        for field in CHECKED_FIELDS:
            if (field in old or field in new) and old.get(field) != new.get(field):
                differences.append(f"epoch {old.get('epoch')}: {field} {old.get(field)} in the report, "
                                   f"{new.get(field)} now")
    n = min(args.epochs, len(again["history"]))
    if differences:
        print(f"{path}: differs from this version of stidi in {len(differences)} value(s) over {n} epoch(s); "
              f"first: {differences[0]}")
        return 1
    last = again["history"][n - 1]
    print(f"{path}: reproduced, {n} epoch(s) ({', '.join(f for f in CHECKED_FIELDS if f in last)} identical; "
          f"epoch {n}: running training accuracy {last['train_accuracy_running']:.4f}"
          + (f", validation {last['val_accuracy']:.4f}" if "val_accuracy" in last else "") + ")")
    return 0


_PATH_FLAGS = ("--out", "--checkpoint", "--save-model", "--data-dir")


def _portable(argv: list[str]) -> list[str]:
    """``argv`` with the paths of :data:`_PATH_FLAGS` made relative to the working folder when
    they lie inside it, so that a recorded command does not name the machine's folders."""
    out, cwd = [], Path.cwd().resolve()
    for i, arg in enumerate(argv):
        flag, eq, value = arg.partition("=")
        prev = argv[i - 1] if i else ""
        if eq and flag in _PATH_FLAGS:
            out.append(f"{flag}={_relative(value, cwd)}")
        elif prev in _PATH_FLAGS:
            out.append(_relative(arg, cwd))
        else:
            out.append(arg)
    return out


def _relative(path: str, cwd: Path) -> str:
    p = Path(path)
    if not p.is_absolute():
        return path
    try:
        return str(p.resolve().relative_to(cwd))
    except ValueError:
        return path


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m stidi``; returns the exit code (2 on bad input)."""
    from ._io import ModelFileError
    from .datasets import DatasetError

    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    try:
        result = args.func(args)
    except (CliError, ValueError, TypeError, OSError, DatasetError, ModelFileError) as exc:
        if os.environ.get("STIDI_DEBUG"):
            raise
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    return result if isinstance(result, int) else 0
