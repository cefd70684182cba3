"""Per-sample working buffers of the network kernels, allocated in one place."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ._jit import njit


class Scratch(NamedTuple):
    """Buffers of one sample: every unit's outputs and learning quantities (``a_total`` each),
    the receptive field's sorted events (``max_rf``), per-layer outputs (``max_out``), and the
    event lists of a whole input map and of one row of receptive fields (``max_in``)."""

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
    gt: np.ndarray
    gi: np.ndarray
    gy: np.ndarray
    gx: np.ndarray
    rt: np.ndarray
    rx: np.ndarray
    rr: np.ndarray


@njit
def _alloc_scratch(a_total, max_rf, max_out, max_in=1):
    """Fresh :class:`Scratch` buffers (learning buffers zeroed). Chapter: book/09_speed.md."""
    return Scratch(np.empty(a_total), np.empty(a_total), np.empty(a_total), np.empty(a_total),
                   np.zeros(a_total, dtype=np.int64), np.zeros(a_total), np.zeros(a_total),
                   np.zeros(a_total), np.empty(max_out), np.empty(max_rf), np.empty(max_rf),
                   np.empty(max_rf, dtype=np.int64), np.empty(max_out), np.empty(max_out),
                   np.empty(max_out), np.empty(max_out), np.empty(max_out), np.empty(max_out),
                   np.empty(max_out), np.empty(max_in), np.empty(max_in, dtype=np.int64),
                   np.empty(max_in, dtype=np.int64), np.empty(max_in, dtype=np.int64),
                   np.empty(max_in), np.empty(max_in, dtype=np.int64),
                   np.empty(max_in, dtype=np.int64))
