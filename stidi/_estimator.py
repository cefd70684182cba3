"""What the package's classifiers share: accuracy and evaluation on top of their own forward pass."""

from __future__ import annotations

import numpy as np


class ScoringMixin:
    """``score`` and ``evaluate`` for a classifier that defines ``predict``, ``_check_fitted``,
    ``_times`` (pixels to input spike times), ``_labels`` (labels to class indices) and
    ``_evaluate_times`` (statistics of one forward pass)."""

    def score(self, X, y, *, fallback: bool = True) -> float:
        """Accuracy of :meth:`predict` on ``(X, y)``."""
        return float(np.mean(self.predict(X, fallback=fallback) == np.asarray(y)))

    def evaluate(self, X, y) -> dict:
        """Accuracy with and without the silent-output fallback, plus firing statistics."""
        self._check_fitted()
        T = self._times(X)
        return self._evaluate_times(T, self._labels(np.asarray(y), T.shape[0]))
