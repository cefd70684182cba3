"""Parameter sweeps: ``python -m stidi sweep SPEC``.

A sweep specification (TOML or YAML) names a ``base`` configuration of
``python -m stidi train``, a ``grid`` of overrides (their cartesian product)
and/or a list of explicit ``runs``, and the ``seeds``::

    seeds = [0, 1, 2]

    [base]
    dataset = "fashion-mnist"
    arch = "784-400-10"
    epochs = 20
    val_size = 5000         # -> --val-size 5000
    subset = false          # booleans are bare flags, given when true
    [base.set]              # estimator parameters -> --set NAME=VALUE (JSON)
    lr_decay = 0.9

    [grid]
    arch = ["784-400-10", "784-800-10"]
    set.gamma = [3.0, 30.0]

    [[runs]]                # explicit configurations (here: one more)
    name = "adam"           # optional readable label
    set = { optimizer = "adam", batch_size = 32 }

Every key maps to the train flag of the same name (``_`` becomes ``-``), so
options added to ``train`` later need no change here; an override set to
``null`` (YAML) drops the option.  The configurations
are the grid's product followed by the explicit runs (the base alone when
neither is given); every configuration is trained once per seed.

Each (configuration, seed) pair is one *run*: one single-threaded
``python -m stidi train`` process writing ``<out-dir>/<run>.json`` (the
report of ``train``, unchanged) and a checkpoint after every epoch.  Run
names are readable and stable: the overrides, the seed and a short hash of
the full configuration, e.g. ``lr_decay-0.5_gamma-10.0_seed2_bbd548ad`` in
``results/sweeps/example.toml``.  A run
whose report exists with the same command is skipped, an interrupted run
resumes from its checkpoint, and a failed run leaves the tail of its
standard error in ``<run>.log`` without stopping the others.

Runs execute locally on a :class:`joblib.Parallel` process pool or, with
``--scheduler ADDRESS`` (or ``$STIDI_SCHEDULER``), on a Dask distributed
cluster; the output folder must then be reachable under the same path by
every worker.  At the end a table, one row per configuration sorted by
validation accuracy (mean ± sd over seeds), is printed and written to
``summary.md`` and ``summary.json``.  The test accuracy is shown for
information only and never used to rank or select.

:func:`load_reports` and :func:`summarize` read any folder of ``train``
reports into :mod:`pandas` frames.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import math
import os
import re
import shlex
import socket
import subprocess
import sys
import time
import uuid
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from ._io import atomic_write_text

__all__ = [
    "SpecError", "SweepError", "Spec", "Run", "SweepOutcome", "THREAD_ENV", "SCHEDULER_ENV",
    "load_spec", "expand", "options_argv", "run_task", "run_sweep",
    "load_reports", "summarize", "format_summary", "add_parser", "build_parser", "main",
]

THREAD_ENV = {"NUMBA_NUM_THREADS": "1", "OMP_NUM_THREADS": "1",
              "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
"""Environment given to every training process: one thread each."""

SCHEDULER_ENV = "STIDI_SCHEDULER"
"""Environment variable naming a Dask scheduler when ``--scheduler`` is not given."""

_TOP_KEYS = ("base", "grid", "runs", "seeds", "description")
# train options the sweep sets itself, with the reason given when a spec sets them
_RESERVED = {
    "seed": "give the seeds as the top-level `seeds` list",
    "out": "the sweep writes <out-dir>/<run>.json",
    "checkpoint": "the sweep writes <out-dir>/checkpoints/<run>.npz",
    "resume": "the sweep resumes runs whose checkpoint exists",
    "quiet": "the sweep always runs train quietly",
    "save_model": "parallel runs would overwrite one model file",
    "help": "not a training option",
}
_SWEEP_FLAGS = ("--out", "--checkpoint", "--resume", "--quiet", "--seed")
_KEY = re.compile(r"[A-Za-z][A-Za-z0-9_-]*\Z")
_RUN_NAME = re.compile(r"(?P<label>.+)_seed(?P<seed>-?\d+)_(?P<id>[0-9a-f]{8})\Z")
_LABEL_MAX = 60
_LOG_TAIL_LINES = 60
_SCALARS = (str, int, float, bool)


class SpecError(ValueError):
    """A sweep specification is unreadable or invalid."""


class SweepError(RuntimeError):
    """A sweep cannot start (e.g. its scheduler is unreachable)."""


# ----------------------------------------------------------------------------- spec
@dataclass(frozen=True)
class Spec:
    """A validated sweep specification.

    Attributes
    ----------
    path : Path
        The file it was read from (named in error messages).
    base : dict
        Options shared by every run; the estimator parameters under ``"set"``.
    configs : list of (str or None, dict)
        One ``(name, overrides)`` pair per configuration, in spec order;
        ``name`` is the optional label of an explicit run.
    seeds : list of int
    description : str
    """

    path: Path
    base: dict
    configs: list
    seeds: list
    description: str = ""


@dataclass(frozen=True)
class Run:
    """One training process of a sweep: a configuration and a seed.

    Attributes
    ----------
    name : str
        ``<label>_seed<seed>_<config_id>``; the report is ``<name>.json``.
    label : str
        Readable summary of the overrides (``"base"`` when there are none).
    config_id : str
        Eight hex digits hashing the full configuration (without the seed).
    seed : int
    options : dict
        The merged configuration (base plus overrides), as in the spec.
    overrides : dict
    argv : tuple of str
        The ``train`` arguments, seed included, without output paths.
    """

    name: str
    label: str
    config_id: str
    seed: int
    options: dict = field(repr=False)
    overrides: dict = field(repr=False)
    argv: tuple = field(repr=False)


def _read_spec_file(path: Path) -> dict:
    suffix = path.suffix.lower()
    try:
        blob = path.read_bytes()
    except OSError as exc:
        raise SpecError(f"{path}: cannot read the spec ({exc.strerror or exc})") from None
    if suffix == ".toml":
        import tomllib

        try:
            data = tomllib.loads(blob.decode("utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise SpecError(f"{path}: invalid TOML ({exc})") from None
    elif suffix in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:
            raise SpecError(f"{path}: reading YAML specs needs PyYAML (pip install pyyaml), "
                            "or write the spec in TOML") from None
        try:
            data = yaml.safe_load(blob.decode("utf-8"))
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            raise SpecError(f"{path}: invalid YAML ({exc})") from None
    else:
        raise SpecError(f"{path}: unknown spec format {suffix or '(no suffix)'!r}; "
                        "use .toml, .yaml or .yml")
    if not isinstance(data, dict):
        raise SpecError(f"{path}: the spec must be a table/mapping at the top level")
    return data


def _norm_key(key, where: str, path: Path) -> str:
    if not isinstance(key, str) or not _KEY.match(key):
        raise SpecError(f"{path}: {where}: invalid key {key!r} (letters, digits, '_' or '-')")
    return key.replace("-", "_")


def _check_value(value, where: str, path: Path, *, allow_list: bool = True):
    if value is None or isinstance(value, _SCALARS):
        return value
    if allow_list and isinstance(value, list) and value:
        return [_check_value(v, where, path, allow_list=False) for v in value]
    kind = "an empty list" if isinstance(value, list) and not value else type(value).__name__
    raise SpecError(f"{path}: {where}: expected a string, number, boolean or list of them, "
                    f"got {kind}")


def _check_param(value, where: str, path: Path):
    """Estimator parameters take any JSON value (lists may nest)."""
    if isinstance(value, list):
        return [_check_param(v, where, path) for v in value]
    if isinstance(value, dict):
        return {str(k): _check_param(v, where, path) for k, v in value.items()}
    if value is None or isinstance(value, _SCALARS):
        if isinstance(value, float) and not math.isfinite(value):
            raise SpecError(f"{path}: {where}: {value} is not a finite number")
        return value
    raise SpecError(f"{path}: {where}: {type(value).__name__} values are not supported")


def _options(table, where: str, path: Path, *, grid: bool = False) -> dict:
    """Validate a table of train options (``grid=True``: every value a list of options)."""
    if table is None:
        return {}
    if not isinstance(table, dict):
        raise SpecError(f"{path}: {where} must be a table/mapping, got {type(table).__name__}")
    out: dict = {}
    for raw, value in table.items():
        key = _norm_key(raw, where, path)
        if key in out:
            raise SpecError(f"{path}: {where}: key {raw!r} given twice ('-' and '_' spell the same key)")
        here = f"{where}.{raw}"
        if key in _RESERVED:
            raise SpecError(f"{path}: {here}: not allowed in a sweep ({_RESERVED[key]})")
        if key == "set":
            if not isinstance(value, dict):
                raise SpecError(f"{path}: {here} must be a table of estimator parameters")
            params = {}
            for name, v in value.items():
                if not isinstance(name, str) or not name.isidentifier():
                    raise SpecError(f"{path}: {here}: invalid parameter name {name!r}")
                if grid:
                    params[name] = _grid_values(v, f"{here}.{name}", path, param=True)
                else:
                    params[name] = _check_param(v, f"{here}.{name}", path)
            out["set"] = params
        elif grid:
            out[key] = _grid_values(value, here, path)
        else:
            out[key] = _check_value(value, here, path)
    return out


def _grid_values(values, where: str, path: Path, *, param: bool = False) -> list:
    if not isinstance(values, list) or not values:
        raise SpecError(f"{path}: {where}: a grid entry must be a non-empty list of values")
    check = _check_param if param else _check_value
    return [check(v, where, path) for v in values]


def load_spec(path) -> Spec:
    """Read and validate a sweep specification.

    Parameters
    ----------
    path : str or path-like
        A ``.toml``, ``.yaml`` or ``.yml`` file (see the module docstring).

    Returns
    -------
    Spec

    Raises
    ------
    SpecError
        For an unreadable file or any invalid entry; the message names the
        file and the offending key.
    """
    path = Path(path)
    data = _read_spec_file(path)
    unknown = [k for k in data if k not in _TOP_KEYS]
    if unknown:
        raise SpecError(f"{path}: unknown top-level key {unknown[0]!r}; expected "
                        + ", ".join(_TOP_KEYS))
    base = _options(data.get("base"), "base", path)
    grid = _options(data.get("grid"), "grid", path, grid=True)
    runs = data.get("runs", [])
    if not isinstance(runs, list):
        raise SpecError(f"{path}: runs must be a list of tables/mappings")
    explicit = []
    for i, entry in enumerate(runs):
        if not isinstance(entry, dict):
            raise SpecError(f"{path}: runs[{i}] must be a table/mapping, got {type(entry).__name__}")
        entry = dict(entry)
        name = entry.pop("name", None)
        if name is not None and (not isinstance(name, str) or not _slug(name)):
            raise SpecError(f"{path}: runs[{i}].name must be a non-empty string")
        explicit.append((name, _options(entry, f"runs[{i}]", path)))
    seeds = data.get("seeds", [0])
    if (not isinstance(seeds, list) or not seeds
            or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds)):
        raise SpecError(f"{path}: seeds must be a non-empty list of integers, got {seeds!r}")
    if len(set(seeds)) != len(seeds):
        raise SpecError(f"{path}: seeds lists a seed twice: {seeds!r}")
    description = data.get("description", "")
    if not isinstance(description, str):
        raise SpecError(f"{path}: description must be a string")

    configs = []
    if grid:
        axes = [(k, v) for k, v in grid.items() if k != "set"]
        axes += [(("set", k), v) for k, v in grid.get("set", {}).items()]
        for combo in itertools.product(*(values for _, values in axes)):
            over: dict = {}
            for (key, _), value in zip(axes, combo):
                if isinstance(key, tuple):
                    over.setdefault("set", {})[key[1]] = value
                else:
                    over[key] = value
            configs.append((None, over))
    configs.extend(explicit)
    if not configs:
        configs.append((None, {}))
    return Spec(path=path, base=base, configs=configs, seeds=list(seeds), description=description)


# ----------------------------------------------------------------------------- runs
def _merge(base: dict, overrides: dict) -> dict:
    merged = {k: v for k, v in base.items() if k != "set"}
    merged.update({k: v for k, v in overrides.items() if k != "set"})
    params = dict(base.get("set", {}))
    params.update(overrides.get("set", {}))
    if params:
        merged["set"] = params
    return merged


def _flag(key: str) -> str:
    return "--" + key.replace("_", "-")


def options_argv(options: dict) -> list:
    """Translate a configuration into ``train`` arguments.

    Parameters
    ----------
    options : dict
        Option name -> value; ``"set"`` maps estimator parameters to values.

    Returns
    -------
    list of str
        ``key: value`` becomes ``--key VALUE`` (``_`` spelled ``-``); ``True``
        a bare ``--key``; ``False`` and ``None`` nothing; a list repeats the
        flag once per item; every ``set`` entry becomes ``--set NAME=JSON``.
        Options come in alphabetical order, estimator parameters last.
    """
    argv = []
    for key in sorted(k for k in options if k != "set"):
        value = options[key]
        if value is None or value is False:
            continue
        if value is True:
            argv.append(_flag(key))
            continue
        for item in value if isinstance(value, list) else [value]:
            argv += [_flag(key), _text(item)]
    for name in sorted(options.get("set", {})):
        argv += ["--set", f"{name}={json.dumps(options['set'][name], separators=(',', ':'))}"]
    return argv


def _text(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _pairs(tokens) -> list:
    """Split ``train`` arguments into ``(flag, value or None)`` pairs."""
    pairs, i = [], 0
    tokens = list(tokens)
    while i < len(tokens):
        tok = tokens[i]
        if tok.startswith("--") and "=" in tok:
            flag, value = tok.split("=", 1)
            pairs.append((flag, value))
        elif tok.startswith("--"):
            nxt = tokens[i + 1] if i + 1 < len(tokens) else None
            if nxt is not None and not nxt.startswith("--"):
                pairs.append((tok, nxt))
                i += 1
            else:
                pairs.append((tok, None))
        else:
            pairs.append((None, tok))  # stray positional; kept so it still counts
        i += 1
    return pairs


def _identity(tokens, *, with_seed: bool) -> list:
    """Canonical configuration of ``train`` arguments: output flags dropped, order normalised.

    Flags are sorted stably by name (so repeated flags such as ``--hidden``
    keep their order) and ``--set`` entries by their text.
    """
    drop = set(_SWEEP_FLAGS) - ({"--seed"} if with_seed else set())
    pairs = [p for p in _pairs(tokens) if p[0] not in drop]
    sets = sorted(p for p in pairs if p[0] == "--set")
    rest = sorted((p for p in pairs if p[0] != "--set"), key=lambda p: p[0] or "")
    return [list(p) for p in rest + sets]


def _config_id(tokens) -> str:
    blob = json.dumps(_identity(tokens, with_seed=False), separators=(",", ":"))
    return hashlib.sha1(blob.encode()).hexdigest()[:8]


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.+-]+", "-", str(text)).strip("-")


def _label(name, overrides: dict) -> str:
    if name is not None:
        return _slug(name)[:_LABEL_MAX]
    parts = []
    items = [(k, v) for k, v in overrides.items() if k != "set"]
    items += list(overrides.get("set", {}).items())
    for key, value in items:
        if value is True:
            parts.append(key)
        elif value is False or value is None:
            parts.append("no-" + key)
        elif isinstance(value, list):
            parts.append(f"{key}-" + "x".join(_slug(json.dumps(v) if isinstance(v, (list, dict))
                                                   else _text(v)) for v in value))
        else:
            parts.append(f"{key}-{_slug(json.dumps(value) if isinstance(value, dict) else _text(value))}")
    label = "_".join(p for p in parts if p) or "base"
    return label[:_LABEL_MAX].rstrip("_-") or "base"


def _train_parser():
    """The ``train`` sub-parser of the command line, or None if it cannot be found."""
    try:
        from .cli import build_parser as cli_parser

        top = cli_parser()
        for action in top._actions:
            if isinstance(action, argparse._SubParsersAction) and "train" in action.choices:
                return action.choices["train"]
    except Exception:  # the command line is optional for planning; runs would report errors
        return None
    return None


class _ArgError(Exception):
    pass


def _parse_check(parser: argparse.ArgumentParser, argv: list) -> None:
    def fail(message):
        raise _ArgError(message)

    parser.error = fail  # instance attribute: report instead of exiting
    parser.parse_args(argv + ["--out", "x.json", "--checkpoint", "x.npz", "--quiet"])


def expand(spec: Spec) -> list:
    """List the runs of a spec, checked against the ``train`` command line.

    Parameters
    ----------
    spec : Spec

    Returns
    -------
    list of Run
        Ordered seed by seed (every configuration for the first seed, then
        the next), so the first results cover every configuration.
        Configurations equal to an earlier one are dropped.

    Raises
    ------
    SpecError
        If an option is unknown to ``python -m stidi train`` or its value is
        rejected there (type, choices, missing required options).
    """
    parser = _train_parser()
    known = None
    if parser is not None:
        known = {s for a in parser._actions for s in a.option_strings}
    configs, seen = [], {}
    for name, overrides in spec.configs:
        options = _merge(spec.base, overrides)
        argv = options_argv(options)
        where = f"configuration {_label(name, overrides)!r}"
        if known is not None:
            for key in options:
                if _flag(key) not in known:
                    src = "base" if key in spec.base and key not in overrides else where
                    raise SpecError(f"{spec.path}: {src}: unknown option {key!r} "
                                    f"(python -m stidi train has no {_flag(key)})")
            try:
                _parse_check(parser, argv + ["--seed", str(spec.seeds[0])])
            except _ArgError as exc:
                raise SpecError(f"{spec.path}: {where}: {exc}") from None
        cid = _config_id(argv)
        if cid in seen:
            warnings.warn(f"{spec.path}: {where} repeats configuration {seen[cid]!r}; "
                          "running it once", stacklevel=2)
            continue
        label = _label(name, overrides)
        seen[cid] = label
        configs.append((label, cid, options, overrides, argv))
    runs = []
    for seed in spec.seeds:
        for label, cid, options, overrides, argv in configs:
            runs.append(Run(name=f"{label}_seed{seed}_{cid}", label=label, config_id=cid, seed=seed,
                            options=options, overrides=overrides,
                            argv=tuple(argv + ["--seed", str(seed)])))
    return runs


# ----------------------------------------------------------------------------- files
def _report_tokens(report: dict):
    """The ``train`` arguments recorded in a report's ``command``, or None."""
    command = report.get("command")
    if not isinstance(command, str):
        return None
    try:
        tokens = shlex.split(command)
    except ValueError:
        return None
    if "train" not in tokens:
        return None
    return tokens[tokens.index("train") + 1:]


def _read_report(path: Path):
    try:
        report = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(report, dict) or "history" not in report or "val_accuracy" not in report:
        return None
    return report


def _is_done(run: Run, report_path: Path) -> bool:
    """True if ``report_path`` is a report of exactly this run's configuration and seed."""
    report = _read_report(report_path) if report_path.exists() else None
    tokens = _report_tokens(report) if report is not None else None
    return tokens is not None and _identity(tokens, with_seed=True) == _identity(run.argv, with_seed=True)


# ----------------------------------------------------------------------------- execution
def run_task(task: dict) -> dict:
    """Run one ``python -m stidi train`` process (executed on a worker).

    Parameters
    ----------
    task : dict
        ``name``, ``argv`` (train arguments, seed included), and the absolute
        paths ``report``, ``checkpoint`` and ``log``; ``keep_checkpoint``.

    Returns
    -------
    dict
        ``name``, ``status`` (``"done"`` or ``"failed"``), ``returncode``,
        ``resumed``, ``seconds``, ``host`` and ``log`` (None on success).

    Notes
    -----
    The process gets one thread (:data:`THREAD_ENV`) and the folder holding
    this ``stidi`` package first on ``PYTHONPATH``, so it trains with the
    same code as the worker.  ``--resume`` is passed when the checkpoint
    exists.  On failure the command and the tail of standard error go to
    ``log``; on success a stale log is removed and, unless
    ``keep_checkpoint``, the checkpoint too.
    """
    report, ckpt, log = Path(task["report"]), Path(task["checkpoint"]), Path(task["log"])
    ckpt.parent.mkdir(parents=True, exist_ok=True)
    resumed = ckpt.exists()
    cmd = [sys.executable, "-m", "stidi", "train", *task["argv"], "--out", str(report),
           "--checkpoint", str(ckpt), "--quiet"] + (["--resume"] if resumed else [])
    env = dict(os.environ, **THREAD_ENV)
    root = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join([root] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep)
                                                  if p and p != root])
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, errors="replace")
        code, err = proc.returncode, proc.stderr
    except OSError as exc:
        code, err = -1, f"could not start the process: {exc}"
    seconds = time.perf_counter() - t0
    ok = code == 0 and report.exists()
    result = {"name": task["name"], "status": "done" if ok else "failed", "returncode": code,
              "resumed": resumed, "seconds": seconds, "host": socket.gethostname(), "log": None}
    if ok:
        log.unlink(missing_ok=True)
        if not task.get("keep_checkpoint"):
            ckpt.unlink(missing_ok=True)
    else:
        if code == 0:
            err += "\n(the process exited normally but wrote no report)"
        tail = "\n".join(err.rstrip().splitlines()[-_LOG_TAIL_LINES:])
        atomic_write_text(log, f"# {shlex.join(cmd)}\n# exit code {code} on "
                                f"{result['host']} after {seconds:.1f} s\n{tail}\n")
        result["log"] = str(log)
    return result


def _default_jobs() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


def _local_results(tasks: list, jobs: int):
    from joblib import Parallel, delayed

    if not tasks:
        return
    yield from Parallel(n_jobs=min(jobs, len(tasks)), return_as="generator_unordered")(
        delayed(run_task)(t) for t in tasks)


def _dask_results(tasks: list, address: str):
    try:
        from distributed import Client, as_completed
    except ImportError:
        raise SweepError("--scheduler needs Dask distributed: pip install 'dask[distributed]'") from None
    try:
        client = Client(address, timeout=30, set_as_default=False)
    except (OSError, TimeoutError, ValueError) as exc:
        raise SweepError(f"cannot reach the Dask scheduler at {address!r}: {exc}") from None
    with client:
        token = uuid.uuid4().hex[:6]
        futures = {client.submit(run_task, t, key=f"stidi-sweep-{t['name']}-{token}", pure=False): t
                   for t in tasks}
        for fut in as_completed(list(futures), loop=client.loop):
            task = futures[fut]
            try:
                yield fut.result()
            except Exception as exc:  # the task itself failed on the worker (e.g. import error)
                msg = f"# the Dask task failed: {type(exc).__name__}: {exc}\n"
                atomic_write_text(Path(task["log"]), msg)
                yield {"name": task["name"], "status": "failed", "returncode": None, "resumed": False,
                       "seconds": float("nan"), "host": None, "log": task["log"]}


@dataclass
class SweepOutcome:
    """What :func:`run_sweep` did.

    Attributes
    ----------
    runs : list of Run
    status : dict
        Run name -> ``"done"``, ``"skipped"``, ``"failed"`` or, in a dry run,
        ``"new"`` / ``"resume"``.
    summary : pandas.DataFrame or None
        :func:`summarize` of the finished runs (None in a dry run).
    out_dir : Path
    """

    runs: list
    status: dict
    summary: object
    out_dir: Path

    @property
    def failed(self) -> list:
        """Names of the runs that failed."""
        return [r.name for r in self.runs if self.status.get(r.name) == "failed"]


def run_sweep(spec, out_dir=None, *, jobs: int | None = None, scheduler: str | None = None,
              dry_run: bool = False, keep_checkpoints: bool = False, stream=None) -> SweepOutcome:
    """Run every run of a spec that has no report yet, then summarise.

    Parameters
    ----------
    spec : str, path-like or Spec
        The specification (read with :func:`load_spec` if a path).
    out_dir : str or path-like, optional
        Folder for reports, logs, checkpoints and the summary (default:
        ``runs/sweeps/<spec name>`` in the current directory).
    jobs : int, optional
        Local parallel runs (default: the number of usable cores).  Ignored
        with a scheduler, whose workers' threads set the parallelism.
    scheduler : str, optional
        Address of a Dask scheduler (default: ``$STIDI_SCHEDULER``; local
        execution when neither is set).
    dry_run : bool
        Only print what would run.
    keep_checkpoints : bool
        Keep each run's checkpoint after it finishes (default: delete it).
    stream : file, optional
        Where progress and the table are printed (default: standard output).

    Returns
    -------
    SweepOutcome

    Raises
    ------
    SpecError, SweepError
    """
    say = _Printer(sys.stdout if stream is None else stream)
    if not isinstance(spec, Spec):
        spec = load_spec(spec)
    runs = expand(spec)
    out_dir = Path(out_dir if out_dir is not None else Path("runs") / "sweeps" / spec.path.stem).resolve()
    scheduler = scheduler or os.environ.get(SCHEDULER_ENV) or None
    status, tasks = {}, []
    for run in runs:
        report = out_dir / f"{run.name}.json"
        ckpt = out_dir / "checkpoints" / f"{run.name}.npz"
        if _is_done(run, report):
            status[run.name] = "skipped"
            if not keep_checkpoints and not dry_run:
                ckpt.unlink(missing_ok=True)  # left by a sweep stopped just after the run finished
            continue
        status[run.name] = "resume" if ckpt.exists() else "new"
        tasks.append({"name": run.name, "argv": list(run.argv), "report": str(report),
                      "checkpoint": str(ckpt), "log": str(out_dir / f"{run.name}.log"),
                      "keep_checkpoint": keep_checkpoints})
    n_configs = len({r.config_id for r in runs})
    say(f"{spec.path}: {n_configs} configuration(s) x {len(spec.seeds)} seed(s) = {len(runs)} runs; "
        f"{len(runs) - len(tasks)} already done; reports in {out_dir}")
    if dry_run:
        for run in runs:
            cmd = "python -m stidi train " + shlex.join(run.argv)
            say(f"  {status[run.name]:8s} {run.name}\n           {cmd}")
        return SweepOutcome(runs, status, None, out_dir)

    try:
        import pandas  # noqa: F401  (the summary needs it; fail before the runs, not after)
    except ImportError:
        raise SweepError("the sweep summary needs pandas: pip install pandas") from None
    out_dir.mkdir(parents=True, exist_ok=True)
    if tasks:
        if scheduler:
            where = f"Dask scheduler {scheduler}"
            results = _dask_results(tasks, scheduler)
        else:
            jobs = jobs or _default_jobs()
            where = f"{min(jobs, len(tasks))} local process(es)"
            results = _local_results(tasks, jobs)
        say(f"running {len(tasks)} run(s) on {where}")
        for i, res in enumerate(results, 1):
            status[res["name"]] = res["status"]
            line = f"[{i}/{len(tasks)}] {res['status']:6s} {res['name']}"
            if res["status"] == "done":
                rep = _read_report(out_dir / f"{res['name']}.json") or {}
                val = rep.get("val_accuracy")
                line += (f"  val {val:.4f}" if isinstance(val, (int, float)) else "") + \
                    f"  {res['seconds']:.0f} s" + ("  (resumed)" if res["resumed"] else "")
            else:
                line += f"  -> {res['log']}"
            say(line)

    try:
        (out_dir / "checkpoints").rmdir()  # only when empty: no interrupted runs left
    except OSError:
        pass
    df = load_reports(out_dir, names=[r.name for r in runs])
    summary = summarize(df)
    outcome = SweepOutcome(runs, status, summary, out_dir)
    table = format_summary(summary)
    failed = outcome.failed
    tail = ""
    if failed:
        tail = f"\n{len(failed)} run(s) failed (logs in {out_dir}):\n" + \
            "".join(f"- {name} ({name}.log)\n" for name in failed)
    header = (f"# Sweep {spec.path.name}\n\n{spec.description.strip()}\n\n" if spec.description.strip()
              else f"# Sweep {spec.path.name}\n\n")
    atomic_write_text(out_dir / "summary.md", header + table + tail)
    payload = {
        "spec": str(spec.path), "description": spec.description, "seeds": spec.seeds,
        "sorted_by": "val_accuracy_mean (the test accuracy is for information only)",
        "configurations": _records(summary),
        "runs": [{"name": r.name, "config_id": r.config_id, "label": r.label, "seed": r.seed,
                  "status": status[r.name], "command": "python -m stidi train " + shlex.join(r.argv)}
                 for r in runs],
        "failed": failed,
    }
    atomic_write_text(out_dir / "summary.json", json.dumps(payload, indent=2, allow_nan=False) + "\n")
    say("\n" + table + tail, end="")
    return outcome


class _Printer:
    """Print progress; if the reader goes away (``| head``), stop printing but keep running."""

    def __init__(self, stream):
        self.stream = stream
        self.open = True

    def __call__(self, text: str, end: str = "\n") -> None:
        if not self.open:
            return
        try:
            print(text, file=self.stream, end=end, flush=True)
        except BrokenPipeError:
            self.open = False
            if self.stream is sys.stdout:  # silence the flush at interpreter exit too
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def _jsonable(value):
    """Plain JSON value of a frame cell: NaN and missing -> None, numpy scalars -> Python."""
    import pandas as pd

    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if value is None or value is pd.NA or (isinstance(value, float) and not math.isfinite(value)):
        return None
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):  # numpy scalars
        return _jsonable(value.item())
    return value


def _records(frame) -> list:
    return [{k: _jsonable(v) for k, v in row.items()} for row in frame.to_dict("records")]


# ----------------------------------------------------------------------------- reports
_REPORT_FIELDS = ("dataset", "model", "architecture", "val_accuracy", "val_accuracy_no_fallback",
                  "test_accuracy", "test_accuracy_no_fallback", "best_epoch", "epochs",
                  "train_seconds", "n_train", "n_val", "n_test")


def _decode(text):
    if text is None:
        return True
    try:
        value = json.loads(text)
    except ValueError:
        return text
    return tuple(value) if isinstance(value, list) else value


def _option_columns(tokens) -> dict:
    """``opt_<name>`` / ``set_<name>`` columns from ``train`` arguments."""
    cols: dict = {}
    for flag, value in _pairs(tokens):
        if flag is None or flag in _SWEEP_FLAGS:
            continue
        if flag == "--set" and value is not None and "=" in value:
            name, text = value.split("=", 1)
            cols[f"set_{name}"] = _decode(text)
            continue
        key = "opt_" + flag[2:].replace("-", "_")
        value = _decode(value)
        if key in cols:  # repeated flag, e.g. --hidden 400 --hidden 400
            prev = cols[key]
            cols[key] = (prev if isinstance(prev, tuple) else (prev,)) + (value,)
        else:
            cols[key] = value
    return cols


def load_reports(out_dir, names=None):
    """Read every ``train`` report of a folder into a data frame.

    Parameters
    ----------
    out_dir : str or path-like
        Folder holding ``*.json`` reports (other JSON files are ignored).
    names : iterable of str, optional
        Only these run names (file names without ``.json``).

    Returns
    -------
    pandas.DataFrame
        One row per report, sorted by ``run``: ``run``, ``label``,
        ``config_id`` (hash of the command without seed and output paths;
        equal for the seeds of one configuration), ``seed``, the report's
        ``dataset``, ``model``, ``architecture``, ``val_accuracy``,
        ``val_accuracy_no_fallback``, ``test_accuracy``,
        ``test_accuracy_no_fallback``, ``best_epoch``, ``epochs``,
        ``train_seconds``, ``n_train``, ``n_val``, ``n_test``, ``command`` and
        ``path``, then one ``opt_<name>`` column per ``train`` option and one
        ``set_<name>`` column per estimator parameter given on the command
        line (repeated options as tuples).  Reports not written by a sweep
        get their file name as ``label``.
    """
    import pandas as pd

    wanted = None if names is None else set(names)
    rows = []
    for path in sorted(Path(out_dir).glob("*.json")):
        if wanted is not None and path.stem not in wanted:
            continue
        report = _read_report(path)
        tokens = _report_tokens(report) if report is not None else None
        if tokens is None:
            continue
        match = _RUN_NAME.match(path.stem)
        opts = _option_columns(tokens)
        seed = next((_decode(v) for f, v in _pairs(tokens) if f == "--seed"), None)
        if not isinstance(seed, int):
            seed = (report.get("config") or {}).get("random_state", 0)
        row = {"run": path.stem, "label": match["label"] if match else path.stem,
               "config_id": _config_id(tokens), "seed": seed}
        row.update({k: report.get(k) for k in _REPORT_FIELDS})
        row["command"] = report["command"]
        row["path"] = str(path)
        row.update(opts)
        rows.append(row)
    columns = ["run", "label", "config_id", "seed", *_REPORT_FIELDS, "command", "path"]
    df = pd.DataFrame(rows, columns=None if rows else columns)
    for col in ("val_accuracy", "val_accuracy_no_fallback", "test_accuracy",
                "test_accuracy_no_fallback", "train_seconds"):
        df[col] = pd.to_numeric(df[col], errors="coerce").astype(float)
    return df.reset_index(drop=True)


def summarize(df):
    """One row per configuration: accuracies as mean and sd over seeds.

    Parameters
    ----------
    df : pandas.DataFrame
        As returned by :func:`load_reports` (needs ``config_id``, ``label``,
        ``seed``, ``val_accuracy``, ``test_accuracy``, ``best_epoch`` and
        ``train_seconds``).

    Returns
    -------
    pandas.DataFrame
        Columns ``rank``, ``label``, ``config_id``, ``n_seeds``, ``seeds``,
        ``val_accuracy_mean``, ``val_accuracy_sd``, ``test_accuracy_mean``,
        ``test_accuracy_sd``, ``best_epoch_mean``, ``epochs``,
        ``train_seconds_mean`` (per run), ``dataset``, ``architecture``, then
        the ``opt_*`` / ``set_*`` columns whose value differs between
        configurations.  Standard deviations use ``ddof=1`` and are NaN for a
        single seed.  Rows are sorted by ``val_accuracy_mean``, highest
        first (configurations without a validation split last, then by
        label); the test accuracy never takes part in the ordering.
    """
    import pandas as pd

    columns = ["rank", "label", "config_id", "n_seeds", "seeds", "val_accuracy_mean",
               "val_accuracy_sd", "test_accuracy_mean", "test_accuracy_sd", "best_epoch_mean",
               "epochs", "train_seconds_mean", "dataset", "architecture"]
    if df.empty:
        return pd.DataFrame(columns=columns)
    df = df.copy()
    for col in ("val_accuracy", "test_accuracy", "best_epoch", "train_seconds", "epochs"):
        if col not in df:
            df[col] = float("nan")
        df[col] = pd.to_numeric(df[col], errors="coerce").astype(float)
    for col in ("dataset", "architecture"):
        if col not in df:
            df[col] = None
    extra = [c for c in df.columns if c.startswith(("opt_", "set_"))
             and df[c].map(_hashable).nunique(dropna=False) > 1]
    rows = []
    for cid, group in df.groupby("config_id", sort=False):
        group = group.sort_values("seed", kind="mergesort")
        row = {"label": group["label"].iloc[0], "config_id": cid, "n_seeds": len(group),
               "seeds": [int(s) if isinstance(s, (int, float)) and s == s else s for s in group["seed"]],
               "val_accuracy_mean": group["val_accuracy"].mean(),
               "val_accuracy_sd": group["val_accuracy"].std(ddof=1),
               "test_accuracy_mean": group["test_accuracy"].mean(),
               "test_accuracy_sd": group["test_accuracy"].std(ddof=1),
               "best_epoch_mean": group["best_epoch"].mean(),
               "epochs": group["epochs"].max(),
               "train_seconds_mean": group["train_seconds"].mean(),
               "dataset": group["dataset"].iloc[0], "architecture": group["architecture"].iloc[0]}
        row.update({c: group[c].iloc[0] for c in extra})
        rows.append(row)
    out = pd.DataFrame(rows)
    out = out.sort_values(["val_accuracy_mean", "label"], ascending=[False, True],
                          na_position="last", kind="mergesort").reset_index(drop=True)
    out.insert(0, "rank", range(1, len(out) + 1))
    return out


def _hashable(value):
    """Lists (also nested ones, e.g. per-layer ranges) as tuples, so that pandas can count them."""
    return tuple(_hashable(v) for v in value) if isinstance(value, (list, tuple)) else value


def _pct(mean, sd) -> str:
    if mean is None or not math.isfinite(mean):
        return ""
    return f"{100 * mean:.2f}" + (f" ± {100 * sd:.2f}" if sd is not None and math.isfinite(sd) else "")


def _num(value, digits: int) -> str:
    if value is None or not math.isfinite(value):
        return ""
    return f"{value:.{digits}f}"


def format_summary(summary) -> str:
    """Render :func:`summarize`'s frame as a Markdown table.

    Parameters
    ----------
    summary : pandas.DataFrame

    Returns
    -------
    str
        One row per configuration in the frame's order (by validation
        accuracy), accuracies in percent as ``mean ± sd`` (no sd for one
        seed).  The test column is marked as information only.
    """
    if summary is None or len(summary) == 0:
        return "No finished runs.\n"
    head = ["#", "configuration", "dataset", "architecture", "val acc % (mean ± sd)", "seeds",
            "best epoch", "epochs", "train s/run", "test acc % (info only)"]
    lines = ["| " + " | ".join(head) + " |",
             "| " + " | ".join(["---:", "---", "---", "---", "---:", "---:", "---:", "---:", "---:", "---:"])
             + " |"]
    for row in summary.to_dict("records"):
        best = row["best_epoch_mean"]
        cells = [str(row["rank"]), f"{row['label']} ({row['config_id']})", str(row["dataset"]),
                 str(row["architecture"]), _pct(row["val_accuracy_mean"], row["val_accuracy_sd"]),
                 str(row["n_seeds"]),
                 _num(best, 0 if best is not None and math.isfinite(best) and best == int(best) else 1),
                 _num(row["epochs"], 0), _num(row["train_seconds_mean"], 1),
                 _pct(row["test_accuracy_mean"], row["test_accuracy_sd"])]
        lines.append("| " + " | ".join(cells) + " |")
    note = ("\nSorted by validation accuracy (split carved from the training set); "
            "the test accuracy is shown for information and never used to rank or select.\n")
    return "\n".join(lines) + "\n" + note


# ----------------------------------------------------------------------------- command line
def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("spec", help="sweep specification (.toml, .yaml or .yml)")
    parser.add_argument("--jobs", type=_positive_int, default=None,
                        help="runs at a time on this machine (default: number of cores)")
    parser.add_argument("--scheduler", default=None, metavar="ADDRESS",
                        help=f"Dask scheduler to submit the runs to (default: ${SCHEDULER_ENV}; "
                             "none: run locally)")
    parser.add_argument("--out-dir", default=None,
                        help="folder for reports, logs and the summary "
                             "(default: runs/sweeps/<spec name>)")
    parser.add_argument("--dry-run", action="store_true", help="list the runs and their commands only")
    parser.add_argument("--keep-checkpoints", action="store_true",
                        help="keep each run's checkpoint after it finishes")


def _description() -> str:
    return __doc__.splitlines()[0]


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``sweep`` command to the sub-parsers of ``python -m stidi``.

    Parameters
    ----------
    subparsers : argparse._SubParsersAction
        The object returned by ``ArgumentParser.add_subparsers``.

    Returns
    -------
    argparse.ArgumentParser
        The new sub-parser; its ``func`` default is the handler, which takes
        the parsed arguments and returns the exit code.
    """
    parser = subparsers.add_parser(
        "sweep", help="train a grid of configurations x seeds from a TOML/YAML spec",
        description="Train every configuration x seed of a spec, one single-threaded "
                    "process per run, and summarise by validation accuracy.")
    _add_arguments(parser)
    parser.set_defaults(func=_command)
    return parser


def build_parser() -> argparse.ArgumentParser:
    """Parser of ``python -m stidi.sweep`` (the same arguments as ``python -m stidi sweep``)."""
    parser = argparse.ArgumentParser(prog="python -m stidi.sweep", description=_description())
    _add_arguments(parser)
    parser.set_defaults(func=_command)
    return parser


def _command(args: argparse.Namespace) -> int:
    """Run a sweep from parsed arguments; 0 if every run finished, 1 if some failed, 2 on bad input."""
    if args.scheduler and args.jobs:
        print("note: --jobs is ignored with a scheduler (its workers set the parallelism)",
              file=sys.stderr)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            warnings.showwarning = _show_warning
            outcome = run_sweep(args.spec, args.out_dir, jobs=args.jobs, scheduler=args.scheduler,
                                dry_run=args.dry_run, keep_checkpoints=args.keep_checkpoints)
    except (SpecError, SweepError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted: run the same command again to skip finished runs and resume "
              "the others from their checkpoints", file=sys.stderr)
        return 130
    return 1 if outcome.failed else 0


def _show_warning(message, category, filename, lineno, file=None, line=None):
    print(f"warning: {message}", file=sys.stderr)


def main(argv: list | None = None) -> int:
    """Entry point of ``python -m stidi.sweep``; returns the exit code."""
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
