"""A non-spiking reference: the same architecture as a ReLU network, trained by backpropagation.

Example::

    python scripts/ann_reference.py --arch 28x28-64C5-P2-10 --dataset fashion-mnist \
        --epochs 20 --val-size 5000 --seed 0 --out results/ann-conv-fashion-mnist.json

It tells what an architecture can learn when neither spikes nor the STiDi-BP
approximations are in the way: every convolution and hidden dense layer is a
ReLU unit (with a bias), every pooling a max over the same windows as the
first-spike pooling (the earliest spike is the largest activation of a
time-to-first-spike code), the output a softmax trained with cross-entropy,
Adam on mini-batches, He initialisation.  The input is the pixel intensity in
[0, 1], the quantity the spiking networks encode as ``t = t_max (1 - p)``.

Protocol as for the spiking runs: a stratified validation split carved from
the official training set (:func:`stidi.datasets.train_val_split`) chooses the
epoch, and the official test set is evaluated once, with the chosen weights.
Plain NumPy (convolutions as matrix products of
``numpy.lib.stride_tricks.sliding_window_view`` patches), one thread; the report has the layout of ``train``'s.
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
from numpy.lib.stride_tricks import sliding_window_view

from stidi._codes import LayerKind
from stidi._io import atomic_write_text


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--arch", required=True, help="architecture string, as for train")
    p.add_argument("--dataset", choices=("mnist", "fashion-mnist"), required=True)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3, help="Adam step")
    p.add_argument("--lr-decay", type=float, default=0.9, help="per epoch")
    p.add_argument("--val-size", type=int, default=5000)
    p.add_argument("--train-size", type=int, default=None,
                   help="use a random subset of this many training images (after the split)")
    p.add_argument("--no-bias", action="store_true",
                   help="no biases, as the spiking layers (which have none)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-test", action="store_true", help="skip the test set")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--quiet", action="store_true")
    return p


class ReluNet:
    """ReLU network of a parsed architecture (conv valid/padded stride 1, max pooling, dense)."""

    def __init__(self, arch, rng: np.random.Generator, bias: bool = True):
        self.arch = arch
        self.bias = bias
        self.params = []
        for lay in arch.layers:
            if lay.kind == LayerKind.POOL:
                self.params.append(None)
                continue
            if lay.kind == LayerKind.CONV:
                C, F, k = lay.in_shape[0], lay.out_shape[0], lay.k
                fan_in = C * k * k
                W = rng.normal(0.0, np.sqrt(2.0 / fan_in), size=(F, C, k, k))
            else:
                fan_in = int(np.prod(lay.in_shape))
                W = rng.normal(0.0, np.sqrt(2.0 / fan_in), size=(lay.out_shape[0], fan_in))
            self.params.append([W, np.zeros(lay.out_shape[0])])

    def forward(self, x):
        """Logits for a batch ``x`` of shape ``(B, C, H, W)``; keeps what backward needs."""
        cache = []
        n = len(self.arch.layers)
        for l, lay in enumerate(self.arch.layers):
            if lay.kind == LayerKind.CONV:
                W, b = self.params[l]
                xp = np.pad(x, ((0, 0), (0, 0), (lay.pad, lay.pad), (lay.pad, lay.pad))) if lay.pad else x
                B, F = x.shape[0], W.shape[0]
                Ho, Wo = lay.out_shape[1], lay.out_shape[2]
                win = sliding_window_view(xp, (lay.k, lay.k), axis=(2, 3))   # B,C,Ho,Wo,k,k
                cols = np.ascontiguousarray(win.transpose(0, 2, 3, 1, 4, 5)).reshape(B * Ho * Wo, -1)
                z = (cols @ W.reshape(F, -1).T + b).reshape(B, Ho, Wo, F).transpose(0, 3, 1, 2)
                cache.append((x, cols))
            elif lay.kind == LayerKind.POOL:
                k = lay.k
                Ho, Wo = lay.out_shape[1], lay.out_shape[2]
                xc = x[:, :, :Ho * k, :Wo * k].reshape(x.shape[0], x.shape[1], Ho, k, Wo, k)
                z = xc.max(axis=(3, 5))
                cache.append((x, xc, z))
                x = z
                continue
            else:
                W, b = self.params[l]
                flat = x.reshape(x.shape[0], -1)
                z = flat @ W.T + b
                cache.append((x, flat))
            if l < n - 1:                       # hidden layers: ReLU, keep its mask
                cache[-1] += (z > 0,)
                z = np.maximum(z, 0.0)
            x = z
        return x, cache

    def backward(self, dlogits, cache):
        """Gradients of every parameter for the loss whose gradient at the logits is ``dlogits``."""
        grads = [None] * len(self.params)
        g = dlogits
        n = len(self.arch.layers)
        for l in range(n - 1, -1, -1):
            lay = self.arch.layers[l]
            c = cache[l]
            if lay.kind == LayerKind.POOL:
                x, xc, z = c
                k = lay.k
                mask = xc == z[:, :, :, None, :, None]
                # ties: the gradient goes to every maximum, divided among them
                share = mask / mask.sum(axis=(3, 5), keepdims=True)
                gx = np.zeros_like(x)
                Ho, Wo = z.shape[2], z.shape[3]
                gx[:, :, :Ho * k, :Wo * k] = (share * g[:, :, :, None, :, None]).reshape(
                    x.shape[0], x.shape[1], Ho * k, Wo * k)
                g = gx
                continue
            if l < n - 1:
                g = g * c[-1]
            W, b = self.params[l]
            if lay.kind == LayerKind.CONV:
                cols = c[1]
                gflat = g.transpose(0, 2, 3, 1).reshape(-1, W.shape[0])    # (B Ho Wo, F)
                gW = (gflat.T @ cols).reshape(W.shape)
                gb = gflat.sum(axis=0)
                if l > 0:
                    k, pad = lay.k, lay.pad
                    gp = np.pad(g, ((0, 0), (0, 0), (k - 1, k - 1), (k - 1, k - 1)))
                    gwin = sliding_window_view(gp, (k, k), axis=(2, 3))
                    B, H, Wd = g.shape[0], gwin.shape[2], gwin.shape[3]
                    gcols = np.ascontiguousarray(gwin.transpose(0, 2, 3, 1, 4, 5)).reshape(B * H * Wd, -1)
                    Wflip = W[:, :, ::-1, ::-1].transpose(1, 0, 2, 3).reshape(W.shape[1], -1)
                    gx = (gcols @ Wflip.T).reshape(B, H, Wd, W.shape[1]).transpose(0, 3, 1, 2)
                    if pad:
                        gx = gx[:, :, pad:-pad, pad:-pad]
                    g = gx
            else:
                x, flat = c[0], c[1]
                gW = g.T @ flat
                gb = g.sum(axis=0)
                if l > 0:
                    g = (g @ W).reshape(x.shape)
            grads[l] = [gW, gb]
        return grads


def _softmax_xent_grad(logits, y):
    z = logits - logits.max(axis=1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=1, keepdims=True)
    loss = -np.log(p[np.arange(len(y)), y] + 1e-12).mean()
    p[np.arange(len(y)), y] -= 1.0
    return loss, p / len(y)


def predict(net, X, batch=500):
    out = []
    for s in range(0, len(X), batch):
        out.append(net.forward(X[s:s + batch])[0].argmax(axis=1))
    return np.concatenate(out)


def main(argv: list[str] | None = None) -> dict:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    from stidi import datasets
    from stidi.architecture import parse_architecture

    try:
        arch = parse_architecture(args.arch)
    except ValueError as exc:
        raise SystemExit(f"error: {exc}")
    X, y = datasets.load(args.dataset, "train")
    if arch.n_inputs != int(np.prod(X.shape[1:])):
        raise SystemExit(f"error: --arch takes {arch.n_inputs} inputs, the images have "
                         f"{int(np.prod(X.shape[1:]))}")
    shape = (-1, *arch.input_shape)

    def images(A):
        return (np.asarray(A, dtype=np.float64).reshape(len(A), -1) / 255.0).reshape(shape)

    tr_idx, va_idx = datasets.train_val_split(y, args.val_size, random_state=args.seed)
    if args.train_size is not None:
        if not 0 < args.train_size <= len(tr_idx):
            raise SystemExit(f"error: --train-size must lie in 1..{len(tr_idx)}")
        tr_idx = np.sort(np.random.default_rng(args.seed).permutation(tr_idx)[: args.train_size])
    Xtr, ytr = images(X[tr_idx]), np.asarray(y[tr_idx])
    Xva, yva = images(X[va_idx]), np.asarray(y[va_idx])
    rng = np.random.default_rng(args.seed)
    net = ReluNet(arch, rng, bias=not args.no_bias)
    m1 = [None if p is None else [np.zeros_like(a) for a in p] for p in net.params]
    m2 = [None if p is None else [np.zeros_like(a) for a in p] for p in net.params]
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    step = 0
    history, best, best_params = [], -1.0, None
    t_start = time.perf_counter()
    for epoch in range(args.epochs):
        lr = args.lr * args.lr_decay ** epoch
        t0 = time.perf_counter()
        order = rng.permutation(len(ytr))
        correct, losses = 0, []
        for s in range(0, len(order), args.batch_size):
            idx = order[s:s + args.batch_size]
            logits, cache = net.forward(Xtr[idx])
            correct += int((logits.argmax(axis=1) == ytr[idx]).sum())
            loss, dl = _softmax_xent_grad(logits, ytr[idx])
            losses.append(loss)
            grads = net.backward(dl, cache)
            step += 1
            for l, p in enumerate(net.params):
                if p is None:
                    continue
                for q in range(2 if net.bias else 1):
                    m1[l][q] = beta1 * m1[l][q] + (1 - beta1) * grads[l][q]
                    m2[l][q] = beta2 * m2[l][q] + (1 - beta2) * grads[l][q] ** 2
                    p[q] -= lr * (m1[l][q] / (1 - beta1 ** step)) / (
                        np.sqrt(m2[l][q] / (1 - beta2 ** step)) + eps)
        seconds = time.perf_counter() - t0
        val = float((predict(net, Xva) == yva).mean())
        history.append({"epoch": epoch + 1, "train_accuracy_running": correct / len(ytr),
                        "train_loss": float(np.mean(losses)), "val_accuracy": val, "lr": lr,
                        "seconds": seconds})
        if val > best:
            best = val
            best_params = [None if p is None else [a.copy() for a in p] for p in net.params]
        if not args.quiet:
            print(f"epoch {epoch + 1}: train {correct / len(ytr):.4f} val {val:.4f} ({seconds:.0f} s)",
                  flush=True)
    net.params = best_params
    best_epoch = 1 + int(np.argmax([h["val_accuracy"] for h in history]))
    report = {
        "dataset": args.dataset,
        "model": "relu-reference",
        "architecture": arch.text or args.arch,
        "val_accuracy": best,
        "best_epoch": best_epoch,
        "epochs": len(history),
        "train_seconds": float(sum(h["seconds"] for h in history)),
        "wall_seconds_this_run": time.perf_counter() - t_start,
        "n_train": int(len(tr_idx)),
        "n_val": int(len(va_idx)),
    }
    if not args.no_test:
        Xt, yt = datasets.load(args.dataset, "test")
        report["test_accuracy"] = float((predict(net, images(Xt)) == np.asarray(yt)).mean())
        report["n_test"] = int(len(yt))
    report.update({
        "config": {"batch_size": args.batch_size, "lr": args.lr, "lr_decay": args.lr_decay,
                   "optimizer": "adam", "init": "he-normal", "loss": "softmax cross-entropy",
                   "hidden_units": "relu", "pooling": "max", "bias": not args.no_bias,
                   "seed": args.seed},
        "command": "python scripts/ann_reference.py " + " ".join(shlex.quote(a) for a in argv),
        "history": history,
        "environment": {"python": platform.python_version(), "numpy": np.__version__,
                        "machine": platform.machine(), "cpu_count": os.cpu_count(),
                        "platform": platform.platform()},
    })
    atomic_write_text(args.out, json.dumps(report, indent=2, default=float) + "\n")
    if not args.quiet:
        print(f"val {best:.4f} (epoch {best_epoch}), test {report.get('test_accuracy')} -> {args.out}")
    return report


if __name__ == "__main__":
    main()
