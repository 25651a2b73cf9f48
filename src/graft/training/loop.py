"""The training loop: plain epochs, a learning-rate schedule, checkpoints, early stopping.

It reads top to bottom like torchvision's reference ``train_one_epoch``/``evaluate``. The
learning rate of every parameter group is a pure function of the global step (warmup then
cosine, or one-cycle, restarted at each phase), so a resumed run continues on the same curve.
Training stops early by raising :class:`StopTraining` (fastai's ``CancelFitException``), never
through flags threaded through the loop; callbacks (:mod:`graft.training.callbacks`) get five
hooks.

Example:
    >>> first = lr_factor(0, 100, schedule="cosine", warmup=0.1)
    >>> last = lr_factor(99, 100, schedule="cosine", warmup=0.1)
    >>> first, round(last, 4)
    (0.1, 0.0003)
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from graft.errors import ConfigError
from graft.metrics import classification_metrics
from graft.training.callbacks import Callback, StopTraining

__all__ = ["Callback", "StopTraining"]

SCHEDULES = ("cosine", "onecycle")
MONITORS = ("val_accuracy", "val_macro_f1", "val_loss")


def lr_factor(step: int, total: int, *, schedule: str, warmup: float) -> float:
    """The multiplier of the base learning rate at ``step`` of a phase of ``total`` steps.

    ``cosine``: linear warmup over ``warmup * total`` steps, then cosine decay to zero.
    ``onecycle``: from 1/25 up to 1 over 30 % of the phase, then cosine down to 1/10,000.
    """
    total = max(total, 1)
    if schedule == "onecycle":
        peak = max(1, round(0.3 * total))
        if step < peak:
            return 1 / 25 + (1 - 1 / 25) * (1 - math.cos(math.pi * step / peak)) / 2
        progress = (step - peak) / max(1, total - peak)
        return 1e-4 + (1 - 1e-4) * (1 + math.cos(math.pi * progress)) / 2
    warm = max(1, round(warmup * total)) if warmup > 0 else 0
    if step < warm:
        return (step + 1) / warm
    progress = (step - warm) / max(1, total - warm)
    return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


@dataclass
class Phase:
    """One stretch of training with one set of trainable parameters.

    Attributes:
        name: ``head``, ``unfrozen`` or ``scratch``.
        epochs: Epochs in this phase.
        top: Backbone stages trainable (0: head only).
        base_lrs: Base learning rate of each optimizer group (by group name).
        path: How batches are produced (see :mod:`graft.training.pipelines`).
    """

    name: str
    epochs: int
    top: int
    base_lrs: dict[str, float]
    path: str = "full"


@dataclass
class EpochData:
    """What one epoch of one phase trains and validates on."""

    train: Callable[[int], Iterator[tuple[torch.Tensor, torch.Tensor]]]
    val: Callable[[], Iterator[tuple[torch.Tensor, torch.Tensor]]] | None
    trainable: nn.Module
    steps_per_epoch: int


@dataclass
class LoopSettings:
    """Settings of the loop itself."""

    schedule: str = "cosine"
    warmup: float = 0.1
    monitor: str = "val_accuracy"
    patience: int | None = None
    precision: str = "fp32"
    label_smoothing: float = 0.0
    class_weights: torch.Tensor | None = None
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    def __post_init__(self) -> None:
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"schedule {self.schedule!r} is not one of: {', '.join(SCHEDULES)}")
        if self.monitor not in MONITORS:
            raise ConfigError(f"--monitor {self.monitor!r} is not one of: {', '.join(MONITORS)}")


def phase_schedule(
    optimizer: torch.optim.Optimizer,
    phase: Phase,
    *,
    total_steps: int,
    done: int,
    schedule: str,
    warmup: float,
) -> torch.optim.lr_scheduler.LambdaLR:
    """The learning-rate schedule of one phase, positioned at step ``done`` (``torch``'s
    ``LambdaLR``: each group's rate is its phase base rate, by group name, times
    :func:`lr_factor`; a group the phase does not name stays at 0).

    On return every group holds the rate of step ``done``; call ``step()`` before each later
    optimisation step. A resumed run rebuilds it at the step it reached.
    """
    for group in optimizer.param_groups:
        group["initial_lr"] = phase.base_lrs.get(group["name"], 0.0)
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda step: lr_factor(step, total_steps, schedule=schedule, warmup=warmup),
        last_epoch=done - 1,
    )


def to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Move a batch to ``device``; on a CPU, image batches (4-D) in channels-last memory, the
    layout the trainer keeps the model in there (:func:`memory_format`).

    Example:
        >>> batch = to_device(torch.zeros(2, 3, 4, 4), torch.device("cpu"))
        >>> batch.is_contiguous(memory_format=torch.channels_last)
        True
    """
    if tensor.dim() == 4:
        return tensor.to(device, memory_format=memory_format(device))
    return tensor.to(device)


def memory_format(device: torch.device) -> torch.memory_format:
    """The layout training keeps convolutions in: channels-last on a CPU, where oneDNN runs
    the forward, backward and AdamW step of lite0's top stages 1.5-1.7x faster so, and an
    unfrozen epoch 1.17x (bench/finetune_speed.py, bench/README.md); elsewhere PyTorch's
    default, as nothing was measured there.

    Example:
        >>> memory_format(torch.device("cpu")), memory_format(torch.device("cuda"))
        (torch.channels_last, torch.contiguous_format)
    """
    return torch.channels_last if device.type == "cpu" else torch.contiguous_format


def autocast(precision: str, device: torch.device) -> Any:
    """bf16 autocast for ``precision == 'bf16'``, else a no-op context."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return nullcontext()


def train_epoch(
    trainable: nn.Module,
    batches: Iterator[tuple[torch.Tensor, torch.Tensor]],
    optimizer: torch.optim.Optimizer,
    settings: LoopSettings,
    schedule: torch.optim.lr_scheduler.LRScheduler,
    on_batch: Callable[[dict[str, Any]], None],
) -> dict[str, float]:
    """One pass over the training batches; returns mean loss and accuracy.

    ``schedule`` holds the rates of the first step; it moves on after each step (and after
    ``on_batch``, which sees the rates the step used).

    Batches mixed by mixup/cutmix carry soft targets (``N x classes`` floats); accuracy then
    counts the dominant class of each mixed target.
    """
    total_loss, correct, seen, start = 0.0, 0, 0, time.perf_counter()
    for inputs, targets in batches:
        inputs, targets = to_device(inputs, settings.device), targets.to(settings.device)
        soft = targets.is_floating_point()  # mixed batches carry soft targets
        labels = targets.argmax(1) if soft else targets
        with autocast(settings.precision, settings.device):
            logits = trainable(inputs).float()
        if soft:
            loss = torch.sum(-targets * torch.log_softmax(logits, dim=1), dim=1).mean()
        else:
            loss = nn.functional.cross_entropy(
                logits,
                targets,
                weight=settings.class_weights,
                label_smoothing=settings.label_smoothing,
            )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total_loss += float(loss.detach()) * len(targets)
        correct += int((logits.argmax(1) == labels).sum())
        seen += len(targets)
        on_batch(
            {
                "loss": float(loss.detach()),
                "seen": seen,
                "images_per_s": seen / (time.perf_counter() - start),
            }
        )
        schedule.step()
    if seen == 0:
        raise ConfigError("an epoch had no training images (every image failed to decode?)")
    return {"loss": total_loss / seen, "accuracy": correct / seen, "images": seen}


@torch.no_grad()
def evaluate_batches(
    trainable: nn.Module,
    batches: Iterator[tuple[torch.Tensor, torch.Tensor]],
    settings: LoopSettings,
) -> tuple[np.ndarray, np.ndarray, float]:
    """Probabilities, targets and mean cross-entropy over validation batches (eval mode)."""
    trainable.eval()
    probabilities, targets, loss, seen = [], [], 0.0, 0
    for inputs, target in batches:
        inputs, target = to_device(inputs, settings.device), target.to(settings.device)
        with autocast(settings.precision, settings.device):
            logits = trainable(inputs).float()
        loss += float(nn.functional.cross_entropy(logits, target, reduction="sum"))
        probabilities.append(logits.softmax(1).cpu().numpy())
        targets.append(target.cpu().numpy())
        seen += len(target)
    return np.concatenate(probabilities), np.concatenate(targets), loss / max(seen, 1)


def monitored(record: dict[str, Any], monitor: str) -> float:
    """The monitored value of an epoch record, oriented so that larger is better."""
    value = float(record[monitor])
    return -value if monitor == "val_loss" else value


def validation_scores(
    module: nn.Module, batches: Any, settings: LoopSettings, classes: list[str]
) -> dict[str, float]:
    """``val_loss``, ``val_accuracy`` and ``val_macro_f1`` of ``module`` on the batches."""
    proba, targets, loss = evaluate_batches(module, batches, settings)
    metrics = classification_metrics([classes[t] for t in targets], proba, classes)
    return {
        "val_loss": loss,
        "val_accuracy": metrics["accuracy"],
        "val_macro_f1": metrics["macro_f1"],
    }
