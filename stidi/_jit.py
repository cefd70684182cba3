"""Numba entry point shared by every kernel module.

``njit`` here is :func:`numba.njit` with on-disk caching switched on only
when a cache location is usable.  Numba looks for a writable
``__pycache__`` beside the source file, then for ``NUMBA_CACHE_DIR``; on a
read-only installation with neither, ``cache=True`` would make the import
fail ("no locator available").  We therefore probe once and fall back to
a per-user cache directory, and finally to no caching at all.

Numba checks a cached kernel against its own source file only, not against
the files of the kernels and types it calls: after an update that changes
one module (a field added to a tuple type, say), kernels cached from an
unchanged module would be loaded with the old types and fail to compile.
The cache therefore carries a stamp, a hash of every source file of the
package, and the package's cached kernels are dropped when it no longer
matches.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

import numba

from ._io import atomic_write_text

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


_PACKAGE = Path(__file__).resolve().parent
_STAMP = "stidi-kernels.stamp"


def source_stamp(package: Path = _PACKAGE) -> str:
    """Hash of the names and contents of every ``*.py`` file of ``package``."""
    h = hashlib.sha256()
    for path in sorted(package.glob("*.py")):
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def drop_stale_kernels(cache: Path, stamp: str, recursive: bool = False) -> int:
    """Delete the cached kernels (``*.nbi``, ``*.nbc``) under ``cache`` unless its stamp file
    holds ``stamp``; then write ``stamp``. Returns the number of files deleted."""
    marker = cache / _STAMP
    try:
        if marker.read_text() == stamp:
            return 0
    except OSError:
        pass
    dropped = 0
    for pattern in ("*.nbi", "*.nbc"):
        for f in (cache.rglob(pattern) if recursive else cache.glob(pattern)):
            try:
                f.unlink()
                dropped += 1
            except OSError:
                pass
    try:
        atomic_write_text(marker, stamp)
    except OSError:
        pass
    return dropped


def _configure_cache() -> bool:
    if os.environ.get("NUMBA_DISABLE_JIT") == "1":
        return False
    if os.environ.get("NUMBA_CACHE_DIR"):
        # a cache chosen by the user is shared with other packages: left as it is
        return _writable(Path(os.environ["NUMBA_CACHE_DIR"]))
    local = _PACKAGE / "__pycache__"
    if _writable(local):
        drop_stale_kernels(local, source_stamp())
        return True
    fallback = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "stidi" / "numba"
    if _writable(fallback):
        drop_stale_kernels(fallback, source_stamp(), recursive=True)
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
