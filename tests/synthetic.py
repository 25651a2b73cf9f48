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
