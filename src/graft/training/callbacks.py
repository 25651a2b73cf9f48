"""Hooks into the training loop, and the exception that ends a phase early.

Five hooks, like skorch's ``on_*`` callbacks; stopping is an exception (fastai's
``CancelFitException``), never a flag threaded through the loop. This module imports nothing
heavy, so progress displays can subclass :class:`Callback` without loading PyTorch.

Example:
    >>> class Count(Callback):
    ...     def __init__(self):
    ...         self.epochs = 0
    ...     def on_epoch_end(self, state):
    ...         self.epochs += 1
    >>> Count().epochs
    0
"""

from __future__ import annotations

from typing import Any


class StopTraining(Exception):  # noqa: N818 - named like fastai's CancelFitException
    """Raised by a callback (or the loop) to end the current phase early."""


class Callback:
    """Hooks into the loop; override the ones you need.

    ``state`` holds ``epoch``, ``phase``, ``path``, ``total_epochs``, ``steps``, ``model`` and
    ``optimizer``; ``on_batch_end`` adds ``batch`` (loss, images seen, images/s) and
    ``on_epoch_end`` adds ``record`` (the epoch's history entry).
    """

    def on_train_begin(self, state: dict[str, Any]) -> None:
        """Before the first epoch (also after a resume)."""

    def on_epoch_begin(self, state: dict[str, Any]) -> None:
        """Before each epoch."""

    def on_batch_end(self, state: dict[str, Any]) -> None:
        """After each optimisation step."""

    def on_epoch_end(self, state: dict[str, Any]) -> None:
        """After validation."""

    def on_train_end(self, state: dict[str, Any]) -> None:
        """After the last epoch."""
