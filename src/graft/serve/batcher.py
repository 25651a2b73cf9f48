"""Micro-batching: concurrent requests share forward passes, and the queue is bounded.

Requests put their decoded images on one queue; a single worker takes what has arrived (up to
``max_batch`` images, waiting at most ``max_wait_s`` for more), runs one forward pass in a
thread, and hands each request its rows. A request takes room for its images with
:meth:`MicroBatcher.admit` before they are decoded, and they count until the worker takes them
off the queue (a request that gave up is skipped then): when ``max_queue`` images are admitted,
a new request is refused at once (the service answers 503) instead of growing memory.

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

Job = tuple[list[Any], "asyncio.Future[np.ndarray]", "Admission"]


class QueueFullError(Exception):
    """Too many images are already waiting."""


class TooManyImagesError(QueueFullError):
    """More images in one request than the queue can ever hold (retrying cannot help)."""


class Admission:
    """Room for a request's images, taken before they are decoded (see :meth:`MicroBatcher.admit`).

    The room is given back when the worker takes the images off the queue, or by
    :meth:`release` if the request ends before its images are queued.
    """

    def __init__(self, batcher: MicroBatcher, count: int) -> None:
        self.batcher = batcher
        self.count = count
        self.held = True
        self.queued = False

    def release(self) -> None:
        """Give the room back (once; later calls do nothing)."""
        if self.held:
            self.held = False
            self.batcher.waiting -= self.count


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
        self._queue: asyncio.Queue[Job] | None = None
        self._task: asyncio.Task[None] | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="graft-model")

    async def start(self) -> None:
        """Start the worker (call from the running event loop)."""
        self._queue = asyncio.Queue()
        self._task = asyncio.create_task(self._work())

    @property
    def alive(self) -> bool:
        """Whether the worker is running (``/health`` says so)."""
        return self._task is not None and not self._task.done()

    async def stop(self) -> None:
        """Stop the worker."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._executor.shutdown(wait=False)

    def admit(self, count: int) -> Admission:
        """Take room for ``count`` images before any work is spent on them.

        Images are counted from admission until the worker takes them off the queue, so
        decoded images waiting anywhere never exceed ``max_queue``.

        Raises:
            TooManyImagesError: ``count`` is over ``max_queue``.
            QueueFullError: ``max_queue`` images are already admitted.
        """
        if count > self.max_queue:
            raise TooManyImagesError(
                f"{count} images in one request; the queue holds at most {self.max_queue}"
            )
        if self.waiting + count > self.max_queue:
            raise QueueFullError(f"{self.waiting} images are waiting (limit {self.max_queue})")
        self.waiting += count
        return Admission(self, count)

    async def submit(self, images: list[Any], admission: Admission | None = None) -> np.ndarray:
        """Queue images and wait for their probability rows.

        Args:
            images: The prepared images.
            admission: Room taken earlier with :meth:`admit`; taken now when not given.

        Raises:
            QueueFullError: ``max_queue`` images are already waiting.
        """
        if self._queue is None:
            raise RuntimeError("MicroBatcher.start() was not called")
        if admission is None:
            admission = self.admit(len(images))
        future: asyncio.Future[np.ndarray] = asyncio.get_running_loop().create_future()
        admission.queued = True
        self._queue.put_nowait((images, future, admission))
        try:
            return await future
        finally:
            if not future.done():
                future.cancel()  # a request that gave up: the worker skips its images

    async def _take(self, timeout: float | None = None) -> Job:
        """The next job off the queue; its images stop counting against ``max_queue``."""
        assert self._queue is not None
        job = (
            await self._queue.get()
            if timeout is None
            else await asyncio.wait_for(self._queue.get(), timeout)
        )
        job[2].release()
        return job

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            jobs = [await self._take()]
            count = len(jobs[0][0])
            deadline = loop.time() + self.max_wait_s
            while count < self.max_batch:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    job = await self._take(remaining)
                except TimeoutError:
                    break
                jobs.append(job)
                count += len(job[0])
            live = [(images, future) for images, future, _ in jobs if not future.done()]
            del jobs
            if not live:
                continue
            images = [image for job_images, _ in live for image in job_images]
            try:
                rows = await loop.run_in_executor(self._executor, self.run, images)
            except asyncio.CancelledError:
                raise
            except BaseException as err:  # one bad batch must not kill the worker
                for _, future in live:
                    if not future.done():
                        future.set_exception(err)
                continue
            finally:
                del images
            self.batches += 1
            start = 0
            for job_images, future in live:
                if not future.done():
                    future.set_result(rows[start : start + len(job_images)])
                start += len(job_images)
