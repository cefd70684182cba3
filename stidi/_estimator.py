"""What the package's classifiers share: accuracy and evaluation on top of their own forward pass."""

from __future__ import annotations

import numpy as np


class ScoringMixin:
    """``score``, ``evaluate`` and label checking for a classifier that defines ``predict``,
    ``_check_fitted``, ``classes_``, ``_times`` (pixels to input spike times) and
    ``_evaluate_times`` (statistics of one forward pass)."""

    def _labels(self, y, n: int) -> np.ndarray:
        """Class indices of ``y`` (``n`` labels, each one seen during fit)."""
        y = np.asarray(y)
        if y.shape != (n,):
            raise ValueError(f"y must have shape ({n},), got {y.shape}")
        idx = np.clip(np.searchsorted(self.classes_, y), 0, len(self.classes_) - 1)
        unseen = self.classes_[idx] != y
        if np.any(unseen):
            raise ValueError(f"y contains labels not seen during fit: {np.unique(y[unseen])[:10].tolist()}")
        return idx.astype(np.int64)

    def score(self, X, y, *, fallback: bool = True) -> float:
        """Accuracy of :meth:`predict` on ``(X, y)``."""
        return float(np.mean(self.predict(X, fallback=fallback) == np.asarray(y)))

    def evaluate(self, X, y) -> dict:
        """Accuracy with and without the silent-output fallback, plus firing statistics."""
        self._check_fitted()
        T = self._times(X)
        return self._evaluate_times(T, self._labels(np.asarray(y), T.shape[0]))
