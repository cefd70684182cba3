"""Score S4NN's published pretrained MNIST weights under two tie rules.

S4NN (Kheradpisheh & Masquelier, 2020) reports 97.4 % on MNIST for a
784-400-10 network of non-leaky integrate-and-fire neurons.  Its public code
(https://github.com/SRKH/S4NN, ``S4NN.py``) ships the weights of a trained
network, ``weights_pretrained.npy``.  This script re-implements the network's
forward pass as that code defines it and scores the weights on the 10,000
MNIST test images twice:

* **ties correct** -- the code's own rule: an image is correct when the label
  neuron's spike time equals the earliest output spike time (so a tie with
  another output counts as correct); with no output spike, the output with
  the largest potential at time step ``t_max - 3 = 253`` is the answer;
* **ties wrong** -- the same, but a tie of the label neuron with another
  output counts as an error (as for a decision rule that has to pick one).

The forward pass, as in the code: pixel ``p`` spikes at the integer time
``floor((255 - p) * 256 / 255)`` (black pixels at ``t_max = 256``, which is
never counted); the potential of a neuron at time step ``t`` is the sum of
the weights of the inputs that spiked at or before ``t`` (a step PSP); the
neuron fires at ``1 +`` the first step where the potential exceeds the
threshold 100, and a neuron that fires at ``t_max`` or later counts as
silent.  The output neurons are in the code's class order
``[4, 1, 0, 7, 9, 2, 3, 5, 8, 6]``.

The weights file is a pickled object array of CuPy arrays (the code saved
them from a GPU); it is read with an unpickler that only accepts NumPy's
array-reconstruction functions and turns each CuPy array into a NumPy one.

Usage::

    STIDI_DATA=../shared/datasets python scripts/s4nn_pretrained_eval.py \\
        --weights PATH/TO/weights_pretrained.npy --out results/s4nn-pretrained.json
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import pickle
import sys
from pathlib import Path

import numpy as np

from stidi._io import atomic_write_text

T_MAX = 256
THRESHOLD = 100.0
CLASS_ORDER = (4, 1, 0, 7, 9, 2, 3, 5, 8, 6)
REPORTED = 97.4
ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
}


#: CuPy arrays pickle as ``cupy.core.core.array(<numpy array>)``; read them as NumPy arrays.
CUPY_ARRAY = {("cupy.core.core", "array"), ("cupy._core.core", "array"), ("cupy", "array")}


class _ArrayUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) in CUPY_ARRAY:
            return np.asarray
        if (module, name) not in ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a weights file")
        return super().find_class(module, name)


def load_weights(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """``(W_hidden (400, 784), W_out (10, 400))`` from S4NN's ``.npy`` file."""
    raw = path.read_bytes()
    stream = io.BytesIO(raw)
    try:
        version = np.lib.format.read_magic(stream)
        read_header = {(1, 0): np.lib.format.read_array_header_1_0,
                       (2, 0): np.lib.format.read_array_header_2_0}.get(version)
        if read_header is None:
            raise ValueError(f"unsupported .npy format version {version}")
        shape, fortran, dtype = read_header(stream)
        if dtype.hasobject:
            layers = _ArrayUnpickler(stream).load()
        else:
            layers = np.lib.format.read_array(io.BytesIO(raw))
    except (ValueError, EOFError, pickle.UnpicklingError) as exc:
        raise ValueError(f"{path}: not a readable .npy weights file ({exc})") from exc
    if len(layers) != 2:
        raise ValueError(f"{path}: expected 2 weight arrays, found {len(layers)}")
    hidden = np.asarray(layers[0], dtype=np.float64).reshape(len(layers[0]), -1)
    output = np.asarray(layers[1], dtype=np.float64).reshape(len(layers[1]), -1)
    if hidden.shape[1] != 784 or output.shape[1] != hidden.shape[0]:
        raise ValueError(f"{path}: unexpected shapes {hidden.shape} and {output.shape}")
    return hidden, output


def layer_times(t_in: np.ndarray, W: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Spike times of one layer (``T_MAX`` = silent) and the potentials at step ``T_MAX - 3``.

    ``t_in``: integer input spike times, ``T_MAX`` or more = no spike.
    """
    active = np.flatnonzero(t_in < T_MAX)
    if len(active) == 0:                                  # no input spike: silent, potential 0
        return np.full(W.shape[0], T_MAX, dtype=np.int64), np.zeros(W.shape[0])
    order = active[np.argsort(t_in[active], kind="stable")]
    times = t_in[order]
    v = np.cumsum(W[:, order], axis=1)                    # potential after each input, in time order
    last_of_step = np.r_[np.flatnonzero(np.diff(times)), len(times) - 1] if len(times) else np.array([], int)
    steps = times[last_of_step]
    v_steps = v[:, last_of_step]                          # potential at the end of each distinct step
    above = v_steps > THRESHOLD
    fired = above.any(axis=1)
    first = np.where(fired, above.argmax(axis=1), 0)
    t_out = np.where(fired, steps[first] + 1, T_MAX).astype(np.int64)
    t_out = np.minimum(t_out, T_MAX)
    late = steps <= T_MAX - 3
    v_late = v_steps[:, np.flatnonzero(late)[-1]] if late.any() else np.zeros(W.shape[0])
    return t_out, v_late


def evaluate(images: np.ndarray, labels: np.ndarray, hidden: np.ndarray, output: np.ndarray) -> dict:
    index_of = {digit: k for k, digit in enumerate(CLASS_ORDER)}
    target = np.array([index_of[int(d)] for d in labels])
    t_pixels = np.floor((255.0 - images.reshape(len(images), -1).astype(np.float64)) * T_MAX / 255.0)
    t_pixels = t_pixels.astype(np.int64)
    ties_correct = ties_wrong = ties = silent = 0
    for n in range(len(images)):
        h, _ = layer_times(t_pixels[n], hidden)
        t, v_late = layer_times(h, output)
        first = t.min()
        if first >= T_MAX:
            silent += 1
            hit = int(np.argmax(v_late)) == target[n]
            ties_correct += hit
            ties_wrong += hit
            continue
        winners = np.flatnonzero(t == first)
        if t[target[n]] == first:
            ties_correct += 1
            if len(winners) == 1:
                ties_wrong += 1
            else:
                ties += 1
    n = len(images)
    return {"n_test": n, "accuracy_ties_correct": ties_correct / n, "accuracy_ties_wrong": ties_wrong / n,
            "tie_fraction": ties / n, "output_silent_fraction": silent / n}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", type=Path, required=True, help="S4NN's weights_pretrained.npy")
    parser.add_argument("--source", default="https://github.com/SRKH/S4NN",
                        help="where the weights come from (recorded in the report)")
    parser.add_argument("--source-commit", default="", help="commit of the source repository")
    parser.add_argument("--limit", type=int, default=0, help="score only the first N test images")
    parser.add_argument("--out", type=Path, required=True, help="JSON report to write")
    args = parser.parse_args(argv)
    if args.limit < 0:
        parser.error(f"--limit must be 0 (all images) or positive, not {args.limit}")
    if not args.weights.is_file():
        parser.error(f"--weights: no such file: {args.weights}")
    try:
        hidden, output = load_weights(args.weights)
    except ValueError as exc:
        parser.error(f"--weights: {exc}")

    from stidi.datasets import load

    images, labels = load("mnist", "test", download=False)
    if args.limit:
        images, labels = images[:args.limit], labels[:args.limit]
    report = evaluate(images, labels, hidden, output)
    report.update({
        "reported": REPORTED,
        "weights": args.weights.name,
        "weights_sha256": hashlib.sha256(args.weights.read_bytes()).hexdigest(),
        "source": args.source,
        "source_commit": args.source_commit,
        "architecture": f"784-{hidden.shape[0]}-{output.shape[0]}",
        "decision_rule": "first output spike on integer time steps; ties counted as correct "
                         "(accuracy_ties_correct) or as errors (accuracy_ties_wrong); no output spike: "
                         "largest potential at step 253",
        "command": "python scripts/s4nn_pretrained_eval.py --weights weights_pretrained.npy "
                   f"--out {args.out.as_posix()}" + (f" --limit {args.limit}" if args.limit else ""),
    })
    atomic_write_text(args.out, json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: report[k] for k in ("accuracy_ties_correct", "accuracy_ties_wrong", "tie_fraction",
                                             "output_silent_fraction")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
