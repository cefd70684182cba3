"""How well each layer's STiDi-BP update follows the gradient of the loss it is meant to descend.

With normalised errors, the output error of one sample is
:math:`e = (T - t)/\\lVert T - t \\rVert` for targets :math:`T` fixed by the target
rule, which is :math:`-\\partial \\ell/\\partial t` for the loss
:math:`\\ell = \\lVert t - T \\rVert` of its output spike times (with ``norm_floor``
:math:`\\phi > 0`, errors shorter than :math:`\\phi` are not scaled up, and the loss is
quadratic below :math:`\\phi`: see :meth:`Probe.loss`).  The exact gradient of
:math:`\\ell` with respect to every weight follows from the forward pass alone: spike
times are piecewise linear in the weights, so a central difference with a small step
gives it exactly wherever no event changes order (the step is a millionth of the
layer's calibrated scale).  This script trains a network briefly, fixes the targets
of a set of validation images, and compares, per weight layer, the summed update
direction of several variants of the rule with that gradient, on a random sample of
each layer's weights:

* ``stidi-bp``: the rule as configured (default: gain :math:`t/\\theta`, S4NN-like
  hidden error);
* ``slope-gain``: the exact gain :math:`1/\\dot v` instead of :math:`t/\\theta`;
* ``displacement``: the spike-time displacement hidden error;
* ``exact-chain``: both, i.e. the chain rule of the network for every unit that fired
  (silent units still pass on the rule's pseudo-gradient through their peak time).

It prints and writes the cosine between each direction and the gradient per layer,
and the cosine between the variants on all weights.  A cosine near 1 means the
layer descends the loss; near 0, its update is unrelated to it.  Output layer,
``exact-chain``: close to 1 up to the silent output units, which is the check that
the numerical gradient is right.

    python scripts/gradient_alignment.py --arch 28x28-32C5-P2-64C5-P2-10 --dataset mnist \\
        --train-size 10000 --epochs 1 --n 200 --per-layer 96 --seed 0 \\
        --set 'lr=[1e-4,1e-5,1e-3]' --set 'init_median=[112,152,192]' --out results/x.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import time
from pathlib import Path

import numpy as np

import stidi
from stidi._codes import N_STATS, make_rule
from stidi._io import atomic_write_text
from stidi.cli import _overrides
import stidi.datasets
from stidi.datasets import train_val_split
from stidi.network import _batch_gradient, forward_network
from stidi.reference import output_targets_reference

VARIANTS = {
    "stidi-bp": {},
    "slope-gain": {"dtdv": "slope"},
    "displacement": {"hidden_error": "displacement"},
    "exact-chain": {"dtdv": "slope", "hidden_error": "displacement"},
}

RULE_OPTIONS = ("gamma", "target", "dtdv", "hidden_error", "normalise", "beta", "slope_floor",
                "norm_floor", "silent_target", "silent_hidden", "conv_reduce", "binary_backward",
                "alpha_lr", "decay_every", "binary_clip", "binary_scale")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--arch", required=True, help="architecture string, as for train")
    p.add_argument("--dataset", choices=("mnist", "fashion-mnist"), required=True)
    p.add_argument("--train-size", type=int, default=10000,
                   help="training images (from the training part of the split)")
    p.add_argument("--epochs", type=int, default=1, help="training before the measurement (>= 1)")
    p.add_argument("--n", type=int, default=200, help="validation images the directions are summed over")
    p.add_argument("--per-layer", type=int, default=96, help="weights per layer differentiated numerically")
    p.add_argument("--step", type=float, default=1e-6,
                   help="difference step, in units of the layer's calibrated scale")
    p.add_argument("--val-size", type=int, default=5000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                   help="classifier setting, as for train (repeatable)")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--n-jobs", type=int, default=1, help="threads of the training run")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--into", type=Path, default=None,
                   help="also file the run under --name in this collection (replacing a run of that name)")
    p.add_argument("--name", default=None, help="the run's name in --into")
    p.add_argument("--quiet", action="store_true")
    return p


def _check_supported(clf: stidi.SpikingClassifier) -> None:
    """The loss of :meth:`Probe.loss` is the one the rule descends only for these networks."""
    if not clf.normalise or any(np.atleast_1d(clf.binary)):
        raise ValueError("the loss matches the rule of real-weight networks with normalise=True only")


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    return float(a @ b / (na * nb)) if na > 0 and nb > 0 else float("nan")


class Probe:
    """A fitted classifier with the targets of ``T_in`` frozen: loss, gradients, rule directions."""

    def __init__(self, clf: stidi.SpikingClassifier, T_in: np.ndarray, labels: np.ndarray):
        _check_supported(clf)
        self.clf = clf
        self.T_in = np.ascontiguousarray(T_in, dtype=np.float64)
        self.labels = np.asarray(labels, dtype=np.int64)
        self.a_off, self.w_off = clf.arch_.offsets()
        self.desc = clf.arch_.descriptor()
        self.cfg = clf._validate(clf.arch_)
        self.W = clf.W_.copy()
        t_out = self.output_times(self.W)
        t_max = float(clf.t_max)
        self.targets = np.array([output_targets_reference(t, int(y), float(clf.gamma), t_max,
                                                          clf.target, clf.silent_target)
                                 for t, y in zip(t_out, self.labels)])
        self.t_out = t_out

    def output_times(self, W: np.ndarray) -> np.ndarray:
        n, width = self.T_in.shape[0], int(self.a_off[-1])
        t_all, slope, vpk = (np.empty((n, width)) for _ in range(3))
        forward_network(self.T_in, W, self.desc, self.w_off, self.a_off, self.clf.thetas_,
                        self.cfg["neuron"], t_all, slope, vpk)
        return t_all[:, int(self.a_off[-2]):]

    def loss(self, W: np.ndarray) -> float:
        """Sum over the images of :math:`t_{\\max} h(\\lVert t - T \\rVert / t_{\\max})`.

        :math:`h(x) = x` for :math:`x \\ge \\phi` (``norm_floor``) and
        :math:`x^2/(2\\phi) + \\phi/2` below it: its gradient with respect to the output times
        is the normalised error :math:`-e/\\max(\\lVert e \\rVert, \\phi)` of the rule.
        """
        t_max, floor = float(self.clf.t_max), float(self.clf.norm_floor)
        x = np.linalg.norm(self.output_times(W) - self.targets, axis=1) / t_max
        if floor > 0:
            x = np.where(x >= floor, x, x * x / (2 * floor) + floor / 2)
        return float(t_max * x.sum())

    def direction(self, **changes) -> np.ndarray:
        """Summed update direction of the rule (``W -= lr * direction`` descends)."""
        clf = self.clf
        opts = {k: getattr(clf, k) for k in RULE_OPTIONS}
        opts.update(changes)
        rule = make_rule(**opts)
        grads = np.zeros((1, self.W.shape[0]))
        galpha = np.zeros((1, self.desc.shape[0]))
        idx = np.arange(self.T_in.shape[0], dtype=np.int64)
        _batch_gradient(self.T_in, self.labels, idx, self.W, self.W, clf.alpha_, self.desc,
                        self.w_off, self.a_off, clf.thetas_, self.cfg["neuron"], rule, 1, grads,
                        galpha, np.zeros(N_STATS), np.zeros(int(self.a_off[-1])))
        return grads[0]

    def numerical_gradient(self, q: np.ndarray, h: float) -> np.ndarray:
        """Central differences of the loss at flat weight indices ``q`` with step ``h``."""
        g = np.empty(q.shape[0])
        W = self.W.copy()
        for k, i in enumerate(q):
            w0 = W[i]
            W[i] = w0 + h
            up = self.loss(W)
            W[i] = w0 - h
            down = self.loss(W)
            W[i] = w0
            g[k] = (up - down) / (2 * h)
        return g


def measure(probe: Probe, per_layer: int, step: float, rng: np.random.Generator,
            variants=VARIANTS) -> dict:
    """Per weight layer: cosine of every variant's direction with the numerical gradient."""
    clf = probe.clf
    dirs = {name: probe.direction(**ch) for name, ch in variants.items()}
    rates = probe.cfg["lrs"] * clf.scales_          # the first epoch's rates, as fit uses them
    n = probe.T_in.shape[0]
    layers = []
    for l in clf.arch_.weight_layers:
        lo, hi = int(probe.w_off[l]), int(probe.w_off[l + 1])
        idx = np.sort(rng.choice(np.arange(lo, hi), size=min(per_layer, hi - lo), replace=False))
        grad = probe.numerical_gradient(idx, step * float(clf.scales_[l]))
        row = {"layer": clf.arch_.layers[l].token, "weights": hi - lo, "sampled": int(idx.shape[0]),
               "gradient_nonzero": int(np.count_nonzero(grad)),
               # size of one image's step relative to the layer's weights, at its rate
               "relative_step_per_image": float(rates[l] * np.linalg.norm(dirs["stidi-bp"][lo:hi])
                                                / n / np.linalg.norm(probe.W[lo:hi])),
               "cosine_with_gradient": {name: _cos(d[idx], grad) for name, d in dirs.items()},
               "cosine_with_stidi_bp_all_weights": {name: _cos(d[lo:hi], dirs["stidi-bp"][lo:hi])
                                                   for name, d in dirs.items() if name != "stidi-bp"}}
        layers.append(row)
    return {"layers": layers}


def file_into(path: Path, name: str, run: dict) -> dict:
    """Put ``run`` under ``name`` into the collection at ``path`` (created if missing), in name order."""
    coll = json.loads(path.read_text()) if path.is_file() else {
        "description": "Per-layer cosine between the update of STiDi-BP (and of three variants) and the "
                       "numerical gradient of the loss ||t - T|| it descends; scripts/gradient_alignment.py.",
        "runs": []}
    runs = [r for r in coll["runs"] if r.get("name") != name]
    runs.append({"name": name, **run})
    coll["runs"] = sorted(runs, key=lambda r: r["name"])
    atomic_write_text(path, json.dumps(coll, indent=1) + "\n")
    return coll


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.epochs < 1 or args.n < 1 or args.per_layer < 1 or args.train_size < 1:
            raise ValueError("--epochs, --n, --per-layer and --train-size must be >= 1")
        if (args.into is None) != (args.name is None):
            raise ValueError("--into and --name go together")
        if not (args.step > 0):
            raise ValueError("--step must be > 0")
        settings = _overrides(args.set)
        X, y = stidi.datasets.load(args.dataset, "train", args.data_dir, download=False)
        tr, va = train_val_split(y, args.val_size, random_state=args.seed)
        if args.n > va.shape[0]:
            raise ValueError(f"--n {args.n} exceeds the {va.shape[0]} validation images")
        tr = tr[:args.train_size]
        clf = stidi.SpikingClassifier(args.arch, epochs=args.epochs, random_state=args.seed,
                                      n_jobs=args.n_jobs, **settings)
        _check_supported(clf)             # before fitting: a refused network costs no training
        t0 = time.perf_counter()
        clf.fit(X[tr], y[tr], validation_data=(X[va[:1000]], y[va[:1000]]))
        fit_seconds = time.perf_counter() - t0
        xs, ys = X[va[-args.n:]], y[va[-args.n:]]
        probe = Probe(clf, clf._times(xs), ys)
    except (ValueError, TypeError, OSError) as exc:
        print(f"gradient_alignment: error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    t0 = time.perf_counter()
    res = measure(probe, args.per_layer, args.step, np.random.default_rng(args.seed))
    t_max = float(clf.t_max)
    out = {
        "description": __doc__.split("\n\n")[0],
        "arch": args.arch, "dataset": args.dataset, "seed": args.seed,
        "train_images": int(tr.shape[0]), "epochs": args.epochs, "images": args.n,
        "settings": settings, "step": args.step,
        "validation_accuracy_1000": float(clf.score(X[va[:1000]], y[va[:1000]])),
        "output_fired_fraction": float(np.mean(probe.t_out < t_max)),
        "hidden_silent_fraction": [float(v) for v in
                                   clf._evaluate_times(probe.T_in, probe.labels)["silent_fraction"]],
        **res,
        "fit_seconds": fit_seconds, "measure_seconds": time.perf_counter() - t0,
        "command": "python scripts/gradient_alignment.py " + " ".join(shlex.quote(a) for a in
                                                                     (argv or sys.argv[1:])),
        "environment": {"python": platform.python_version(), "numpy": np.__version__,
                        "stidi": stidi.__version__, "threads": os.environ.get("NUMBA_NUM_THREADS")},
    }
    atomic_write_text(args.out, json.dumps(out, indent=1) + "\n")
    if args.into is not None:
        file_into(args.into, args.name, out)
    if not args.quiet:
        names = list(VARIANTS)
        print(f"{args.arch} {args.dataset}: validation {out['validation_accuracy_1000']:.4f}, "
              f"silent {['%.2f' % v for v in out['hidden_silent_fraction']]}")
        print("layer".ljust(10) + "".join(n.rjust(14) for n in names))
        for row in res["layers"]:
            print(row["layer"].ljust(10) + "".join(f"{row['cosine_with_gradient'][n]:14.3f}" for n in names)
                  + f"   step/|w| {row['relative_step_per_image']:.2e}")
    return out


if __name__ == "__main__":
    main()
