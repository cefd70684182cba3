"""Helpers shared by the benchmark scripts: timing, machine description, atomic JSON output."""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np


def best_of(fn, repeat: int, cpu: bool = False) -> float:
    """Shortest time of ``repeat`` calls of ``fn`` (seconds).

    Wall time by default; with ``cpu=True`` the CPU time of the process, which a
    busy machine distorts far less (only for single-threaded code).
    """
    clock = time.process_time if cpu else time.perf_counter
    best = np.inf
    for _ in range(repeat):
        t0 = clock()
        fn()
        best = min(best, clock() - t0)
    return best


def former_defaults(arch: str) -> dict:
    """The estimator settings of version 0.1, with which the committed measurements were
    made: no averaged weights, dead units re-drawn before scoring, and for a fully
    connected network the early calibration (how far each image's spikes get, and so
    the work per image, depends on it)."""
    from stidi.architecture import parse_architecture
    from stidi.init import default_medians

    a = parse_architecture(arch)
    settings = dict(weight_average=0.0, eval_before_reset=False)
    if not a.has_conv:
        settings["init_median"] = default_medians(len(a.weight_layers), 256.0)
    return settings


def cpu_model() -> str:
    """CPU model name from ``/proc/cpuinfo`` (Linux), else :func:`platform.processor`."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def load_average():
    """1-, 5- and 15-minute load averages, or None where the OS does not report them."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def machine_info() -> dict:
    """Where and with what the benchmark ran."""
    import numba

    return {
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "numba_threads": numba.get_num_threads(),
        "machine": platform.machine(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "numba": numba.__version__,
    }


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


def write_json_atomic(path, record: dict) -> None:
    """Write ``record`` as JSON next to ``path``, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(record, fh, indent=2, default=float)
            fh.write("\n")
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
