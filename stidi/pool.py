r"""First-spike pooling layers: forward pass and error routing (no weights, so no update).

A pooling layer passes the earliest spike of each non-overlapping ``k x k``
window.  **Ties** go to the first position in row-major order inside the
window; a window with no spike passes ``t_max`` and records its first
position as the winner.  The winner is kept for learning: the error of a
window goes to its winner only (other positions get 0; windows do not
overlap, so the L2 norm is unchanged and no renormalisation is needed).  With
``Rule.silent_pull``, a silent window sends its error to the position whose
potential came closest to threshold instead.
"""

from __future__ import annotations

import numpy as np

from ._codes import Col
from ._jit import njit, prange
from .neuron import _check_times

__all__ = ["first_spike_pool"]


@njit
def _pool_forward(t_in, s_in, v_in, p_in, d, t_out, s_out, v_out, p_out, win):
    """First-spike pooling of one ``(C, H, W)`` map; ``win`` gets each window's winner (flat input index).

    Twin: :func:`stidi.reference.first_spike_pool_reference`.
    Chapter: book/06_conv.md, eq-conv-pool.
    """
    C, H, W, k, Ho, Wo = d[Col.C], d[Col.H], d[Col.W], d[Col.K], d[Col.HO], d[Col.WO]
    HW = H * W
    for c in range(C):
        for Y in range(Ho):
            for X in range(Wo):
                best = np.inf
                bi = c * HW + (Y * k) * W + X * k
                for u in range(k):
                    for v in range(k):
                        i = c * HW + (Y * k + u) * W + X * k + v
                        if t_in[i] < best:  # strict: the first in row-major order wins ties
                            best = t_in[i]
                            bi = i
                q = c * Ho * Wo + Y * Wo + X
                t_out[q] = t_in[bi]
                s_out[q] = s_in[bi]
                v_out[q] = v_in[bi]
                p_out[q] = p_in[bi]
                win[q] = bi


@njit(parallel=True)
def _pool_batch(T, d, t_out, win):
    """:func:`_pool_forward` for every row of ``T``, in parallel.

    Twin: :func:`stidi.reference.first_spike_pool_reference`. Chapter: book/06_conv.md, eq-conv-pool.
    """
    for n in prange(T.shape[0]):
        z = np.zeros(T.shape[1])
        s = np.zeros(t_out.shape[1])
        _pool_forward(T[n], z, z, z, d, t_out[n], s, s.copy(), s.copy(), win[n])


@njit
def _pool_errors_below(t_out, err_out, win, vpk_in, d, t_max, silent_pull, err_in):
    """Route each window's error to its winner (or, with ``silent_pull``, a silent window's
    error to the position with the highest peak potential).

    Twin: :func:`stidi.reference.train_step_reference`. Chapter: book/06_conv.md, eq-conv-pool-error.
    """
    H, W, k, Ho, Wo = d[Col.H], d[Col.W], d[Col.K], d[Col.HO], d[Col.WO]
    for i in range(err_in.shape[0]):
        err_in[i] = 0.0
    for q in range(t_out.shape[0]):
        i = win[q]
        if silent_pull and t_out[q] >= t_max and err_out[q] != 0.0:
            c = q // (Ho * Wo)
            Y = (q // Wo) % Ho
            X = q % Wo
            best = -np.inf
            for u in range(k):
                for v in range(k):
                    j = c * H * W + (Y * k + u) * W + X * k + v
                    if vpk_in[j] > best:
                        best = vpk_in[j]
                        i = j
        err_in[i] = err_out[q]


def _check_maps(t_in, name="t_in"):
    t = _check_times(t_in, name)
    if t.ndim not in (3, 4):
        raise ValueError(f"{name} must have shape (C, H, W) or (batch, C, H, W), got {t.shape}")
    single = t.ndim == 3
    return (t[None] if single else t), single


def first_spike_pool(t_in, k):
    """First-spike pooling over non-overlapping ``k x k`` windows.

    Parameters
    ----------
    t_in : array_like, shape ``(C, H, W)`` or ``(batch, C, H, W)``
    k : int
        Window size and stride; trailing rows/columns that do not fill a window are dropped.

    Returns
    -------
    t : ndarray, shape ``(C, H // k, W // k)`` (or with a batch axis)
        Earliest spike time of each window.
    winner : ndarray of int64, same shape
        Flat index into the ``(C, H, W)`` input map of the unit that won (ties:
        first in row-major order inside the window; a silent window records its
        first position).
    """
    T, single = _check_maps(t_in)
    k = int(k)
    B, C, H, W = T.shape
    if k < 1 or k > H or k > W:
        raise ValueError(f"pooling size must be in [1, min(H, W)] = [1, {min(H, W)}], got {k}")
    Ho, Wo = H // k, W // k
    d = np.array([1, C, H, W, C, Ho, Wo, k, 0], dtype=np.int64)
    t_out = np.empty((B, C * Ho * Wo))
    win = np.empty((B, C * Ho * Wo), dtype=np.int64)
    _pool_batch(np.ascontiguousarray(T.reshape(B, -1)), d, t_out, win)
    t_out = t_out.reshape(B, C, Ho, Wo)
    win = win.reshape(B, C, Ho, Wo)
    return (t_out[0], win[0]) if single else (t_out, win)
