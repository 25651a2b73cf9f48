"""What ``graft compare`` produces: one :class:`Row` per compared run, and the
:class:`Comparison` that ``compare.json`` and ``compare.html`` are written from.

Example:
    >>> COMPARE_JSON, COMPARE_HTML
    ('compare.json', 'compare.html')
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

COMPARE_JSON = "compare.json"
COMPARE_HTML = "compare.html"


@dataclass
class Row:
    """One compared run: its identity, metrics, costs and predictions on the evaluated images."""

    backbone: str
    strategy: str
    run_dir: str | None
    metrics: dict[str, Any]
    roc_auc_interval: list[float] | None
    train_seconds: float | None
    images_per_second: float | None
    trainable_params: int | None
    total_params: int | None
    correct: np.ndarray = field(repr=False)
    probabilities: np.ndarray = field(repr=False)
    history: list[dict[str, Any]] = field(default_factory=list, repr=False)

    @property
    def name(self) -> str:
        """``backbone / strategy``."""
        return f"{self.backbone} / {self.strategy}"

    def to_json(self) -> dict[str, Any]:
        """The row of ``compare.json``."""
        m = self.metrics
        return {
            "backbone": self.backbone,
            "strategy": self.strategy,
            "run_dir": self.run_dir,
            "n": m["n"],
            "accuracy": m["accuracy"],
            "accuracy_interval": m.get("intervals", {}).get("accuracy"),
            "macro_f1": m["macro_f1"],
            "macro_f1_interval": m.get("intervals", {}).get("macro_f1"),
            "roc_auc": m.get("roc_auc"),
            "roc_auc_interval": self.roc_auc_interval,
            "train_seconds": self.train_seconds,
            "images_per_second": self.images_per_second,
            "trainable_params": self.trainable_params,
            "total_params": self.total_params,
        }


@dataclass
class Comparison:
    """The outcome of :func:`compare`."""

    out: Path
    split: str
    classes: list[str]
    rows: list[Row]
    mcnemar: list[dict[str, Any]]
    notes: list[str]
    truth: list[str]

    @property
    def best(self) -> Row:
        """The most accurate run."""
        return max(self.rows, key=lambda row: row.metrics["accuracy"])

    def to_json(self) -> dict[str, Any]:
        """``compare.json``."""
        return {
            "split": self.split,
            "classes": self.classes,
            "n": len(self.truth),
            "best": self.best.name,
            "rows": [row.to_json() for row in self.rows],
            "mcnemar": self.mcnemar,
            "notes": self.notes,
        }
