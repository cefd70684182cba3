"""Numba entry point shared by every kernel module.

``njit`` here is :func:`numba.njit` with on-disk caching switched on only
when a cache location is usable.  Numba looks for a writable
``__pycache__`` beside the source file, then for ``NUMBA_CACHE_DIR``; on a
read-only installation with neither, ``cache=True`` would make the import
fail ("no locator available").  We therefore probe once and fall back to
a per-user cache directory, and finally to no caching at all.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numba

__all__ = ["njit", "prange", "CACHE_ENABLED"]

prange = numba.prange


def _writable(path: Path) -> bool:
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path):
            pass
        return True
    except OSError:
        return False


def _configure_cache() -> bool:
    if os.environ.get("NUMBA_DISABLE_JIT") == "1":
        return False
    if os.environ.get("NUMBA_CACHE_DIR"):
        return _writable(Path(os.environ["NUMBA_CACHE_DIR"]))
    if _writable(Path(__file__).resolve().parent / "__pycache__"):
        return True
    fallback = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "stidi" / "numba"
    if _writable(fallback):
        os.environ["NUMBA_CACHE_DIR"] = str(fallback)
        numba.config.CACHE_DIR = str(fallback)
        return True
    return False


CACHE_ENABLED = _configure_cache()

# Parallel kernels split a mini-batch or an evaluation set into a few coarse shares.
# Numba's OpenMP layer lets idle workers spin, which on a machine shared with other
# jobs made two threads slower than one; the workqueue layer does not spin.  An
# explicit NUMBA_THREADING_LAYER still wins.
if "NUMBA_THREADING_LAYER" not in os.environ:
    numba.config.THREADING_LAYER = "workqueue"


def njit(*args, **kwargs):
    """:func:`numba.njit` with ``cache`` set from :data:`CACHE_ENABLED`."""
    kwargs.setdefault("cache", CACHE_ENABLED)
    kwargs.setdefault("fastmath", False)
    return numba.njit(*args, **kwargs)
