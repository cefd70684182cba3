"""The committed result reports, the reproduction table, and seed repeats.

Where the reports are
---------------------
Full-size runs are too slow for a chapter, so their JSON reports are
committed to the repository's ``results/`` folder and shipped inside the
package (``pyproject.toml`` installs that folder as ``stidi/_results``).
:func:`results_dir` finds them, first match wins:

1. the folder named by the environment variable :data:`ENV_VAR`
   (``STIDI_RESULTS``), which must exist;
2. ``results/`` next to the package source (a checkout or an editable
   install), when it holds at least one ``*.json`` report;
3. the copy installed with the package (``stidi/_results``).

So a chapter downloaded from the book runs anywhere ``pip install stidi``
works, and in a checkout it always reads the freshest reports.

Functions
---------
:func:`results_dir`, :func:`load_report`, :func:`available_reports`
    Locate and read reports.
:func:`build_table`, :func:`binary_drop_table`, :func:`paired_drops`, :func:`learning_curves`
    The reproduction table of chapter 8: every number of this book read from
    a report written by ``python -m stidi train``, next to the published
    number (quoted from the papers' abstracts).  A missing report is shown as
    :data:`NOT_RUN`.  Accuracies are percentages (``100 * fraction``), times
    minutes; a missing value is ``NaN``.
:func:`seed_repeats`
    The per-seed reports of a committed run (``results/seeds/<run>/``, written
    by ``python -m stidi sweep``), summarised as mean and sd over the seeds.
:func:`over_seeds`
    Rerun one configuration with several seeds and return a tidy frame, for
    error bars in labs (:func:`stidi.plot.seed_chart` draws it).
"""

from __future__ import annotations

import copy
import json
import math
import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

__all__ = [
    "ENV_VAR",
    "results_dir",
    "report_path",
    "load_report",
    "available_reports",
    "best_within",
    "Published",
    "Run",
    "RUNS",
    "BINARY_PAIRS",
    "NOT_RUN",
    "PUBLISHED_BINARY_DROP",
    "load_reports",
    "build_table",
    "binary_drop_table",
    "paired_drops",
    "learning_curves",
    "SEEDS_FOLDER",
    "seed_repeats",
    "hardware",
    "interval_half_width",
    "over_seeds",
]

#: Environment variable naming a folder of reports that overrides the others.
ENV_VAR = "STIDI_RESULTS"

_PACKAGE = Path(__file__).resolve().parent
#: ``results/`` of a checkout (the package source sits next to it).
CHECKOUT_RESULTS = _PACKAGE.parent / "results"
#: Where a wheel installs the reports.
PACKAGED_RESULTS = _PACKAGE / "_results"


def _has_reports(folder: Path) -> bool:
    return folder.is_dir() and any(folder.glob("*.json"))


def results_dir() -> Path:
    """The folder the reports are read from (see the module docstring for the order)."""
    env = os.environ.get(ENV_VAR)
    if env:
        folder = Path(env).expanduser()
        if not folder.is_dir():
            raise FileNotFoundError(f"{ENV_VAR}={env!r} is not a folder")
        return folder
    for folder in (CHECKOUT_RESULTS, PACKAGED_RESULTS):
        if _has_reports(folder):
            return folder
    raise FileNotFoundError(
        f"no result reports found: set {ENV_VAR} to a folder of *.json reports "
        f"(looked in {CHECKOUT_RESULTS} and {PACKAGED_RESULTS})")


def _folder(folder: str | Path | None) -> Path:
    """``folder`` as a path, or :func:`results_dir` when it is None (callers' argument
    ``results_dir`` hides the function of that name)."""
    return Path(folder) if folder is not None else results_dir()


def _name(name: str) -> str:
    if not isinstance(name, str) or not name or "/" in name or "\\" in name or name.startswith("."):
        raise ValueError(f"a report name is a file name such as 'fc-mnist' or 'fc-mnist.json', not {name!r}")
    return name if name.endswith(".json") else f"{name}.json"


def report_path(name: str, folder: str | Path | None = None) -> Path:
    """Path of report ``name`` (``"fc-mnist"`` or ``"fc-mnist.json"``); it may not exist."""
    return _folder(folder) / _name(name)


def load_report(name: str, folder: str | Path | None = None, *, required: bool = False) -> dict | None:
    """Read a committed report; ``None`` when it is missing (``required=True``: raise instead).

    Example::

        rep = stidi.results.load_report("fc-mnist")
        print(rep["test_accuracy"], rep["command"])
    """
    path = report_path(name, folder)
    if not path.is_file():
        if required:
            raise FileNotFoundError(f"report {path.name} not found in {path.parent}")
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from None


def available_reports(folder: str | Path | None = None) -> list[str]:
    """Names (without ``.json``) of the reports in the results folder."""
    return sorted(p.stem for p in _folder(folder).glob("*.json"))


def best_within(run: dict, n: int) -> float:
    """Best validation accuracy of one run over its first ``n`` epochs.

    ``run`` is a run's report, or one entry of the ``runs`` list of a probe
    file (anything with a ``history`` of per-epoch ``val_accuracy``), so that
    runs of different lengths compare at equal budgets.
    """
    history = run["history"][: int(n)]
    if not history:
        raise ValueError(f"no epochs to read: the run has {len(run['history'])}, n = {n}")
    return max(h["val_accuracy"] for h in history)


# ---------------------------------------------------------------- reproduction table

#: Text shown in place of this book's numbers when a report is missing.
NOT_RUN = "not run"

#: Fields a report must have to enter the table.
REQUIRED_FIELDS = ("test_accuracy", "test_accuracy_no_fallback", "val_accuracy", "best_epoch",
                   "epochs", "train_seconds", "command", "history")


@dataclass(frozen=True)
class Published:
    """A number quoted from a paper (accuracy in %, on the test set)."""

    method: str
    accuracy: float
    source: str          # author-year, for the table
    cite_key: str        # key in book/references.bib, for the prose
    note: str = ""
    derived: bool = False  # True: computed from a stated drop, not printed as such


@dataclass(frozen=True)
class Run:
    """One run of this book and the published result it is compared with."""

    name: str            # results/<name>.json
    network: str
    dataset: str
    published: Published


_P2 = ("Mirsadeghi et al. (2023)", "mirsadeghi2023spike")
_S4NN = ("Kheradpisheh & Masquelier (2020)", "kheradpisheh2020temporal")
_BS4NN = ("Kheradpisheh et al. (2022)", "kheradpisheh2022bs4nn")

#: Published binary-weight drops of the convolutional networks, in points (abstract of [P2]).
PUBLISHED_BINARY_DROP = {"MNIST": 0.6, "Fashion-MNIST": 0.8}

RUNS: tuple[Run, ...] = (
    Run("fc-mnist", "fully connected, real weights", "MNIST",
        Published("S4NN", 97.4, *_S4NN,
                  note="784-400-10; same family of single-spike networks, step-shaped PSPs")),
    Run("fc-fashion-mnist", "fully connected, real weights", "Fashion-MNIST",
        Published("BS4NN, binary", 87.3, *_BS4NN,
                  note="784-600-10, binary weights: a real-weight network should do at least as well")),
    Run("conv-mnist", "convolutional, real weights", "MNIST",
        Published("R-CSNN", 99.2, *_P2)),
    Run("conv-fashion-mnist", "convolutional, real weights", "Fashion-MNIST",
        Published("R-CSNN", 92.8, *_P2)),
    Run("conv-binary-mnist", "convolutional, binary weights", "MNIST",
        Published("B-CSNN", round(99.2 - PUBLISHED_BINARY_DROP["MNIST"], 1), *_P2,
                  note="99.2 minus the stated drop of about 0.6 points", derived=True)),
    Run("conv-binary-fashion-mnist", "convolutional, binary weights", "Fashion-MNIST",
        Published("B-CSNN", round(92.8 - PUBLISHED_BINARY_DROP["Fashion-MNIST"], 1), *_P2,
                  note="92.8 minus the stated drop of about 0.8 points", derived=True)),
)

#: (real-weight twin, binary-weight run) pairs for the binarisation drop.  The twin is the
#: binary run's network and settings with real weights (``<binary run>-real.json``), which
#: need not be the most accurate real-weight network of the table.
BINARY_PAIRS = (("conv-binary-mnist-real", "conv-binary-mnist"),
                ("conv-binary-fashion-mnist-real", "conv-binary-fashion-mnist"))


def _check_report(report: dict, path: Path) -> dict:
    missing = [f for f in REQUIRED_FIELDS if f not in report]
    if missing:
        raise ValueError(f"{path}: not a training report (missing {', '.join(missing)})")
    return report


def load_reports(results_dir: str | Path | None = None,
                 runs: tuple[Run, ...] = RUNS) -> dict[str, dict | None]:
    """Read ``<results_dir>/<run>.json`` for every run; ``None`` where the file does not exist.

    ``results_dir=None`` uses :func:`results_dir`.  A file that exists but is
    not a training report raises ``ValueError`` (a broken report must not
    silently become "not run").
    """
    folder = _folder(results_dir)
    return {run.name: _checked_report(run.name, folder) for run in runs}


def _percent(value) -> float:
    return math.nan if value is None else 100.0 * float(value)


def interval_half_width(accuracy: float, n: int | None) -> float:
    """Half width, in points, of the 95 % normal-approximation interval of an accuracy on ``n`` images."""
    if not n:
        return math.nan
    p = float(accuracy)
    return 100.0 * 1.96 * math.sqrt(p * (1.0 - p) / int(n))


def hardware(report: dict) -> str:
    """Short description of the machine a report was produced on."""
    env = report.get("environment") or {}
    parts = []
    if env.get("machine"):
        parts.append(env["machine"])
    if env.get("cpu_count"):
        parts.append(f"{env['cpu_count']} CPUs")
    versions = [f"{name} {env[key]}" for name, key in
                (("Python", "python"), ("NumPy", "numpy"), ("Numba", "numba")) if env.get(key)]
    return ", ".join(parts + versions) if parts or versions else "unknown"


def build_table(results_dir: str | Path | None = None, runs: tuple[Run, ...] = RUNS) -> pd.DataFrame:
    """The side-by-side table, one row per run (index: run name).

    Columns: ``network``, ``dataset``, ``published (%)``, ``published by``,
    ``status`` ("run" or :data:`NOT_RUN`), ``test (%)``, ``± 95 % (points)`` (half
    width of the normal-approximation binomial interval of the test accuracy,
    ``1.96 * sqrt(p (1 - p) / n)`` with ``n`` the number of test images),
    ``test, no fallback (%)``, ``validation (%)``, ``best epoch``, ``epochs``,
    ``difference (points)`` (ours minus published), ``architecture``,
    ``training (min)``, ``hardware``, ``command``; and, for a run repeated over
    seeds (:func:`seed_repeats`), ``seeds``, ``test mean (%)``, ``test sd
    (points)`` (sample sd) and ``validation mean (%)`` (``NaN`` otherwise).

    Example::

        stidi.results.build_table()[["published (%)", "test (%)", "difference (points)"]]
    """
    reports = load_reports(results_dir, runs)
    folder = _folder(results_dir)
    rows = []
    for run in runs:
        rep = reports[run.name]
        pub = run.published
        row = {
            "run": run.name,
            "network": run.network,
            "dataset": run.dataset,
            "published (%)": pub.accuracy,
            "published by": f"{pub.method}, {pub.source}" + (" (derived)" if pub.derived else ""),
            "status": NOT_RUN if rep is None else "run",
        }
        if rep is None:
            row.update({"test (%)": math.nan, "± 95 % (points)": math.nan,
                        "test, no fallback (%)": math.nan,
                        "validation (%)": math.nan, "best epoch": math.nan, "epochs": math.nan,
                        "difference (points)": math.nan, "architecture": NOT_RUN,
                        "training (min)": math.nan, "hardware": NOT_RUN, "command": NOT_RUN})
        else:
            test = _percent(rep["test_accuracy"])
            row.update({
                "test (%)": test,
                "± 95 % (points)": interval_half_width(rep["test_accuracy"], rep.get("n_test")),
                "test, no fallback (%)": _percent(rep["test_accuracy_no_fallback"]),
                "validation (%)": _percent(rep["val_accuracy"]),
                "best epoch": float(rep["best_epoch"]),
                "epochs": float(rep["epochs"]),
                "difference (points)": test - pub.accuracy,
                "architecture": str(rep.get("architecture", "")),
                "training (min)": float(rep["train_seconds"]) / 60.0,
                "hardware": hardware(rep),
                "command": str(rep["command"]),
            })
        row.update(_seed_columns(run.name, folder))
        rows.append(row)
    return pd.DataFrame(rows).set_index("run")


def _field(report: dict | None, key: str) -> float:
    """A numeric field of a report, NaN when the report or the field is missing."""
    if report is None or report.get(key) is None:
        return math.nan
    return float(report[key])


def _kilobytes(report: dict | None) -> float:
    return _field(report, "weight_bytes") / 1000.0


def binary_drop_table(results_dir: str | Path | None = None, runs: tuple[Run, ...] = RUNS,
                      pairs=BINARY_PAIRS) -> pd.DataFrame:
    """Test accuracy lost by binarising the weights: published against ours (points).

    Each binary run is compared with its real-weight twin (:data:`BINARY_PAIRS`), the same
    architecture and settings with real weights; reports of different architectures raise
    ``ValueError``.  Also the weight memory (``weight_bytes`` / 1000) and the synaptic operations
    per test image (``synops_per_image``) of both networks, from the reports of
    convolutional runs (NaN where a report does not hold them).  When both runs
    were repeated over seeds (:func:`seed_repeats`), ``drop over seeds (points)``
    and ``drop sd (points)`` are the mean and sample sd of the per-seed drops over
    the seeds they share, and ``seeds`` their number (NaN otherwise).
    """
    folder = _folder(results_dir)
    by_name = {run.name: run for run in runs}
    rows = []
    for real, binary in pairs:
        dataset = by_name[binary].dataset
        r, b = _checked_report(real, folder), _checked_report(binary, folder)
        if r is not None and b is not None and r.get("architecture") != b.get("architecture"):
            raise ValueError(f"{real}.json ({r.get('architecture')}) and {binary}.json "
                             f"({b.get('architecture')}): a binarisation drop compares one network "
                             "with itself")
        ours = (_percent(r["test_accuracy"]) - _percent(b["test_accuracy"])
                if r is not None and b is not None else math.nan)
        paired = paired_drops(real, binary, folder)
        rows.append({
            "dataset": dataset,
            "architecture": "" if b is None else str(b.get("architecture", "")),
            "published drop (points)": PUBLISHED_BINARY_DROP[dataset],
            "real weights (%)": math.nan if r is None else _percent(r["test_accuracy"]),
            "binary weights (%)": math.nan if b is None else _percent(b["test_accuracy"]),
            "our drop (points)": ours,
            "real weights (kB)": _kilobytes(r),
            "binary weights (kB)": _kilobytes(b),
            "real: synaptic ops per image": _field(r, "synops_per_image"),
            "binary: synaptic ops per image": _field(b, "synops_per_image"),
            "drop over seeds (points)": float(paired.mean()) if len(paired) else math.nan,
            "drop sd (points)": float(paired.std(ddof=1)) if len(paired) > 1 else math.nan,
            "seeds": float(len(paired)) if len(paired) else math.nan,
            "status": "run" if r is not None and b is not None else NOT_RUN,
        })
    return pd.DataFrame(rows).set_index("dataset")


def _checked_report(name: str, folder) -> dict | None:
    """Report ``name`` (``None`` when missing); a file that is not a training report raises."""
    report = load_report(name, folder)
    return None if report is None else _check_report(report, report_path(name, folder))


def paired_drops(real: str, binary: str, results_dir: str | Path | None = None,
                 metric: str = "test_accuracy") -> pd.Series:
    """Per-seed drops (points) of ``metric`` from run ``real`` to run ``binary``.

    Over the seeds both runs were repeated with (:func:`seed_repeats`), indexed by
    seed; empty when either run has no seed reports.  ``metric`` is a column of
    :func:`seed_repeats` (``"test_accuracy"`` or ``"val_accuracy"``).

    Example::

        drops = stidi.results.paired_drops("conv-binary-mnist-real", "conv-binary-mnist")
        print(drops.mean(), drops.std(ddof=1))
    """
    folder = _folder(results_dir)
    r, b = seed_repeats(real, folder), seed_repeats(binary, folder)
    if r is None or b is None:
        return pd.Series(dtype=float)
    both = r.set_index("seed")[metric].to_frame("real").join(
        b.set_index("seed")[metric].to_frame("binary"), how="inner")
    return 100.0 * (both["real"] - both["binary"])


def learning_curves(results_dir: str | Path | None = None, runs: tuple[Run, ...] = RUNS) -> pd.DataFrame:
    """Per-epoch history of every available report, long form.

    Columns: ``run``, ``network``, ``dataset``, ``epoch``, ``metric``, ``value``
    (accuracies in %, times in seconds), ``best epoch``.  Metrics: every scalar
    entry of the report's ``history`` records (for example ``val_accuracy``,
    ``train_accuracy_running``, ``val_output_silent_fraction``); list-valued
    entries (one value per layer) become ``<name>[<layer>]``.
    """
    reports = load_reports(results_dir, runs)
    rows = []
    for run in runs:
        rep = reports[run.name]
        if rep is None:
            continue
        for rec in rep["history"]:
            epoch = int(rec["epoch"])
            for key, value in rec.items():
                if key == "epoch":
                    continue
                items = ([(f"{key}[{i}]", v) for i, v in enumerate(value)]
                         if isinstance(value, list) else [(key, value)])
                for name, v in items:
                    if isinstance(v, bool) or not isinstance(v, (int, float)) or v is None:
                        continue
                    scale = 100.0 if ("accuracy" in name or "fraction" in name) else 1.0
                    rows.append({"run": run.name, "network": run.network, "dataset": run.dataset,
                                 "epoch": epoch, "metric": name, "value": scale * float(v),
                                 "best epoch": int(rep["best_epoch"])})
    columns = ["run", "network", "dataset", "epoch", "metric", "value", "best epoch"]
    return pd.DataFrame(rows, columns=columns)


# ---------------------------------------------------------------- seed repeats

#: Sub-folder of the results folder that holds ``<run>/<sweep run>.json``, one report per seed.
SEEDS_FOLDER = "seeds"


def seed_repeats(name: str, results_dir: str | Path | None = None) -> pd.DataFrame | None:
    """The per-seed reports of a committed run, one row per seed; ``None`` if there are none.

    A committed run ``<name>.json`` is the report of its first seed; the sweep
    that repeated it over seeds leaves its reports in
    ``<results_dir>/seeds/<name>/`` (copied from the sweep's output folder).
    The frame has the columns of
    :func:`stidi.sweep.load_reports` (``seed``, ``val_accuracy``,
    ``test_accuracy``, ``best_epoch``, ``command``, ...), sorted by seed, and
    all its rows must share one configuration.

    Example::

        reps = stidi.results.seed_repeats("fc-mnist")
        print(100 * reps.test_accuracy.mean(), 100 * reps.test_accuracy.std(ddof=1))
    """
    from .sweep import load_reports as _sweep_reports

    folder = _folder(results_dir) / SEEDS_FOLDER / _name(name)[:-5]
    if not folder.is_dir():
        return None
    df = _sweep_reports(folder)
    if df.empty:
        return None
    if df.config_id.nunique() != 1:
        raise ValueError(f"{folder}: the seed reports come from {df.config_id.nunique()} different "
                         f"configurations ({', '.join(sorted(df.label.unique()))}); keep one")
    return df.sort_values("seed").reset_index(drop=True)


def _seed_columns(name: str, folder) -> dict[str, float]:
    reps = seed_repeats(name, folder)
    if reps is None:
        return {"seeds": math.nan, "test mean (%)": math.nan, "test sd (points)": math.nan,
                "validation mean (%)": math.nan}
    sd = float(reps.test_accuracy.std(ddof=1)) if len(reps) > 1 else math.nan
    return {"seeds": float(len(reps)), "test mean (%)": 100.0 * float(reps.test_accuracy.mean()),
            "test sd (points)": 100.0 * sd,
            "validation mean (%)": 100.0 * float(reps.val_accuracy.mean())}


def _fit_one(estimator, seed: int, train, validation, test) -> dict[str, Any]:
    est = copy.deepcopy(estimator)
    est.set_params(random_state=int(seed))
    X, y = train
    t0 = time.perf_counter()
    if validation is not None:
        est.fit(X, y, validation_data=validation)
    else:
        est.fit(X, y)
    row: dict[str, Any] = {"fit_seconds": time.perf_counter() - t0}
    history = getattr(est, "history_", None) or []
    vals = [h["val_accuracy"] for h in history if "val_accuracy" in h]
    if vals:
        row["val_accuracy"] = float(max(vals))
    if getattr(est, "best_epoch_", None) is not None:
        row["best_epoch"] = int(est.best_epoch_)
    if test is not None:
        row["test_accuracy"] = float(est.score(*test))
    return row


def over_seeds(estimator: Any, train: tuple | None = None, *, validation: tuple | None = None,
               test: tuple | None = None, seeds: Iterable[int] = (0, 1, 2),
               **labels: Any) -> pd.DataFrame:
    """Run one configuration once per seed; one row per seed (a tidy frame).

    ``estimator`` is either an unfitted classifier with ``set_params``,
    ``fit`` and ``score`` (``SpikingClassifier``, ``ConvSpikingClassifier``):
    it is copied, given ``random_state=seed`` and fitted on ``train``, with
    ``validation`` as ``validation_data``; or a function ``seed -> dict`` of
    measurements, called once per seed (then ``train`` and the rest are not
    used).  ``labels`` become constant columns naming the configuration, so
    frames of several configurations can be concatenated.

    Columns: the labels, ``seed``, then ``fit_seconds``, ``val_accuracy``
    (best epoch), ``best_epoch`` and ``test_accuracy`` for a classifier, or
    the keys of the function's dicts.

    Example::

        clf = SpikingClassifier(hidden=(100,), epochs=3, verbose=False)
        runs = stidi.results.over_seeds(clf, (X_tr, y_tr), validation=(X_va, y_va),
                                        test=(X_te, y_te), seeds=[0, 1, 2], width=100)
        runs.groupby("width")["test_accuracy"].agg(["mean", "std"])
    """
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("over_seeds needs at least one seed")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"repeated seeds {seeds}: every repeat needs its own seed")
    is_estimator = hasattr(estimator, "fit") and hasattr(estimator, "set_params")
    if not is_estimator and not callable(estimator):
        raise TypeError("over_seeds takes a classifier (fit/set_params/score) or a function seed -> dict")
    if is_estimator and train is None:
        raise ValueError("a classifier needs train=(X, y)")
    rows = []
    for seed in seeds:
        if is_estimator:
            result = _fit_one(estimator, seed, train, validation, test)
        else:
            result = estimator(seed)
            if not isinstance(result, Mapping):
                raise TypeError(f"the function returned {type(result).__name__}, not a dict of measurements")
        rows.append({**labels, "seed": seed, **dict(result)})
    return pd.DataFrame(rows)
