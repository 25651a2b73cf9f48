"""What evaluating a run gives: its predictions on one labelled set, and their metrics.

Example:
    >>> GALLERY_SIZE
    12
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from graft.evaluation.interpret import confused_pairs, top_losses
from graft.runs import RunConfig

GALLERY_SIZE = 12


@dataclass
class Evaluation:
    """Predictions of a run on one set of labelled images, and their metrics."""

    run_dir: Path
    config: dict[str, Any]
    split: str
    data: str | None
    paths: list[str]
    truth: list[str]
    probabilities: np.ndarray
    classes: list[str]
    metrics: dict[str, Any]
    skipped: int = 0

    @property
    def run(self) -> RunConfig:
        """The run's configuration, typed."""
        return RunConfig.from_dict(self.config)

    def to_json(self) -> dict[str, Any]:
        """The ``graft evaluate --json`` document."""
        losses = top_losses(self.truth, self.probabilities, self.classes, k=GALLERY_SIZE)
        return {
            "run": str(self.run_dir),
            "split": self.split,
            "data": self.data,
            "skipped": self.skipped,
            **self.metrics,
            "top_losses": [
                {
                    "path": self.paths[item.index],
                    "true": item.true,
                    "predicted": item.predicted,
                    "confidence": item.confidence,
                    "loss": item.loss,
                }
                for item in losses
            ],
            "confused_pairs": confused_pairs(self.metrics["confusion_matrix"], self.classes),
        }
