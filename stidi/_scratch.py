"""Per-sample working buffers of the network kernels, allocated in one place."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ._jit import njit

#: Buffers of one sample: every unit's outputs and learning quantities (``a_total`` each: t,
#: slope, vpk, tpk, win, err, g, tstar), the output targets T and per-layer outputs to/so/vo/po
#: and coef (``max_out``), a receptive field's time-ordered events act_t/act_i/cx (``max_rf``),
#: the sweep's V/S (``max_out``), and the event lists of a conv layer's whole input map
#: (gt/gi/gy/gx) and of one row of its receptive fields (rt/rx/rr), ``max_in`` each.
Scratch = NamedTuple("Scratch", [(name, np.ndarray) for name in
                                 ("t slope vpk tpk win err g tstar T act_t act_i V S to so vo po coef "
                                  "gt gi gy gx rt rx rr cx").split()])


@njit
def _alloc_scratch(a_total, max_rf, max_out, max_in=1):
    """Fresh :class:`Scratch` buffers (learning buffers zeroed). Chapter: book/09_speed.md."""
    return Scratch(np.empty(a_total), np.empty(a_total), np.empty(a_total), np.empty(a_total),
                   np.zeros(a_total, dtype=np.int64), np.zeros(a_total), np.zeros(a_total),
                   np.zeros(a_total), np.empty(max_out), np.empty(max_rf),
                   np.empty(max_rf, dtype=np.int64), np.empty(max_out), np.empty(max_out),
                   np.empty(max_out), np.empty(max_out), np.empty(max_out), np.empty(max_out),
                   np.empty(max_out), np.empty(max_in), np.empty(max_in, dtype=np.int64),
                   np.empty(max_in, dtype=np.int64), np.empty(max_in, dtype=np.int64),
                   np.empty(max_in), np.empty(max_in, dtype=np.int64),
                   np.empty(max_in, dtype=np.int64), np.empty(max_rf, dtype=np.int64))
