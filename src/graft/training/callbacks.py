"""Hooks into the training loop, and the exception that ends a phase early.

Seven hooks, like skorch's ``on_*`` callbacks, and a state to checkpoint (Lightning's
``state_dict``/``load_state_dict``): the checkpointing callback
(:class:`graft.training.checkpoints.Checkpointing`, last of all) saves the state of the
trainer's own callbacks (weight averaging, early stopping) in ``checkpoint_last.pt``, and the
trainer gives it back on resume, before ``on_train_begin``, so a resumed run continues with the
same counters and averages. Stopping is an exception (fastai's ``CancelFitException``), never a
flag threaded through the loop: raised in ``on_epoch_end``, it lets the later callbacks see the
epoch (with ``state["stopping"]`` set) and ends the phase after them. This module imports
nothing heavy, so progress displays can subclass :class:`Callback` without loading PyTorch.

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

    ``state`` holds ``epoch``, ``phase``, ``phase_index``, ``path``, ``total_epochs``,
    ``steps``, ``model``, ``optimizer``, ``phase_epoch`` (this epoch's number within its phase,
    from 1) and ``phase_epochs`` (the phase's length); ``on_batch_end`` adds ``batch`` (loss,
    images seen, images/s) and ``on_epoch_end`` adds ``record`` (the epoch's history entry),
    ``improved`` (whether the epoch became the best so far), ``shorten_phase`` (call it with a
    smaller length to end the phase sooner, the rest of its learning-rate schedule compressed
    into the epochs left), and ``stopping`` once a callback
    has raised :class:`StopTraining`. ``on_train_begin`` and
    ``on_train_end`` get ``run_dir``, ``phases``, ``epoch``, ``history`` and ``model``.
    """

    def state_dict(self) -> dict[str, Any]:
        """What a resumed run needs to continue as this callback would have (default: nothing)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Take back :meth:`state_dict`'s result (on resume, before ``on_train_begin``)."""

    def on_train_begin(self, state: dict[str, Any]) -> None:
        """Before the first epoch (also after a resume)."""

    def on_phase_begin(self, state: dict[str, Any]) -> None:
        """Before a phase's first epoch (its remaining epochs, on resume), before its inputs
        are built; ``state`` holds ``phase``, ``phase_index``, ``phase_top``, ``model`` and
        ``epoch`` (the first to run). A callback that freezes or unfreezes stages puts their
        names in ``state["trainable_stages"]``; one that raises :class:`StopTraining` ends the
        phase before its inputs are built."""

    def on_epoch_begin(self, state: dict[str, Any]) -> None:
        """Before each epoch (the model is in training mode)."""

    def on_batch_end(self, state: dict[str, Any]) -> None:
        """After each optimisation step."""

    def on_epoch_end(self, state: dict[str, Any]) -> None:
        """After validation."""

    def on_phase_end(self, state: dict[str, Any]) -> None:
        """After a phase's last epoch; ``state`` is ``on_phase_begin``'s, with ``stopped``
        (whether a :class:`StopTraining` ended it early)."""

    def on_train_end(self, state: dict[str, Any]) -> None:
        """After the last epoch."""
