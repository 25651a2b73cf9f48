"""A look at a few images before training, to catch data prepared for another pipeline.

graft always normalises pixels itself, from the backbone's record. Two mistakes survive that:
images that were saved already normalised (nearly black, or with almost no range), and images
saved with their channels swapped (BGR written as RGB, common after OpenCV). The first is seen in
the pixel statistics; the second, for backbones with an ImageNet head, by asking the pretrained
head: if swapping the channels makes it clearly more confident on most images, they are swapped.

Example:
    >>> from graft.datasets import sample_photos
    >>> preflight(list(sample_photos().values()), "efficientnet_lite0.in1k")
    []
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from graft.data.images import load_image
from graft.data.transforms import eval_transform
from graft.errors import DataError
from graft.zoo.model import create_model
from graft.zoo.records import BackboneRecord
from graft.zoo.registry import get_backbone

SAMPLE = 16


def preflight(paths: Sequence[Path], backbone: str | BackboneRecord) -> list[str]:
    """Return warnings about how the first images look (empty when all is well)."""
    images = []
    for path in list(paths)[:SAMPLE]:
        try:
            images.append(load_image(path))
        except DataError:
            continue
    if not images:
        return []
    warnings = []
    arrays = [np.asarray(image, dtype=np.float32) for image in images]
    means = np.array([a.mean() for a in arrays])
    spreads = np.array([a.max() - a.min() for a in arrays])
    if np.median(means) < 4 or np.median(spreads) < 8:
        warnings.append(
            "the images look already normalised or nearly empty (median brightness "
            f"{np.median(means):.1f}/255, median range {np.median(spreads):.0f}); graft normalises "
            "pixels itself from the backbone record: give it the original images"
        )
    bluer = np.array([a[..., 2].mean() - a[..., 0].mean() for a in arrays]) / 255.0
    if (
        np.median(bluer) >= 0.03
        and (bluer > 0).mean() >= 0.7
        and _head_prefers_swapped(images, backbone)
    ):
        warnings.append(
            f"the images may be BGR saved as RGB: {(bluer > 0).mean():.0%} of the sampled images "
            "are bluer than red, which natural photos rarely are (and the pretrained head is no "
            "less confident with red and blue swapped); re-save them as RGB if they came from "
            "OpenCV"
        )
    return warnings


def _head_prefers_swapped(images: Sequence[Image.Image], backbone: str | BackboneRecord) -> bool:
    """Whether an ImageNet head is at least as confident with red and blue swapped.

    ``True`` when there is no ImageNet head to ask (the colour statistics then decide alone).
    """
    import torch

    record = get_backbone(backbone) if isinstance(backbone, str) else backbone
    if not (record.pretrained and record.labels == "imagenet-1k"):
        return True
    model = create_model(record)
    transform = eval_transform(record.preprocessing)
    pixels = torch.stack([transform(image) for image in images])
    with torch.inference_mode():
        as_is = model(pixels).softmax(1).amax(1).mean()
        swapped = model(pixels.flip(1)).softmax(1).amax(1).mean()
    return bool(swapped >= as_is)
