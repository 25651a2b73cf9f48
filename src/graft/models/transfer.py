"""The network the neural strategies train: a backbone with a new classification head.

:class:`TransferModel` is a :class:`graft.zoo.model.GraftModel` (backbone and its built-in
preprocessing) whose original classifier is removed, topped by a :class:`NeuralHead` for the
user's classes: global pooling (the backbone's own), dropout, an optional hidden dense layer,
and the output layer. It takes RGB pixels in ``[0, 255]`` like every graft model.

Example:
    >>> import torch
    >>> model = build_transfer_model("efficientnet_lite0.in1k", num_classes=3, hidden=64)
    >>> model(torch.zeros(2, 3, 224, 224, dtype=torch.uint8)).shape
    torch.Size([2, 3])
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, cast

import torch
from torch import nn

from graft.zoo.model import GraftModel, create_model
from graft.zoo.records import BackboneRecord


@dataclass(frozen=True)
class HeadConfig:
    """The new head: dropout, an optional hidden layer, the output layer."""

    num_classes: int
    hidden: int | None = None
    dropout: float = 0.2

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return asdict(self)


class NeuralHead(nn.Module):
    """Dropout, optional hidden dense layer (ReLU), and the output layer, on pooled features."""

    def __init__(self, in_features: int, config: HeadConfig) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Dropout(config.dropout)]
        width = in_features
        if config.hidden:
            layers += [
                nn.Linear(width, config.hidden),
                nn.ReLU(inplace=True),
                nn.Dropout(config.dropout),
            ]
            width = config.hidden
        layers.append(nn.Linear(width, config.num_classes))
        self.layers = nn.Sequential(*layers)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.layers(features)
        return out


class TransferModel(nn.Module):
    """A backbone (its classifier removed) under a new head; uint8 pixels to class scores.

    Attributes:
        backbone: The :class:`GraftModel` (preprocessing built in), with no classifier.
        head: The new head.
        head_config: How the head was built.
    """

    def __init__(self, backbone: GraftModel, head_config: HeadConfig) -> None:
        super().__init__()
        self.backbone = backbone
        self.head_config = head_config
        self.head = NeuralHead(backbone.num_features, head_config)

    @property
    def record(self) -> BackboneRecord:
        """The backbone's record."""
        return self.backbone.record

    def features(self, pixels: torch.Tensor) -> torch.Tensor:
        """Pooled backbone features of uint8 pixels."""
        return self.backbone.pooled_features(pixels)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """Class scores (logits) of uint8 pixels."""
        out: torch.Tensor = self.head(self.features(pixels))
        return out


def build_transfer_model(
    backbone: str | BackboneRecord,
    *,
    num_classes: int,
    hidden: int | None = None,
    dropout: float = 0.2,
    pretrained: bool = True,
) -> TransferModel:
    """Build a backbone (pretrained or random) with a new head of ``num_classes`` outputs.

    The backbone's own dropout before its classifier is switched off: the new head has its own.
    """

    model = create_model(backbone, pretrained=pretrained, num_classes=0)
    if hasattr(model.net, "drop_rate"):
        cast(Any, model.net).drop_rate = 0.0
    return TransferModel(model, HeadConfig(num_classes=num_classes, hidden=hidden, dropout=dropout))
