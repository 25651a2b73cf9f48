"""The trainer's own callbacks: early stopping and the weight average, each with the state a
resumed run needs (:meth:`graft.training.callbacks.Callback.state_dict`).

Example:
    >>> stopping = EarlyStopping("val_accuracy", patience=2)
    >>> for improved in (True, False):
    ...     stopping.on_epoch_end({"improved": improved, "phase_index": 0, "record": {}})
    >>> stopping.state_dict()
    {'bad_epochs': 1, 'phase_index': 0}
"""

from __future__ import annotations

from typing import Any

from graft.training.callbacks import Callback, StopTraining
from graft.training.ema import WeightAverage


class EarlyStopping(Callback):
    """Ends a phase after ``patience`` epochs in a row that did not become the best so far.

    The count starts again with each phase. Put it after the callbacks that report an epoch:
    it raises :class:`StopTraining` in ``on_epoch_end``.

    Args:
        monitor: The metric the trainer selects on (for the message).
        patience: Epochs without a new best before the phase ends.
    """

    def __init__(self, monitor: str, patience: int) -> None:
        self.monitor = monitor
        self.patience = patience
        self.bad_epochs = 0
        self.phase_index: int | None = None

    def on_epoch_end(self, state: dict[str, Any]) -> None:
        if state["phase_index"] != self.phase_index:
            self.phase_index, self.bad_epochs = state["phase_index"], 0
        self.bad_epochs = 0 if state["improved"] else self.bad_epochs + 1
        if self.bad_epochs >= self.patience:
            state["record"]["early_stop"] = True
            raise StopTraining(f"{self.monitor} did not improve for {self.patience} epochs")

    def state_dict(self) -> dict[str, Any]:
        return {"bad_epochs": self.bad_epochs, "phase_index": self.phase_index}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.bad_epochs = int(state["bad_epochs"])
        self.phase_index = state.get("phase_index")


class WeightAveraging(Callback):
    """Keeps :class:`graft.training.ema.WeightAverage` of the model, updated after every step.

    Put it first, so the other callbacks see the average of the step just taken.

    Args:
        decay: The average's largest decay.
    """

    def __init__(self, decay: float) -> None:
        self.decay = decay
        self.average: WeightAverage | None = None
        self._saved: dict[str, Any] | None = None

    def on_train_begin(self, state: dict[str, Any]) -> None:
        self.average = WeightAverage(state["model"], self.decay)  # on the model's device
        if self._saved is not None:
            self.average.load_state_dict(self._saved)

    def on_batch_end(self, state: dict[str, Any]) -> None:
        assert self.average is not None
        self.average.update(state["model"])

    def state_dict(self) -> dict[str, Any]:
        return self.average.state_dict() if self.average is not None else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._saved = state or None
