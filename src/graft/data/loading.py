"""Decoding images into batches on worker threads, overlapped with the model.

Pillow releases the GIL while it decodes and resizes, so a small thread pool keeps the cores
busy without the start-up cost and memory of worker processes. At most ``prefetch`` batches are
decoded ahead of the consumer, so memory stays flat however many files there are. A file that
cannot be decoded is reported in its batch's ``failures`` and never stops the others.

Example:
    >>> import tempfile, pathlib
    >>> from PIL import Image
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> Image.new("RGB", (8, 8)).save(root / "a.png"); _ = (root / "b.png").write_text("no")
    >>> from graft.data.transforms import eval_transform
    >>> from graft.zoo import get_backbone
    >>> transform = eval_transform(get_backbone("efficientnet_lite0.in1k").preprocessing)
    >>> batch = next(iter_batches([root / "a.png", root / "b.png"], transform))
    >>> tuple(batch.pixels.shape), len(batch.failures)
    ((1, 3, 224, 224), 1)
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import numpy as np
import torch

from graft.data.images import load_image
from graft.data.transforms import ImageTransform, eval_transform, resize_target
from graft.errors import DataError

if TYPE_CHECKING:
    from graft.zoo.records import Preprocessing

T = TypeVar("T")


@dataclass
class Batch:
    """Decoded images and the files of the same slice that failed.

    Attributes:
        files: Every file of this slice of the input, in input order.
        paths: The files whose pixels are in ``pixels``, in order.
        pixels: ``uint8`` tensor ``N x 3 x H x W`` (``N`` may be 0 if every file failed).
        failures: ``(path, one-line reason)`` for files that could not be decoded.
    """

    files: list[Path]
    paths: list[Path]
    pixels: torch.Tensor
    failures: list[tuple[Path, str]]


def default_threads() -> int:
    """Decoder threads: one per core, at most 4 (the model needs the cores too)."""
    return max(1, min(4, os.cpu_count() or 1))


def iter_decoded(
    files: Sequence[Path],
    prepare: Callable[[Path], T],
    *,
    batch_size: int = 32,
    num_threads: int | None = None,
    prefetch: int = 2,
) -> Iterator[tuple[list[Path], list[T | str]]]:
    """Run ``prepare`` on every file in worker threads, ``batch_size`` files at a time.

    Yields each slice of files with, per file, the prepared value or the one-line reason it
    failed (a :class:`DataError` message). At most ``prefetch`` slices are prepared ahead.
    """

    def attempt(path: Path) -> T | str:
        try:
            return prepare(path)
        except DataError as err:
            return str(err)

    with ThreadPoolExecutor(max_workers=num_threads or default_threads()) as pool:
        pending: deque[tuple[list[Path], list[Future[T | str]]]] = deque()
        for start in range(0, len(files), batch_size):
            chunk = list(files[start : start + batch_size])
            pending.append((chunk, [pool.submit(attempt, path) for path in chunk]))
            if len(pending) > prefetch:
                chunk, futures = pending.popleft()
                yield chunk, [future.result() for future in futures]
        while pending:
            chunk, futures = pending.popleft()
            yield chunk, [future.result() for future in futures]


def iter_batches(
    files: Sequence[Path],
    transform: ImageTransform,
    *,
    batch_size: int = 32,
    draft_size: int | None = None,
    num_threads: int | None = None,
    prefetch: int = 2,
    expected_hashes: Mapping[Path, str] | None = None,
) -> Iterator[Batch]:
    """Yield :class:`Batch` objects of up to ``batch_size`` decoded images, in file order.

    With ``expected_hashes``, a file whose bytes no longer have the scanned hash fails (see
    :func:`graft.data.images.load_image`).
    """
    known = expected_hashes or {}

    def decode(path: Path) -> torch.Tensor:
        return transform(load_image(path, draft_size=draft_size, expected_hash=known.get(path)))

    for chunk, results in iter_decoded(
        files, decode, batch_size=batch_size, num_threads=num_threads, prefetch=prefetch
    ):
        good: list[Path] = []
        tensors: list[torch.Tensor] = []
        failures: list[tuple[Path, str]] = []
        for path, result in zip(chunk, results, strict=True):
            if isinstance(result, str):
                failures.append((path, result))
            else:
                good.append(path)
                tensors.append(result)
        # numpy's single-threaded copy: torch.stack wakes its thread pool, which fights the
        # engine's threads for the cores (28 ms a batch instead of 1 ms here)
        pixels = (
            torch.from_numpy(np.stack([tensor.numpy() for tensor in tensors]))
            if tensors
            else torch.empty((0, 3, 1, 1), dtype=torch.uint8)
        )
        yield Batch(chunk, good, pixels, failures)


def decode_pixels(paths: Sequence[Path], preprocessing: Preprocessing) -> np.ndarray:
    """Decode images to one uint8 array ``N x 3 x S x S``, leaving out those that fail.

    Example:
        >>> from graft.datasets import sample_photos
        >>> from graft.zoo import get_backbone
        >>> pre = get_backbone("efficientnet_lite0.in1k").preprocessing
        >>> decode_pixels(list(sample_photos().values())[:2], pre).shape
        (2, 3, 224, 224)
    """

    blocks = [
        batch.pixels.numpy()
        for batch in iter_batches(
            paths, eval_transform(preprocessing), draft_size=resize_target(preprocessing)
        )
        if batch.paths
    ]
    size = preprocessing.input_size
    return np.concatenate(blocks) if blocks else np.zeros((0, 3, size, size), np.uint8)
