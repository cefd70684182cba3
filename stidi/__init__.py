"""stidi: spiking neural networks with one spike per neuron, trained with STiDi-BP.

The public API:

* :func:`encode` -- pixel intensities to first-spike times,
* :func:`psp`, :func:`psp_derivative` -- the triangular post-synaptic potential,
* :func:`first_spike_times`, :func:`layer_forward` -- exact, event-driven spike times of a dense layer,
* :func:`conv_forward`, :func:`first_spike_pool` -- the same for conv and pooling layers,
* :func:`parse_architecture` -- architecture strings such as ``"28x28-16C5-P2-10"``,
* :func:`calibrate_scale` -- the data-driven initial weight scale,
* :class:`SpikingClassifier` -- any architecture and its training (scikit-learn API),
* :mod:`stidi.datasets` -- MNIST and Fashion-MNIST loaders and the shipped subsets,
* :mod:`stidi.reference` -- plain NumPy twins of the kernels, for reading and checking.

Submodules are imported lazily so that ``import stidi`` stays fast; Numba
compiles each kernel on its first call (and caches it on disk).
"""

from __future__ import annotations

import importlib

__version__ = "0.2.0"

_LAZY = {
    "encode": ("neuron", "encode"),
    "psp": ("neuron", "psp"),
    "psp_derivative": ("neuron", "psp_derivative"),
    "first_spike_times": ("dense", "first_spike_times"),
    "layer_forward": ("dense", "layer_forward"),
    "conv_forward": ("conv", "conv_forward"),
    "first_spike_pool": ("pool", "first_spike_pool"),
    "parse_architecture": ("architecture", "parse_architecture"),
    "Architecture": ("architecture", "Architecture"),
    "calibrate_scale": ("init", "calibrate_scale"),
    "SpikingClassifier": ("model", "SpikingClassifier"),
}
_SUBMODULES = {"datasets", "reference", "neuron", "network", "model", "conv", "dense", "pool",
               "binary", "rule", "init", "architecture", "cli"}

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
