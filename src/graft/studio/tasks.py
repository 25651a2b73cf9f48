"""The studio's long jobs, each run in a child process so the page's server stays responsive.

Training, ranking, auditing and exporting hold Python's global interpreter lock for long
stretches (tracing and compiling a network, decoding images); in the server's own process
they would stall every request, ``/health`` included, for hundreds of milliseconds. Each job
therefore runs :func:`run_task` in a fresh ``spawn`` process: its events come back over a
queue, cancellation goes in as an event, and the result (or the one-line error) comes back
last. The tasks take and return plain JSON-ready values.

Example:
    >>> sorted(TASKS)
    ['audit', 'export', 'rank', 'resume', 'train']
"""

from __future__ import annotations

import multiprocessing
import queue
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from graft.api import train
from graft.auditing import audit
from graft.data.prepare import DataOptions
from graft.errors import GraftError
from graft.export import export_model
from graft.ranking.rank import rank
from graft.runs import read_run_config
from graft.studio.jobs import Cancelled, Job, TrainingEvents, extraction_events


class Reporter(Protocol):
    """What a task reports through: events, and a cancellation check."""

    def emit(self, event: str, /, **fields: Any) -> None: ...

    def check_cancelled(self) -> None: ...


class JobFailedError(GraftError):
    """A job's process reported an error (its message is the job's error)."""


def _train(params: dict[str, Any], job: Reporter) -> dict[str, Any]:
    fixes = params.get("fixes")
    job.emit("run", run=Path(params["out"]).name, fixes=fixes or "")
    result = train(
        params["data"],
        strategy=params["strategy"],
        out=params["out"],
        fixes=Path(fixes) if fixes else None,
        progress=extraction_events(job),  # type: ignore[arg-type]
        callbacks=[TrainingEvents(job)],  # type: ignore[arg-type]
        **params["options"],
    )
    return {"run": Path(result.run_dir).name, "metrics": result.metrics}


def _resume(params: dict[str, Any], job: Reporter) -> dict[str, Any]:
    run = Path(params["run"])
    strategy = read_run_config(run).strategy
    result = train(strategy=strategy, resume=run, callbacks=[TrainingEvents(job)])  # type: ignore[arg-type]
    return {"run": run.name, "metrics": result.metrics}


def _rank(params: dict[str, Any], job: Reporter) -> dict[str, Any]:
    fixes = params.get("fixes")
    ranking = rank(
        params["data"],
        backbones=params["backbones"],
        data_options=DataOptions(fixes=Path(fixes)) if fixes else None,
        on_candidate=lambda c: job.emit("candidate", name=c.name, scores=c.scores),
    )
    return ranking.to_dict()


def _audit(params: dict[str, Any], job: Reporter) -> dict[str, Any]:
    result = audit(
        params["data"],
        out=params["out"],
        report=True,
        progress=extraction_events(job),  # type: ignore[arg-type]
    )
    found = result.to_dict()
    return {"summary": found["summary"], "report": params["report_url"]}


def _export(params: dict[str, Any], job: Reporter) -> dict[str, Any]:
    run, format, int8 = Path(params["run"]), params["format"], params["int8"]
    job.emit("exporting", format=format, int8=int8)
    result = export_model(run, format=format, int8=int8)
    backend = " --backend onnx" if format == "onnx" and not int8 else ""
    return {
        "path": str(result.path),
        "max_difference": result.max_difference,
        "agreement": result.agreement,
        "checked": result.checked,
        "accuracy": result.accuracy,
        "predict": f"graft predict {run} IMAGES{backend}",
        "serve": f"graft serve {run}",
    }


TASKS: dict[str, Callable[[dict[str, Any], Reporter], dict[str, Any]]] = {
    "train": _train,
    "resume": _resume,
    "rank": _rank,
    "audit": _audit,
    "export": _export,
}


class _ChildReporter:
    def __init__(self, events: Any, cancel: Any) -> None:
        self.events, self.cancel = events, cancel

    def emit(self, event: str, /, **fields: Any) -> None:
        self.events.put(("event", {"type": event, **fields}))

    def check_cancelled(self) -> None:
        if self.cancel.is_set():
            raise Cancelled("cancelled")


def run_task(task: str, params: dict[str, Any], events: Any, cancel: Any) -> None:
    """The child process: run one task, send its events, then its outcome."""
    try:
        outcome: tuple[str, Any] = ("result", TASKS[task](params, _ChildReporter(events, cancel)))
    except Cancelled:
        outcome = ("cancelled", None)
    except GraftError as err:
        outcome = ("error", str(err))
    except Exception as err:
        outcome = ("error", f"{type(err).__name__}: {err}\n{traceback.format_exc(limit=4)}")
    events.put(outcome)


def in_child(task: str, params: dict[str, Any]) -> Callable[[Job], dict[str, Any]]:
    """A job's work: run ``task`` in a spawned process, relaying its events to the job and a
    cancellation to the process; return its result.

    Raises:
        Cancelled: The task stopped because the job was cancelled.
        JobFailedError: The task failed (its message), or its process died.
    """

    def work(job: Job) -> dict[str, Any]:
        context = multiprocessing.get_context("spawn")
        events, cancel = context.Queue(), context.Event()
        process = context.Process(target=run_task, args=(task, params, events, cancel))
        process.start()
        job.process = process
        try:
            outcome = _relay(job, process, events, cancel)
        finally:
            process.join(timeout=30)
            if process.is_alive():
                process.terminate()
            job.process = None
        kind, payload = outcome
        if kind == "cancelled":
            raise Cancelled(f"job {job.id} cancelled")
        if kind == "error":
            raise JobFailedError(str(payload))
        return dict(payload)

    return work


def _relay(job: Job, process: Any, events: Any, cancel: Any) -> tuple[str, Any]:
    while True:
        if job.cancel_requested:
            cancel.set()
        try:
            kind, payload = events.get(timeout=0.25)
        except queue.Empty:
            if not process.is_alive():
                try:  # its last message may have arrived just now
                    kind, payload = events.get(timeout=1.0)
                except queue.Empty:
                    code = process.exitcode
                    return "error", f"the job's process ended without a result (exit code {code})"
            else:
                continue
        if kind == "event":
            event = dict(payload)
            job.emit(event.pop("type"), **event)
        else:
            return kind, payload
