"""Decoding any image file into an RGB picture, or a one-line reason why not.

Handles JPEG, PNG, BMP, GIF, WebP and TIFF in every mode Pillow reads: grayscale, palette (with
transparency), RGBA and LA (composited on white), 16-bit and 32-bit integer and float grayscale
(scaled to 8 bits rather than clipped), CMYK, YCbCr and LAB. The EXIF orientation tag is
applied, multi-frame files give their first frame, and an image larger than the pixel limit is
refused before its pixels are decoded (a decompression bomb never reaches memory).

Example:
    >>> import tempfile, pathlib
    >>> from PIL import Image
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "gray.png"
    >>> Image.new("L", (4, 3), 128).save(p)
    >>> image = load_image(p)
    >>> image.mode, image.size
    ('RGB', (4, 3))
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from graft.config import max_pixels as configured_max_pixels
from graft.errors import DataError

#: File extensions graft treats as images when walking a folder (compared lower-case).
IMAGE_EXTENSIONS: tuple[str, ...] = (
    ".jpg",
    ".jpeg",
    ".png",
    ".bmp",
    ".gif",
    ".webp",
    ".tif",
    ".tiff",
)
SUPPORTED_FORMATS = "JPEG, PNG, BMP, GIF, WebP, TIFF"
_ALPHA_MODES = {"RGBA", "LA", "PA", "RGBa", "La"}
_WHITE = (255, 255, 255)

# A truncated file is an error to report, never an image to guess at.
ImageFile.LOAD_TRUNCATED_IMAGES = False


def load_image(
    path: str | Path, *, max_pixels: int | None = None, draft_size: int | None = None
) -> Image.Image:
    """Decode an image file to an 8-bit RGB :class:`PIL.Image.Image`.

    Args:
        path: The image file.
        max_pixels: Refuse images with more pixels than this; default
            :func:`graft.config.max_pixels` (``GRAFT_MAX_PIXELS``).
        draft_size: If given and the file is a JPEG, let the decoder shrink it by a power of two
            while keeping both sides at least this many pixels (much faster for large photos).

    Returns:
        The image in RGB mode, EXIF orientation applied.

    Raises:
        DataError: One line naming the file and the reason: missing, not an image, truncated or
            corrupt, or over the pixel limit.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file; check the path")
    if path.is_dir():
        raise DataError(f"{path}: is a folder, expected an image file")
    return _decode(path, str(path), max_pixels=max_pixels, draft_size=draft_size)


def decode_image_bytes(data: bytes, name: str, *, max_pixels: int | None = None) -> Image.Image:
    """Decode an image held in memory (an upload) to 8-bit RGB, like :func:`load_image`.

    Raises:
        NotAnImageError: The bytes are not an image Pillow can read.
        CorruptImageError: Truncated or corrupt image data.
        ImageTooLargeError: Over the pixel limit.

    Example:
        >>> import io
        >>> from PIL import Image
        >>> buffer = io.BytesIO()
        >>> Image.new("L", (3, 2)).save(buffer, format="PNG")
        >>> decode_image_bytes(buffer.getvalue(), "upload.png").size
        (3, 2)
    """
    return _decode(io.BytesIO(data), name, max_pixels=max_pixels, draft_size=None)


class NotAnImageError(DataError):
    """The file is not an image in a format graft reads."""


class CorruptImageError(DataError):
    """The image data is truncated or corrupt."""


class ImageTooLargeError(DataError):
    """The image has more pixels than the decompression-bomb limit."""


def _decode(
    source: Path | io.BytesIO, name: str, *, max_pixels: int | None, draft_size: int | None
) -> Image.Image:
    limit = configured_max_pixels() if max_pixels is None else max_pixels
    if Image.MAX_IMAGE_PIXELS is not None and limit > Image.MAX_IMAGE_PIXELS:
        Image.MAX_IMAGE_PIXELS = limit  # only ever raised, so Pillow never refuses first
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(source) as image:
                width, height = image.size
                if width * height > limit:
                    raise ImageTooLargeError(
                        f"{name}: {width}x{height} = {width * height:,} pixels exceeds the limit "
                        f"of {limit:,} (decompression-bomb guard); if the image is genuine, raise "
                        "the limit with GRAFT_MAX_PIXELS"
                    )
                if draft_size is not None and image.format == "JPEG":
                    image.draft("RGB", (draft_size, draft_size))
                image.load()
                return to_rgb(ImageOps.exif_transpose(image) or image)
    except DataError:
        raise
    except UnidentifiedImageError as err:
        raise NotAnImageError(
            f"{name}: not a readable image (supported: {SUPPORTED_FORMATS}); convert or remove it"
        ) from err
    except Image.DecompressionBombError as err:
        raise ImageTooLargeError(
            f"{name}: exceeds the pixel limit ({err}); if the image is genuine, raise the limit "
            "with GRAFT_MAX_PIXELS"
        ) from err
    except (OSError, SyntaxError, ValueError, EOFError) as err:
        raise CorruptImageError(
            f"{name}: truncated or corrupt image data ({err}); re-export the image or remove it"
        ) from err


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert a decoded image of any mode to 8-bit RGB without clipping or black backgrounds.

    Transparent pixels become white; high-bit-depth grayscale is scaled to ``[0, 255]``.

    Example:
        >>> from PIL import Image
        >>> to_rgb(Image.new("I;16", (1, 1), 65535)).getpixel((0, 0))
        (255, 255, 255)
    """
    mode = image.mode
    if mode == "RGB":
        return image
    if mode == "P" and "transparency" in image.info:
        image, mode = image.convert("RGBA"), "RGBA"
    if mode in _ALPHA_MODES:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (*_WHITE, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if mode.startswith("I") or mode == "F":
        return Image.fromarray(_to_uint8(np.asarray(image), mode)).convert("RGB")
    return image.convert("RGB")


def _to_uint8(values: np.ndarray, mode: str) -> np.ndarray:
    """Scale a 16/32-bit integer or float grayscale array to uint8."""
    data = values.astype(np.float64)
    if mode == "F":
        peak = float(data.max()) if data.size else 0.0
        if peak <= 1.0:
            data = data * 255.0
    elif mode.startswith("I;16") or (data.size and float(data.max()) > 255.0):
        data = data / 257.0  # 65535 -> 255, so 16-bit full range maps to 8-bit full range
    return np.clip(np.rint(data), 0, 255).astype(np.uint8)
