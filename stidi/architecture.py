r"""Architecture strings: one grammar for every network.

::

    784-400-10                  fully connected, flat input of 784 values
    784-800-400-10              two hidden layers
    28x28-16C5-P2-10            a convolution, first-spike pooling, the output
    28x28-32C5-P2-64C5-P2-10    two convolutional stages
    28x28x1-16C5p2-P2-10        padding 2 on every side

Tokens, separated by ``-``:

* the first token is the input: ``N`` (a flat vector of ``N`` values), ``HxW`` or
  ``HxWxC`` (``C`` channels, default 1), or ``*`` (flat, its size taken from
  the data);
* ``nCk``: a convolution with ``n`` filters of size ``k x k``, stride 1;
  ``nCkpP`` pads every side with ``P < k`` rows/columns of "no spike";
* ``Pk``: first-spike pooling over non-overlapping ``k x k`` windows (a map
  whose side is not a multiple of ``k`` loses its last rows/columns);
* a plain number: a fully connected (dense) layer of that width; the map is
  flattened in ``(C, H, W)`` order before the first one, and no convolution
  or pooling may follow;
* the last token is the dense output layer, one neuron per class; ``*`` takes
  the number of classes from the data.

A layer kind is one small module (:mod:`stidi.dense`, :mod:`stidi.conv`,
:mod:`stidi.pool`); this module only knows their shapes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from ._codes import N_COLS, LayerKind

__all__ = ["Layer", "Architecture", "parse_architecture"]


class Layer(NamedTuple):
    """One layer: its kind, ``(C, H, W)`` input and output shapes, kernel/window size and padding.

    Dense layers have ``out_shape = (n, 1, 1)``.  ``layer["token"]`` (dict-style
    access by field name) works as well as ``layer.token``.
    """

    kind: LayerKind
    in_shape: tuple
    out_shape: tuple
    k: int
    pad: int
    token: str

    def __getitem__(self, key):
        return getattr(self, key) if isinstance(key, str) else tuple.__getitem__(self, key)


@dataclass(frozen=True)
class Architecture:
    """A parsed architecture string (see the module docstring)."""

    input_shape: tuple
    layers: tuple
    text: str = ""
    flat_input: bool = False

    @property
    def n_inputs(self) -> int:
        return int(np.prod(self.input_shape))

    @property
    def n_outputs(self) -> int:
        return int(self.layers[-1].out_shape[0])

    @property
    def has_conv(self) -> bool:
        return any(lay.kind == LayerKind.CONV for lay in self.layers)

    @property
    def weight_layers(self) -> list:
        """Indices of the layers that have weights (every kind but pooling)."""
        return [l for l, lay in enumerate(self.layers) if lay.kind != LayerKind.POOL]

    def descriptor(self) -> np.ndarray:
        """``(L, 9)`` int64 table read by the kernels; columns in :class:`stidi._codes.Col`."""
        d = np.zeros((len(self.layers), N_COLS), dtype=np.int64)
        for l, lay in enumerate(self.layers):
            C, H, W = lay.in_shape
            if lay.kind == LayerKind.DENSE:
                C, H, W = C * H * W, 1, 1
            d[l] = (int(lay.kind), C, H, W, *lay.out_shape, lay.k, lay.pad)
        return d

    def weight_shapes(self) -> list:
        """Public shape of each layer's weights: ``(F, C, k, k)``, ``(n_out, n_in)`` or ``None``."""
        out = []
        for lay in self.layers:
            C, H, W = lay.in_shape
            if lay.kind == LayerKind.CONV:
                out.append((lay.out_shape[0], C, lay.k, lay.k))
            elif lay.kind == LayerKind.DENSE:
                out.append((lay.out_shape[0], C * H * W))
            else:
                out.append(None)
        return out

    def offsets(self):
        """``(a_off, w_off)``: where each layer's activations and weights start in the flat vectors.

        Layer ``l``'s weights are ``W[w_off[l]:w_off[l+1]]``, stored as a C-ordered
        ``(n_in, n_out)`` block (dense) or ``(C*k*k, F)`` block (conv) so that the
        event sweep and the update walk contiguous memory; its outputs are
        ``t[a_off[l+1]:a_off[l+2]]`` (``a_off[0]`` is the input).
        """
        sizes = [self.n_inputs] + [int(np.prod(lay.out_shape)) for lay in self.layers]
        a_off = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        nw = [0 if s is None else int(np.prod(s)) for s in self.weight_shapes()]
        w_off = np.concatenate([[0], np.cumsum(nw)]).astype(np.int64)
        return a_off, w_off

    def kernel_shape(self, l: int) -> tuple:
        """Shape of layer ``l``'s block in the flat weight vector."""
        shape = self.weight_shapes()[l]
        return (int(np.prod(shape[1:])), shape[0])

    def layer_view(self, W: np.ndarray, l: int) -> np.ndarray:
        """Writable view of layer ``l``'s block of the flat weight vector ``W``."""
        _, w_off = self.offsets()
        return W[w_off[l]:w_off[l + 1]].reshape(self.kernel_shape(l))

    def unpack(self, W: np.ndarray) -> list:
        """Public weights per layer (copies): ``(F, C, k, k)``, ``(n_out, n_in)`` or ``None``."""
        return [None if s is None else self.layer_view(W, l).T.reshape(s).copy()
                for l, s in enumerate(self.weight_shapes())]

    def pack(self, weights) -> np.ndarray:
        """Inverse of :meth:`unpack`: the flat kernel-layout vector."""
        return np.concatenate([np.zeros(0)] + [np.asarray(w, dtype=np.float64).reshape(w.shape[0], -1).T.ravel()
                                               for w in weights if w is not None])

    def __str__(self) -> str:
        return self.text


_RE_INPUT = re.compile(r"^(\d+)x(\d+)(?:x(\d+))?$", re.IGNORECASE)
_RE_CONV = re.compile(r"^(\d+)[cC](\d+)(?:p(\d+))?$")
_RE_POOL = re.compile(r"^[pP](\d+)$")
_RE_DENSE = re.compile(r"^(\d+)$")
_SYNTAX = ("expected 'nCk' (convolution, 'nCkpP' with padding P), 'Pk' (first-spike pooling) "
           "or an integer (fully connected)")


def _input_shape(tok: str, n_inputs):
    if tok == "*":
        if n_inputs is None:
            return None, "'*' takes the input size from the data, which is not known here"
        return (int(n_inputs), 1, 1), None
    if (m := _RE_DENSE.match(tok)):
        return (int(m.group(1)), 1, 1), None
    if (m := _RE_INPUT.match(tok)):
        return (int(m.group(3) or 1), int(m.group(1)), int(m.group(2))), None
    return None, "the first token must be the input size 'N', 'HxW', 'HxWxC' or '*'"


def _next_layer(tok: str, shape: tuple, flat: bool):
    """The layer a token builds on an input of ``shape``, or an error message."""
    C, H, W = shape
    if (m := _RE_CONV.match(tok)):
        n, k, p = int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)
        if flat:
            return None, "convolution after a fully connected layer"
        if n < 1 or k < 1:
            return None, "needs >= 1 filters of size >= 1"
        if p >= k:
            return None, f"padding {p} must be smaller than the kernel size {k}"
        Ho, Wo = H + 2 * p - k + 1, W + 2 * p - k + 1
        if Ho < 1 or Wo < 1:
            return None, f"kernel {k}x{k} is larger than its (padded) {H + 2 * p}x{W + 2 * p} input map"
        return Layer(LayerKind.CONV, shape, (n, Ho, Wo), k, p, tok), None
    if (m := _RE_POOL.match(tok)):
        k = int(m.group(1))
        if flat:
            return None, "pooling after a fully connected layer"
        if k < 1:
            return None, "pooling size must be >= 1"
        if k > H or k > W:
            return None, f"pooling is larger than its {H}x{W} input map"
        return Layer(LayerKind.POOL, shape, (C, H // k, W // k), k, 0, tok), None
    if (m := _RE_DENSE.match(tok)):
        n = int(m.group(1))
        if n < 1:
            return None, "layer width must be >= 1"
        return Layer(LayerKind.DENSE, shape, (n, 1, 1), 1, 0, tok), None
    return None, f"unknown token; {_SYNTAX}"


def parse_architecture(arch: str, *, n_inputs: int | None = None,
                       n_classes: int | None = None) -> Architecture:
    """Parse an architecture string such as ``"28x28-16C5-P2-10"`` or ``"784-400-10"``.

    Parameters
    ----------
    arch : str
        See :mod:`stidi.architecture` for the grammar.
    n_inputs, n_classes : int, optional
        Sizes that replace a ``*`` first (input) or last (output) token.

    Raises
    ------
    ValueError
        With a one-line message that names the offending token and its position,
        for an empty string or token, a malformed input, an unknown token, zero
        sizes, a kernel or pooling window larger than its (padded) map, padding
        >= kernel size, convolution or pooling after a dense layer, or a last
        layer that is not dense.
    """
    if not isinstance(arch, str):
        raise TypeError(f"arch must be a string like '784-400-10' or '28x28-16C5-P2-10', "
                        f"got {type(arch).__name__}")
    tokens = [t.strip() for t in arch.strip().split("-")]

    def fail(i, why):
        where = f"token {i + 1} {tokens[i]!r}" if i is not None else "whole string"
        raise ValueError(f"architecture {arch!r}, {where}: {why}")

    if not arch.strip():
        fail(None, "empty (write e.g. '784-400-10' or '28x28-16C5-P2-10')")
    for i, t in enumerate(tokens):
        if t == "":
            fail(i, "empty token (two '-' in a row, or one at an end)")
    shape, why = _input_shape(tokens[0], n_inputs)
    if shape is None:
        fail(0, why)
    if min(shape) < 1:
        fail(0, "input size must be positive")
    if len(tokens) < 2:
        fail(None, "missing layers; the last one must be a fully connected output layer")
    if tokens[-1] == "*":
        if n_classes is None:
            fail(len(tokens) - 1, "'*' takes the number of classes from the data, which is not known here")
        tokens[-1] = str(int(n_classes))
    layers = []
    flat = False
    for i, tok in enumerate(tokens[1:], start=1):
        lay, why = _next_layer(tok, shape, flat)
        if lay is None:
            fail(i, why)
        layers.append(lay)
        flat = flat or lay.kind == LayerKind.DENSE
        shape = lay.out_shape
    if layers[-1].kind != LayerKind.DENSE:
        fail(len(tokens) - 1, "the last layer must be fully connected (the output, one neuron per class)")
    flat_input = tokens[0] == "*" or _RE_DENSE.match(tokens[0]) is not None
    text = "-".join(tokens if tokens[0] != "*" else [str(int(n_inputs))] + tokens[1:])
    return Architecture(input_shape=tuple(int(v) for v in _input_shape(tokens[0], n_inputs)[0]),
                        layers=tuple(layers), text=text, flat_input=flat_input)
