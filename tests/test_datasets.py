"""Tests for stidi.datasets: IDX parsing, loading, downloads, subsets, splits."""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import io
import subprocess
import sys
import urllib.error
import urllib.request
import zlib
from pathlib import Path

import numpy as np
import pytest

from stidi import datasets as D
from stidi.datasets import DataNotFoundError, DatasetError

REPO = Path(__file__).resolve().parents[1]
NAMES = tuple(D.DATASETS)


@pytest.fixture(autouse=True)
def _offline(monkeypatch, tmp_path):
    """No test reaches the network or the user's cache."""

    def refuse(*args, **kwargs):
        raise AssertionError("tests must not open URLs")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    monkeypatch.setenv("STIDI_CACHE", str(tmp_path / "user-cache"))


def _idx_bytes(array) -> bytes:
    array = np.asarray(array, np.uint8)
    return bytes([0, 0, 8, array.ndim]) + np.asarray(array.shape, ">u4").tobytes() + array.tobytes()


# ----------------------------------------------------------------------------- read_idx
@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
@pytest.mark.parametrize("suffix", [".idx", ".idx.gz"])
def test_write_read_roundtrip(tmp_path, dtype, suffix):
    data = (np.arange(2 * 3 * 4) - 5).astype(dtype).reshape(2, 3, 4)
    path = tmp_path / f"a{suffix}"
    D.write_idx(path, data)
    out = D.read_idx(path)
    assert out.dtype == np.dtype(dtype) and out.dtype.isnative
    np.testing.assert_array_equal(out, data)
    assert out.flags.writeable


def test_gzip_detected_by_magic_not_name(tmp_path):
    data = np.arange(10, dtype=np.uint8)
    zipped, plain = tmp_path / "labels.idx", tmp_path / "labels.gz"
    zipped.write_bytes(gzip.compress(_idx_bytes(data)))
    plain.write_bytes(_idx_bytes(data))
    np.testing.assert_array_equal(D.read_idx(zipped), data)
    np.testing.assert_array_equal(D.read_idx(plain), data)


def test_write_idx_is_deterministic(tmp_path):
    data = np.random.default_rng(0).integers(0, 256, (5, 28, 28), dtype=np.uint8)
    D.write_idx(tmp_path / "a.gz", data)
    D.write_idx(tmp_path / "b.gz", data)
    blob = (tmp_path / "a.gz").read_bytes()
    assert blob == (tmp_path / "b.gz").read_bytes()
    assert blob[4:8] == b"\0\0\0\0"  # gzip mtime


GOOD = _idx_bytes(np.zeros((3, 2, 2)))
BAD_FILES = {
    "empty": (b"", "too short"),
    "bad-magic": (b"\x12\x34\x08\x03" + GOOD[4:], "bad IDX magic"),
    "bad-type": (b"\0\0\x07\x03" + GOOD[4:], "bad IDX magic"),
    "text": (b"hello, world\n" * 4, "bad IDX magic"),
    "zero-dims": (b"\0\0\x08\x00", "number of dimensions"),
    "short-header": (GOOD[:10], "truncated IDX header"),
    "truncated": (GOOD[:-1], "truncated payload"),
    "over-long": (GOOD + b"\0", "over-long payload"),
    "garbage-gzip": (b"\x1f\x8b" + b"garbage" * 10, "corrupt gzip"),
    "cut-gzip": (gzip.compress(GOOD)[:-12], "corrupt gzip"),
    "flipped-gzip": (gzip.compress(GOOD)[:-8] + b"\xff\xff\xff\xff" + gzip.compress(GOOD)[-4:],
                     "corrupt gzip"),
    "truncated-in-gzip": (gzip.compress(GOOD[:-3]), "truncated payload"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_idx_files(tmp_path, case):
    blob, message = BAD_FILES[case]
    path = tmp_path / f"{case}.gz"
    path.write_bytes(blob)
    with pytest.raises(DatasetError, match=message) as info:
        D.read_idx(path)
    assert str(path) in str(info.value)
    assert isinstance(info.value, ValueError)


# ----------------------------------------------------------------------------- registry
def test_registry_and_class_names():
    assert set(D.DATASETS) == {"mnist", "fashion-mnist"}
    assert D.class_names("mnist") == tuple("0123456789")
    fashion = D.class_names("fashion-mnist")
    assert fashion[0] == "T-shirt/top" and fashion[9] == "Ankle boot" and len(fashion) == 10
    for info in D.DATASETS.values():
        assert sorted(info.md5) == sorted(info.files.values())
        assert all(len(h) == 32 for h in info.md5.values()) and info.urls


def test_unknown_name_lists_valid_names():
    with pytest.raises(DatasetError, match=r"unknown dataset 'fashion_mnist'.*'mnist'.*"
                                           r"'fashion-mnist'.*Did you mean 'fashion-mnist'"):
        D.load("fashion_mnist")
    with pytest.raises(DatasetError, match="unknown dataset"):
        D.load_subset("cifar10")
    with pytest.raises(DatasetError, match="unknown dataset"):
        D.class_names("emnist")


def test_unknown_split():
    with pytest.raises(DatasetError, match="unknown split 'val'"):
        D.load("mnist", "val")
    with pytest.raises(DatasetError, match="unknown split"):
        D.load_subset("mnist", "validation")


def test_import_is_cheap():
    code = ("import sys, stidi; before = set(sys.modules); import stidi.datasets; "
            "new = set(sys.modules) - before; "
            "print(sorted(m for m in new if m.startswith(('numba', 'urllib.request', 'http'))))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                         text=True, check=True).stdout
    assert out.strip() == "[]"


# ----------------------------------------------------------------------------- local loading
def test_missing_data_dir_does_not_fall_back(tmp_path):
    # an explicit data_dir wins even when $STIDI_DATA holds the real files
    with pytest.raises(DataNotFoundError, match="data_dir .*nowhere.* is not a directory"):
        D.load("mnist", data_dir=tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="data_dir .* holds no train-images-idx3-ubyte"):
        D.load("mnist", data_dir=tmp_path)


def test_stidi_data_without_files(tmp_path, monkeypatch):
    monkeypatch.setenv("STIDI_DATA", str(tmp_path))
    with pytest.raises(DataNotFoundError, match="STIDI_DATA .* holds no t10k-images"):
        D.load("fashion-mnist", "test")


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("split,count", [("train", 60000), ("test", 10000)])
def test_load_real(stidi_data, name, split, count):
    images, labels = D.load(name, split)
    assert images.shape == (count, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (count,) and labels.dtype == np.uint8
    assert labels.min() == 0 and labels.max() == 9
    assert np.bincount(labels).min() > count // 20
    assert images.max() == 255 and images.min() == 0


@pytest.mark.slow
def test_flat_folder_and_wrong_dataset(stidi_data, monkeypatch):
    monkeypatch.setenv("STIDI_DATA", str(stidi_data / "mnist"))
    images, labels = D.load("mnist", "test")
    assert images.shape == (10000, 28, 28)
    # a flat MNIST folder must not pass for Fashion-MNIST
    with pytest.raises(DatasetError, match="checksum mismatch"):
        D.load("fashion-mnist", "test")


def test_corrupt_local_file(tmp_path):
    folder = tmp_path / "mnist"
    folder.mkdir()
    D.write_idx(folder / "t10k-images-idx3-ubyte.gz", np.zeros((2, 28, 28), np.uint8))
    D.write_idx(folder / "t10k-labels-idx1-ubyte.gz", np.zeros(2, np.uint8))
    with pytest.raises(DatasetError, match=r"checksum mismatch .*expected 2646ac64"):
        D.load("mnist", "test", data_dir=tmp_path)


# ----------------------------------------------------------------------------- downloads
def _fake_registry(monkeypatch, urls=("https://mirror-a.invalid/", "https://mirror-b.invalid/")):
    """Register a tiny dataset 'tiny' whose files are served by a fake urlopen."""
    rng = np.random.default_rng(1)
    arrays = {("train", "images"): rng.integers(0, 256, (6, 28, 28), dtype=np.uint8),
              ("train", "labels"): np.arange(6, dtype=np.uint8) % 3}
    raw = {D.DATASETS["mnist"].files[key]: _idx_bytes(a) for key, a in arrays.items()}
    info = D.DatasetInfo(
        name="tiny", files=D.DATASETS["mnist"].files,
        md5={f: hashlib.md5(b).hexdigest() for f, b in raw.items()},
        urls=urls, classes=("a", "b", "c"), license="test")
    monkeypatch.setattr(D, "DATASETS", {"tiny": info})
    monkeypatch.delenv("STIDI_DATA", raising=False)
    served = {u + f + ".gz": gzip.compress(b) for u in urls for f, b in raw.items()}
    return arrays, served


def _serve(monkeypatch, served, fail=()):
    calls = []

    def urlopen(url, timeout=None):
        calls.append(url)
        if any(url.startswith(f) for f in fail):
            raise urllib.error.URLError("unreachable")
        return io.BytesIO(served[url])

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    return calls


def test_download_with_mirror_fallback_and_cache(tmp_path, monkeypatch):
    arrays, served = _fake_registry(monkeypatch)
    calls = _serve(monkeypatch, served, fail=("https://mirror-a.invalid/",))
    images, labels = D.load("tiny", "train", cache_dir=tmp_path)
    np.testing.assert_array_equal(images, arrays["train", "images"])
    np.testing.assert_array_equal(labels, arrays["train", "labels"])
    assert len(calls) == 4 and calls[1].startswith("https://mirror-b.invalid/")
    assert sorted(p.name for p in (tmp_path / "tiny").iterdir()) == [
        "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"]
    D.load("tiny", "train", cache_dir=tmp_path)  # served from the cache
    assert len(calls) == 4


def test_download_uses_stidi_cache(tmp_path, monkeypatch):
    _, served = _fake_registry(monkeypatch)
    _serve(monkeypatch, served)
    monkeypatch.setenv("STIDI_CACHE", str(tmp_path / "cache"))
    D.load("tiny")
    assert (tmp_path / "cache" / "tiny" / "train-labels-idx1-ubyte.gz").is_file()


def test_checksum_mismatch_leaves_nothing(tmp_path, monkeypatch):
    _, served = _fake_registry(monkeypatch)
    name = "https://mirror-a.invalid/train-images-idx3-ubyte.gz"
    served[name] = gzip.compress(_idx_bytes(np.ones((6, 28, 28))))
    _serve(monkeypatch, served)
    with pytest.raises(DatasetError, match=r"checksum mismatch .*expected [0-9a-f]{32}, "
                                           r"got [0-9a-f]{32}"):
        D.load("tiny", cache_dir=tmp_path)
    assert list((tmp_path / "tiny").iterdir()) == []


def test_download_not_gzip_leaves_nothing(tmp_path, monkeypatch):
    _, served = _fake_registry(monkeypatch)
    served["https://mirror-a.invalid/train-images-idx3-ubyte.gz"] = b"<html>Not found</html>"
    _serve(monkeypatch, served)
    with pytest.raises(DatasetError, match="not gzip-compressed"):
        D.load("tiny", cache_dir=tmp_path)
    assert list((tmp_path / "tiny").iterdir()) == []


def test_offline_message(tmp_path, monkeypatch):
    _, served = _fake_registry(monkeypatch)
    _serve(monkeypatch, served, fail=("https://",))
    with pytest.raises(DataNotFoundError, match=r"(?s)could not download.*unreachable.*"
                                                r"data_dir=.*STIDI_DATA"):
        D.load("tiny", cache_dir=tmp_path)
    assert list((tmp_path / "tiny").iterdir()) == []


def test_no_download_flag(tmp_path, monkeypatch):
    monkeypatch.delenv("STIDI_DATA", raising=False)
    with pytest.raises(DataNotFoundError, match="download=False"):
        D.load("mnist", cache_dir=tmp_path, download=False)


# ----------------------------------------------------------------------------- subsets
@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("split,per_class", [("train", 300), ("test", 100)])
def test_subset(name, split, per_class, monkeypatch):
    monkeypatch.delenv("STIDI_DATA", raising=False)
    images, labels = D.load_subset(name, split)
    assert images.shape == (10 * per_class, 28, 28) and images.dtype == np.uint8
    assert labels.dtype == np.uint8
    np.testing.assert_array_equal(np.bincount(labels, minlength=10), [per_class] * 10)
    assert images.reshape(len(images), -1).max(axis=1).min() > 0  # no blank images


def test_subsets_differ_between_datasets():
    assert not np.array_equal(D.load_subset("mnist")[0], D.load_subset("fashion-mnist")[0])


@pytest.mark.slow
def test_make_subset_reproduces_shipped_files(stidi_data, tmp_path):
    spec = importlib.util.spec_from_file_location("make_subset", REPO / "scripts" / "make_subset.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    written = module.make_subsets(stidi_data, tmp_path)
    assert len(written) == 8
    for path in written:
        shipped = (REPO / "stidi" / "data" / path.name).read_bytes()
        fresh = path.read_bytes()
        assert gzip.decompress(fresh) == gzip.decompress(shipped), path.name
        if "ng" not in zlib.ZLIB_RUNTIME_VERSION:  # zlib-ng compresses differently
            assert fresh == shipped, path.name


# ----------------------------------------------------------------------------- train_val_split
def test_train_val_split_stratified_and_deterministic():
    labels = np.repeat(np.arange(4), [100, 50, 30, 20])
    train, val = D.train_val_split(labels, 0.2, random_state=3)
    assert len(val) == 40 and len(train) == 160
    np.testing.assert_array_equal(np.bincount(labels[val]), [20, 10, 6, 4])
    np.testing.assert_array_equal(np.sort(np.concatenate([train, val])), np.arange(200))
    again = D.train_val_split(labels, 0.2, random_state=3)
    np.testing.assert_array_equal(again[1], val)
    assert not np.array_equal(D.train_val_split(labels, 0.2, random_state=4)[1], val)


def test_train_val_split_integer_count_is_exact():
    labels = np.array([0] * 7 + [1] * 5 + [2] * 3)
    train, val = D.train_val_split(labels, 4, random_state=0)
    assert len(val) == 4 and len(train) == 11 and set(labels[val]) >= {0, 1}
    assert train.dtype == val.dtype == np.int64


@pytest.mark.parametrize("val_size", [0, 15, -1, 0.0, 1.0, 1.5, -0.2, 0.01])
def test_train_val_split_out_of_range(val_size):
    with pytest.raises(ValueError, match="val_size"):
        D.train_val_split(np.arange(15) % 3, val_size)


def test_train_val_split_bad_inputs():
    with pytest.raises(TypeError):
        D.train_val_split(np.arange(10) % 2, True)
    with pytest.raises(ValueError, match="1-D integer"):
        D.train_val_split(np.zeros((3, 3), int), 1)
