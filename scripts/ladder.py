"""Build results/ladder.md and results/ladder.json from the sweep reports of the ladder.

    python scripts/ladder.py [--control runs/sweeps/s4nn-control] \
        [--ladder runs/sweeps/ladder-fashion-mnist] [--exact results/exact-fashion-mnist.json] \
        [--budget 6] [--out results/ladder]

Every rung is read from ``train`` reports (one per seed).  Rung 0 is the S4NN control: its
first ``--budget`` epochs are exactly a run of that length (constant rate, same seed), so its
row is taken from the control's history truncated to the budget.  Every accuracy that selects
or ranks anything is a validation accuracy; test accuracies are not read.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _portable(text: str) -> str:
    """Paths in a recorded command or file name, relative to the repository (``runs/...``,
    ``results/...``) so that the table does not depend on where the runs were made."""
    return re.sub(r"\S*?/((?:runs|results)/\S*)", r"\1", text)


# rung label (sweep run name without seed and hash) -> what changed, in ladder order
RUNGS = [
    ("s4nn-control", "S4NN control: step PSP (delay 1), dt/dv = -1, U[0,5]/U[0,48], theta 100, "
                     "rate 0.2 constant, L2 decay 1e-6 every sample, data order fixed"),
    ("r1-pl-psp", "PSP: step (delay 1) -> triangular PL-PSP, tau1 = 128, tau2 = 1024 (no delay)"),
    ("r2-dtdv-linear", "dt/dv: -1 -> -t/theta (theta = 100)"),
    ("r3-calibrated-init", "init: U[0,5]/U[0,48] -> calibrated U(-0.5,1)*s_l (medians 48/128); "
                           "rates 0.04/0.0042 in units of s_l (S4NN's step relative to the init scale)"),
    ("r4-no-decay-shuffle", "regularisation and order: L2 decay 1e-6 and fixed order -> no decay, "
                            "reshuffled epochs"),
    ("r5-engine-rates", "rates: theta 100 and 0.04/0.0042 -> theta 1 and the engine's 5.7e-3/1.6e-4 "
                        "(units of s_l), still constant"),
    ("r6-engine-defaults", "schedule: constant -> exponential decay 0.7 per epoch "
                           "(= the engine's defaults)"),
    ("r7-adam", "optimizer: per-sample SGD -> Adam, batches of 32, decay 0.9 "
                "(the committed Fashion-MNIST recipe)"),
]
CANDIDATES = [
    ("c1-late-hidden", "candidate on the engine's defaults: init_median = [160, 224] "
                       "(hidden layer calibrated to fire later)"),
    ("c2-input-window-128", "candidate on the engine's defaults: input_window = 128 "
                            "(pixels encoded into [0, 128])"),
    ("c3-late-hidden-only", "candidate on the engine's defaults: init_median = [160, 128] "
                            "(only the hidden layer later)"),
    ("c4-late-output-only", "candidate on the engine's defaults: init_median = [48, 224] "
                            "(only the output layer later)"),
]


def _reports(folder: Path) -> dict:
    """Label -> list of reports (one per seed) of a sweep folder."""
    out: dict = {}
    if not folder.is_dir():
        return out
    for p in sorted(folder.glob("*.json")):
        if p.name.startswith("summary"):
            continue
        r = json.loads(p.read_text())
        if "history" not in r:
            continue
        label = p.stem.rsplit("_seed", 1)[0]
        r["_file"] = str(p)
        out.setdefault(label, []).append(r)
    # runs still in progress: their checkpoint holds the history so far
    for p in sorted((folder / "checkpoints").glob("*.npz")):
        label = p.stem.rsplit("_seed", 1)[0]
        if label in out:
            continue
        import numpy as np

        z = np.load(p, allow_pickle=False)
        params = json.loads(str(z["params"]))
        out.setdefault(label, []).append({
            "history": json.loads(str(z["history"])), "config": params,
            "command": f"(in progress: checkpoint {p.name} of the sweep)", "_file": str(p)})
    return out


def _row_from_history(r: dict, budget: int) -> dict:
    """The epoch the engine would keep within ``budget`` epochs (first best validation accuracy)."""
    hist = r["history"][:budget]
    best = max(hist, key=lambda h: (h["val_accuracy"], -h["epoch"]))
    last = hist[-1]
    return {
        "epochs": len(hist),
        "best_epoch": best["epoch"],
        "val_accuracy": best["val_accuracy"],
        "val_accuracy_s4nn_rule": best.get("val_accuracy_s4nn"),
        "val_tie_fraction": best.get("val_tie_fraction"),
        "train_accuracy_running_best": best["train_accuracy_running"],
        "train_accuracy_running_last": last["train_accuracy_running"],
        "val_output_no_spike_fraction": best.get("val_output_silent_fraction"),
        "val_hidden_silent_fraction": best["val_silent_fraction"][0],
        "val_output_neuron_silent_fraction": best["val_silent_fraction"][-1],
        "val_median_hidden_spike": best["val_median_spike_time"][0],
        "seconds": sum(h["seconds"] for h in hist),
        "seed": r["config"].get("random_state"),
        "command": _portable(r["command"]),
        "report": _portable(r["_file"]),
        "val_curve": [h["val_accuracy"] for h in hist],
    }


def _mean_sd(values):
    values = [v for v in values if v is not None]
    if not values:
        return None, None
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None)


def _summarise(label: str, change: str, reports: list, budget: int, source: str) -> dict:
    per_seed = [_row_from_history(r, budget) for r in reports]
    row = {"rung": label, "change": change, "source": _portable(source), "n_seeds": len(per_seed),
           "seeds": per_seed}
    for key in ("val_accuracy", "val_accuracy_s4nn_rule", "train_accuracy_running_best",
                "train_accuracy_running_last", "val_output_no_spike_fraction",
                "val_hidden_silent_fraction", "val_output_neuron_silent_fraction",
                "val_median_hidden_spike", "seconds", "val_tie_fraction"):
        m, s = _mean_sd([p[key] for p in per_seed])
        row[key] = m
        row[key + "_sd"] = s
    return row


def _exact(path: Path, budget: int):
    if not path.is_file():
        return None
    r = json.loads(path.read_text())
    hist = r["history"]
    within = max(hist[:budget], key=lambda h: (h["val_accuracy"], -h["epoch"]))
    best = hist[r["best_epoch"] - 1]
    out = {"rung": "exact-gradient", "source": _portable(str(path)), "command": r.get("command"),
           "change": "exact gradient of the same PL-PSP network (SpikeProp-style), softmax "
                     "cross-entropy on -t/4, Adam batch 32, lr 3e-3 decay 0.95, seed "
                     f"{r['config'].get('random_state')}"}
    for tag, h in (("own_budget", best), ("same_budget", within)):
        out[tag] = {
            "epochs": r["epochs"] if tag == "own_budget" else min(budget, len(hist)),
            "best_epoch": h["epoch"], "val_accuracy": h["val_accuracy"],
            "train_accuracy_running": h.get("train_accuracy_running"),
            "train_eval_accuracy": h.get("train_eval_accuracy"),
            "val_output_no_spike_fraction": h.get("val_output_silent_fraction"),
            "val_hidden_silent_fraction": h.get("val_silent_fraction", [None])[0],
            "val_output_neuron_silent_fraction": h.get("val_silent_fraction", [None])[-1],
            "val_median_hidden_spike": h.get("val_median_spike_time", [None])[0],
            "seconds": sum(x.get("seconds", 0.0) for x in hist[:h["epoch"]]),
        }
    return out


def _pct(v, sd=None):
    if v is None:
        return "—"
    return f"{100 * v:.2f}" + (f" ± {100 * sd:.2f}" if sd is not None else "")


def _num(v, fmt="{:.0f}"):
    return "—" if v is None else fmt.format(v)


def _markdown(data: dict) -> str:
    b = data["budget_epochs"]
    lines = [
        "# The ladder: from S4NN to the STiDi-BP reconstruction, Fashion-MNIST",
        "",
        f"784–400–10, {b} epochs per rung, 55,000 training / 5,000 validation images (stratified "
        "split carved from the training set with the seed), seeds 7, 8 and 9 (n in the table; mean ± sd). The exact-gradient rows come from its own committed run (seed 0, its own optimizer and 60-epoch budget; the second row is the best of its first epochs, which a run of that length repeats since its schedule only depends on the epoch). Each rung changes "
        "one component of the rung above (the changes accumulate). Validation accuracy of the epoch "
        "the engine keeps (best validation epoch within the budget), under our decision rule (first "
        "spike; ties broken by the membrane slope, or by the potential reached for step PSPs; no "
        "output spike → highest peak potential) and, next to it, under S4NN's rule (ties count as "
        "correct; no output spike → highest potential at t = 253). Training accuracy is the running "
        "accuracy during the kept epoch (weights changing along the epoch). No test accuracy is read.",
        "",
        "| rung | what changed | val acc (ours) | Δ vs rung above | val acc (S4NN rule) | ties | "
        "train acc (running) | best epoch | hidden silent | output: no spike / silent neurons | "
        "median hidden spike | seconds |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    ex = data.get("exact")
    if ex:
        for tag, what in (("own_budget", "own budget"), ("same_budget", f"first {b} epochs")):
            e = ex[tag]
            lines.append(
                f"| top: exact gradient ({what}) | {ex['change']} | {_pct(e['val_accuracy'])} | | — | — | "
                f"{_pct(e['train_accuracy_running'])} | {e['best_epoch']} / {e['epochs']} | "
                f"{_pct(e['val_hidden_silent_fraction'])} % | {_pct(e['val_output_no_spike_fraction'])} % / "
                f"{_pct(e['val_output_neuron_silent_fraction'])} % | {_num(e['val_median_hidden_spike'])} | "
                f"{_num(e['seconds'])} |")
    prev = None
    engine = next((r for r in data["rungs"] if r["rung"] == "r6-engine-defaults"), None)
    for row in data["rungs"] + data["candidates"]:
        if row.get("missing"):
            lines.append(f"| {row['rung']} | {row['change']} | not run | | | | | | | | | |")
            continue
        ref = prev if any(row is r for r in data["rungs"]) else engine
        delta = "—" if not ref or ref.get("missing") else \
            f"{100 * (row['val_accuracy'] - ref['val_accuracy']):+.2f}"
        if any(row is r for r in data["rungs"]):
            prev = row
        lines.append(
            f"| {row['rung']} | {row['change']} | {_pct(row['val_accuracy'], row['val_accuracy_sd'])} "
            f"(n={row['n_seeds']}) | {delta} | {_pct(row['val_accuracy_s4nn_rule'])} | "
            f"{_pct(row['val_tie_fraction'])} % | "
            f"{_pct(row['train_accuracy_running_best'])} | "
            f"{', '.join(str(p['best_epoch']) for p in row['seeds'])} / {b} | "
            f"{_pct(row['val_hidden_silent_fraction'])} % | {_pct(row['val_output_no_spike_fraction'])} % / "
            f"{_pct(row['val_output_neuron_silent_fraction'])} % | {_num(row['val_median_hidden_spike'])} | "
            f"{_num(row['seconds'])} |")
    lines += ["", "## Validation curves (accuracy per epoch, our rule)", ""]
    for row in data["rungs"] + data["candidates"]:
        for p in row.get("seeds", []):
            lines.append(f"- {row['rung']} (seed {p['seed']}): "
                         + " ".join(f"{100 * v:.1f}" for v in p["val_curve"]))
    lines += ["", "## Commands", "",
              "Specs: `results/sweeps/s4nn-control.toml` (rung 0, read from its first epochs) and "
              "`results/sweeps/ladder-fashion-mnist.toml`; table: `python scripts/ladder.py`.", ""]
    for row in data["rungs"] + data["candidates"]:
        for p in row.get("seeds", []):
            lines.append(f"- {row['rung']}: `{p['command']}`")
    if ex:
        lines.append(f"- exact gradient: `{ex['command']}` ({ex['source']})")
    return "\n".join(lines) + "\n"


def _kept_reading(path: Path) -> str:
    """The hand-written '## Reading' section of an existing ladder.md (kept when rebuilding)."""
    if not path.is_file():
        return ""
    text = path.read_text()
    i = text.find("\n## Reading")
    return text[i:].rstrip() + "\n" if i >= 0 else ""


def _atomic_write(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--control", type=Path, default=ROOT / "runs/sweeps/s4nn-control")
    ap.add_argument("--ladder", type=Path, default=ROOT / "runs/sweeps/ladder-fashion-mnist")
    ap.add_argument("--exact", type=Path, default=ROOT / "results/exact-fashion-mnist.json")
    ap.add_argument("--budget", type=int, default=6)
    ap.add_argument("--out", type=Path, default=ROOT / "results/ladder")
    args = ap.parse_args(argv)
    if args.budget < 1:
        print("error: --budget must be >= 1", file=sys.stderr)
        return 2
    control = {k: v for k, v in _reports(args.control).items() if k.startswith("fashion-mnist")}
    ladder = _reports(args.ladder)
    # rung 0: its own runs in the ladder folder, else the control's first epochs
    found = {"s4nn-control": ladder.get("r0-s4nn") or next(iter(control.values()), []), **ladder}
    rows, cands = [], []
    for group, spec in ((rows, RUNGS), (cands, CANDIDATES)):
        for label, change in spec:
            reps = found.get(label, [])
            if not reps:
                group.append({"rung": label, "change": change, "missing": True})
                continue
            source = str(args.ladder if label != "s4nn-control" or "r0-s4nn" in ladder else args.control)
            group.append(_summarise(label, change, reps, args.budget, source))
    data = {"dataset": "fashion-mnist", "architecture": "784-400-10", "budget_epochs": args.budget,
            "split": "55,000 train / 5,000 stratified validation carved from the training set",
            "selection": "validation accuracy only (best epoch within the budget)",
            "rungs": rows, "candidates": cands, "exact": _exact(args.exact, args.budget)}
    out = args.out
    _atomic_write(out.with_suffix(".json"), json.dumps(data, indent=2) + "\n")
    _atomic_write(out.with_suffix(".md"), _markdown(data) + _kept_reading(out.with_suffix(".md")))
    print(f"wrote {out.with_suffix('.md')} and {out.with_suffix('.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
