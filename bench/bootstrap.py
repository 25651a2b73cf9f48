"""Bootstrap intervals: scipy.stats.bootstrap (what graft uses) vs graft's former own code.

graft computed its percentile bootstrap with hand-vectorised numpy (kept below as
``_own_intervals``); ``graft.metrics.bootstrap_intervals`` now calls ``scipy.stats.bootstrap``.
This prints both on the same predictions, in one run: their times and the largest gap between
their interval ends (with the same seed both draw the same resamples).

Usage:
    .venv/bin/python bench/bootstrap.py
"""

from __future__ import annotations

import time

import numpy as np

from graft.metrics import BOOTSTRAP_SAMPLES, bootstrap_intervals


def _own_intervals(
    y_true: np.ndarray, y_pred: np.ndarray, n_classes: int, samples: int = BOOTSTRAP_SAMPLES
) -> dict[str, list[float]]:
    """graft's bootstrap before scipy's: one matrix of draws, per-class counts by bincount."""
    rng = np.random.default_rng(0)
    n = len(y_true)
    draws = rng.integers(0, n, size=(samples, n))
    truth, pred = y_true[draws], y_pred[draws]
    accuracy = (truth == pred).mean(axis=1)
    offsets = np.arange(samples)[:, None] * n_classes

    def per_class(cells: np.ndarray) -> np.ndarray:
        counts = np.bincount(cells.ravel(), minlength=samples * n_classes)
        return counts.reshape(samples, n_classes).astype(np.float64)

    hits = per_class((offsets + truth)[truth == pred])
    actual = per_class(offsets + truth)
    denominator = actual + per_class(offsets + pred)
    f1 = np.divide(2 * hits, denominator, out=np.zeros_like(hits), where=denominator > 0)
    present = actual > 0
    macro = np.where(present, f1, 0).sum(1) / np.maximum(present.sum(1), 1)
    return {
        "accuracy": [float(v) for v in np.percentile(accuracy, [2.5, 97.5])],
        "macro_f1": [float(v) for v in np.percentile(macro, [2.5, 97.5])],
    }


def main() -> None:
    rng = np.random.default_rng(0)
    bootstrap_intervals(np.array([0, 1] * 5), np.array([0, 1] * 5), 2)  # imports scipy
    for n, classes in ((200, 2), (2000, 4), (10000, 10)):
        truth = rng.integers(0, classes, n)
        pred = np.where(rng.random(n) < 0.85, truth, rng.integers(0, classes, n))
        start = time.perf_counter()
        own = _own_intervals(truth, pred, classes)
        own_s = time.perf_counter() - start
        start = time.perf_counter()
        scipy = bootstrap_intervals(truth, pred, classes)
        scipy_s = time.perf_counter() - start
        gaps = {
            name: max(abs(a - b) for a, b in zip(own[name], scipy[name], strict=True))
            for name in own
        }
        print(
            f"n={n:>5} classes={classes:>2}: own {own_s * 1000:7.1f} ms, scipy "
            f"{scipy_s * 1000:7.1f} ms (scipy / own = {scipy_s / own_s:4.2f}x); largest "
            f"interval-end gap accuracy {gaps['accuracy']:.2g}, macro-F1 {gaps['macro_f1']:.2g}"
        )


if __name__ == "__main__":
    main()
