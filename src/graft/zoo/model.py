"""One model object for every use: classifier, feature extractor, and network to fine-tune.

:class:`GraftModel` wraps a timm (or adapted torchvision) network behind its record's
preprocessing. It takes RGB pixel values in ``[0, 255]`` (``uint8`` or float, ``N x 3 x H x W``)
and normalises them itself, as its first layer, so a caller can neither forget the
normalisation nor apply it twice, and an exported model takes raw pixels.

Example:
    >>> import torch
    >>> model = create_model("efficientnet_lite0.in1k")
    >>> pixels = torch.zeros(1, 3, 224, 224, dtype=torch.uint8)
    >>> model(pixels).shape, model.pooled_features(pixels).shape
    (torch.Size([1, 1000]), torch.Size([1, 1280]))
"""

from __future__ import annotations

from typing import Protocol, cast

import torch
from torch import nn

from graft.errors import WeightsError
from graft.zoo.records import BackboneRecord, Preprocessing
from graft.zoo.registry import get_backbone
from graft.zoo.sources import load_weights
from graft.zoo.squeezenet import SqueezeNet


class BackboneNet(Protocol):
    """The timm model contract every network in graft follows (timm models, adapted others)."""

    num_classes: int

    def __call__(self, x: torch.Tensor) -> torch.Tensor: ...
    def forward_features(self, x: torch.Tensor) -> torch.Tensor: ...
    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor: ...
    def reset_classifier(self, num_classes: int) -> None: ...


class Normalize(nn.Module):
    """Turn RGB pixels in ``[0, 255]`` into the tensor a set of weights expects.

    Folds channel reordering, value range, mean and std into one multiply-add per channel.

    Example:
        >>> from graft.zoo.records import Preprocessing
        >>> norm = Normalize(Preprocessing(224, "bicubic", 0.875, (0.5,) * 3, (0.5,) * 3))
        >>> black_and_white = torch.tensor([0, 255], dtype=torch.uint8).view(2, 1, 1, 1)
        >>> norm(black_and_white.expand(2, 3, 1, 1)).flatten().round(decimals=4).tolist()
        [-1.0, -1.0, -1.0, 1.0, 1.0, 1.0]
    """

    scale: torch.Tensor
    shift: torch.Tensor

    def __init__(self, preprocessing: Preprocessing) -> None:
        super().__init__()
        mean = torch.tensor(preprocessing.mean, dtype=torch.float32)
        std = torch.tensor(preprocessing.std, dtype=torch.float32)
        self.bgr = preprocessing.channel_order == "BGR"
        self.register_buffer("scale", (preprocessing.pixel_range / 255.0 / std).view(1, 3, 1, 1))
        self.register_buffer("shift", (-mean / std).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.is_floating_point(x):
            x = x.float()
        if self.bgr:
            x = x.flip(1)
        return torch.addcmul(self.shift, x, self.scale)


class GraftModel(nn.Module):
    """A backbone, its head, and its preprocessing, as one module.

    Attributes:
        record: The backbone record the weights came from (or that a new head was put on).
        normalize: The preprocessing arithmetic, applied first.
        net: The timm-contract network (``forward_features``, ``forward_head``,
            ``reset_classifier``).
    """

    def __init__(self, net: nn.Module, record: BackboneRecord) -> None:
        super().__init__()
        self.record = record
        self.normalize = Normalize(record.preprocessing)
        self.net = net

    @property
    def backbone(self) -> BackboneNet:
        """The wrapped network, typed by its contract."""
        return cast(BackboneNet, self.net)

    @property
    def num_features(self) -> int:
        """Width of the pooled features."""
        return self.record.feature_dim

    @property
    def num_classes(self) -> int:
        """Outputs of the current head (``0``: no head, :meth:`forward` returns features)."""
        return int(getattr(self.net, "num_classes", 0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return class scores for RGB pixels in ``[0, 255]``."""
        return self.backbone(self.normalize(x))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Return the unpooled feature map of the last stage (timm's ``forward_features``)."""
        return self.backbone.forward_features(self.normalize(x))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Apply the head to a feature map; ``pre_logits=True`` stops at the pooled features."""
        return self.backbone.forward_head(x, pre_logits=pre_logits)

    def pooled_features(self, x: torch.Tensor) -> torch.Tensor:
        """Return the pooled features (``N x num_features``) that a new head would see."""
        return self.forward_head(self.forward_features(x), pre_logits=True)

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the head with a fresh one of ``num_classes`` outputs (``0``: no head)."""
        self.backbone.reset_classifier(num_classes)


def build_network(record: BackboneRecord, num_classes: int | None = None) -> nn.Module:
    """Build the bare network of a record, randomly initialised, with ``num_classes`` outputs.

    Example:
        >>> from graft.zoo import get_backbone
        >>> build_network(get_backbone("resnet18"), num_classes=3).num_classes
        3
    """
    classes = record.num_classes if num_classes is None else num_classes
    if record.library == "torchvision":
        if record.architecture != "squeezenet1_1":  # pragma: no cover - only one such record
            raise WeightsError(f"{record.name}: unsupported torchvision architecture")
        return SqueezeNet(num_classes=classes)
    import timm

    net: nn.Module = timm.create_model(record.architecture, pretrained=False, num_classes=classes)
    return net


def create_model(
    backbone: str | BackboneRecord = "efficientnet_lite0.in1k",
    *,
    pretrained: bool = True,
    num_classes: int | None = None,
    allow_download: bool = False,
) -> GraftModel:
    """Build a backbone with its weights and preprocessing, ready for inference (eval mode).

    Args:
        backbone: A backbone name (see ``graft backbones``) or record.
        pretrained: Load the record's weights. ``False`` gives the same architecture with
            random weights (the from-scratch baseline).
        num_classes: Replace the head with a new one of this many outputs (``0``: no head).
            ``None`` keeps the record's head.
        allow_download: Let a hub-only backbone be downloaded (and stored for offline use).

    Raises:
        WeightsError: ``pretrained`` was asked for a backbone that has no pretrained weights
            available offline, or the weights are missing, corrupt or do not fit.

    Example:
        >>> model = create_model("mobilenetv2_100.in1k_features", num_classes=2)
        >>> model.num_classes, model.num_features
        (2, 1280)
    """

    record = get_backbone(backbone) if isinstance(backbone, str) else backbone
    net = build_network(record)
    if pretrained:
        record = load_weights(record, net, allow_download=allow_download)
    model = GraftModel(net, record)
    if num_classes is not None and num_classes != record.num_classes:
        model.reset_classifier(num_classes)
    return model.eval()
