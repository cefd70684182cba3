"""stidi: spiking neural networks with one spike per neuron, trained with STiDi-BP.

The public API is small:

* :func:`encode` -- pixel intensities to first-spike times,
* :func:`psp` -- the triangular post-synaptic potential,
* :func:`first_spike_times` -- exact, event-driven spike times of a layer,
* :class:`SpikingClassifier` -- a fully connected network and its training,
* :mod:`stidi.datasets` -- MNIST and Fashion-MNIST loaders and the shipped subsets,
* :mod:`stidi.reference` -- plain NumPy twins of the kernels, for reading and checking.

Submodules are imported lazily so that ``import stidi`` stays fast; Numba
compiles each kernel on its first call (and caches it on disk).
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_LAZY = {
    "encode": ("neuron", "encode"),
    "psp": ("neuron", "psp"),
    "psp_derivative": ("neuron", "psp_derivative"),
    "first_spike_times": ("neuron", "first_spike_times"),
    "layer_forward": ("neuron", "layer_forward"),
    "SpikingClassifier": ("model", "SpikingClassifier"),
}
_SUBMODULES = {"datasets", "reference", "neuron", "network", "model", "conv"}

__all__ = [*_LAZY, *sorted(_SUBMODULES), "__version__"]


def __getattr__(name: str):
    if name in _LAZY:
        mod, attr = _LAZY[name]
        value = getattr(importlib.import_module(f".{mod}", __name__), attr)
    elif name in _SUBMODULES:
        value = importlib.import_module(f".{name}", __name__)
    else:
        raise AttributeError(f"module 'stidi' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__():
    return sorted(__all__)
