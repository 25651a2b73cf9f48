"""Synthetic labelled images for tests: noisy colour patches, one colour per class."""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
from PIL import Image


def tinted_image(color: tuple[int, int, int], seed: int, size: int = 48) -> Image.Image:
    """A noisy image around ``color``: classes of different colours are linearly separable."""
    rng = np.random.default_rng(seed)
    noise = rng.integers(-40, 40, size=(size, size, 3))
    pixels = np.clip(np.array(color)[None, None, :] + noise, 0, 255).astype(np.uint8)
    return Image.fromarray(pixels)


COLORS = {"red": (200, 40, 40), "blue": (40, 40, 200), "green": (40, 190, 60)}


def write_class_folders(
    root: Path, per_class: int, classes: tuple[str, ...] = ("red", "blue"), start: int = 0
) -> Path:
    """Write ``root/<class>/<n>.png`` images; returns ``root``."""
    for label in classes:
        folder = root / label
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(start, start + per_class):
            seed = zlib.crc32(f"{label}-{i}".encode())
            tinted_image(COLORS[label], seed=seed).save(folder / f"{label}_{i:03d}.png")
    return root


def scene_image(seed: int, dominant: tuple[int, int, int], size: int = 96) -> Image.Image:
    """A distinct picture per seed: random rectangles and ellipses, most of them ``dominant``.

    Unlike :func:`tinted_image`, two scenes differ in structure, not only in noise, so copies
    of one scene (resized, re-encoded, cropped) stand out from the other scenes.
    """
    from PIL import ImageDraw

    rng = np.random.default_rng(seed)
    image = Image.new("RGB", (size, size), tuple(int(v) for v in rng.integers(150, 255, 3)))
    draw = ImageDraw.Draw(image)
    for index in range(10):
        x0, y0 = (int(v) for v in rng.integers(0, size - 20, 2))
        x1, y1 = x0 + int(rng.integers(10, 50)), y0 + int(rng.integers(10, 50))
        jitter = rng.integers(-30, 30, 3)
        base = dominant if index % 3 else tuple(int(v) for v in rng.integers(0, 255, 3))
        fill = tuple(int(np.clip(c + j, 0, 255)) for c, j in zip(base, jitter, strict=True))
        shape = draw.rectangle if rng.random() < 0.5 else draw.ellipse
        shape((x0, y0, x1, y1), fill=fill)
    return image
