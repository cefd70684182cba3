"""Speed of the convolutional kernels, in one process.

Prints, for the chosen architecture (default: the command line's conv default,
``28x28-16C5-P2-10``):

* the time per image of the exact event-driven forward pass of the first conv
  layer, single-threaded, and of the clock-driven grid twin of the same layer
  (``stidi.reference.conv_clock_driven``: PSPs on a ``t_max`` grid, im2col matrix
  products), and their ratio;
* the time per image of the whole network's forward pass (1 thread and all threads);
* the time per image of a per-sample training step (serial SGD) and of a
  mini-batch step over all threads, with the projected time of one epoch of
  60,000 images.

Usage::

    python benchmarks/bench_conv.py [--arch 28x28-16C5-P2-10] [--n 1000] [--binary] [--out FILE]

The last line is the summary: the projected time of one 60,000-image epoch with
the trainer's default (per-sample SGD) and the grid/exact speed ratio.  ``--out``
writes every measured time and ratio, the load average before and after, and the
machine, as JSON (temporary file, then rename).

Images come from the shipped MNIST subset.  The network is calibrated as by
``ConvSpikingClassifier.fit`` and trained for one warm-up pass first, so
that spike statistics are those of a learning network rather than of the
initial weights.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numba
import numpy as np

from stidi import conv, datasets, reference
from stidi import network as net
from stidi._codes import N_STATS, Col, LayerKind
from stidi.model import SpikingClassifier

CONV_DEFAULT_ARCH = "28x28-16C5-P2-10"

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (best_of, former_defaults, load_average, machine_info, now_iso,  # noqa: E402
                     write_json_atomic)


def connections(arch) -> int:
    """Synaptic connections of a network: every (input, neuron) pair, shared weights counted per use."""
    total = 0
    for lay in arch.layers:
        if lay.kind == LayerKind.DENSE:
            total += int(np.prod(lay.in_shape)) * int(np.prod(lay.out_shape))
        elif lay.kind == LayerKind.CONV:
            F, Ho, Wo = lay.out_shape
            total += F * Ho * Wo * lay.in_shape[0] * lay.k * lay.k
    return total



def _breakpoints(t, tau1, tau2, t_max):
    """Breakpoint times (onset, peak, end) of the PSPs of spike times ``t`` along a new last
    axis, ``inf`` where a breakpoint falls at or after ``t_max``."""
    b = np.concatenate([t, t + tau1, t + tau1 + tau2], axis=-1)
    return np.where(b < t_max, b, np.inf)


def _counts(b):
    """Breakpoints and distinct breakpoint times along the last axis (sorted in place)."""
    b.sort(axis=-1)
    finite = np.isfinite(b)
    new = np.ones_like(finite)
    new[..., 1:] = b[..., 1:] != b[..., :-1]
    return finite.sum(axis=-1), (finite & new).sum(axis=-1)


def sweep_work(T, layer, n_dense_in, tau1, tau2, t_max, t_out=None):
    """Work of the exact sweep per connection, for a conv layer and a dense layer on the same images.

    A dense layer advances all its potentials once per distinct breakpoint time of
    the image and adds one weight row per breakpoint (grouped four to a pass); a conv
    position advances its ``F`` potentials once per distinct breakpoint time of its own
    receptive field and adds one row per breakpoint of that field.  Returned per
    image and per connection (both counts are multiplied by the layer's width, which
    cancels).  ``T`` holds the flat input maps of the conv layer, ``layer`` its
    :class:`stidi.architecture.Layer`; the dense layer reads the same images flat.
    With the conv layer's spike times ``t_out`` (``(n, F, Ho, Wo)``), also the work the
    kernel does: a position whose ``F`` units have all fired is skipped after the
    breakpoint that finds its last crossing (``conv_advances_live``,
    ``conv_slope_rows_live``).
    """
    from numpy.lib.stride_tricks import sliding_window_view

    C, H, W = layer.in_shape
    k, pad = layer.k, layer.pad
    maps = np.pad(T.reshape(-1, C, H, W), ((0, 0), (0, 0), (pad, pad), (pad, pad)), constant_values=t_max)
    fields = sliding_window_view(maps, (k, k), axis=(2, 3))              # (n, C, Ho, Wo, k, k)
    fields = fields.transpose(0, 2, 3, 1, 4, 5).reshape(*fields.shape[:1], *fields.shape[2:4], C * k * k)
    bc = _breakpoints(fields, tau1, tau2, t_max)
    rows_c, adv_c = _counts(bc)                                         # sorts bc in place
    rows_d, adv_d = _counts(_breakpoints(T.reshape(T.shape[0], -1), tau1, tau2, t_max))
    per_field = C * k * k * fields.shape[1] * fields.shape[2]
    work = {"conv_advances": float(adv_c.sum(axis=(1, 2)).mean() / per_field),
            "conv_slope_rows": float(rows_c.sum(axis=(1, 2)).mean() / per_field),
            "dense_advances": float(adv_d.mean() / n_dense_in),
            "dense_slope_rows": float(rows_d.mean() / n_dense_in)}
    if t_out is not None:
        # the breakpoint that finds a position's last crossing: the first at or after it
        last = np.where((t_out < t_max).all(axis=1), t_out.max(axis=1), np.inf)[..., None]
        i_det = (bc < last).sum(axis=-1)                                # index of that breakpoint
        found = np.take_along_axis(bc, np.minimum(i_det, bc.shape[-1] - 1)[..., None], -1)[..., 0]
        cut = np.where(np.isfinite(last[..., 0]) & np.isfinite(found), found, np.inf)[..., None]
        live = np.where(bc <= cut, bc, np.inf)
        first = np.ones(live.shape, dtype=bool)
        first[..., 1:] = live[..., 1:] != live[..., :-1]
        rows_l = np.isfinite(live)
        # equal times after the finding breakpoint are skipped too: count the first of them only
        rows_l &= ~((live == cut) & ~first)
        # a position starts at time 0, so a breakpoint at 0 moves nothing forward
        work["conv_advances_live"] = float((np.isfinite(live) & first & (live > 0)).sum(axis=(1, 2, 3)).mean()
                                           / per_field)
        work["conv_slope_rows_live"] = float(rows_l.sum(axis=(1, 2, 3)).mean() / per_field)
    return work


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--arch", default=CONV_DEFAULT_ARCH)
    ap.add_argument("--n", type=int, default=1000, help="images per timing")
    ap.add_argument("--grid-n", type=int, default=50, help="images for the clock-driven twin")
    ap.add_argument("--binary", action="store_true")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--dense-arch", default="784-400-10",
                    help="dense network whose per-connection training cost is the baseline ('' to skip)")
    ap.add_argument("--out", default=None, help="write the measurements as JSON to this file")
    args = ap.parse_args(argv)
    load_before = load_average()

    X, y = datasets.load_subset("mnist", "train")
    n = min(args.n, X.shape[0])
    threads = numba.config.NUMBA_NUM_THREADS
    clf = SpikingClassifier(args.arch, binary=args.binary, epochs=1, random_state=0,
                            **former_defaults(args.arch))
    clf.fit(X[:1000], y[:1000])  # calibration + warm-up (and JIT compilation)
    cfg = clf._validate(clf.arch_)
    T = clf._times(X[:n])
    yi = clf._labels(y[:n], n)
    Wf = clf._forward_weights()
    desc = clf.arch_.descriptor()
    a_off, w_off = clf.arch_.offsets()
    print(f"architecture {args.arch}  binary={args.binary}  images={n}  threads={threads}")

    # --- first conv layer: exact vs clock-driven grid
    l0 = next(l for l in range(len(desc)) if desc[l, Col.KIND] == LayerKind.CONV)
    C, H, W, F, Ho, Wo, k, pad = (int(v) for v in desc[l0, 1:])
    maps = T.reshape(n, C, H, W)
    filt = clf.forward_coefs_[l0]
    args_c = (clf.thetas_[l0], float(clf.tau1), float(clf.tau2), float(clf.t_max))
    numba.set_num_threads(1)
    conv.conv_forward(maps[:2], filt, *args_c, padding=pad)
    t_exact = best_of(lambda: conv.conv_forward(maps, filt, *args_c, padding=pad), 3) / n
    g = min(args.grid_n, n)
    t_grid = best_of(lambda: reference.conv_clock_driven(maps[:g], filt, *args_c, padding=pad), 1) / g
    exact = conv.conv_forward(maps[:g], filt, *args_c, padding=pad)[0]
    grid = reference.conv_clock_driven(maps[:g], filt, *args_c, padding=pad)
    both = (exact < clf.t_max) & (grid < clf.t_max)
    print(f"conv layer {l0} ({F}C{k} on {C}x{H}x{W}), 1 thread:")
    print(f"  exact event-driven  {t_exact * 1e3:8.3f} ms/image")
    print(f"  clock-driven grid   {t_grid * 1e3:8.3f} ms/image   (dt=1, NumPy/BLAS)")
    print(f"  ratio grid/exact    {t_grid / t_exact:8.1f}x    max |t_grid - t_exact| = "
          f"{np.abs(grid[both] - exact[both]).max():.3f} (<= dt)")

    # --- whole forward pass
    a_total = int(a_off[-1])
    bufs = [np.empty((n, a_total)) for _ in range(3)]

    def fwd():
        net.forward_network(T, Wf, desc, w_off, a_off, clf.thetas_, cfg["neuron"], *bufs)

    t_fwd = {}
    for nt in sorted({1, threads}):
        numba.set_num_threads(nt)
        fwd()
        t_fwd[nt] = best_of(fwd, 3) / n
        print(f"network forward, {nt} thread(s): {t_fwd[nt] * 1e3:8.3f} ms/image")

    # --- training steps (weights are restored after each timing)
    lrs = cfg["lrs"] * clf.scales_
    W0, alpha0 = clf.W_.copy(), clf.alpha_.copy()
    order = np.arange(n, dtype=np.int64)

    def common(Wc, Wfc, alpha):
        return (T, yi, order, Wc, Wfc, alpha, desc, w_off, a_off, clf.thetas_, lrs, np.zeros(lrs.shape[0]), cfg["neuron"],
                cfg["rule"], np.zeros(N_STATS), np.zeros(a_total))

    def fresh():
        Wc = W0.copy()
        alpha = alpha0.copy()
        Wfc = clf._forward_weights(Wc) if args.binary else Wc
        return Wc, Wfc, alpha

    def sgd():
        net.train_epoch_sgd(*common(*fresh()))

    numba.set_num_threads(1)
    t_sgd = best_of(sgd, 2) / n
    print(f"training step, per-sample SGD, 1 thread:     {t_sgd * 1e3:8.3f} ms/image  -> "
          f"{t_sgd * 60000 / 60:5.1f} min per 60k-image epoch")
    numba.set_num_threads(threads)

    def batch():
        Wc, Wfc, alpha = fresh()
        net.train_epoch_batch(*common(Wc, Wfc, alpha), args.batch_size, threads, 0, np.zeros_like(Wc),
                              np.zeros_like(Wc), 0)

    batch()
    t_b = best_of(batch, 2) / n
    print(f"training step, mini-batch {args.batch_size}, {threads} threads:  {t_b * 1e3:8.3f} ms/image  -> "
          f"{t_b * 60000 / 60:5.1f} min per 60k-image epoch")
    # --- per-synapse cost against a dense network trained on the same images, same process
    per_syn = t_conv = t_dense = s_conv = s_dense = work = None
    if args.dense_arch:
        dense = SpikingClassifier(args.dense_arch, epochs=1, random_state=0,
                                  **former_defaults(args.dense_arch))
        dense.fit(X[:1000], y[:1000])
        dcfg = dense._validate(dense.arch_)
        dT = dense._times(X[:n])
        dW = dense.W_.copy()
        ddesc = dense.arch_.descriptor()
        da_off, dw_off = dense.arch_.offsets()
        dlrs = dcfg["lrs"] * dense.scales_

        def dense_sgd():
            Wd = dW.copy()
            net.train_epoch_sgd(dT, yi, order, Wd, Wd, dense.alpha_.copy(), ddesc, dw_off, da_off,
                                dense.thetas_, dlrs, np.zeros(dlrs.shape[0]), dcfg["neuron"], dcfg["rule"], np.zeros(N_STATS),
                                np.zeros(int(da_off[-1])))

        numba.set_num_threads(1)
        dense_sgd()
        # the two members of the ratio alternate, CPU time of this thread, best of three each
        t_conv = t_dense = np.inf
        for _ in range(3):
            t_conv = min(t_conv, best_of(sgd, 1, cpu=True) / n)
            t_dense = min(t_dense, best_of(dense_sgd, 1, cpu=True) / n)
        s_conv, s_dense = connections(clf.arch_), connections(dense.arch_)
        per_syn = (t_conv / s_conv) / (t_dense / s_dense)
        print("per-synapse training cost, per-sample SGD, 1 thread (CPU time):")
        print(f"  {args.arch:<24s} {t_conv * 1e3:8.3f} ms/image  {s_conv:>10,d} connections  "
              f"{t_conv / s_conv * 1e9:6.2f} ns/connection")
        print(f"  {args.dense_arch:<24s} {t_dense * 1e3:8.3f} ms/image  {s_dense:>10,d} connections  "
              f"{t_dense / s_dense * 1e9:6.2f} ns/connection")
        print(f"  ratio conv/dense per connection {per_syn:6.2f}x")
        lay0 = clf.arch_.layers[l0]
        t_first = conv.conv_forward(maps, filt, *args_c, padding=pad)[0]
        work = sweep_work(T, lay0, int(np.prod(dense.arch_.layers[0].in_shape)), float(clf.tau1),
                          float(clf.tau2), float(clf.t_max), t_out=t_first)
        print("work of the exact sweep per connection (first conv layer vs first dense layer):")
        print(f"  potential advances {work['conv_advances']:.3f} vs {work['dense_advances']:.3f}   "
              f"slope rows {work['conv_slope_rows']:.3f} vs {work['dense_slope_rows']:.3f} "
              "(dense: four rows per pass)")
        print(f"  conv, positions skipped once all their units fired: advances "
              f"{work['conv_advances_live']:.3f}, slope rows {work['conv_slope_rows_live']:.3f}")
    print(f"summary: {args.arch}{' binary' if args.binary else ''}: one 60k-image MNIST epoch "
          f"~{t_sgd * 60000 / 60:.1f} min (per-sample SGD, 1 thread); clock-driven grid / exact "
          f"= {t_grid / t_exact:.1f}x on the first conv layer"
          + (f"; per-connection training cost {per_syn:.2f}x that of {args.dense_arch}" if per_syn else ""))
    if args.out:
        ms = 1e3
        report = {
            "benchmark": "bench_conv", "date": now_iso(), "environment": machine_info(),
            "load_average_before": load_before, "load_average_after": load_average(),
            "arch": args.arch, "binary": bool(args.binary), "images": int(n),
            "first_conv_layer": {"exact_ms_per_image": t_exact * ms, "grid_ms_per_image": t_grid * ms,
                                 "grid_over_exact": t_grid / t_exact},
            "forward_ms_per_image": {str(k): v * ms for k, v in t_fwd.items()},
            "train_sgd_ms_per_image": t_sgd * ms, "train_sgd_minutes_per_60k": t_sgd * 1000,
            f"train_batch{args.batch_size}_ms_per_image": t_b * ms,
            "per_connection": None if per_syn is None else {
                "dense_arch": args.dense_arch, "conv_cpu_ms_per_image": t_conv * ms,
                "dense_cpu_ms_per_image": t_dense * ms, "conv_connections": s_conv,
                "dense_connections": s_dense, "conv_over_dense": per_syn, "sweep_work": work},
            "command": "python benchmarks/bench_conv.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        }
        write_json_atomic(args.out, report)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
