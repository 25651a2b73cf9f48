"""The stages of a backbone: what fine-tuning unfreezes, top first, and where it can be cut.

Stages come from timm's own ``group_matcher`` (the grouping timm uses for layer-wise learning
rate decay): stem, then each block stage, bottom to top. ``--unfreeze N`` makes the top ``N``
stages trainable; each stage below the top gets a learning rate ``decay`` times the one above
(discriminative learning rates).

For the common families (EfficientNet/MobileNet/MnasNet, MobileNetV3, ResNet, SqueezeNet) graft
also knows the order in which the stages run, so the network can be cut at the freeze boundary:
:func:`split_network` returns the frozen lower part and the trainable upper part, and fine-tuning
without augmentation caches the lower part's activations once (each epoch then runs only the
upper part).

Example:
    >>> from graft.zoo import create_model
    >>> stages = backbone_stages(create_model("efficientnet_lite0.in1k", num_classes=0).net)
    >>> [stage.name for stage in stages][:3], len(stages)
    (['stem', 'stage1', 'stage2'], 8)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import torch
from torch import nn

from graft.errors import ConfigError
from graft.zoo.squeezenet import SqueezeNet

_NORM_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


@dataclass(frozen=True)
class Stage:
    """One group of backbone parameters, in bottom-to-top order."""

    name: str
    parameter_names: tuple[str, ...]


def backbone_stages(net: nn.Module) -> list[Stage]:
    """Return the backbone's stages, bottom (stem) to top, classifier excluded.

    Raises:
        ConfigError: The network does not describe its stages (no ``group_matcher``).
    """
    from timm.models import group_parameters

    if not hasattr(net, "group_matcher"):
        raise ConfigError(
            f"{type(net).__name__} does not describe its stages; fine-tune it with --unfreeze all"
        )
    classifier_names = _classifier_parameter_names(net)
    groups = group_parameters(net, cast(Any, net).group_matcher(coarse=True))
    stages: list[Stage] = []
    for index, names in enumerate(groups.values()):
        kept = tuple(name for name in names if name not in classifier_names)
        if kept:
            stages.append(Stage("stem" if index == 0 else f"stage{len(stages)}", kept))
    return stages


def _classifier_parameter_names(net: nn.Module) -> set[str]:
    getter = getattr(net, "get_classifier", None)
    classifier = getter() if callable(getter) else None
    if not isinstance(classifier, nn.Module):
        return set()
    ids = {id(p) for p in classifier.parameters()}
    return {name for name, p in net.named_parameters() if id(p) in ids}


def resolve_unfreeze(value: str | int, stages: list[Stage]) -> int:
    """Turn ``--unfreeze`` (a count or ``all``) into a number of top stages.

    Raises:
        ConfigError: Not a whole number between 1 and the number of stages, nor ``all``.
    """
    if str(value).lower() == "all":
        return len(stages)
    try:
        count = int(value)
    except ValueError:
        count = -1
    if not 1 <= count <= len(stages):
        names = ", ".join(stage.name for stage in stages)
        raise ConfigError(
            f"--unfreeze {value!r} must be 1..{len(stages)} (top stages to train) or 'all'; "
            f"this backbone's stages, bottom to top: {names}"
        )
    return count


def set_trainable(net: nn.Module, stages: list[Stage], top: int) -> list[str]:
    """Make exactly the top ``top`` stages trainable (``0``: none); return their names."""
    trainable = {name for stage in stages[len(stages) - top :] for name in stage.parameter_names}
    staged = {name for stage in stages for name in stage.parameter_names}
    for name, parameter in net.named_parameters():
        if name in staged:
            parameter.requires_grad_(name in trainable)
    return [stage.name for stage in stages[len(stages) - top :]]


def freeze_norm_statistics(net: nn.Module, *, everywhere: bool = False) -> int:
    """Put BatchNorm layers in eval mode: those whose parameters are all frozen, or every one.

    Call after ``model.train()``: those layers then normalise with, and keep, their running
    statistics (their scale and shift still train where unfrozen). Returns how many.
    """
    count = 0
    for module in net.modules():
        if isinstance(module, _NORM_TYPES):
            parameters = list(module.parameters())
            if everywhere or (parameters and not any(p.requires_grad for p in parameters)):
                module.eval()
                count += 1
    return count


def stage_parameter_groups(
    net: nn.Module, stages: list[Stage], *, lr: float, decay: float
) -> list[dict[str, Any]]:
    """Return optimizer groups: the top stage at ``lr``, each stage below ``decay`` times lower.

    Every stage gets a group (frozen ones too), so unfreezing later needs no new optimizer.
    """
    by_name = dict(net.named_parameters())
    groups = []
    for depth, stage in enumerate(reversed(stages)):
        groups.append(
            {
                "params": [by_name[name] for name in stage.parameter_names],
                "lr": lr * decay**depth,
                "name": stage.name,
            }
        )
    return groups


def without_decay_on_1d(groups: list[dict[str, Any]], weight_decay: float) -> list[dict[str, Any]]:
    """Split each optimizer group in two: its matrices and kernels with ``weight_decay``, its
    1-D parameters (biases, normalisation scales and shifts) with none, as timm's
    ``param_groups_weight_decay`` does. Both halves keep the group's name and rate, so a
    schedule that sets rates by name sets both.

    Example:
        >>> layer = nn.Linear(4, 2)
        >>> [(g["name"], len(g["params"]), g["weight_decay"])
        ...  for g in without_decay_on_1d([{"params": list(layer.parameters()), "name": "head"}],
        ...                               0.01)]
        [('head', 1, 0.01), ('head', 1, 0.0)]
    """
    split = []
    for group in groups:
        params = group["params"]
        split.append(
            {**group, "params": [p for p in params if p.ndim > 1], "weight_decay": weight_decay}
        )
        split.append({**group, "params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0})
    return split


# --- Cutting a network at a stage boundary -------------------------------------------------

Step = tuple[int, Callable[[torch.Tensor], torch.Tensor]]


def _sequence(net: nn.Module) -> list[Step] | None:
    """The forward_features of known families as (stage index, callable) steps, in order."""
    from timm.models.efficientnet import EfficientNet
    from timm.models.mobilenetv3 import MobileNetV3
    from timm.models.resnet import ResNet

    if isinstance(net, (EfficientNet, MobileNetV3)):
        steps: list[Step] = [(0, net.conv_stem), (0, net.bn1)]
        steps += [(i + 1, block) for i, block in enumerate(net.blocks)]
        if isinstance(net, EfficientNet):
            last = len(net.blocks)
            steps += [(last, net.conv_head), (last, net.bn2)]
        return steps
    if isinstance(net, ResNet):
        steps = [(0, net.conv1), (0, net.bn1), (0, net.act1), (0, net.maxpool)]
        return steps + [(i, getattr(net, f"layer{i}")) for i in range(1, 5)]
    if isinstance(net, SqueezeNet):
        return [(SqueezeNet.stage_of(i), module) for i, module in enumerate(net.features)]
    return None


class LowerPart(nn.Module):
    """The frozen bottom of a network: normalised pixels to the activation at the boundary."""

    def __init__(self, steps: list[Step]) -> None:
        super().__init__()
        self.steps = nn.ModuleList([cast(nn.Module, step) for _, step in steps])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for step in self.steps:
            x = step(x)
        return x


class UpperPart(nn.Module):
    """The trainable top of a network: boundary activation to pooled features."""

    def __init__(self, net: nn.Module, steps: list[Step]) -> None:
        super().__init__()
        self.steps = nn.ModuleList([cast(nn.Module, step) for _, step in steps])
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for step in self.steps:
            x = step(x)
        out: torch.Tensor = cast(Any, self.net).forward_head(x, pre_logits=True)
        return out


def split_network(
    net: nn.Module, stages: list[Stage], top: int
) -> tuple[LowerPart, UpperPart] | None:
    """Cut ``net`` below its top ``top`` stages, or return ``None`` for unknown families.

    ``upper(lower(normalised))`` equals ``net.forward_head(net.forward_features(x), True)``.
    """
    steps = _sequence(net)
    if steps is None or top >= len(stages):
        return None
    boundary = len(stages) - top  # stages with index < boundary are frozen
    lower = [step for step in steps if step[0] < boundary]
    upper = [step for step in steps if step[0] >= boundary]
    if not lower:
        return None
    return LowerPart(lower), UpperPart(net, upper)
