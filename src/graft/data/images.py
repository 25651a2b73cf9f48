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
import os
import stat
import warnings
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from graft.config import max_pixels as configured_max_pixels
from graft.errors import DataError
from graft.hashing import bytes_content_hash

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
#: The only Pillow formats graft ever opens (an allow-list: EPS, PSD, ... are never parsed).
PILLOW_FORMATS: tuple[str, ...] = ("JPEG", "PNG", "BMP", "GIF", "WEBP", "TIFF")
_ORIENTATION = 0x0112  # the EXIF orientation tag
_ALPHA_MODES = {"RGBA", "LA", "PA", "RGBa", "La"}
_WHITE = (255, 255, 255)

# A truncated file is an error to report, never an image to guess at.
ImageFile.LOAD_TRUNCATED_IMAGES = False


def load_image(
    path: str | Path,
    *,
    max_pixels: int | None = None,
    draft_size: int | None = None,
    expected_hash: str | None = None,
) -> Image.Image:
    """Decode an image file to an 8-bit RGB :class:`PIL.Image.Image`.

    Only regular files are read (a FIFO, device or socket is refused without being opened for
    long), and never more bytes than the file's size said when it was opened.

    Args:
        path: The image file.
        max_pixels: Refuse images with more pixels than this; default
            :func:`graft.config.max_pixels` (``GRAFT_MAX_PIXELS``).
        draft_size: If given and the file is a JPEG, let the decoder shrink it by a power of two
            while keeping both sides at least this many pixels (much faster for large photos).
        expected_hash: The content hash (:func:`graft.hashing.content_hash`) a scan
            recorded; if the bytes no longer match (the file changed but kept its size and
            modification time), the image is refused rather than mistaken for the one scanned.

    Returns:
        The image in RGB mode, EXIF orientation applied.

    Raises:
        DataError: One line naming the file and the reason: missing, not a regular file, not an
            image, truncated or corrupt, changed since scanned, or over the pixel limit.
    """
    path = Path(path)
    data = read_regular_file(path)
    if expected_hash is not None and bytes_content_hash(data) != expected_hash:
        raise ChangedFileError(
            f"{path}: its content changed since graft scanned it (same size and modification "
            "time); run the command again to rescan it"
        )
    return _decode(io.BytesIO(data), str(path), max_pixels=max_pixels, draft_size=draft_size)


def open_regular_file(path: Path) -> tuple[int, int]:
    """Open ``path`` for reading if it is a regular file; return ``(descriptor, size)``.

    The file is opened without blocking (a FIFO would otherwise wait forever for a writer) and
    checked with ``fstat`` on the open descriptor, so a link swapped in between cannot slip a
    device through.

    Raises:
        DataError: Missing, a folder, not a regular file, or unreadable.
    """
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError as err:
        raise DataError(f"{path}: no such file; check the path") from err
    except IsADirectoryError as err:
        raise DataError(f"{path}: is a folder, expected an image file") from err
    except OSError as err:
        raise DataError(f"{path}: cannot be read ({err.strerror}); check its permissions") from err
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        if stat.S_ISDIR(info.st_mode):
            raise DataError(f"{path}: is a folder, expected an image file")
        raise NotARegularFileError(
            f"{path}: not a regular file ({_kind(info.st_mode)}); graft reads only image files: "
            "remove it from the data folder"
        )
    return fd, info.st_size


def read_regular_file(path: Path) -> bytes:
    """The bytes of a regular file, at most as many as its size when opened.

    Raises:
        DataError: See :func:`open_regular_file`.
    """
    fd, size = open_regular_file(path)
    with os.fdopen(fd, "rb") as handle:
        return handle.read(size)


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a file"


def decode_image_bytes(
    data: bytes | bytearray,
    name: str,
    *,
    max_pixels: int | None = None,
    draft_size: int | None = None,
) -> Image.Image:
    """Decode an image held in memory (an upload) to 8-bit RGB, like :func:`load_image`.

    Raises:
        NotAnImageError: The bytes are not an image in a format graft reads.
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
    return _decode(io.BytesIO(data), name, max_pixels=max_pixels, draft_size=draft_size)


def open_image(source: BinaryIO, name: str) -> Image.Image:
    """``Image.open`` restricted to the formats graft reads (:data:`PILLOW_FORMATS`).

    Only the header is parsed; no pixel is decoded.

    Raises:
        NotAnImageError: Not an image, or a format outside the allow-list (named).
    """
    try:
        return Image.open(source, formats=PILLOW_FORMATS)
    except UnidentifiedImageError as err:
        raise NotAnImageError(_not_an_image(source, name)) from err


def _not_an_image(source: BinaryIO, name: str) -> str:
    """Say which format a refused file is in, when Pillow knows it (by its magic bytes only)."""
    try:
        source.seek(0)
        prefix = source.read(16)
    except OSError:
        prefix = b""
    Image.init()
    for fmt, (_, accept) in Image.OPEN.items():
        if fmt in PILLOW_FORMATS or accept is None:
            continue
        try:
            matched = bool(accept(prefix))
        except Exception:  # a plugin's magic check choking on a short prefix: not that format
            matched = False
        if matched:
            return (
                f"{name}: unsupported format {fmt} (graft reads {SUPPORTED_FORMATS}); "
                "convert it to PNG or JPEG"
            )
    return f"{name}: not a readable image (supported: {SUPPORTED_FORMATS}); convert or remove it"


class NotAnImageError(DataError):
    """The file is not an image in a format graft reads."""


class CorruptImageError(DataError):
    """The image data is truncated or corrupt."""


class ImageTooLargeError(DataError):
    """The image has more pixels than the decompression-bomb limit."""


class NotARegularFileError(DataError):
    """A FIFO, device or socket where an image file was expected."""


class ChangedFileError(DataError):
    """The file's bytes are not the ones graft scanned (changed with size and time kept)."""


def _decode(
    source: io.BytesIO, name: str, *, max_pixels: int | None, draft_size: int | None
) -> Image.Image:
    limit = configured_max_pixels() if max_pixels is None else max_pixels
    if Image.MAX_IMAGE_PIXELS is not None and limit > Image.MAX_IMAGE_PIXELS:
        Image.MAX_IMAGE_PIXELS = limit  # only ever raised, so Pillow never refuses first
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with open_image(source, name) as image:
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
                if image.getexif().get(_ORIENTATION, 1) in (0, 1):
                    return to_rgb(image)  # exif_transpose would copy the whole image for nothing
                return to_rgb(ImageOps.exif_transpose(image) or image)
    except DataError:
        raise
    except UnidentifiedImageError as err:
        raise NotAnImageError(_not_an_image(source, name)) from err
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
