"""What every engine shares: the :class:`Engine` protocol, calibration images, where compiled
models are kept, and the thread count. The concrete engines import this module; choosing and
creating one is :mod:`graft.engines.base`.

Example:
    >>> threads() >= 1
    True
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import numpy as np

from graft.config import cache_dir
from graft.errors import ConfigError

#: Returns uint8 calibration pixels ``N x 3 x S x S`` (decoded only when an int8 model is built).
Calibration = Callable[[], np.ndarray]


class Engine(Protocol):
    """Runs a network on uint8 pixel batches."""

    name: str
    precision: str

    def __call__(self, pixels: np.ndarray) -> np.ndarray: ...


def compiled_path(engine: str, cache_key: str, suffix: str) -> Path:
    """Where an engine keeps the compiled model of ``cache_key``."""
    return cache_dir() / "engines" / engine / f"{cache_key}{suffix}"


def need_calibration(calibration: Calibration | None, precision: str) -> np.ndarray:
    """Decode the calibration pixels, or say why int8 cannot be built.

    Raises:
        ConfigError: No calibration images were given.
    """
    if calibration is None:
        raise ConfigError(
            f"precision {precision} needs calibration images to build the quantized model; "
            "extract or train with --precision int8 on labelled images first"
        )
    pixels = calibration()
    if not len(pixels):
        raise ConfigError("int8 calibration found no decodable images; check the training split")
    return pixels


def threads() -> int:
    """Engine threads: one per core."""
    return os.cpu_count() or 1
