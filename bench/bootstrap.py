"""graft's bootstrap intervals vs scipy.stats.bootstrap: the same intervals, which is faster.

graft keeps its own vectorised percentile bootstrap (graft.metrics.bootstrap_intervals) only
if it is measured to be better; this prints both on the same predictions, in one run.

Usage:
    .venv/bin/python bench/bootstrap.py
"""

from __future__ import annotations

import time

import numpy as np
from scipy import stats

from graft.metrics import BOOTSTRAP_SAMPLES, bootstrap_intervals


def _macro_f1(truth: np.ndarray, pred: np.ndarray, classes: int, axis: int = -1) -> np.ndarray:
    truth, pred = np.moveaxis(truth, axis, -1), np.moveaxis(pred, axis, -1)
    f1s, present = [], []
    for c in range(classes):
        hits = ((truth == c) & (pred == c)).sum(-1)
        actual, predicted = (truth == c).sum(-1), (pred == c).sum(-1)
        denominator = actual + predicted
        f1s.append(np.where(denominator > 0, 2 * hits / np.maximum(denominator, 1), 0.0))
        present.append(actual > 0)
    f1, seen = np.stack(f1s, -1), np.stack(present, -1)
    return np.asarray(np.where(seen, f1, 0).sum(-1) / np.maximum(seen.sum(-1), 1))


def main() -> None:
    rng = np.random.default_rng(0)
    for n, classes in ((200, 2), (2000, 4), (10000, 10)):
        truth = rng.integers(0, classes, n)
        pred = np.where(rng.random(n) < 0.85, truth, rng.integers(0, classes, n))
        start = time.perf_counter()
        ours = bootstrap_intervals(truth, pred, classes)
        ours_s = time.perf_counter() - start
        start = time.perf_counter()
        theirs = {
            name: stats.bootstrap(
                (truth, pred),
                statistic,
                paired=True,
                vectorized=True,
                n_resamples=BOOTSTRAP_SAMPLES,
                method="percentile",
                random_state=0,
            ).confidence_interval
            for name, statistic in (
                ("accuracy", lambda t, p, axis=-1: (t == p).mean(axis=axis)),
                ("macro_f1", lambda t, p, axis=-1, c=classes: _macro_f1(t, p, c, axis)),
            )
        }
        scipy_s = time.perf_counter() - start
        gaps = {
            name: max(abs(ours[name][0] - theirs[name].low), abs(ours[name][1] - theirs[name].high))
            for name in ours
        }
        print(
            f"n={n:>5} classes={classes:>2}: graft {ours_s * 1000:7.1f} ms, scipy "
            f"{scipy_s * 1000:7.1f} ms (scipy / graft = {scipy_s / ours_s:5.1f}x); largest "
            f"interval-end gap accuracy {gaps['accuracy']:.4f}, macro-F1 {gaps['macro_f1']:.4f}"
        )


if __name__ == "__main__":
    main()
