"""Per-sample working buffers of the network kernels, allocated in one place."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ._jit import njit


class Scratch(NamedTuple):
    """Buffers of one sample: every unit's outputs and learning quantities (``a_total`` each),
    the gathered receptive field and sort buffers (``max_rf``), and per-layer outputs (``max_out``)."""

    t: np.ndarray
    slope: np.ndarray
    vpk: np.ndarray
    tpk: np.ndarray
    win: np.ndarray
    err: np.ndarray
    g: np.ndarray
    tstar: np.ndarray
    T: np.ndarray
    rf: np.ndarray
    act_t: np.ndarray
    act_i: np.ndarray
    V: np.ndarray
    S: np.ndarray
    to: np.ndarray
    so: np.ndarray
    vo: np.ndarray
    po: np.ndarray
    coef: np.ndarray


@njit
def _alloc_scratch(a_total, max_rf, max_out):
    """Fresh :class:`Scratch` buffers (learning buffers zeroed). Chapter: book/09_speed.md."""
    return Scratch(np.empty(a_total), np.empty(a_total), np.empty(a_total), np.empty(a_total),
                   np.zeros(a_total, dtype=np.int64), np.zeros(a_total), np.zeros(a_total),
                   np.zeros(a_total), np.empty(max_out), np.empty(max_rf), np.empty(max_rf),
                   np.empty(max_rf, dtype=np.int64), np.empty(max_out), np.empty(max_out),
                   np.empty(max_out), np.empty(max_out), np.empty(max_out), np.empty(max_out),
                   np.empty(max_out))
