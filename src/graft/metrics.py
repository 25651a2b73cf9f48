"""Classification metrics from labels and probabilities, with honest uncertainty.

scikit-learn does the arithmetic; graft adds what small data needs: bootstrap 95 % intervals
for accuracy and macro-F1 (resampling the evaluated images), and calibration (expected
calibration error and the reliability diagram's bins).

Example:
    >>> import numpy as np
    >>> proba = np.array([[0.9, 0.1], [0.2, 0.8], [0.7, 0.3]])
    >>> m = classification_metrics(["a", "b", "b"], proba, ["a", "b"])
    >>> m["accuracy"], m["n"], m["per_class"]["b"]["recall"]
    (0.6666666666666666, 3, 0.5)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

#: Bins of the reliability diagram and the expected calibration error.
CALIBRATION_BINS = 15
BOOTSTRAP_SAMPLES = 1000


def classification_metrics(
    true_labels: Sequence[str],
    probabilities: np.ndarray,
    classes: Sequence[str],
    *,
    bootstrap: int = BOOTSTRAP_SAMPLES,
    seed: int = 0,
) -> dict[str, Any]:
    """Return every metric of ``graft evaluate --json``.

    Args:
        true_labels: The true class name of each image.
        probabilities: ``N x len(classes)`` predicted probabilities.
        classes: Class names in the column order of ``probabilities``.
        bootstrap: Resamples for the 95 % intervals (0: no intervals).
        seed: Seeds the resampling.

    Returns:
        A JSON-ready dict: ``accuracy``, ``macro_f1``, ``weighted_f1``, ``n``, ``per_class``
        (``precision``, ``recall``, ``f1``, ``support``), ``macro_precision``,
        ``macro_recall``, ``confusion_matrix`` (rows true, columns predicted), ``classes``,
        ``top_k_accuracy`` (k = 2..5 where there are more classes than k), ``log_loss``,
        ``roc_auc`` (binary, or macro one-vs-rest) and ``roc_auc_per_class``,
        ``average_precision`` (macro), ``ece``, and ``intervals`` (95 % bootstrap intervals of
        accuracy and macro-F1). Macro averages run over the classes present in the truth.
    """
    from sklearn.metrics import (
        accuracy_score,
        confusion_matrix,
        f1_score,
        precision_recall_fscore_support,
    )

    index = {name: i for i, name in enumerate(classes)}
    y_true = np.array([index[label] for label in true_labels], dtype=np.int64)
    proba = np.asarray(probabilities, dtype=np.float64).reshape(len(y_true), len(classes))
    y_pred = proba.argmax(axis=1) if len(y_true) else np.zeros(0, dtype=np.int64)
    labels = np.arange(len(classes))
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, zero_division=0
    )
    present = support > 0
    metrics: dict[str, Any] = {
        "n": len(y_true),
        "accuracy": float(accuracy_score(y_true, y_pred)) if len(y_true) else 0.0,
        "macro_f1": _macro(f1, present),
        "macro_precision": _macro(precision, present),
        "macro_recall": _macro(recall, present),
        "weighted_f1": float(
            f1_score(y_true, y_pred, labels=labels, average="weighted", zero_division=0)
        ),
        "per_class": {
            name: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, name in enumerate(classes)
        },
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
        "classes": list(classes),
    }
    if len(y_true):
        metrics.update(_probability_metrics(y_true, proba, len(classes)))
        if bootstrap:
            metrics["intervals"] = bootstrap_intervals(
                y_true, y_pred, len(classes), samples=bootstrap, seed=seed
            )
    return metrics


def _macro(values: np.ndarray, present: np.ndarray) -> float:
    return float(np.mean(values[present])) if present.any() else 0.0


def _probability_metrics(y_true: np.ndarray, proba: np.ndarray, n_classes: int) -> dict[str, Any]:
    from sklearn.metrics import log_loss, top_k_accuracy_score

    labels = np.arange(n_classes)
    clipped = np.clip(proba, 1e-15, 1.0)
    out: dict[str, Any] = {
        "log_loss": float(log_loss(y_true, clipped / clipped.sum(1, keepdims=True), labels=labels)),
        "top_k_accuracy": {
            str(k): float(top_k_accuracy_score(y_true, proba, k=k, labels=labels))
            for k in range(2, min(5, n_classes - 1) + 1)
        },
        "ece": expected_calibration_error(y_true, proba),
    }
    auc = roc_auc(y_true, proba, n_classes)
    out["roc_auc"] = auc["macro"]
    out["roc_auc_per_class"] = auc["per_class"]
    out["average_precision"] = auc["average_precision"]
    return out


def roc_auc(y_true: np.ndarray, proba: np.ndarray, n_classes: int) -> dict[str, Any]:
    """ROC AUC and average precision, one-vs-rest per class; ``macro`` over the present ones.

    For two classes ``macro`` is the usual binary AUC (of the second class's probability).
    Classes absent from the truth (or present alone) get ``None``.
    """
    from sklearn.metrics import average_precision_score, roc_auc_score

    per_class: list[float | None] = []
    precision: list[float] = []
    for c in range(n_classes):
        positives = y_true == c
        if positives.all() or not positives.any():
            per_class.append(None)
            continue
        per_class.append(float(roc_auc_score(positives, proba[:, c])))
        precision.append(float(average_precision_score(positives, proba[:, c])))
    scored = [value for value in per_class if value is not None]
    macro = per_class[1] if n_classes == 2 else (float(np.mean(scored)) if scored else None)
    return {
        "macro": macro,
        "per_class": per_class,
        "average_precision": float(np.mean(precision)) if precision else None,
    }


def expected_calibration_error(
    y_true: np.ndarray, proba: np.ndarray, bins: int = CALIBRATION_BINS
) -> float:
    """ECE: the gap between confidence and accuracy, averaged over confidence bins by size."""
    table = reliability(y_true, proba, bins)
    total = sum(row["count"] for row in table)
    if total == 0:
        return 0.0
    return float(
        sum(row["count"] * abs(row["accuracy"] - row["confidence"]) for row in table) / total
    )


def reliability(
    y_true: np.ndarray, proba: np.ndarray, bins: int = CALIBRATION_BINS
) -> list[dict[str, float]]:
    """The reliability diagram: per confidence bin, its mean confidence, accuracy and size."""
    confidence = proba.max(axis=1)
    correct = proba.argmax(axis=1) == y_true
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    rows = []
    for b in range(bins):
        members = which == b
        if members.any():
            rows.append(
                {
                    "low": float(edges[b]),
                    "high": float(edges[b + 1]),
                    "confidence": float(confidence[members].mean()),
                    "accuracy": float(correct[members].mean()),
                    "count": int(members.sum()),
                }
            )
    return rows


def bootstrap_intervals(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    n_classes: int,
    *,
    samples: int = BOOTSTRAP_SAMPLES,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, list[float]]:
    """Percentile bootstrap intervals of accuracy and macro-F1 over the evaluated images
    (``scipy.stats.bootstrap``, paired: each resample draws images with their predictions).

    Example:
        >>> y = np.array([0, 1] * 50)
        >>> lo, hi = bootstrap_intervals(y, y, 2)["accuracy"]
        >>> lo, hi
        (1.0, 1.0)
    """
    from scipy import stats

    def accuracy(truth: np.ndarray, pred: np.ndarray, axis: int = -1) -> np.ndarray:
        return np.asarray((truth == pred).mean(axis=axis))

    def macro_f1(truth: np.ndarray, pred: np.ndarray, axis: int = -1) -> np.ndarray:
        return _macro_f1(np.moveaxis(truth, axis, -1), np.moveaxis(pred, axis, -1), n_classes)

    intervals = {}
    for name, statistic in (("accuracy", accuracy), ("macro_f1", macro_f1)):
        if len(y_true) < 2:  # every resample of one image is that image
            value = float(statistic(y_true[None], y_pred[None])[0])
            intervals[name] = [value, value]
            continue
        with np.errstate(invalid="ignore"):
            interval = stats.bootstrap(
                (y_true, y_pred),
                statistic,
                paired=True,
                vectorized=True,
                n_resamples=samples,
                confidence_level=level,
                method="percentile",
                random_state=np.random.default_rng(seed),
            ).confidence_interval
        intervals[name] = [float(interval.low), float(interval.high)]
    return intervals


def _macro_f1(truth: np.ndarray, pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Macro-F1 along the last axis, over the classes present in each row's truth."""
    f1s, present = [], []
    for c in range(n_classes):
        hits = ((truth == c) & (pred == c)).sum(-1)
        actual, predicted = (truth == c).sum(-1), (pred == c).sum(-1)
        denominator = actual + predicted
        f1s.append(np.where(denominator > 0, 2 * hits / np.maximum(denominator, 1), 0.0))
        present.append(actual > 0)
    f1, seen = np.stack(f1s, -1), np.stack(present, -1)
    return np.asarray(np.where(seen, f1, 0).sum(-1) / np.maximum(seen.sum(-1), 1))


def curves(
    true_labels: Sequence[str], probabilities: np.ndarray, classes: Sequence[str]
) -> dict[str, Any]:
    """ROC and precision-recall curve points, one-vs-rest per class (for plots)."""
    from sklearn.metrics import precision_recall_curve, roc_curve

    index = {name: i for i, name in enumerate(classes)}
    y_true = np.array([index[label] for label in true_labels])
    out: dict[str, Any] = {"roc": {}, "pr": {}}
    targets = [1] if len(classes) == 2 else range(len(classes))
    for c in targets:
        positives = y_true == c
        if positives.all() or not positives.any():
            continue
        fpr, tpr, _ = roc_curve(positives, probabilities[:, c])
        precision, recall, _ = precision_recall_curve(positives, probabilities[:, c])
        out["roc"][classes[c]] = {"fpr": fpr.tolist(), "tpr": tpr.tolist()}
        out["pr"][classes[c]] = {"precision": precision.tolist(), "recall": recall.tolist()}
    return out
