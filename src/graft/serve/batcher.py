"""Micro-batching: concurrent requests share forward passes, and the queue is bounded.

Requests put their decoded images on one queue; a single worker takes what has arrived (up to
``max_batch`` images, waiting at most ``max_wait_s`` for more), runs one forward pass in a
thread, and hands each request its rows. When ``max_queue`` images are already waiting, a new
request is refused at once (the service answers 503) instead of growing memory without bound.

Example:
    >>> import asyncio, numpy as np
    >>> async def main():
    ...     batcher = MicroBatcher(lambda images: np.ones((len(images), 2)) / 2, max_batch=4)
    ...     await batcher.start()
    ...     rows = await batcher.submit(["a", "b"])
    ...     await batcher.stop()
    ...     return rows.shape
    >>> asyncio.run(main())
    (2, 2)
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np


class QueueFullError(Exception):
    """Too many images are already waiting."""


class MicroBatcher:
    """Collects images from concurrent requests into batches for one model.

    Args:
        run: Maps a list of images to an ``N x classes`` array (called in a worker thread).
        max_batch: Most images per forward pass.
        max_wait_s: How long the first request of a batch waits for company.
        max_queue: Most images waiting; beyond it :meth:`submit` raises :class:`QueueFullError`.
    """

    def __init__(
        self,
        run: Callable[[Sequence[Any]], np.ndarray],
        *,
        max_batch: int = 32,
        max_wait_s: float = 0.005,
        max_queue: int = 256,
    ) -> None:
        self.run = run
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.max_queue = max_queue
        self.waiting = 0
        self.batches = 0
        self._queue: asyncio.Queue[tuple[list[Any], asyncio.Future[np.ndarray]]] | None = None
        self._task: asyncio.Task[None] | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="graft-model")

    async def start(self) -> None:
        """Start the worker (call from the running event loop)."""
        self._queue = asyncio.Queue()
        self._task = asyncio.create_task(self._work())

    async def stop(self) -> None:
        """Stop the worker."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._executor.shutdown(wait=False)

    async def submit(self, images: list[Any]) -> np.ndarray:
        """Queue images and wait for their probability rows.

        Raises:
            QueueFullError: ``max_queue`` images are already waiting.
        """
        if self._queue is None:
            raise RuntimeError("MicroBatcher.start() was not called")
        if self.waiting + len(images) > self.max_queue:
            raise QueueFullError(f"{self.waiting} images are waiting (limit {self.max_queue})")
        future: asyncio.Future[np.ndarray] = asyncio.get_running_loop().create_future()
        self.waiting += len(images)
        self._queue.put_nowait((images, future))
        try:
            return await future
        finally:
            self.waiting -= len(images)

    async def _work(self) -> None:
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        while True:
            jobs = [await self._queue.get()]
            count = len(jobs[0][0])
            deadline = loop.time() + self.max_wait_s
            while count < self.max_batch:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    job = await asyncio.wait_for(self._queue.get(), remaining)
                except TimeoutError:
                    break
                jobs.append(job)
                count += len(job[0])
            live = [(images, future) for images, future in jobs if not future.done()]
            if not live:
                continue
            images = [image for job_images, _ in live for image in job_images]
            try:
                rows = await loop.run_in_executor(self._executor, self.run, images)
            except Exception as err:  # one bad batch must not kill the worker
                for _, future in live:
                    if not future.done():
                        future.set_exception(err)
                continue
            self.batches += 1
            start = 0
            for job_images, future in live:
                if not future.done():
                    future.set_result(rows[start : start + len(job_images)])
                start += len(job_images)
