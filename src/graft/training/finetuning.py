"""The fine-tuning policy as a callback: which stages train in each phase, and which BatchNorm
layers keep their statistics (Lightning's ``BaseFinetuning``, fastai's ``fine_tune``).

At the start of each phase the top ``phase.top`` backbone stages become trainable and the rest
frozen (every stage has its optimizer group from the start, at rate 0 until its phase names
it, so unfreezing adds no group). At the start of each epoch, after ``model.train()``, the
BatchNorm layers the ``bn`` policy freezes return to inference mode: with ``eval``, every one
(they keep the pretrained statistics); with ``unfrozen``, those whose parameters are frozen;
with ``train`` (and from scratch), none.

Example:
    >>> from torch import nn
    >>> from graft.training.stages import Stage
    >>> net = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2))
    >>> stages = [Stage("0", ("0.weight", "0.bias")), Stage("1", ("1.weight", "1.bias"))]
    >>> policy = FineTuning(net, stages, bn="eval", from_scratch=False)
    >>> state = {"phase_top": 1}
    >>> policy.on_phase_begin(state)
    >>> state["trainable_stages"], [p.requires_grad for p in net.parameters()]
    (['1'], [False, False, True, True])
"""

from __future__ import annotations

from typing import Any

from torch import nn

from graft.training.callbacks import Callback
from graft.training.stages import Stage, freeze_norm_statistics, set_trainable


class FineTuning(Callback):
    """Freezes and unfreezes backbone stages by phase, and BatchNorm statistics by epoch.

    Args:
        net: The backbone network.
        stages: Its stages, bottom first.
        bn: ``eval``, ``unfrozen`` or ``train`` (see the module docstring).
        from_scratch: Training from random weights: every statistic updates.
    """

    def __init__(self, net: nn.Module, stages: list[Stage], *, bn: str, from_scratch: bool) -> None:
        self.net = net
        self.stages = stages
        self.bn = bn
        self.from_scratch = from_scratch

    def on_phase_begin(self, state: dict[str, Any]) -> None:
        state["trainable_stages"] = set_trainable(self.net, self.stages, state["phase_top"])

    def on_epoch_begin(self, state: dict[str, Any]) -> None:
        if not self.from_scratch and self.bn != "train":
            freeze_norm_statistics(state["model"], everywhere=self.bn == "eval")
