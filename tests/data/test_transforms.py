"""The fast crop-box resize gives timm's evaluation pixels, within rounding."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from graft.data.images import load_image
from graft.data.transforms import _timm_transform, eval_transform
from graft.datasets import sample_photos
from graft.zoo import get_backbone
from graft.zoo.records import Preprocessing


def _photos() -> list[Image.Image]:
    photos = [load_image(path) for path in sample_photos().values()]
    # portrait, landscape, odd sizes, and sizes just above and below the resize target
    extra = [photo.resize(size) for photo in photos[:2] for size in [(377, 500), (257, 300)]]
    return photos + extra + [photos[0].resize((200, 150)), photos[1].crop((0, 0, 256, 999))]


@pytest.mark.parametrize("backbone", ["efficientnet_lite0.in1k", "efficientnet_lite2.in1k"])
def test_fast_transform_matches_timm(backbone: str) -> None:
    preprocessing = get_backbone(backbone).preprocessing
    fast, exact = eval_transform(preprocessing), _timm_transform(preprocessing)
    for photo in _photos():
        ours = fast(photo).numpy().astype(int)
        theirs = exact(photo).numpy().astype(int)
        assert ours.shape == theirs.shape == (3, preprocessing.input_size, preprocessing.input_size)
        difference = np.abs(ours - theirs)
        # Pillow's fixed-point passes round a few pixels the other way: off by one at most
        # for nearly all values, never a shifted or mis-scaled crop
        assert difference.mean() < 0.25, photo.size
        assert (difference > 1).mean() < 0.001, photo.size


def test_bilinear_and_nearest_filters_also_match() -> None:
    base = get_backbone("efficientnet_lite0.in1k").preprocessing.to_dict()
    photo = _photos()[0]
    for interpolation in ("bilinear", "nearest"):
        preprocessing = Preprocessing.from_dict({**base, "interpolation": interpolation})
        ours = eval_transform(preprocessing)(photo).numpy().astype(int)
        theirs = _timm_transform(preprocessing)(photo).numpy().astype(int)
        assert np.abs(ours - theirs).mean() < 0.05
