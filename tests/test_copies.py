"""The copy check on its own: off-grid crops are found, look-alikes are not."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image
from scipy.ndimage import gaussian_filter

from graft.auditing.copies import FINE_MIN, copy_pairs


def _detail(shape: tuple[int, ...], seed: int) -> np.ndarray:
    detail = gaussian_filter(np.random.default_rng(seed).random(shape), 1.5)
    return (detail - detail.mean()) / detail.std()


def _picture(layout: np.ndarray, detail: np.ndarray) -> Image.Image:
    pixels = layout + detail * 25
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def _thumb(image: Image.Image) -> np.ndarray:
    return np.asarray(image.resize((64, 64), Image.Resampling.BILINEAR, reducing_gap=2.0))


def _jpeg(image: Image.Image, quality: int) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return Image.open(io.BytesIO(buffer.getvalue())).convert("L")


def _set() -> np.ndarray:
    layout = gaussian_filter(np.random.default_rng(0).random((256, 256)), 24)
    layout = (layout - layout.min()) / np.ptp(layout) * 160 + 40
    # a look-alike: the same layout, and fine detail that agrees with the original's in part
    # (correlation 0.6): two leaves of one plant on one background
    mine, other = _detail(layout.shape, 1), _detail(layout.shape, 2)
    original = _picture(layout, mine)
    look_alike = _picture(layout, 0.6 * mine + 0.8 * other)
    # cut 2 %, 6 %, 6 %, 2 % (between the aligning grid's 0/4/8 %), resized, re-encoded
    w, h = original.size
    box = (round(0.02 * w), round(0.06 * h), round(0.94 * w), round(0.98 * h))
    copy = _jpeg(original.crop(box).resize((180, 200)), quality=70)
    return np.stack([_thumb(original), _thumb(look_alike), _thumb(copy)])


def test_an_off_grid_crop_is_a_copy_and_a_look_alike_is_not() -> None:
    matches = copy_pairs(_set())
    assert [(m.first, m.second) for m in matches] == [(0, 2)]
    assert matches[0].fine >= FINE_MIN


def test_look_alikes_share_their_layout_but_not_their_detail() -> None:
    thumbs = _set()
    a, b = (t.astype(float).ravel() for t in thumbs[:2])
    assert np.corrcoef(a, b)[0, 1] > 0.9  # what a cosine on coarse pixels would call a copy


def test_images_that_look_like_many_others_are_look_alikes_not_copies() -> None:
    """Uniform solar cells: each passes the check with dozens of others; none is a copy."""
    rng = np.random.default_rng(5)
    grid = np.full((256, 256), 170.0)
    grid[:, ::32] = grid[::40, :] = 60.0  # busbars and fingers, the same on every cell
    cells = [
        _thumb(
            Image.fromarray(np.clip(grid + rng.normal(0, 4, grid.shape), 0, 255).astype(np.uint8))
        )
        for _ in range(24)
    ]
    thumbs = np.concatenate([_set()[[0, 2]], np.stack(cells)])
    matches = copy_pairs(thumbs)
    copies = {(m.first, m.second) for m in matches if not m.generic}
    alike = [m for m in matches if m.generic]
    assert copies == {(0, 1)}  # the cropped copy of a distinctive picture stays a copy
    assert alike and all(m.first >= 2 and m.second >= 2 for m in alike)
