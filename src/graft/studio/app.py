"""``graft studio``: the whole workflow in one local page (FastAPI; every asset in the package).

Pages are one HTML file with plain JavaScript (``static/``); the routes under ``/api`` call the
same Python API as the command line:

* ``GET /api/browse?path=``: folders inside the roots; ``POST /api/open`` ``{"path"}``: read and
  validate a data folder or table (:func:`graft.data.prepare.prepare`): classes, counts per
  split, skipped files with reasons, duplicates across splits.
* ``GET /api/images?data=&label=&page=``: a page of images; ``GET /api/thumb?path=``: a cached
  thumbnail; ``GET /api/image?path=``: the image itself.
* ``POST /api/train`` ``{"data", "strategy", "backbone", "options"}``: queue a run
  (:func:`graft.train`); ``POST /api/resume`` ``{"run"}``: continue an interrupted one;
  ``GET /api/jobs/{id}/events``: its progress as server-sent events; ``POST
  /api/jobs/{id}/cancel``; ``GET /api/jobs``: the queue.
* ``GET /api/runs``; ``GET /api/runs/{name}``: metrics with intervals, the confusion matrix and
  the mistakes (:func:`graft.evaluation.evaluate_run`); ``GET /api/runs/{name}/report``: the
  run's HTML report (Grad-CAM included).
* ``POST /api/decide`` ``{"data", "path", "action", "label"}``: drop or relabel an image in the
  decisions file that the next training applies.
* ``POST /api/runs/{name}/predict``: an uploaded image's label and probabilities.
* ``POST /api/runs/{name}/export`` ``{"format", "int8"}``: queue an export with its parity check.

It binds 127.0.0.1 unless told otherwise; with an API key every ``/api`` route needs it (the
``X-API-Key`` header, or ``key=`` in the query for the event stream). Paths outside the folders
the studio was opened on are refused (403).

Example:
    >>> from fastapi.testclient import TestClient
    >>> import tempfile, pathlib
    >>> home = pathlib.Path(tempfile.mkdtemp())
    >>> client = TestClient(create_studio_app([home], workspace=home / "studio"))
    >>> client.get("/health").json()
    {'status': 'ok'}
"""

from __future__ import annotations

import hmac
import io
import json
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import fields
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import (
    FileResponse,
    HTMLResponse,
    JSONResponse,
    Response,
    StreamingResponse,
)
from PIL import Image

from graft.auditing.api import AUDIT_HTML
from graft.data.prepare import DataOptions
from graft.errors import ConfigError, DataError, GraftError
from graft.evaluation.evaluate import evaluate_run, saved_splits
from graft.evaluation.interpret import top_losses
from graft.evaluation.run_report import write_run_report
from graft.ladder.compare import compare_runs
from graft.predictor import Predictor, load
from graft.runs import EXPORTS, REPORT, read_run_config
from graft.studio.jobs import Job, JobQueue
from graft.studio.tasks import in_child
from graft.studio.workspace import OutsideError, Workspace
from graft.training import LinearOptions, NeuralOptions

#: Largest image accepted by "Try it" (bytes).
MAX_UPLOAD = 20 * 1024 * 1024
#: What the Train page may set, beside strategy and backbone.
TRAIN_OPTIONS = (
    "epochs",
    "freeze_epochs",
    "image_size",
    "crop_pct",
    "head",
    "lr",
    "augment",
    "batch_size",
    "val",
    "test",
    "seed",
    "per_class",
    "budget",
    "engine",
    "workers",
)


def create_studio_app(
    roots: Sequence[str | Path],
    *,
    workspace: str | Path,
    api_key: str | None = None,
    data: str | Path | None = None,
) -> FastAPI:
    """The studio's app: it reads inside ``roots`` and writes inside ``workspace``.

    Args:
        roots: The folders it may read (the data the user opened it on, and ``--root``).
        workspace: Its own folder: runs, decisions, thumbnails.
        api_key: When set, required by every ``/api`` route.
        data: A data folder to open when the page loads.
    """
    space = Workspace(roots=[Path(r) for r in roots], folder=Path(workspace))
    jobs = JobQueue()
    predictors: dict[str, Predictor] = {}

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        jobs.close()

    app = FastAPI(title="graft studio", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.workspace, app.state.jobs = space, jobs

    @app.middleware("http")
    async def guard(request: Request, call_next: Any) -> Response:
        if api_key and request.url.path.startswith("/api"):
            given = request.headers.get("x-api-key") or request.query_params.get("key") or ""
            if not hmac.compare_digest(given.encode("utf-8", "replace"), api_key.encode()):
                return JSONResponse({"detail": "missing or wrong API key"}, 401)
        response: Response = await call_next(request)
        return response

    @app.exception_handler(OutsideError)
    async def outside(_: Request, err: OutsideError) -> JSONResponse:
        return JSONResponse({"detail": str(err)}, 403)

    @app.exception_handler(GraftError)
    async def refused(_: Request, err: GraftError) -> JSONResponse:
        return JSONResponse({"detail": str(err)}, 422)

    static = resources.files("graft.studio") / "static"

    @app.get("/", response_class=HTMLResponse)
    def page() -> str:
        html = (static / "studio.html").read_text(encoding="utf-8")
        start = json.dumps(str(Path(data).resolve()) if data else "")
        return html.replace("__GRAFT_START_DATA__", start.replace("<", "\\u003c"))

    @app.get("/static/{name}")
    def asset(name: str) -> Response:
        types = {".js": "text/javascript", ".css": "text/css"}
        suffix = Path(name).suffix
        if name not in ("studio.js", "studio.css"):
            raise HTTPException(404, f"no asset {name}")
        return Response((static / name).read_text(encoding="utf-8"), media_type=types[suffix])

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/api/browse")
    def browse(path: str | None = None) -> dict[str, Any]:
        return space.browse(path)

    @app.post("/api/open")
    async def open_data(body: dict[str, Any]) -> dict[str, Any]:
        return await run_in_threadpool(space.open_data, _text(body, "path"))

    @app.get("/api/images")
    def images(data: str, label: str | None = None, page: int = 0) -> dict[str, Any]:
        return space.images(data, label or None, max(page, 0))

    @app.get("/api/thumb")
    async def thumb(path: str) -> Response:
        jpeg = await run_in_threadpool(space.thumbnail, path)
        return Response(jpeg, media_type="image/jpeg", headers={"Cache-Control": "max-age=3600"})

    @app.get("/api/image")
    def image(path: str) -> FileResponse:
        return FileResponse(space.inside(path))

    @app.post("/api/train")
    def start_training(body: dict[str, Any]) -> dict[str, Any]:
        source = space.inside(_text(body, "data"))
        strategy = str(body.get("strategy") or "linear")
        options = {k: v for k, v in dict(body.get("options") or {}).items() if v not in ("", None)}
        unknown = sorted(set(options) - set(TRAIN_OPTIONS))
        if unknown:
            raise ConfigError(f"options {', '.join(unknown)} cannot be set from the studio")
        options = _for_strategy(strategy, options)  # e.g. epochs typed before choosing linear
        if body.get("backbone"):
            options["backbone"] = str(body["backbone"])
        out = space.new_run_dir(source, strategy)
        fixes = space.data_options(source).fixes
        params = {
            "data": str(source),
            "strategy": strategy,
            "out": str(out),
            "fixes": str(fixes) if fixes else None,
            "options": options,
        }
        job = jobs.submit(str(source), strategy, in_child("train", params))
        return {"job": job.id, "run": out.name}

    @app.post("/api/rank")
    def shortlist(body: dict[str, Any]) -> dict[str, Any]:
        source = space.inside(_text(body, "data"))
        fixes = space.data_options(source).fixes
        params = {
            "data": str(source),
            "backbones": str(body.get("backbones") or "all-available"),
            "fixes": str(fixes) if fixes else None,
        }
        return {"job": jobs.submit(str(source), "rank", in_child("rank", params)).id}

    @app.post("/api/audit")
    def audit_data(body: dict[str, Any]) -> dict[str, Any]:
        source = space.inside(_text(body, "data"))
        out = space.folder / "audits" / space.data_name(source)
        params = {
            "data": str(source),
            "out": str(out),
            "report_url": f"/api/audit/{space.data_name(source)}/report",
        }
        return {"job": jobs.submit(str(source), "audit", in_child("audit", params)).id}

    @app.get("/api/audit/{name}/report", response_class=HTMLResponse)
    def audit_report(name: str) -> str:
        page = space.inside(space.folder / "audits" / name / AUDIT_HTML)
        if not page.is_file():
            raise HTTPException(404, f"no audit of {name} yet")
        return page.read_text(encoding="utf-8")

    @app.get("/api/ladder")
    async def ladder(data: str) -> dict[str, Any]:
        source = space.inside(data)
        chosen = [r for r in space.runs() if r["status"] == "complete" and r["data"] == str(source)]

        def build() -> dict[str, Any]:
            runs = []
            for entry in chosen:
                run = space.run_dir(entry["name"])
                runs.append((read_run_config(run).backbone_names, entry["name"], run))
            # the split each run is evaluated on; compare_runs evaluates them (once)
            splits = {next(iter(saved_splits(run)), "") for _, _, run in runs}
            if len(runs) < 2 or len(splits) != 1 or "" in splits:
                return {"rows": [], "note": "the ladder needs two complete runs on this data"}
            out = space.folder / "compare" / space.data_name(source)
            try:
                comparison = compare_runs(runs, out=out, split=splits.pop(), speed=False)
            except DataError as err:  # decisions changed the images between runs
                return {"rows": [], "note": str(err)}
            return comparison.to_json()

        return await run_in_threadpool(build)

    @app.post("/api/resume")
    def resume(body: dict[str, Any]) -> dict[str, Any]:
        run = space.run_dir(_text(body, "run"))
        job = jobs.submit(str(run), "resume", in_child("resume", {"run": str(run)}))
        return {"job": job.id, "run": run.name}

    @app.get("/api/jobs")
    def queue() -> list[dict[str, Any]]:
        return [job.summary() for job in jobs.jobs.values()]

    @app.post("/api/jobs/{job_id}/cancel")
    def cancel(job_id: str) -> dict[str, Any]:
        _job(jobs, job_id)
        return jobs.cancel(job_id).summary()

    @app.get("/api/jobs/{job_id}/events")
    async def events(job_id: str, request: Request) -> StreamingResponse:
        job = _job(jobs, job_id)

        async def stream() -> AsyncIterator[str]:
            iterator = job.stream(timeout=10.0)
            while True:
                event = await run_in_threadpool(next, iterator, StopAsyncIteration)
                if event is StopAsyncIteration or await request.is_disconnected():
                    return
                yield ": keep-alive\n\n" if event is None else f"data: {json.dumps(event)}\n\n"

        headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
        return StreamingResponse(stream(), media_type="text/event-stream", headers=headers)

    @app.get("/api/runs")
    def runs() -> list[dict[str, Any]]:
        return space.runs()

    @app.get("/api/runs/{name}")
    async def run_results(name: str) -> dict[str, Any]:
        run = space.run_dir(name)
        evaluation = await run_in_threadpool(evaluate_run, run)
        document = evaluation.to_json()
        config = evaluation.run
        classes = evaluation.classes
        mistakes = [
            {
                "path": evaluation.paths[loss.index],
                "true": loss.true,
                "predicted": loss.predicted,
                "probabilities": dict(
                    zip(classes, map(float, evaluation.probabilities[loss.index]), strict=True)
                ),
            }
            for loss in top_losses(evaluation.truth, evaluation.probabilities, classes, k=48)
            if loss.true != loss.predicted
        ]
        return {
            "mistakes": mistakes,
            "name": name,
            "strategy": config.strategy,
            "backbone": config.backbone_names,
            "data": config.data.source,
            "fixes": config.data.cleaning.get("fixes", {}),
            **{key: document.get(key) for key in _RESULT_KEYS},
        }

    @app.get("/api/runs/{name}/report", response_class=HTMLResponse)
    async def report(name: str) -> str:
        run = space.run_dir(name)
        target = space.folder / "reports" / name / REPORT

        def build() -> str:
            write_run_report(evaluate_run(run), out=target)
            return target.read_text(encoding="utf-8")

        return await run_in_threadpool(build)

    @app.post("/api/decide")
    def decide(body: dict[str, Any]) -> dict[str, Any]:
        target = space.decide(
            _text(body, "data"),
            _text(body, "path"),
            str(body.get("action") or ""),
            str(body.get("label") or ""),
        )
        return {"fixes_file": str(target)}

    @app.post("/api/runs/{name}/predict")
    async def predict(name: str, file: UploadFile) -> dict[str, Any]:
        run = space.run_dir(name)
        content = await file.read(MAX_UPLOAD + 1)
        if len(content) > MAX_UPLOAD:
            raise HTTPException(413, f"{file.filename}: over {MAX_UPLOAD // 2**20} MB")

        def classify() -> dict[str, Any]:
            try:
                image = Image.open(io.BytesIO(content))
                image.load()
            except Exception as err:
                raise DataError(f"{file.filename}: not an image this studio can read") from err
            if name not in predictors:
                predictors[name] = load(run)
            prediction = predictors[name].predict([image.convert("RGB")])[0]
            return {
                "file": file.filename,
                "label": prediction.label,
                "confidence": prediction.confidence,
                "probabilities": prediction.probabilities,
            }

        return await run_in_threadpool(classify)

    @app.post("/api/runs/{name}/export")
    def export(name: str, body: dict[str, Any]) -> dict[str, Any]:
        run = space.run_dir(name)
        format = str(body.get("format") or "onnx")
        int8 = bool(body.get("int8"))
        key = "int8" if int8 else format
        if key not in EXPORTS:
            raise ConfigError(f"format {format!r} is not one of: onnx, torchscript")

        params = {"run": str(run), "format": format, "int8": int8}
        return {"job": jobs.submit(str(run), f"export {key}", in_child("export", params)).id}

    return app


_RESULT_KEYS = (
    "split",
    "n",
    "accuracy",
    "macro_f1",
    "intervals",
    "roc_auc",
    "confusion_matrix",
    "classes",
    "confused_pairs",
)


def _for_strategy(strategy: str, options: dict[str, Any]) -> dict[str, Any]:
    """The options that apply to ``strategy`` (the page keeps every field filled in)."""
    kinds: dict[str, list[Any]] = {
        "linear": [LinearOptions],
        "auto": [LinearOptions, NeuralOptions],
    }
    allowed = {f.name for f in fields(DataOptions)} | ({"budget"} if strategy == "auto" else set())
    for kind in kinds.get(strategy, [NeuralOptions]):
        allowed |= {f.name for f in fields(kind)}
    return {key: value for key, value in options.items() if key in allowed}


def _text(body: dict[str, Any], key: str) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{key!r} is missing: expected a path as text")
    return value.strip()


def _job(jobs: JobQueue, job_id: str) -> Job:
    if job_id not in jobs.jobs:
        raise HTTPException(404, f"no job {job_id}")
    return jobs.jobs[job_id]
