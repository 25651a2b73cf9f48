"""A neural run's checkpoints: ``checkpoint_last.pt`` after every epoch (weights, optimizer,
loop state and the state of the trainer's own callbacks), ``checkpoint_best.pt`` when the
monitored metric improves; both written atomically, so a killed run resumes where the last one
left it. :class:`Checkpointing` writes them, as the last callback of the loop; the trainer
calls :func:`restore_checkpoint` before its first epoch (as Lightning's trainer restores while
its ``ModelCheckpoint`` callback saves).

Example:
    >>> callable(save_checkpoint), callable(restore_checkpoint)
    (True, True)
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, Any

import torch

from graft.errors import DataError
from graft.faults import fault_point
from graft.fileio import atomic_path
from graft.runs import CHECKPOINT_BEST, CHECKPOINT_LAST
from graft.training.callbacks import Callback

if TYPE_CHECKING:
    from graft.training.trainer import Trainer


class Checkpointing(Callback):
    """Writes the checkpoints, after every other callback has seen the epoch.

    At an epoch's end: the best checkpoint first, when the epoch became the best (a kill
    between the two writes leaves the previous last checkpoint, and the resumed run repeats the
    epoch, never holding a "best" it has not saved), then the last, with the callbacks' state
    after this epoch. When a callback stops the phase, the last checkpoint is written at the
    phase's end instead, once the trainer has marked the phase as stopped.

    Args:
        trainer: The trainer whose model, optimizer and loop state it saves.
    """

    def __init__(self, trainer: Trainer) -> None:
        self.trainer = trainer

    def on_epoch_end(self, state: dict[str, Any]) -> None:
        trainer = self.trainer
        if state["improved"]:
            average = trainer.average if trainer.best.get("weights") == "ema" else None
            save_checkpoint(trainer, CHECKPOINT_BEST, None if average is None else average.state)
            fault_point("neural.between-checkpoints")
        if not state.get("stopping"):
            save_checkpoint(trainer, CHECKPOINT_LAST)

    def on_phase_end(self, state: dict[str, Any]) -> None:
        if state["stopped"]:
            save_checkpoint(self.trainer, CHECKPOINT_LAST)


def save_checkpoint(
    trainer: Trainer, path_name: str, model_state: dict[str, torch.Tensor] | None = None
) -> None:
    """Write a checkpoint (the model's weights, or ``model_state``) with the loop's state;
    the last checkpoint also holds the state of the trainer's own callbacks (the weight
    average, early stopping)."""
    if not trainer.context.is_main:
        return
    state = {
        "epoch": trainer.epoch,
        "history": trainer.history,
        "best": trainer.best,
        "stopped_phases": trainer.stopped_phases,
        "phase_epochs": [phase.epochs for phase in trainer.phases],
        "probe": trainer.probe,
    }
    checkpoint = {
        "model": trainer.model.state_dict() if model_state is None else model_state,
        "optimizer": trainer.optimizer.state_dict(),
        "state": state,
        "callbacks": {
            type(callback).__name__: callback.state_dict() for callback in trainer.own_callbacks
        }
        if path_name == CHECKPOINT_LAST
        else {},
    }
    with atomic_path(trainer.run_dir / path_name) as tmp:
        torch.save(checkpoint, tmp)


def restore_checkpoint(trainer: Trainer) -> None:
    """Continue from the last checkpoint, when there is one: weights, optimizer, loop state."""
    path = trainer.run_dir / CHECKPOINT_LAST
    if not path.is_file():
        return
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise DataError(
            f"{path}: unreadable checkpoint ({err}); delete it to restart the run"
        ) from err
    trainer.model.load_state_dict(checkpoint["model"])
    saved_groups = len(checkpoint["optimizer"]["param_groups"])
    if saved_groups != len(trainer.optimizer.param_groups):  # started before the 1-D split
        trainer.optimizer = torch.optim.AdamW(
            trainer.optimizer_groups(decay_1d=True),
            lr=trainer.options.lr,
            weight_decay=trainer.options.weight_decay,
        )
    trainer.optimizer.load_state_dict(checkpoint["optimizer"])
    state = checkpoint["state"]
    trainer.epoch = int(state["epoch"])
    trainer.history = list(state["history"])
    trainer.best = dict(state["best"])
    trainer.stopped_phases = list(state["stopped_phases"])
    for phase, epochs in zip(trainer.phases, state.get("phase_epochs", ()), strict=False):
        phase.epochs = min(phase.epochs, int(epochs))  # a phase a callback shortened
    trainer.probe = state.get("probe")
    saved = checkpoint.get("callbacks")
    if saved is None:  # written before the trainer's callbacks kept their own state
        ends = list(itertools.accumulate(phase.epochs for phase in trainer.phases))
        last = next((i for i, end in enumerate(ends) if trainer.epoch - 1 < end), None)
        saved = {
            "WeightAveraging": checkpoint.get("ema") or {},
            "EarlyStopping": {"bad_epochs": state.get("bad_epochs", 0), "phase_index": last},
        }
    for callback in trainer.own_callbacks:
        if type(callback).__name__ in saved:
            callback.load_state_dict(saved[type(callback).__name__])
