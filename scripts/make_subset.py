"""Generate the stratified MNIST / Fashion-MNIST subsets shipped in ``stidi/data/``.

For every dataset and official split, ``--per-class-train`` (resp.
``--per-class-test``) examples of each class are drawn without replacement
with a fixed seed, kept in their original relative order and written as
gzipped IDX files with a zero gzip timestamp, so that regenerating from the
same official data gives byte-identical files::

    python scripts/make_subset.py --data-dir /path/to/datasets

``--data-dir`` may hold the four official files of each dataset in
``mnist/`` and ``fashion-mnist/`` subfolders; without it the usual
``stidi.datasets.load`` resolution applies (``$STIDI_DATA``, then the cache).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from stidi.datasets import DATASETS, load, subset_filename, write_idx  # noqa: E402


def stratified_indices(labels: np.ndarray, per_class: int, rng: np.random.Generator) -> np.ndarray:
    """Pick ``per_class`` indices of every class at random; return them sorted."""
    chosen = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        if members.size < per_class:
            raise SystemExit(f"class {c} has only {members.size} examples, need {per_class}")
        chosen.append(rng.permutation(members)[:per_class])
    return np.sort(np.concatenate(chosen))


def make_subsets(data_dir, out_dir, seed: int = 0, per_class_train: int = 300,
                 per_class_test: int = 100, download: bool = False) -> list[Path]:
    """Write all subset files into ``out_dir``; return their paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for d, name in enumerate(DATASETS):
        for s, (split, per_class) in enumerate((("train", per_class_train),
                                                ("test", per_class_test))):
            images, labels = load(name, split, data_dir, download=download)
            rng = np.random.default_rng([seed, d, s])  # independent stream per file pair
            idx = stratified_indices(labels, per_class, rng)
            for kind, array in (("images", images[idx]), ("labels", labels[idx])):
                path = out_dir / subset_filename(name, split, kind)
                write_idx(path, array)
                written.append(path)
    return written


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=None,
                        help="folder with the official files (default: $STIDI_DATA or the cache)")
    parser.add_argument("--out-dir", default=str(ROOT / "stidi" / "data"),
                        help="where to write the subset files (default: stidi/data)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--per-class-train", type=int, default=300)
    parser.add_argument("--per-class-test", type=int, default=100)
    parser.add_argument("--download", action="store_true",
                        help="allow downloading the official files into the cache")
    args = parser.parse_args(argv)
    for path in make_subsets(args.data_dir, args.out_dir, args.seed, args.per_class_train,
                             args.per_class_test, args.download):
        print(f"{path}  {path.stat().st_size} bytes")


if __name__ == "__main__":
    main()
