"""Files: atomic writes, the versioned model/checkpoint format, and the epoch progress bar.

Model files are ``numpy.savez`` archives of plain arrays (no pickle).  Format 2
(this version) stores ``format_version``, ``kind = "SpikingClassifier"``, the
estimator's parameters as JSON, the resolved architecture string and the
fitted arrays; a checkpoint adds the optimizer state, the best weights so far,
the epoch and the random generator state.  Files of format 1 (the separate
fully connected and convolutional classifiers of earlier versions) are read
and converted; anything else fails with a message that says what the file is.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np

FORMAT_VERSION = 2
KIND = "SpikingClassifier"


class ModelFileError(ValueError):
    """A model or checkpoint file that cannot be read."""


def _atomic(path, write, mode: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as fh:
            write(fh)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the file normal permissions
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path, text: str) -> None:
    """Write ``text`` to a temporary file beside ``path``, then rename it into place."""
    _atomic(path, lambda fh: fh.write(text), "w")


def atomic_savez(path, **arrays) -> None:
    """``numpy.savez`` to a temporary file beside ``path``, then rename it into place."""
    _atomic(path, lambda fh: np.savez(fh, **arrays), "wb")


def _jsonable(v):
    if isinstance(v, (tuple, list, np.ndarray)):
        return [_jsonable(x) for x in v]
    if isinstance(v, np.generic):
        return v.item()
    return v


def params_json(params: dict) -> str:
    return json.dumps({k: _jsonable(v) for k, v in params.items()})


def read_model(path) -> dict:
    """The arrays of a model or checkpoint file, converted to format 2 (a dict of arrays/values).

    Raises :class:`ModelFileError` with a one-line message for a missing, corrupt
    or foreign file.
    """
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise ModelFileError(f"{path}: no such file") from None
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise ModelFileError(f"{path}: not a readable model file ({type(exc).__name__}: {exc})") from None
    if "format_version" not in data or "params" not in data or "W" not in data:
        raise ModelFileError(f"{path}: not a stidi model file (no format_version/params/W arrays)")
    version = int(data["format_version"])
    data["params"] = json.loads(str(data["params"]))
    if version == 1:
        _from_v1(data)
    elif version != FORMAT_VERSION:
        raise ModelFileError(f"{path}: model format {version} is newer than this stidi "
                             f"(reads formats 1 and {FORMAT_VERSION})")
    if str(data.get("kind", "")) != KIND:
        raise ModelFileError(f"{path}: not a {KIND} file (kind {str(data.get('kind'))!r})")
    return data


def _from_v1(data: dict) -> None:
    """Format 1 -> 2 in place: one estimator, learning rates in units of the initial scale."""
    p = data["params"]
    if str(data.get("kind", "fc")) == "conv":
        p.setdefault("lr_schedule", "exponential")
        p.setdefault("augment", 0)
        data["arch"] = np.array(p["arch"])
    else:
        # fully connected format 1: widths in 'sizes', SGD rates absolute
        sizes = [int(s) for s in data["sizes"]]
        p.pop("hidden", None)
        p["arch"] = "-".join(str(s) for s in sizes)
        L = len(sizes) - 1
        lrs = p["lr"] if p.get("lr") is not None else [p["lr_hidden"]] * (L - 1) + [p["lr_output"]]
        if p.get("optimizer", "sgd") == "sgd":
            lrs = [float(v) / float(s) for v, s in zip(lrs, data["scales"])]
        p["lr"] = [float(v) for v in lrs]
        p["lr_hidden"] = p["lr_output"] = None
        data["arch"] = np.array(p["arch"])
    data["kind"] = np.array(KIND)


class Progress:
    """tqdm bar over epochs (notebook-aware), or nothing when not verbose."""

    def __init__(self, total: int, initial: int, enabled: bool):
        self.bar = None
        if enabled:
            from tqdm.auto import tqdm
            self.bar = tqdm(total=total, initial=initial, desc="epochs", unit="epoch")

    def update(self, rec: dict) -> None:
        if self.bar is None:
            return
        post = {"train": f"{rec['train_accuracy_running']:.3f}"}
        if "val_accuracy" in rec:
            post["val"] = f"{rec['val_accuracy']:.4f}"
        post["s"] = f"{rec['seconds']:.1f}"
        self.bar.set_postfix(post)
        self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
