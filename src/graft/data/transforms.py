"""Image geometry for a backbone's record: resize and centre-crop to uint8 pixels.

The geometry comes from timm's own evaluation transform (``transforms_imagenet_eval`` in its
prefetcher form), so it matches how timm evaluates the same weights; the arithmetic (mean, std,
channel order) is done by the model itself (:class:`graft.zoo.model.Normalize`). The output is a
``uint8`` tensor ``3 x S x S``.

Example:
    >>> from PIL import Image
    >>> from graft.zoo import get_backbone
    >>> transform = eval_transform(get_backbone("efficientnet_lite0.in1k").preprocessing)
    >>> pixels = transform(Image.new("RGB", (500, 375)))
    >>> pixels.dtype, tuple(pixels.shape)
    (torch.uint8, (3, 224, 224))
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeAlias

from graft.zoo.records import Preprocessing

if TYPE_CHECKING:
    import torch
    from PIL import Image

ImageTransform: TypeAlias = "Callable[[Image.Image], torch.Tensor]"


def eval_transform(preprocessing: Preprocessing) -> ImageTransform:
    """Return the deterministic resize + centre-crop transform for ``preprocessing``."""
    from timm.data import create_transform

    transform: ImageTransform = create_transform(
        input_size=(3, preprocessing.input_size, preprocessing.input_size),
        is_training=False,
        interpolation=preprocessing.interpolation,
        crop_pct=preprocessing.crop_pct,
        crop_mode="center",
        use_prefetcher=True,  # stop at uint8 pixels: the model normalises
    )
    return transform


def resize_target(preprocessing: Preprocessing) -> int:
    """Return the shorter side the image is resized to before the crop (for JPEG draft decoding)."""
    return math.floor(preprocessing.input_size / preprocessing.crop_pct)
