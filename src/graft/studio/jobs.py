"""The studio's long jobs (training, export) on one worker thread, one at a time, in order
(the studio's jobs each run in a child process, :mod:`graft.studio.tasks`; this thread relays).

A job's progress is a list of events (plain dicts) that the page reads as server-sent events;
each event has a ``type`` (``queued``, ``started``, ``extract``, ``epoch_begin``, ``batch``,
``epoch``, ``done``, ``failed``, ``cancelled``). Cancelling sets a flag that the job's progress
hooks check at the next image batch or optimisation step; an interrupted neural run keeps its
last checkpoint and can be resumed.

Example:
    >>> jobs = JobQueue()
    >>> job = jobs.submit("demo", "sum", lambda job: job.emit("note", n=1) or {"total": 1})
    >>> jobs.wait(job.id, timeout=10).status
    'done'
    >>> [event["type"] for event in job.events]
    ['queued', 'started', 'note', 'done']
    >>> jobs.close()
"""

from __future__ import annotations

import itertools
import queue
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from graft.errors import GraftError
from graft.training.callbacks import Callback

#: Seconds between a job's progress events (the page needs the latest, not every step).
BATCH_EVERY_S = 0.5


class Cancelled(Exception):  # noqa: N818 - an outcome, like StopTraining
    """Raised inside a job's hooks once its cancellation was asked for."""


@dataclass
class Job:
    """One queued or running job and its events.

    Attributes:
        id: Its number, as text.
        data: The data folder it works on (shown in the queue).
        kind: ``linear``, ``finetune``, ``export``...
        status: ``queued``, ``running``, ``done``, ``failed`` or ``cancelled``.
        events: Everything it reported, in order.
        result: What the job returned (``done``), for the page.
        error: The one-line error (``failed``).
    """

    id: str
    data: str
    kind: str
    work: Callable[[Job], dict[str, Any]] = field(repr=False)
    status: str = "queued"
    events: list[dict[str, Any]] = field(default_factory=list)
    result: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    cancel_requested: bool = False
    process: Any = field(default=None, repr=False)
    changed: threading.Condition = field(default_factory=threading.Condition, repr=False)

    def emit(self, event: str, /, **fields: Any) -> None:
        """Record an event and wake whoever streams this job's events."""
        with self.changed:
            self.events.append({"type": event, "time": time.time(), **fields})
            self.changed.notify_all()

    def check_cancelled(self) -> None:
        """Raise :class:`Cancelled` once cancellation was asked for."""
        if self.cancel_requested:
            raise Cancelled(f"job {self.id} cancelled")

    def summary(self) -> dict[str, Any]:
        """What the queue view shows."""
        return {
            "id": self.id,
            "data": self.data,
            "kind": self.kind,
            "status": self.status,
            "error": self.error,
            "result": self.result,
        }

    def stream(self, start: int = 0, timeout: float = 15.0) -> Iterator[dict[str, Any] | None]:
        """Yield the events from ``start`` on as they come, ``None`` after ``timeout`` seconds
        without one (a keep-alive), until the job has ended and every event was yielded."""
        index = start
        while True:
            with self.changed:
                if index >= len(self.events) and not self.ended:
                    self.changed.wait(timeout)
                fresh = self.events[index:]
                ended = self.ended
            index += len(fresh)
            if not fresh and not ended:
                yield None
            yield from fresh
            if ended and index >= len(self.events):
                return

    @property
    def ended(self) -> bool:
        """Whether the job has finished, failed or was cancelled."""
        return self.status in ("done", "failed", "cancelled")


class JobQueue:
    """Runs submitted jobs one after another on a daemon thread."""

    def __init__(self) -> None:
        self.jobs: dict[str, Job] = {}
        self._ids = itertools.count(1)
        self._pending: queue.Queue[Job | None] = queue.Queue()
        self._worker = threading.Thread(target=self._run, name="graft-studio-jobs", daemon=True)
        self._worker.start()

    def submit(self, data: str, kind: str, work: Callable[[Job], dict[str, Any]]) -> Job:
        """Queue ``work(job)``; its returned dict becomes ``job.result``."""
        job = Job(str(next(self._ids)), data, kind, work)
        self.jobs[job.id] = job
        job.emit("queued", position=self._pending.qsize())
        self._pending.put(job)
        return job

    def cancel(self, job_id: str) -> Job:
        """Ask a job to stop: a queued one never starts, a running one stops at its next step."""
        job = self.jobs[job_id]
        job.cancel_requested = True
        return job

    def wait(self, job_id: str, timeout: float | None = None) -> Job:
        """Block until the job has ended (tests and scripts)."""
        job = self.jobs[job_id]
        deadline = None if timeout is None else time.monotonic() + timeout
        with job.changed:
            while not job.ended:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    break
                job.changed.wait(left)
        return job

    def close(self) -> None:
        """Stop the worker: cancel every job, end a running job's process."""
        for job in self.jobs.values():
            job.cancel_requested = True
            if job.process is not None and job.process.is_alive():
                job.process.terminate()
        self._pending.put(None)

    def _run(self) -> None:
        while (job := self._pending.get()) is not None:
            self._execute(job)

    @staticmethod
    def _execute(job: Job) -> None:
        if job.cancel_requested:
            job.status = "cancelled"
            job.emit("cancelled")
            return
        job.status = "running"
        job.emit("started", kind=job.kind)
        try:
            job.result = job.work(job) or {}
        except Cancelled:
            job.status = "cancelled"
            job.emit("cancelled")
        except GraftError as err:
            job.status, job.error = "failed", str(err)
            job.emit("failed", error=job.error)
        except Exception as err:  # a job's bug must not kill the worker
            job.status, job.error = "failed", f"{type(err).__name__}: {err}"
            job.emit("failed", error=job.error, trace=traceback.format_exc(limit=5))
        else:
            job.status = "done"
            job.emit("done", result=job.result)


def extraction_events(job: Job) -> Callable[[int, int], None]:
    """A ``(done, total)`` feature-extraction progress hook that reports images/s and checks
    for cancellation."""
    start = time.monotonic()
    last = [0.0]

    def report(done: int, total: int) -> None:
        job.check_cancelled()
        now = time.monotonic()
        if done == total or now - last[0] >= BATCH_EVERY_S:
            last[0] = now
            rate = done / max(now - start, 1e-9)
            job.emit("extract", done=done, total=total, images_per_s=round(rate, 1))

    return report


class TrainingEvents(Callback):
    """Reports a neural run's epochs and steps as job events; stops it when cancelled."""

    def __init__(self, job: Job) -> None:
        self.job = job
        self._last = 0.0

    def on_epoch_begin(self, state: dict[str, Any]) -> None:
        self.job.check_cancelled()
        self.job.emit(
            "epoch_begin",
            epoch=state["epoch"] + 1,
            total=state["total_epochs"],
            phase=state["phase"],
            steps=state["steps"],
        )

    def on_batch_end(self, state: dict[str, Any]) -> None:
        self.job.check_cancelled()
        now = time.monotonic()
        if now - self._last >= BATCH_EVERY_S:
            self._last = now
            batch = state["batch"]
            self.job.emit(
                "batch",
                epoch=state["epoch"] + 1,
                loss=round(float(batch["loss"]), 4),
                images_per_s=round(float(batch["images_per_s"]), 1),
            )

    def on_epoch_end(self, state: dict[str, Any]) -> None:
        record = state["record"]
        keep = ("epoch", "phase", "train_loss", "train_accuracy", "val_loss", "val_accuracy")
        self.job.emit(
            "epoch",
            total=state["total_epochs"],
            **{key: record[key] for key in keep if key in record},
        )
