"""Ablation of the spike-time derivative used by the learning rule.

Trains the same fully connected network three times, changing only
``dtdv`` (how ``dt/dv`` enters every weight update):

* ``linear``   -- ``-t/theta``, the linear (chord) approximation of STiDi-BP;
* ``constant`` -- ``-1``, as in S4NN;
* ``slope``    -- ``-1/v'(t)``, the exact local slope (SpikeProp).

The learning rates of the package were chosen for ``-t/theta``, whose gain is
about the firing time itself (tens to a hundred or so time steps); with the
constant gain ``-1`` the same rates would make every step that much smaller.
So the ``constant`` run gets its own rates: the package's default rates
(in units of each layer's calibrated scale, 5.7e-3 and 1.6e-4) multiplied by
the initial median firing times of the calibration (48 for the hidden layer,
128 for the output layer): ``--constant-lr "[0.27, 0.02]"``.  (The committed
``results/ablation-dtdv.json`` was made when rates were absolute steps, with
the same rule: 0.048 and 0.00032.)
The exact slope has the same scale as the chord (``1/v'`` is about ``t/theta``
when the potential rises steadily), so it keeps the defaults.

Each run goes through the command-line tool (so it follows the same protocol
as the other results: validation split carved from the training set, best
validation epoch kept, test set evaluated once) and the three reports are
gathered into one JSON file::

    STIDI_DATA=../shared/datasets python scripts/ablation_dtdv.py \\
        --dataset mnist --arch 784-400-10 --epochs 8 --seeds 0,1,2 --out results/ablation-dtdv.json

With ``--seeds`` every choice is trained once per seed (the seed sets the
validation split, the initial weights and the order of the samples): the
file keeps the full report of the first seed under ``runs`` and a summary of
every run under ``repeats``, so that a difference between two choices can be
compared with the spread between seeds.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

MODES = ("linear", "constant", "slope")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="mnist", choices=("mnist", "fashion-mnist"))
    p.add_argument("--arch", default="784-400-10", help="fully connected architecture, e.g. 784-400-10")
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--seed", type=int, default=0, help="seed of a single run (ignored with --seeds)")
    p.add_argument("--seeds", default=None,
                   help="comma-separated seeds: train every choice once per seed, e.g. 0,1,2")
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                   help="extra SpikingClassifier settings passed to every run")
    p.add_argument("--constant-lr", default="[0.27, 0.02]",
                   help="learning rates (JSON list, one per layer, in units of each layer's calibrated "
                        "scale) of the dtdv=constant run")
    p.add_argument("--subset", action="store_true",
                   help="use the subset shipped with the package (a quick check)")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)

    out = Path(args.out)
    from stidi import parse_architecture
    from stidi._codes import LayerKind

    try:
        arch = parse_architecture(args.arch)
    except ValueError as exc:
        p.error(f"--arch: {exc}")
    if any(layer.kind != LayerKind.DENSE for layer in arch.layers):
        p.error(f"--arch {args.arch!r}: this ablation compares fully connected networks only")
    try:
        constant_lr = json.loads(args.constant_lr)
    except json.JSONDecodeError:
        p.error(f"--constant-lr takes a JSON list of numbers, not {args.constant_lr!r}")
    if (not isinstance(constant_lr, list) or len(constant_lr) != len(arch.layers)
            or not all(isinstance(v, (int, float)) and v > 0 for v in constant_lr)):
        p.error(f"--constant-lr needs {len(arch.layers)} positive numbers (one per layer), "
                f"not {args.constant_lr!r}")
    try:
        seeds = [int(x) for x in args.seeds.split(",")] if args.seeds else [args.seed]
    except ValueError:
        p.error(f"--seeds takes comma-separated integers, not {args.seeds!r}")
    if len(set(seeds)) != len(seeds):
        p.error(f"--seeds repeats a seed: {args.seeds}")
    runs, repeats = {}, {mode: [] for mode in MODES}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in seeds:
            for mode in MODES:
                report = Path(tmp) / f"{mode}-{seed}.json"
                cmd = [sys.executable, "-m", "stidi", "train", "--dataset", args.dataset,
                       "--arch", args.arch, "--epochs", str(args.epochs),
                       "--seed", str(seed), "--set", f'dtdv="{mode}"', "--quiet",
                       "--out", str(report)]
                if args.subset:
                    cmd.append("--subset")
                if mode == "constant":
                    cmd += ["--set", f"lr={args.constant_lr}"]
                for s in args.set:
                    cmd += ["--set", s]
                print("running:", " ".join(cmd[1:]), flush=True)
                subprocess.run(cmd, check=True)
                r = json.loads(report.read_text())
                if seed == seeds[0]:
                    runs[mode] = r
                repeats[mode].append({k: r[k] for k in ("val_accuracy", "test_accuracy", "test_accuracy_no_fallback",
                                                        "best_epoch", "train_seconds")} | {"seed": seed})
                print(f"  {mode}, seed {seed}: val {r['val_accuracy']:.4f} test {r['test_accuracy']:.4f} "
                      f"(strict {r['test_accuracy_no_fallback']:.4f}), {r['train_seconds']:.0f} s",
                      flush=True)
    record = {"dataset": args.dataset, "architecture": args.arch, "epochs": args.epochs,
              "seed": seeds[0], "seeds": seeds, "extra_settings": args.set,
              "command": "python scripts/ablation_dtdv.py " + " ".join(argv or sys.argv[1:]),
              "runs": runs, "repeats": repeats}
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=out.parent, prefix=out.name, suffix=".tmp")
    with os.fdopen(fd, "w") as fh:
        json.dump(record, fh, indent=1)
    os.chmod(tmp_name, 0o644)
    os.replace(tmp_name, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
