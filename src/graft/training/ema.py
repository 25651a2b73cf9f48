"""An exponential moving average of the weights, kept beside the trained ones.

Like timm's ``ModelEmaV3``: after every optimiser step each floating-point parameter and buffer
``e`` of the average moves toward the model's ``w`` as ``e += (1 - d) * (w - e)``, with the
decay warmed up as ``d = min(decay, (1 + t) / (10 + t))`` so that a short fine-tuning run
(a few hundred steps on a laptop) averages over its recent steps instead of its start.
BatchNorm's running statistics are buffers and are averaged the same way, so the averaged
network evaluates with statistics that belong to its averaged weights. The trainer scores the
average on the validation split each epoch beside the raw weights and keeps the better.

Example:
    >>> import torch
    >>> model = torch.nn.Linear(2, 1)
    >>> average = WeightAverage(model, decay=0.5)
    >>> with torch.no_grad():
    ...     _ = model.weight.add_(1.0)
    >>> average.update(model)
    >>> average.steps
    1
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn


class WeightAverage:
    """The EMA of a model's state (parameters and buffers), on the CPU or the model's device.

    Args:
        model: The model whose weights to average (its current weights are the start).
        decay: The largest decay (reached after warm-up).
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.steps = 0
        self.state = {k: v.detach().clone() for k, v in model.state_dict().items()}

    def current_decay(self) -> float:
        """The decay of the next update (warmed up: small at first)."""
        return min(self.decay, (1 + self.steps) / (10 + self.steps))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the average toward ``model``'s weights (after an optimiser step)."""
        weight = 1.0 - self.current_decay()
        for name, value in model.state_dict().items():
            average = self.state[name]
            if average.is_floating_point():
                average.lerp_(value.detach().to(average.device), weight)
            else:
                average.copy_(value)
        self.steps += 1

    @contextmanager
    def swapped_in(self, model: nn.Module) -> Iterator[None]:
        """Within the block, ``model`` holds the averaged weights; its own come back after."""
        own = {k: v.detach().clone() for k, v in model.state_dict().items()}
        model.load_state_dict(self.state)
        try:
            yield
        finally:
            model.load_state_dict(own)

    def state_dict(self) -> dict[str, Any]:
        """For a checkpoint: the averaged weights and the step count."""
        return {"state": self.state, "steps": self.steps, "decay": self.decay}

    def load_state_dict(self, saved: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` (on resume), on the devices of the current average."""
        self.state = {k: v.to(self.state[k].device).clone() for k, v in saved["state"].items()}
        self.steps = int(saved["steps"])
        self.decay = float(saved["decay"])
