"""Where graft keeps things on disk, and the few settings read from the environment.

Every location has a default in the user's cache directory and an environment variable to
move it, so a lab can point graft at a shared, read-only weight store.

| setting            | environment variable  | default                          |
|--------------------|-----------------------|----------------------------------|
| cache root         | ``GRAFT_CACHE_DIR``   | ``platformdirs.user_cache_dir``  |
| local weight store | ``GRAFT_WEIGHTS_DIR`` | ``<cache root>/weights``         |
| image pixel limit  | ``GRAFT_MAX_PIXELS``  | 89,478,485 (Pillow's own limit)  |

Example:
    >>> from graft.config import weights_dir
    >>> weights_dir().name
    'weights'
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

from graft.errors import ConfigError

#: Pillow's default decompression-bomb threshold: about 89 megapixels (a 9,459 x 9,459 image).
DEFAULT_MAX_PIXELS = 89_478_485


def cache_dir() -> Path:
    """Return the root of graft's on-disk cache (features, compiled models, weights).

    Example:
        >>> cache_dir().is_absolute()
        True
    """
    override = os.environ.get("GRAFT_CACHE_DIR")
    if override:
        return Path(override).expanduser()
    return Path(platformdirs.user_cache_dir("graft"))


def weights_dir() -> Path:
    """Return the local weight store, where ``graft weights add`` keeps user weights.

    Example:
        >>> weights_dir().name
        'weights'
    """
    override = os.environ.get("GRAFT_WEIGHTS_DIR")
    if override:
        return Path(override).expanduser()
    return cache_dir() / "weights"


def max_pixels() -> int:
    """Return the largest image, in pixels, that graft agrees to decode.

    Example:
        >>> max_pixels() > 0
        True
    """
    raw = os.environ.get("GRAFT_MAX_PIXELS")
    if raw is None or raw == "":
        return DEFAULT_MAX_PIXELS
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value <= 0:
        raise ConfigError(
            f"GRAFT_MAX_PIXELS={raw!r} is not a positive whole number of pixels; "
            f"unset it or set e.g. GRAFT_MAX_PIXELS={DEFAULT_MAX_PIXELS}"
        )
    return value
