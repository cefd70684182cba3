r"""Binary weights: the forward pass uses :math:`\alpha_l\,\mathrm{sign}(w)`, learning updates the real :math:`w`.

:math:`\alpha_l` is calibrated at initialisation (the median first spike time
of the layer, as for real weights).  With ``alpha_lr = 0`` (our default) it
then stays fixed, which is the same as folding it into the threshold.  With
``alpha_lr > 0`` it is trained as in BS4NN, by the STiDi-BP rule applied to
:math:`\partial v_j/\partial\alpha_l = \sum_i \mathrm{sign}(w_{ji})\,\varepsilon(t^*_j - t_i)`:

.. math::  \Delta\alpha_l = -\eta_\alpha \frac{1}{\alpha_l} \sum_j e_j g_j \alpha_l
           \sum_i \mathrm{sign}(w_{ji})\,\varepsilon(t^*_j - t_i),

averaged over the samples of a step (one sample online).  The gain :math:`g`
is taken in units of the forward weights.  A layer whose learning rate is 0
is frozen, its :math:`\alpha_l` included.  Hidden errors use the real
:math:`w` (``binary_backward="real"``) or :math:`\alpha\,\mathrm{sign}(w)` (``"sign"``).

With ``binary_clip = c > 0`` (our option, after BinaryConnect's clipping of the real
weights to the binary values' range [Courbariaux et al. 2015]) every update of a binary
layer is followed by :math:`w \leftarrow \mathrm{clip}(w, -c\,\alpha_l, c\,\alpha_l)`, so a
real weight never strays so far from 0 that its sign can no longer change.

With ``binary_scale="unit"`` (our option, after the per-filter scaling factors of
XNOR-Net [Rastegari et al. 2016]) unit :math:`j` of a binary layer has its own scale,
:math:`\alpha_l r_j\,\mathrm{sign}(w_{ji})` with :math:`r_j = \overline{|w_{j\cdot}|} /
\overline{|w_{\cdot\cdot}|}`, the mean magnitude of the unit's real weights relative to the
layer's (1 when the layer's weights are all 0), recomputed with the signs; a unit of a
convolution is a filter.  A uniform rescaling of the real weights changes nothing, as
with one scale per layer.

In a partly binary network, :math:`\alpha_l = 0` marks a layer with real
weights: its forward weights are :math:`w` itself and it has no scale to learn.
"""

from __future__ import annotations

import numpy as np

from ._codes import ALPHA_FLOOR
from ._jit import njit

__all__ = ["forward_weights"]


@njit
def _refresh_binary(W, Wf, w_off, alpha, l, n_out, unit):
    """``Wf_l = alpha_l sign(W_l)`` with ``sign(0) = 0`` (``Wf_l = W_l`` when ``alpha_l`` is 0, a real layer).

    With ``unit``, column ``j`` of the ``(rows, n_out)`` block is scaled by ``r_j``, the
    mean ``|w|`` of the column over that of the block.
    Twin: :func:`stidi.reference.binary_forward_reference`.
    Chapter: book/07_binary.md, eq-bin-forward, eq-bin-unit.
    """
    a = alpha[l]
    lo, hi = w_off[l], w_off[l + 1]
    if a == 0.0:
        for q in range(lo, hi):
            Wf[q] = W[q]
        return
    if not unit:
        for q in range(lo, hi):
            w = W[q]
            Wf[q] = a if w > 0.0 else (-a if w < 0.0 else 0.0)
        return
    rows = (hi - lo) // n_out
    col = np.zeros(n_out)
    total = 0.0
    for i in range(rows):
        for j in range(n_out):
            m = abs(W[lo + i * n_out + j])
            col[j] += m
            total += m
    for j in range(n_out):
        # r_j = (col_j / rows) / (total / (rows n_out)); 1 for an all-zero layer
        col[j] = a * (col[j] * n_out / total if total > 0.0 else 1.0)
    for i in range(rows):
        for j in range(n_out):
            q = lo + i * n_out + j
            w = W[q]
            Wf[q] = col[j] if w > 0.0 else (-col[j] if w < 0.0 else 0.0)


@njit
def _alpha_step(alpha, l, alpha_lr, direction):
    """``alpha_l -= alpha_lr * direction / alpha_l`` (floored), where ``direction`` is the mean over
    the step's samples of :math:`\\sum_j e_j g_j \\alpha_l \\sum_i \\mathrm{sign}(w_{ji})\\varepsilon`.

    A layer with real weights (``alpha_l`` = 0) is left alone.
    Twin: :func:`stidi.reference.train_step_reference`. Chapter: book/07_binary.md, eq-bin-update.
    """
    if alpha[l] == 0.0:
        return
    alpha[l] = max(alpha[l] - alpha_lr * direction / alpha[l], ALPHA_FLOOR)


@njit
def _clip_binary(W, w_off, alpha, l, c):
    """Clip the real weights of binary layer ``l`` to ``[-c alpha_l, c alpha_l]`` (nothing when
    ``c`` is 0 or the layer is real).

    Twin: :func:`stidi.reference.network_step_reference`. Chapter: book/07_binary.md, eq-bin-clip.
    """
    a = alpha[l]
    if c <= 0.0 or a == 0.0:
        return
    b = c * a
    for q in range(w_off[l], w_off[l + 1]):
        if W[q] > b:
            W[q] = b
        elif W[q] < -b:
            W[q] = -b


def forward_weights(W: np.ndarray, w_off: np.ndarray, alpha: np.ndarray, n_out=None,
                    unit: bool = False) -> np.ndarray:
    """The weights the forward pass uses: ``W`` itself (real network) or ``alpha_l sign(W_l)``
    (times ``r_j`` per unit with ``unit``; ``n_out[l]`` is then layer ``l``'s number of units)."""
    if alpha.shape[0] == 0:
        return W
    L = len(w_off) - 1
    n_out = np.ones(L, dtype=np.int64) if n_out is None else np.asarray(n_out, dtype=np.int64)
    Wf = np.empty_like(W)
    for l in range(L):
        _refresh_binary(W, Wf, w_off, alpha, l, max(int(n_out[l]), 1), bool(unit))
    return Wf
