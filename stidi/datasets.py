"""MNIST and Fashion-MNIST: IDX reading, checksummed loading and shipped subsets.

Three ways to get data:

* :func:`load` returns a full official split.  Files are looked up in an
  explicit ``data_dir``, else in ``$STIDI_DATA``, else in a per-user cache
  (``$STIDI_CACHE`` or ``~/.cache/stidi``) where they are downloaded once.
  Every file is checked against the MD5 of its *uncompressed* content.
* :func:`load_subset` returns the small stratified subset shipped with the
  package (300 training and 100 test images per class); no network needed.
* :func:`read_idx` / :func:`write_idx` handle single IDX files, gzipped or not.

MNIST is by Y. LeCun, C. Cortes and C. J. C. Burges (CC BY-SA 3.0);
Fashion-MNIST is by Zalando Research (MIT licence).
"""

from __future__ import annotations

import gzip
import hashlib
import math
import os
import tempfile
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from types import MappingProxyType

import numpy as np

__all__ = [
    "DATASETS", "DatasetInfo", "DatasetError", "DataNotFoundError",
    "read_idx", "write_idx", "load", "load_subset", "subset_filename", "class_names",
    "train_val_split", "shift_images", "flip_images",
]


class DatasetError(ValueError):
    """A data file is malformed, corrupt or fails its checksum."""


class DataNotFoundError(DatasetError, FileNotFoundError):
    """The requested data could not be found locally nor downloaded."""


@dataclass(frozen=True)
class DatasetInfo:
    """Static description of a dataset: file names, checksums, mirrors, classes."""

    name: str
    files: Mapping[tuple[str, str], str]  # (split, "images"|"labels") -> name without .gz
    md5: Mapping[str, str]  # file name -> MD5 of the uncompressed file
    urls: tuple[str, ...]  # base URLs, tried in order
    classes: tuple[str, ...]
    license: str


_FILES = MappingProxyType({
    ("train", "images"): "train-images-idx3-ubyte",
    ("train", "labels"): "train-labels-idx1-ubyte",
    ("test", "images"): "t10k-images-idx3-ubyte",
    ("test", "labels"): "t10k-labels-idx1-ubyte",
})
SPLITS = ("train", "test")



def _idx_dataset(name, md5s, urls, classes, license) -> DatasetInfo:
    """A dataset in the four standard IDX files; ``md5s`` in the order of ``_FILES``."""
    return DatasetInfo(name=name, files=_FILES, md5=MappingProxyType(dict(zip(_FILES.values(), md5s))),
                       urls=urls, classes=tuple(classes), license=license)


DATASETS = MappingProxyType({
    "mnist": _idx_dataset(
        "mnist", ("6bbc9ace898e44ae57da46a324031adb", "a25bea736e30d166cdddb491f175f624",
                  "2646ac647ad5339dbf082846283269ea", "27ae3e4e09519cfbb04c329615203637"),
        ("https://ossci-datasets.s3.amazonaws.com/mnist/", "https://storage.googleapis.com/cvdf-datasets/mnist/"),
        (str(d) for d in range(10)), "CC BY-SA 3.0, Y. LeCun, C. Cortes, C. J. C. Burges"),
    "fashion-mnist": _idx_dataset(
        "fashion-mnist", ("f4a8712d7a061bf5bd6d2ca38dc4d50a", "9018921c3c673c538a1fc5bad174d6f9",
                          "8181f5470baa50b63fa0f6fddb340f0a", "15d484375f8d13e6eb1aabb0c3f46965"),
        ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
         "Ankle boot"), "MIT, Zalando Research"),
})

# IDX type code -> big-endian dtype
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_CODES = {np.dtype(v).newbyteorder("="): k for k, v in _IDX_DTYPES.items()}
_GZIP_MAGIC = b"\x1f\x8b"
_verified: dict = {}  # (path, mtime_ns, size, md5) of files whose checksum matched


# ----------------------------------------------------------------------------- IDX
def _gunzip(blob: bytes, source) -> bytes:
    """Decompress ``blob`` if it starts with the gzip magic bytes."""
    if blob[:2] != _GZIP_MAGIC:
        return blob
    try:
        return gzip.decompress(blob)
    except (OSError, EOFError, zlib.error) as exc:
        raise DatasetError(f"{source}: corrupt gzip stream ({exc})") from None


def _decode(blob: bytes, source) -> np.ndarray:
    """Parse IDX bytes (optionally gzipped); ``source`` names the file in errors."""
    blob = _gunzip(blob, source)
    if len(blob) < 4:
        raise DatasetError(f"{source}: too short for an IDX header ({len(blob)} bytes)")
    zero, code, ndim = blob[:2], blob[2], blob[3]
    if zero != b"\0\0" or code not in _IDX_DTYPES:
        raise DatasetError(f"{source}: bad IDX magic number 0x{blob[:4].hex()} "
                           "(expected 0x00000801 labels or 0x00000803 images)")
    if not 1 <= ndim <= 8:
        raise DatasetError(f"{source}: unsupported number of dimensions {ndim}")
    start = 4 + 4 * ndim
    if len(blob) < start:
        raise DatasetError(f"{source}: truncated IDX header ({len(blob)} bytes, "
                           f"need {start} for {ndim} dimensions)")
    shape = tuple(int(d) for d in np.frombuffer(blob, ">u4", ndim, 4))
    dtype = np.dtype(_IDX_DTYPES[code])
    expected = math.prod(shape) * dtype.itemsize
    got = len(blob) - start
    if got != expected:
        what = "truncated" if got < expected else "over-long"
        raise DatasetError(f"{source}: {what} payload: header shape {shape} needs "
                           f"{expected} bytes of {dtype.str[1:]}, found {got}")
    # astype copies: the result is writable and in native byte order
    return np.frombuffer(blob, dtype, offset=start).reshape(shape).astype(dtype.newbyteorder("="))


def read_idx(path) -> np.ndarray:
    """Read an IDX file, gzipped or not.

    Parameters
    ----------
    path : str or os.PathLike
        File to read.  Gzip compression is detected from the magic bytes,
        not from the file name.

    Returns
    -------
    numpy.ndarray
        Writable array in native byte order, with the shape and dtype given by
        the header (uint8 for MNIST images and labels).

    Raises
    ------
    DatasetError
        If the gzip stream is corrupt, the magic number or the number of
        dimensions is invalid, or the payload length disagrees with the header.
    """
    return _decode(Path(path).read_bytes(), path)


def write_idx(path, array) -> None:
    """Write ``array`` as an IDX file, gzipped when ``path`` ends in ``.gz``.

    The gzip header carries a zero timestamp and no file name, so the same
    array always produces the same bytes.

    Parameters
    ----------
    path : str or os.PathLike
        Destination file.
    array : array_like
        Data of dtype uint8, int8, int16, int32, float32 or float64, with 1 to 8
        dimensions.
    """
    array = np.asarray(array)
    code = _CODES.get(array.dtype.newbyteorder("="))
    if code is None or not 1 <= array.ndim <= 8:
        raise DatasetError(f"cannot store dtype {array.dtype} with {array.ndim} dims as IDX")
    header = bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
    blob = header + np.ascontiguousarray(array, _IDX_DTYPES[code]).tobytes()
    if str(path).endswith(".gz"):
        blob = gzip.compress(blob, compresslevel=6, mtime=0)
    Path(path).write_bytes(blob)


# ----------------------------------------------------------------------------- registry
def _info(name: str) -> DatasetInfo:
    try:
        return DATASETS[name]
    except (KeyError, TypeError):
        import difflib

        close = difflib.get_close_matches(str(name).lower(), DATASETS, n=1, cutoff=0.6)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise DatasetError(f"unknown dataset {name!r}; valid names: "
                           f"{', '.join(map(repr, DATASETS))}.{hint}") from None


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise DatasetError(f"unknown split {split!r}; valid splits: 'train', 'test'")


def class_names(name: str) -> tuple:
    """Return the ten class names of a dataset, indexed by label.

    Parameters
    ----------
    name : {"mnist", "fashion-mnist"}
        Dataset name.

    Returns
    -------
    tuple of str
        ``("0", ..., "9")`` for MNIST; ``("T-shirt/top", ..., "Ankle boot")``
        for Fashion-MNIST.
    """
    return _info(name).classes


# ----------------------------------------------------------------------------- loading
def _md5(blob: bytes) -> str:
    return hashlib.md5(blob, usedforsecurity=False).hexdigest()


def _stat_key(path: Path) -> tuple:
    st = path.stat()
    return (str(path.resolve()), st.st_mtime_ns, st.st_size)


def _read_checked(path: Path, md5: str) -> np.ndarray:
    """Read a local IDX file and verify its uncompressed MD5 (once per file version)."""
    key = (*_stat_key(path), md5)
    blob = _gunzip(path.read_bytes(), path)
    if key not in _verified:
        actual = _md5(blob)
        if actual != md5:
            raise DatasetError(f"{path}: checksum mismatch (MD5 of uncompressed content: "
                               f"expected {md5}, got {actual}); the file is corrupt or "
                               "belongs to another dataset. Replace or delete it.")
        _verified[key] = True
    return _decode(blob, path)


def _find(folders, fname: str):
    """Return the first existing ``<folder>/<fname>.gz`` or ``<folder>/<fname>``, else None."""
    for folder in folders:
        for candidate in (folder / (fname + ".gz"), folder / fname):
            if candidate.is_file():
                return candidate
    return None


def _download(info: DatasetInfo, fname: str, target: Path) -> Path:
    """Fetch ``fname.gz`` into ``target``, verify it, then rename it into place."""
    import urllib.request
    from http.client import HTTPException

    target.mkdir(parents=True, exist_ok=True)
    final = target / (fname + ".gz")
    errors = []
    for base in info.urls:
        url = base + fname + ".gz"
        fd, tmp = tempfile.mkstemp(dir=target, prefix=fname + ".", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as out:
                try:
                    with urllib.request.urlopen(url, timeout=60) as response:
                        while chunk := response.read(1 << 20):
                            out.write(chunk)
                except (OSError, HTTPException) as exc:
                    errors.append(f"{url}: {exc}")
                    continue
            blob = Path(tmp).read_bytes()
            if blob[:2] != _GZIP_MAGIC:
                raise DatasetError(f"{url}: downloaded file is not gzip-compressed")
            actual = _md5(_gunzip(blob, url))
            if actual != info.md5[fname]:
                raise DatasetError(f"{url}: checksum mismatch (MD5 of uncompressed content: "
                                   f"expected {info.md5[fname]}, got {actual})")
            os.replace(tmp, final)
            _verified[(*_stat_key(final), info.md5[fname])] = True
            return final
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    raise DataNotFoundError(
        f"could not download {info.name} file {fname}.gz:\n  " + "\n  ".join(errors)
        + "\nTo work offline, copy the files to a folder and pass data_dir=<folder> "
        "or set the STIDI_DATA environment variable to it.")


def _cache_root(cache_dir) -> Path:
    if cache_dir is not None:
        return Path(cache_dir)
    if os.environ.get("STIDI_CACHE"):
        return Path(os.environ["STIDI_CACHE"])
    xdg = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(xdg) / "stidi"


def _locate(info: DatasetInfo, fname: str, data_dir, download: bool, cache_dir) -> Path:
    for label, folder in (("data_dir", data_dir), ("STIDI_DATA", os.environ.get("STIDI_DATA"))):
        if folder is None or (label == "STIDI_DATA" and not folder):
            continue
        folder = Path(folder).expanduser()
        if not folder.is_dir():
            raise DataNotFoundError(f"{label} {str(folder)!r} is not a directory")
        found = _find((folder / info.name, folder), fname)
        if found is None:
            raise DataNotFoundError(f"{label} {str(folder)!r} holds no {fname}[.gz], "
                                    f"neither directly nor in a {info.name}/ subfolder")
        return found
    cache = _cache_root(cache_dir) / info.name
    found = _find((cache,), fname)
    if found is not None:
        return found
    if not download:
        raise DataNotFoundError(f"{info.name} file {fname} not found in {cache} and "
                                "download=False; pass data_dir=... or set STIDI_DATA")
    return _download(info, fname, cache)


def load(name: str, split: str = "train", data_dir=None, *, download: bool = True,
         cache_dir=None) -> tuple[np.ndarray, np.ndarray]:
    """Load a full official split of MNIST or Fashion-MNIST.

    Parameters
    ----------
    name : {"mnist", "fashion-mnist"}
        Dataset name.
    split : {"train", "test"}
        Official split (60,000 or 10,000 examples).
    data_dir : str or os.PathLike, optional
        Folder holding the four IDX files (``.gz`` or uncompressed), either
        directly or in a ``<name>/`` subfolder.  If given, nothing else is tried.
    download : bool, default True
        Whether to download missing files into the cache.  Only used when
        neither ``data_dir`` nor ``$STIDI_DATA`` is set.
    cache_dir : str or os.PathLike, optional
        Cache root; files go to ``<cache_dir>/<name>/``.  Defaults to
        ``$STIDI_CACHE``, else ``~/.cache/stidi``.

    Returns
    -------
    images : numpy.ndarray
        uint8 array of shape ``(N, 28, 28)``.
    labels : numpy.ndarray
        uint8 array of shape ``(N,)`` with values in ``0..9``.

    Raises
    ------
    DataNotFoundError
        If ``data_dir`` or ``$STIDI_DATA`` lacks the files, or they are not
        cached and cannot be downloaded.
    DatasetError
        For an unknown name or split, a corrupt file or a checksum mismatch.

    Notes
    -----
    The MD5 of each file's uncompressed content is checked against the
    official value; the check runs once per file version and process.
    """
    info = _info(name)
    _check_split(split)
    arrays = []
    for kind in ("images", "labels"):
        fname = info.files[split, kind]
        path = _locate(info, fname, data_dir, download, cache_dir)
        arrays.append(_read_checked(path, info.md5[fname]))
    return _validated(*arrays, f"{name} {split}")


def _validated(images, labels, what):
    if (images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (28, 28)
            or labels.dtype != np.uint8 or labels.shape != images.shape[:1]):
        raise DatasetError(f"{what}: unexpected arrays: images {images.dtype}{images.shape}, "
                           f"labels {labels.dtype}{labels.shape}")
    return images, labels


def subset_filename(name: str, split: str, kind: str) -> str:
    """Return the file name of a shipped subset file (``kind`` is images or labels)."""
    return f"{name}-subset-{split}-{kind}-idx{3 if kind == 'images' else 1}-ubyte.gz"


def load_subset(name: str, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """Load the small stratified subset shipped with the package.

    The subsets hold 300 training images per class (3,000) drawn from the
    official training split and 100 test images per class (1,000) drawn from
    the official test split, in their original relative order.  They are
    produced by ``scripts/make_subset.py`` and need neither network nor
    ``$STIDI_DATA``.

    Parameters
    ----------
    name : {"mnist", "fashion-mnist"}
        Dataset name.
    split : {"train", "test"}
        Which subset.

    Returns
    -------
    images : numpy.ndarray
        uint8 array of shape ``(N, 28, 28)``.
    labels : numpy.ndarray
        uint8 array of shape ``(N,)``.
    """
    _info(name)
    _check_split(split)
    folder = resources.files("stidi").joinpath("data")
    arrays = []
    for kind in ("images", "labels"):
        fname = subset_filename(name, split, kind)
        arrays.append(_decode(folder.joinpath(fname).read_bytes(), f"stidi/data/{fname}"))
    return _validated(*arrays, f"{name} {split} subset")


# ----------------------------------------------------------------------------- splitting
def train_val_split(labels, val_size, random_state=None) -> tuple[np.ndarray, np.ndarray]:
    """Split example indices into stratified training and validation sets.

    Each class contributes to the validation set in proportion to its
    frequency (largest-remainder rounding, so the total is exact).

    Parameters
    ----------
    labels : array_like of int, shape (N,)
        Class label of every example.
    val_size : int or float
        Number of validation examples (``1 <= val_size < N``) or fraction of
        ``N`` (``0 < val_size < 1``).
    random_state : None, int, or numpy.random.Generator
        Seed for choosing examples within each class; an int makes the split
        deterministic.

    Returns
    -------
    train_idx, val_idx : numpy.ndarray
        Sorted, disjoint int64 index arrays that together cover ``range(N)``.
    """
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be a 1-D integer array, got {labels.dtype}{labels.shape}")
    n = labels.size
    if isinstance(val_size, (bool, np.bool_)) or not isinstance(val_size, (int, float, np.number)):
        raise TypeError(f"val_size must be an int or a float, got {val_size!r}")
    if isinstance(val_size, (int, np.integer)):
        n_val = int(val_size)
    elif 0 < val_size < 1:
        n_val = int(round(float(val_size) * n))
    else:
        raise ValueError(f"fractional val_size must lie in (0, 1), got {val_size}")
    if not 1 <= n_val < n:
        raise ValueError(f"val_size {val_size} gives {n_val} validation examples out of {n}; "
                         f"need between 1 and {n - 1}")
    _, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    quota = n_val * counts / n
    take = np.floor(quota).astype(np.int64)
    extra = np.argsort(-(quota - take), kind="stable")[: n_val - take.sum()]
    take[extra] += 1
    rng = np.random.default_rng(random_state)
    val = [rng.permutation(np.flatnonzero(inverse == c))[:k] for c, k in enumerate(take)]
    val_idx = np.sort(np.concatenate(val)).astype(np.int64)
    train_idx = np.setdiff1d(np.arange(n, dtype=np.int64), val_idx)
    return train_idx, val_idx


def flip_images(T: np.ndarray, shape: tuple, mask: np.ndarray) -> np.ndarray:
    """Mirror left to right the rows of ``T`` (flattened images of ``shape = (h, w)``) where ``mask``.

    This is the ``flip`` augmentation of :class:`stidi.SpikingClassifier`; other rows
    are returned unchanged (as a copy).
    """
    h, w = shape
    out = T.reshape(T.shape[0], h, w).copy()
    out[mask] = out[mask][:, :, ::-1]
    return out.reshape(T.shape[0], h * w)


def shift_images(T: np.ndarray, shape: tuple, dx: np.ndarray, dy: np.ndarray, fill: float) -> np.ndarray:
    """Shift every row of ``T`` (flattened images of ``shape = (h, w)``) by ``(dy[n], dx[n])`` pixels.

    Vacated pixels get ``fill`` (for spike times: ``t_max``, no spike).  This is the
    data augmentation of :class:`stidi.SpikingClassifier` (``augment``).
    """
    h, w = shape
    n = T.shape[0]
    src = T.reshape(n, h, w)
    out = np.full_like(src, fill)
    for sy in np.unique(dy):
        for sx in np.unique(dx):
            idx = np.flatnonzero((dy == sy) & (dx == sx))
            if idx.size == 0:
                continue
            ys, yd = (slice(0, h - sy), slice(sy, h)) if sy >= 0 else (slice(-sy, h), slice(0, h + sy))
            xs, xd = (slice(0, w - sx), slice(sx, w)) if sx >= 0 else (slice(-sx, w), slice(0, w + sx))
            out[idx, yd, xd] = src[idx, ys, xs]
    return out.reshape(n, h * w)
