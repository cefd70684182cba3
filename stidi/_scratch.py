"""Per-sample working buffers of the network kernels, allocated in one place."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ._jit import njit

#: Buffers of one sample: every unit's outputs and learning quantities (``a_total`` each: t,
#: slope, vpk, tpk, win, err, g, tstar), the output targets T, the sweep's V/S and coef
#: (``max_out``), a dense layer's time-ordered inputs act_t/act_i (``max_rf``), the sorted
#: spikes of a conv layer's input map gt/gi (``max_in``), and a conv layer's potentials,
#: slopes and peaks cv/cs/cvp/ctp (``max_conv`` units), each position's last breakpoint
#: clast and its count of units yet to fire calive (``max_pos``).
Scratch = NamedTuple("Scratch", [(name, np.ndarray) for name in
                                 ("t slope vpk tpk win err g tstar T act_t act_i V S coef "
                                  "gt gi cv cs cvp ctp clast calive").split()])


@njit
def _alloc_scratch(a_total, max_rf, max_out, max_in=1, max_conv=1, max_pos=1):
    """Fresh :class:`Scratch` buffers (learning buffers zeroed). Chapter: book/09_speed.md."""
    return Scratch(np.empty(a_total), np.empty(a_total), np.empty(a_total), np.empty(a_total),
                   np.zeros(a_total, dtype=np.int64), np.zeros(a_total), np.zeros(a_total),
                   np.zeros(a_total), np.empty(max_out), np.empty(max_rf),
                   np.empty(max_rf, dtype=np.int64), np.empty(max_out), np.empty(max_out),
                   np.empty(max_out), np.empty(max_in), np.empty(max_in, dtype=np.int64),
                   np.empty(max_conv), np.empty(max_conv), np.empty(max_conv), np.empty(max_conv),
                   np.empty(max_pos), np.empty(max_pos, dtype=np.int64))
