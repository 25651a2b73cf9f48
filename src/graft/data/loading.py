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
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import torch

from graft.data.images import load_image
from graft.data.transforms import ImageTransform
from graft.errors import DataError


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


def iter_batches(
    files: Sequence[Path],
    transform: ImageTransform,
    *,
    batch_size: int = 32,
    draft_size: int | None = None,
    num_threads: int | None = None,
    prefetch: int = 2,
) -> Iterator[Batch]:
    """Yield :class:`Batch` objects of up to ``batch_size`` decoded images, in file order."""

    def decode(path: Path) -> torch.Tensor | str:
        try:
            return transform(load_image(path, draft_size=draft_size))
        except DataError as err:
            return str(err)

    with ThreadPoolExecutor(max_workers=num_threads or default_threads()) as pool:
        pending: deque[tuple[list[Path], list[Future[torch.Tensor | str]]]] = deque()
        for start in range(0, len(files), batch_size):
            chunk = list(files[start : start + batch_size])
            pending.append((chunk, [pool.submit(decode, path) for path in chunk]))
            if len(pending) > prefetch:
                yield _gather(*pending.popleft())
        while pending:
            yield _gather(*pending.popleft())


def _gather(paths: list[Path], futures: list[Future[torch.Tensor | str]]) -> Batch:
    good: list[Path] = []
    tensors: list[torch.Tensor] = []
    failures: list[tuple[Path, str]] = []
    for path, future in zip(paths, futures, strict=True):
        result = future.result()
        if isinstance(result, str):
            failures.append((path, result))
        else:
            good.append(path)
            tensors.append(result)
    pixels = torch.stack(tensors) if tensors else torch.empty((0, 3, 1, 1), dtype=torch.uint8)
    return Batch(paths, good, pixels, failures)
