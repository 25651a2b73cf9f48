"""Data augmentation for training: presets, a config file for custom settings, and the transform.

Presets (``--augment``):

* ``none``: the evaluation transform (resize, centre crop).
* ``light``: random resized crop (scale 0.6-1) and horizontal flip.
* ``standard``: the seeds' Keras ``ImageDataGenerator`` settings: zoom 0.3, rotation 50 degrees,
  width/height shift 0.2, shear 0.2 (degrees, as Keras defines it), horizontal flip, and
  ``nearest`` fill (edge pixels are repeated rather than leaving black corners).
* ``dihedral``: horizontal and vertical flips and rotations by multiples of 90 degrees, the
  eight lossless symmetries of a square: for images with no up or down (solar cells,
  microscopy, satellite tiles), as Deitsch et al. (2019) trained on ELPV.
* ``strong``: random resized crop, flip, RandAugment (timm ``rand-m9-mstd0.5``), and mixup/cutmix
  on batches.

A JSON file with the fields of :class:`AugmentConfig` sets anything else
(``--augment my_aug.json``). Every transform ends in uint8 pixels: normalisation belongs to the
model, so training and evaluation can never disagree on it.

Example:
    >>> from PIL import Image
    >>> from graft.zoo import get_backbone
    >>> preprocessing = get_backbone("efficientnet_lite0.in1k").preprocessing
    >>> transform = train_transform(preprocessing, preset("standard"))
    >>> transform(Image.new("RGB", (300, 200))).shape
    torch.Size([3, 224, 224])
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from graft.data.transforms import eval_transform
from graft.errors import ConfigError
from graft.zoo.records import Preprocessing

PRESETS = ("none", "light", "standard", "dihedral", "strong")


@dataclass(frozen=True)
class AugmentConfig:
    """Augmentation settings (all off by default).

    Attributes:
        name: The preset's name, or ``custom``.
        resized_crop_scale: Random resized crop area range, e.g. ``(0.6, 1.0)``; ``None`` to
            resize and centre-crop instead.
        hflip: Probability of a horizontal flip.
        vflip: Probability of a vertical flip.
        rotation: Maximum rotation, degrees.
        rot90: Rotate by a random multiple of 90 degrees (lossless: for data with no up, such
            as solar cells, microscopy or satellite tiles).
        shift: Maximum translation, as a fraction of width/height.
        zoom: Zoom range: scale drawn from ``[1 - zoom, 1 + zoom]``.
        shear: Maximum shear, degrees.
        fill: ``nearest`` (repeat edge pixels) or ``constant`` (black) for uncovered areas.
        color_jitter: Brightness/contrast/saturation jitter strength (0 = off).
        randaugment: A timm auto-augment string such as ``rand-m9-mstd0.5``, or ``None``.
        mixup: Mixup alpha (0 = off); applied to batches.
        cutmix: CutMix alpha (0 = off); applied to batches.
    """

    name: str = "custom"
    resized_crop_scale: tuple[float, float] | None = None
    hflip: float = 0.0
    vflip: float = 0.0
    rotation: float = 0.0
    rot90: bool = False
    shift: float = 0.0
    zoom: float = 0.0
    shear: float = 0.0
    fill: str = "nearest"
    color_jitter: float = 0.0
    randaugment: str | None = None
    mixup: float = 0.0
    cutmix: float = 0.0

    @property
    def is_identity(self) -> bool:
        """Whether the transform is the evaluation transform (no randomness at all)."""
        return self == replace(AugmentConfig(), name=self.name)

    @property
    def mixes(self) -> bool:
        """Whether batches are mixed (mixup or cutmix)."""
        return self.mixup > 0 or self.cutmix > 0

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return asdict(self)


_PRESETS: dict[str, AugmentConfig] = {
    "none": AugmentConfig(name="none"),
    "light": AugmentConfig(name="light", resized_crop_scale=(0.6, 1.0), hflip=0.5),
    "standard": AugmentConfig(
        name="standard", hflip=0.5, rotation=50.0, shift=0.2, zoom=0.3, shear=0.2, fill="nearest"
    ),
    "dihedral": AugmentConfig(name="dihedral", hflip=0.5, vflip=0.5, rot90=True),
    "strong": AugmentConfig(
        name="strong",
        resized_crop_scale=(0.35, 1.0),
        hflip=0.5,
        randaugment="rand-m9-mstd0.5",
        mixup=0.2,
        cutmix=1.0,
    ),
}


def preset(name: str) -> AugmentConfig:
    """Return a preset, or read a JSON file of :class:`AugmentConfig` fields.

    Raises:
        ConfigError: Neither a preset nor a readable config file with known fields.
    """
    if name in _PRESETS:
        return _PRESETS[name]
    path = Path(name)
    if not path.is_file():
        raise ConfigError(
            f"--augment {name!r} is neither a preset ({', '.join(PRESETS)}) nor a JSON file"
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise ConfigError(f"{path}: not a readable JSON augmentation config ({err})") from err
    known = {f.name for f in fields(AugmentConfig)}
    unknown = sorted(set(data) - known)
    if not isinstance(data, dict) or unknown:
        raise ConfigError(
            f"{path}: unknown augmentation settings {unknown}; known: {', '.join(sorted(known))}"
        )
    if data.get("resized_crop_scale") is not None:
        data["resized_crop_scale"] = tuple(data["resized_crop_scale"])
    return AugmentConfig(**{"name": "custom", **data})


def train_transform(preprocessing: Preprocessing, config: AugmentConfig) -> Any:
    """Return the training transform: PIL image in, ``3 x S x S`` uint8 tensor out."""
    from torchvision import transforms

    if config.is_identity:
        return eval_transform(preprocessing)
    size = preprocessing.input_size
    interpolation = _interpolation(preprocessing.interpolation)
    steps: list[Any] = []
    if config.resized_crop_scale is not None:
        steps.append(
            transforms.RandomResizedCrop(
                size, scale=config.resized_crop_scale, interpolation=interpolation
            )
        )
    else:
        steps += [
            transforms.Resize(
                math.floor(size / preprocessing.crop_pct), interpolation=interpolation
            ),
            transforms.CenterCrop(size),
        ]
    if config.rotation or config.shift or config.zoom or config.shear:
        steps.append(_Affine(config))
    if config.hflip:
        steps.append(transforms.RandomHorizontalFlip(config.hflip))
    if config.vflip:
        steps.append(transforms.RandomVerticalFlip(config.vflip))
    if config.rot90:
        steps.append(_Rot90())
    if config.color_jitter:
        steps.append(
            transforms.ColorJitter(config.color_jitter, config.color_jitter, config.color_jitter)
        )
    if config.randaugment:
        from timm.data.auto_augment import rand_augment_transform

        steps.append(
            rand_augment_transform(config.randaugment, {"translate_const": int(size * 0.45)})
        )
    steps.append(transforms.PILToTensor())
    return transforms.Compose(steps)


def _interpolation(name: str) -> Any:
    from torchvision.transforms import InterpolationMode

    return {"bicubic": InterpolationMode.BICUBIC, "nearest": InterpolationMode.NEAREST}.get(
        name, InterpolationMode.BILINEAR
    )


class _Rot90:
    """Rotation by a random multiple of 90 degrees (no interpolation, no fill)."""

    def __call__(self, image: Image.Image) -> Image.Image:
        turns = int(torch.randint(0, 4, (1,)))
        if not turns:
            return image
        return image.transpose(
            [Image.Transpose.ROTATE_90, Image.Transpose.ROTATE_180, Image.Transpose.ROTATE_270][
                turns - 1
            ]
        )


class _Affine:
    """Keras-style random affine: rotation, shift, zoom, shear, with ``nearest`` edge fill."""

    def __init__(self, config: AugmentConfig) -> None:
        self.config = config

    def __call__(self, image: Image.Image) -> Image.Image:
        from torchvision.transforms import functional

        c = self.config
        angle = float(torch.empty(1).uniform_(-c.rotation, c.rotation)) if c.rotation else 0.0
        dx = float(torch.empty(1).uniform_(-c.shift, c.shift)) * image.width if c.shift else 0.0
        dy = float(torch.empty(1).uniform_(-c.shift, c.shift)) * image.height if c.shift else 0.0
        scale = float(torch.empty(1).uniform_(1 - c.zoom, 1 + c.zoom)) if c.zoom else 1.0
        shear = float(torch.empty(1).uniform_(-c.shear, c.shear)) if c.shear else 0.0
        if c.fill != "nearest":
            return functional.affine(image, angle, [round(dx), round(dy)], scale, [shear], fill=0)
        # Pad by repeating edge pixels, transform, crop back: the uncovered area shows the edge.
        # The pad covers the farthest source point the crop's corners map back to.
        reach = (math.hypot(image.width, image.height) / 2 + math.hypot(dx, dy)) / scale
        pad = math.ceil(max(0.0, 1.05 * reach - min(image.width, image.height) / 2)) + 2
        padded = Image.fromarray(
            np.pad(np.asarray(image), ((pad, pad), (pad, pad), (0, 0)), mode="edge")
        )
        moved = functional.affine(padded, angle, [round(dx), round(dy)], scale, [shear], fill=0)
        return moved.crop((pad, pad, pad + image.width, pad + image.height))


def batch_mixer(config: AugmentConfig, num_classes: int, label_smoothing: float) -> Any:
    """Return timm's Mixup for ``config`` (mixup and/or cutmix on batches), or ``None``."""
    if not config.mixes:
        return None
    from timm.data import Mixup

    return Mixup(
        mixup_alpha=config.mixup,
        cutmix_alpha=config.cutmix,
        label_smoothing=label_smoothing,
        num_classes=num_classes,
    )
