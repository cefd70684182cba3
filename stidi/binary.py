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

In a partly binary network, :math:`\alpha_l = 0` marks a layer with real
weights: its forward weights are :math:`w` itself and it has no scale to learn.
"""

from __future__ import annotations

import numpy as np

from ._codes import ALPHA_FLOOR
from ._jit import njit

__all__ = ["forward_weights"]


@njit
def _refresh_binary(W, Wf, w_off, alpha, l):
    """``Wf_l = alpha_l sign(W_l)`` with ``sign(0) = 0`` (``Wf_l = W_l`` when ``alpha_l`` is 0, a real layer).

    Chapter: book/07_binary.md, eq-bin-forward.
    """
    a = alpha[l]
    if a == 0.0:
        for q in range(w_off[l], w_off[l + 1]):
            Wf[q] = W[q]
        return
    for q in range(w_off[l], w_off[l + 1]):
        w = W[q]
        Wf[q] = a if w > 0.0 else (-a if w < 0.0 else 0.0)


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


def forward_weights(W: np.ndarray, w_off: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """The weights the forward pass uses: ``W`` itself (real network) or ``alpha_l sign(W_l)``."""
    if alpha.shape[0] == 0:
        return W
    Wf = np.empty_like(W)
    for l in range(len(w_off) - 1):
        _refresh_binary(W, Wf, w_off, alpha, l)
    return Wf
