"""Image geometry for a backbone's record: resize and centre-crop to uint8 pixels.

The geometry is timm's evaluation transform (``transforms_imagenet_eval``: resize the shorter
side to ``floor(S / crop_pct)``, centre-crop ``S x S``), so features match how timm evaluates
the same weights; the arithmetic (mean, std, channel order) is done by the model itself
(:class:`graft.zoo.model.Normalize`). The output is a ``uint8`` tensor ``3 x S x S``.

When the image is shrunk, only the crop is resampled (Pillow's ``resize(box=...)`` over the
crop's footprint in the original), which computes the same filter taps as resizing the whole
picture and cropping afterwards, at 60 % of the cost; outputs agree with timm's transform to
within rounding (``tests/data/test_transforms.py``). Images enlarged or shrunk by less than a
quarter take timm's path unchanged (there the saving is small and rounding differs more).

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

import numpy as np

from graft.errors import ConfigError
from graft.zoo.records import Preprocessing

if TYPE_CHECKING:
    import torch
    from PIL import Image

ImageTransform: TypeAlias = "Callable[[Image.Image], torch.Tensor]"


def eval_transform(preprocessing: Preprocessing) -> ImageTransform:
    """Return the deterministic resize + centre-crop transform for ``preprocessing``.

    The transform is a picklable object, so decoding worker processes can receive it.
    """
    return EvalTransform(preprocessing)


_FILTERS = ("bilinear", "bicubic", "nearest")


class EvalTransform:
    """Resize + centre-crop to ``uint8`` pixels (see the module docstring); picklable.

    Raises:
        ConfigError: An interpolation graft does not know.
    """

    def __init__(self, preprocessing: Preprocessing) -> None:
        if preprocessing.interpolation not in _FILTERS:
            raise ConfigError(
                f"interpolation {preprocessing.interpolation!r} is not one of: "
                f"{', '.join(_FILTERS)}"
            )
        self.preprocessing = preprocessing
        self.size = preprocessing.input_size
        self.short = resize_target(preprocessing)
        self.exact = _timm_transform(preprocessing)

    def __call__(self, image: Image.Image) -> torch.Tensor:
        import torch
        from PIL import Image

        width, height = image.size
        if min(width, height) < self.short * 1.25:  # enlarging or barely shrinking: timm's path
            result: torch.Tensor = self.exact(image)
            return result
        size = self.size
        new_w, new_h = _resized_size(width, height, self.short)
        left = round((new_w - size) / 2.0)
        top = round((new_h - size) / 2.0)
        scale_x, scale_y = width / new_w, height / new_h
        box = (left * scale_x, top * scale_y, (left + size) * scale_x, (top + size) * scale_y)
        resample = Image.Resampling[self.preprocessing.interpolation.upper()]
        crop = image.resize((size, size), resample, box=box)
        return torch.from_numpy(np.asarray(crop).transpose(2, 0, 1).copy())


def _resized_size(width: int, height: int, short: int) -> tuple[int, int]:
    """The size torchvision's ``Resize(short)`` gives (the longer side truncated)."""
    if width <= height:
        return short, int(short * height / width)
    return int(short * width / height), short


def _timm_transform(preprocessing: Preprocessing) -> ImageTransform:
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
