"""Shared pytest configuration.

``STIDI_DATA`` points the loaders at local copies of the real datasets.  When
it is unset and ``<repo>/../shared/datasets`` exists (the layout used by CI),
it defaults to that folder.  Tests needing real data use the ``stidi_data``
fixture, which skips them when no data folder is available.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
_DEFAULT_DATA = REPO.parent / "shared" / "datasets"

if not os.environ.get("STIDI_DATA") and _DEFAULT_DATA.is_dir():
    os.environ["STIDI_DATA"] = str(_DEFAULT_DATA)


@pytest.fixture
def stidi_data() -> Path:
    """Folder holding ``mnist/`` and ``fashion-mnist/``; skips the test if absent."""
    folder = os.environ.get("STIDI_DATA")
    if not folder or not Path(folder).is_dir():
        pytest.skip("real datasets unavailable: set STIDI_DATA to a folder holding "
                    "mnist/ and fashion-mnist/ (the gzipped official IDX files)")
    return Path(folder)


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "jit: needs compiled kernels to finish in seconds (skipped by the "
                   "NUMBA_DISABLE_JIT=1 coverage run of .ci/run)")
