"""Evaluation: metrics on predictions, and evaluating runs.

Example:
    >>> from graft.evaluation import classification_metrics
    >>> callable(classification_metrics)
    True
"""

from graft.evaluation.evaluate import evaluate
from graft.metrics import classification_metrics

__all__ = ["classification_metrics", "evaluate"]
