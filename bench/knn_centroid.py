"""The k-NN and centroid heads: graft's own fitting vs scikit-learn's, in one run.

The k-NN head picks k by leave-one-out accuracy; the centroid head takes class means of unit
vectors. graft's own code did both by hand (a blockwise similarity matrix and a top-k); the
heads now use scikit-learn (``NearestNeighbors.kneighbors()`` leaves each point out of its own
neighbours; ``NearestCentroid``). This prints, for both ways, the time, the leave-one-out
accuracy of each k, the chosen k and the largest centroid difference.

Usage:
    .venv/bin/python bench/knn_centroid.py
"""

from __future__ import annotations

import time

import numpy as np
import torch

from graft.heads import K_GRID, fit_head, knn_votes


def _unit(x: np.ndarray) -> np.ndarray:
    return np.asarray(x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12))


def _own_knn_scores(reference: np.ndarray, y: np.ndarray, classes: int) -> dict[int, float]:
    """The hand-written leave-one-out search graft had before (blockwise matrix products)."""
    candidates = [k for k in K_GRID if k < len(y)] or [1]
    scores = {}
    for k in candidates:
        correct = 0
        for start in range(0, len(y), 1024):
            block = reference[start : start + 1024]
            similarity = block @ reference.T
            similarity[np.arange(len(block)), np.arange(start, start + len(block))] = -np.inf
            proba = knn_votes(torch.from_numpy(similarity), torch.from_numpy(y), k, classes)
            correct += int((proba.numpy().argmax(axis=1) == y[start : start + 1024]).sum())
        scores[k] = correct / len(y)
    return scores


def main() -> None:
    rng = np.random.default_rng(0)
    fit_head("knn", rng.normal(size=(20, 4)), ["a", "b"] * 10)  # imports, before timing
    for n, dim, classes in ((300, 1280, 2), (2000, 1280, 4), (6000, 1280, 10)):
        centers = rng.normal(0, 1, (classes, dim))
        y = rng.integers(0, classes, n)
        x = (centers[y] + rng.normal(0, 9.0, (n, dim))).astype(np.float32)
        standardised = (x - x.mean(0)) / x.std(0)
        start = time.perf_counter()
        own = _own_knn_scores(_unit(standardised), y, classes)
        own_s = time.perf_counter() - start
        start = time.perf_counter()
        head = fit_head("knn", x, [f"c{i}" for i in y])
        sk_s = time.perf_counter() - start
        print(
            f"knn n={n} d={dim} classes={classes}: own {own_s:.2f} s, scikit-learn "
            f"{sk_s:.2f} s (ratio sklearn/own {sk_s / own_s:.2f}); own LOO "
            f"{ {k: round(v, 4) for k, v in own.items()} }; own k={max(own, key=own.__getitem__)}"
            f" ({max(own.values()):.4f}), scikit-learn k={head.params['k']} "
            f"({head.params['loo_accuracy']:.4f})"
        )
        start = time.perf_counter()
        unit = _unit(standardised)
        own_centroids = _unit(np.vstack([unit[y == c].mean(axis=0) for c in range(classes)]))
        own_c = time.perf_counter() - start
        start = time.perf_counter()
        centroid = fit_head("centroid", x, [f"c{i}" for i in y])
        sk_c = time.perf_counter() - start
        difference = np.abs(centroid.arrays["centroids"] - own_centroids).max()
        print(
            f"centroid n={n}: own {own_c:.3f} s, scikit-learn fit (with temperature) "
            f"{sk_c:.3f} s; largest centroid difference {difference:.2e}"
        )


if __name__ == "__main__":
    main()
