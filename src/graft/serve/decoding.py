"""Turning uploaded bytes into the model's input, with memory bounded whatever is uploaded.

An upload's header is read first (no pixels decoded): a file that is not an allowed image format
is refused (415), and the request's total pixel count is checked against a budget (413) before
any decoding. Images are then decoded in one of two lanes: small images on a few threads, large
ones (over ``large_pixels``) on one thread of their own, so a flood of huge images can neither
hold many full-size decodes in memory at once nor block the small images behind it. A JPEG is
decoded at reduced size when much larger than the model needs, and every image is turned into
the model's input pixels (a few hundred KB) in the lane that decoded it: what waits in the queue
is always small.

Example:
    >>> import io
    >>> from PIL import Image
    >>> buffer = io.BytesIO(); Image.new("RGB", (40, 30)).save(buffer, format="PNG")
    >>> header_pixels(buffer.getvalue(), "a.png")
    1200
"""

from __future__ import annotations

import asyncio
import io
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Generic, TypeVar

from graft.data.images import (
    CorruptImageError,
    ImageTooLargeError,
    NotAnImageError,
    decode_image_bytes,
    open_image,
)

T = TypeVar("T")


def header_pixels(data: bytes | bytearray, name: str) -> int:
    """The pixel count an image's header declares (nothing is decoded).

    Raises:
        NotAnImageError: Not an allowed image format (the format is named when known).
        CorruptImageError: A header Pillow cannot parse.
    """
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with open_image(io.BytesIO(data), name) as image:
                width, height = image.size
    except NotAnImageError:
        raise
    except Image.DecompressionBombError as err:
        raise ImageTooLargeError(
            f"{name}: exceeds the pixel limit ({err}); send a smaller image"
        ) from err
    except (OSError, SyntaxError, ValueError, EOFError) as err:
        raise CorruptImageError(f"{name}: unreadable image header ({err})") from err
    return int(width) * int(height)


class DecodeLanes(Generic[T]):
    """Two thread pools: ``small_threads`` for ordinary images, one for large ones.

    Args:
        prepare: Pixels of a decoded image (the predictor's preprocessing).
        draft_size: Shorter side a JPEG may be decoded down to.
        large_pixels: Images with more pixels than this go to the large lane.
        small_threads: Threads of the small lane.
    """

    def __init__(
        self,
        prepare: Callable[[Any], T],
        *,
        draft_size: int,
        large_pixels: int = 16_000_000,
        small_threads: int = 2,
    ) -> None:
        self.prepare = prepare
        self.draft_size = draft_size
        self.large_pixels = large_pixels
        self._small = ThreadPoolExecutor(small_threads, thread_name_prefix="graft-decode")
        self._large = ThreadPoolExecutor(1, thread_name_prefix="graft-decode-large")

    async def header(self, data: bytes | bytearray, name: str) -> int:
        """:func:`header_pixels` in the small lane (a crafted header can take seconds)."""
        return await asyncio.get_running_loop().run_in_executor(
            self._small, header_pixels, data, name
        )

    async def decode(self, data: bytes | bytearray, name: str, pixels: int) -> T:
        """Decode and prepare one image in its lane.

        Raises:
            DataError: Not an image, corrupt, or over the pixel limit (one line naming it).
        """
        lane = self._large if pixels > self.large_pixels else self._small
        return await asyncio.get_running_loop().run_in_executor(lane, self._work, data, name)

    def _work(self, data: bytes | bytearray, name: str) -> T:
        image = decode_image_bytes(data, name, draft_size=self.draft_size)
        return self.prepare(image)

    def close(self) -> None:
        """Stop both lanes (running decodes finish)."""
        self._small.shutdown(wait=False, cancel_futures=True)
        self._large.shutdown(wait=False, cancel_futures=True)
