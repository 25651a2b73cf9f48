"""Which activations become features: the final pooled vector, or an earlier stage's.

``final`` is what a new head would see (timm's ``pre_logits``). ``stage1`` ... ``stageK`` are the
outputs of the network's stages (timm's ``feature_info``), pooled over space: early stages keep
generic edges and textures, the seeds' advice for data far from ImageNet.

Example:
    >>> from graft.zoo import get_backbone
    >>> [layer.name for layer in list_layers(get_backbone("efficientnet_lite0.in1k"))]
    ['stage1', 'stage2', 'stage3', 'stage4', 'stage5', 'final']
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, cast

from graft.errors import ConfigError
from graft.zoo.records import BackboneRecord

if TYPE_CHECKING:
    import torch
    from torch import nn

    from graft.zoo.model import GraftModel

Pooling = Literal["avg", "max"]
POOLINGS: tuple[Pooling, ...] = ("avg", "max")

#: Stage widths and strides of torchvision's SqueezeNet 1.1, which timm does not describe.
_SQUEEZENET_STAGES = ((64, 2), (128, 4), (256, 8), (512, 16))


@dataclass(frozen=True)
class Layer:
    """One choice of feature layer: its name, channel count and stride."""

    name: str
    channels: int
    reduction: int


def list_layers(record: BackboneRecord) -> list[Layer]:
    """Return the selectable layers of a backbone, earliest first, ``final`` last."""
    if record.library == "torchvision":
        stages = list(_SQUEEZENET_STAGES)
    else:
        stages = [(info["num_chs"], info["reduction"]) for info in _timm_feature_info(record)]
    layers = [
        Layer(f"stage{i}", channels, reduction) for i, (channels, reduction) in enumerate(stages, 1)
    ]
    return [*layers, Layer("final", record.feature_dim, stages[-1][1] if stages else 32)]


def resolve_layer(record: BackboneRecord, name: str) -> Layer:
    """Return the layer called ``name`` or raise a :class:`ConfigError` listing the choices."""
    layers = list_layers(record)
    for layer in layers:
        if layer.name == name:
            return layer
    choices = ", ".join(
        f"{layer.name} ({layer.channels} ch, /{layer.reduction})" for layer in layers
    )
    raise ConfigError(f"layer {name!r} is not a layer of {record.name}; choose one of: {choices}")


def _timm_feature_info(record: BackboneRecord) -> list[dict[str, int]]:
    import timm
    import torch

    with torch.device("meta"):
        net = timm.create_model(record.architecture, pretrained=False, num_classes=0)
    stages = cast(Any, net).feature_info
    return [{"num_chs": int(s["num_chs"]), "reduction": int(s["reduction"])} for s in stages]


def feature_module(model: GraftModel, layer: str = "final", pool: Pooling = "avg") -> nn.Module:
    """Return a module mapping uint8 pixels ``N x 3 x H x W`` to features ``N x D``.

    Raises:
        ConfigError: Unknown layer or pooling, or max pooling of a network whose final
            features are not a spatial map (vision transformers).
    """
    from torch import nn

    if pool not in POOLINGS:
        raise ConfigError(f"pooling {pool!r} is not one of: {', '.join(POOLINGS)}")
    chosen = resolve_layer(model.record, layer)
    stage = None if chosen.name == "final" else int(chosen.name.removeprefix("stage")) - 1

    class _Features(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, pixels: torch.Tensor) -> torch.Tensor:
            if stage is None:
                if pool == "avg":
                    return self.model.pooled_features(pixels)
                maps = self.model.forward_features(pixels)
            else:
                maps = _intermediate(self.model, pixels, stage)
            if maps.ndim != 4:
                raise ConfigError(
                    f"{model.record.name}: its final features are tokens, not a map; use "
                    "--pool avg (the model's own pooling) or an earlier --layer"
                )
            return maps.amax(dim=(2, 3)) if pool == "max" else maps.mean(dim=(2, 3))

    return _Features().eval()


def _intermediate(model: GraftModel, pixels: torch.Tensor, stage: int) -> torch.Tensor:
    net = cast(Any, model.net)
    normalized = model.normalize(pixels)
    if model.record.library == "torchvision":
        from graft.zoo.squeezenet import SqueezeNet

        return cast(SqueezeNet, net).stage_output(normalized, stage)
    outputs = net.forward_intermediates(normalized, indices=[stage], intermediates_only=True)
    result: torch.Tensor = outputs[0]
    return result
