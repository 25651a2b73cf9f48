"""Classification metrics from labels and probabilities (scikit-learn does the arithmetic).

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


def classification_metrics(
    true_labels: Sequence[str], probabilities: np.ndarray, classes: Sequence[str]
) -> dict[str, Any]:
    """Return accuracy, macro-F1, weighted-F1, per-class precision/recall/F1, confusion matrix.

    Args:
        true_labels: The true class name of each image.
        probabilities: ``N x len(classes)`` predicted probabilities.
        classes: Class names in the column order of ``probabilities``.

    Returns:
        A JSON-ready dict: ``accuracy``, ``macro_f1``, ``weighted_f1``, ``n``, ``per_class``
        (``precision``, ``recall``, ``f1``, ``support``), ``confusion_matrix`` (rows: true
        class, columns: predicted, in ``classes`` order) and ``classes``.
    """
    from sklearn.metrics import (
        accuracy_score,
        confusion_matrix,
        f1_score,
        precision_recall_fscore_support,
    )

    index = {name: i for i, name in enumerate(classes)}
    y_true = np.array([index[label] for label in true_labels], dtype=np.int64)
    y_pred = (
        np.asarray(probabilities).argmax(axis=1) if len(y_true) else np.zeros(0, dtype=np.int64)
    )
    labels = np.arange(len(classes))
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, zero_division=0
    )
    present = support > 0
    return {
        "n": len(y_true),
        "accuracy": float(accuracy_score(y_true, y_pred)) if len(y_true) else 0.0,
        "macro_f1": float(np.mean(f1[present])) if present.any() else 0.0,
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
