"""``graft serve``: a small web service and page for a trained run.

Routes:

* ``POST /predict``: multipart form with one or many image files; returns the top-k labels per
  image. Concurrent requests are micro-batched (:mod:`graft.serve.batcher`).
* ``GET /health``: ``{"status": "ok"}``.
* ``GET /info``: labels, backbone, strategy and the run's metrics.
* ``GET /``: a page to choose or drag-and-drop images and see each with its label and confidence
  bars.

Abuse and bad input, each answered without holding memory or the event loop:

* the body streams through a multipart parser in a worker thread (:mod:`graft.serve.uploads`):
  over the upload limit (``Content-Length`` or while reading) 413, more files or parts than
  allowed 413, a body not received within ``body_timeout_s`` 408; uploads stay in memory;
* each image's header is read first: a format outside JPEG/PNG/BMP/GIF/WebP/TIFF is 415 (EPS,
  PSD, ... are never parsed), a corrupt header 422, a request whose images add up to more than
  ``max_request_pixels`` 413; then room in the queue is taken *before* decoding (full: 503;
  more images than the queue can ever hold: 413);
* images decode in two lanes (:mod:`graft.serve.decoding`), large ones one at a time, each
  straight to the model's input size; over the per-image pixel limit 422;
* a request that waits longer than ``timeout_s`` gets 504, and its images stop counting once
  the worker drops them.

With an API key (``--api-key`` or ``GRAFT_API_KEY``), ``/predict`` and ``/info`` require it in
the ``X-API-Key`` header, compared as bytes in constant time (anything else, including a
non-ASCII header, is 401). The server binds 127.0.0.1 unless told otherwise, and ``graft serve``
caps concurrent connections (``max_connections``, uvicorn's ``limit_concurrency``; beyond: 503).

Example:
    >>> from fastapi.testclient import TestClient
    >>> app = create_app("runs/cats")  # doctest: +SKIP
    >>> TestClient(app).get("/health").json()  # doctest: +SKIP
    {'status': 'ok'}
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse

from graft.data.images import NotAnImageError
from graft.errors import DataError
from graft.predictor import load
from graft.runs import METRICS
from graft.serve.batcher import Admission, MicroBatcher, QueueFullError, TooManyImagesError
from graft.serve.decoding import DecodeLanes
from graft.serve.uploads import Upload, UploadError, read_uploads


@dataclass(frozen=True)
class ServeOptions:
    """Limits and settings of the service.

    Attributes:
        backend: Predictor backend (``auto``, ``torch``, ``openvino``, ``onnx``).
        tta: Test-time augmentation (``none``, ``flip``, ``dihedral``); default the run's own.
        api_key: Required in ``X-API-Key`` on ``/predict`` when set.
        max_upload_bytes: Largest request body accepted.
        max_files: Most images per request.
        max_queue: Most images waiting for the model.
        max_batch: Most images per forward pass.
        timeout_s: Longest a request may wait for its predictions.
        top_k: Default number of labels per image.
        body_timeout_s: Longest a client may take to send its request body.
        max_request_pixels: Most pixels (as the headers declare them) in one request.
        large_pixels: Images over this many pixels decode one at a time.
        max_connections: Most concurrent connections (``graft serve``; beyond them 503).
    """

    backend: str = "auto"
    tta: str | None = None
    api_key: str | None = None
    max_upload_bytes: int = 10 * 1024 * 1024
    max_files: int = 64
    max_queue: int = 256
    max_batch: int = 32
    timeout_s: float = 30.0
    top_k: int = 3
    body_timeout_s: float = 30.0
    max_request_pixels: int = 100_000_000
    large_pixels: int = 16_000_000
    max_connections: int = 64


def create_app(run_dir: str | Path, options: ServeOptions | None = None) -> FastAPI:
    """Build the FastAPI application serving ``run_dir``.

    Raises:
        DataError: The run cannot be loaded.
    """

    settings = options or ServeOptions()
    # A malformed body is answered 400 with the parser's reason; its log line would only let a
    # hostile client fill the server's log.
    logging.getLogger("python_multipart").setLevel(logging.ERROR)
    key = settings.api_key or os.environ.get("GRAFT_API_KEY") or None
    api_key = key.encode("utf-8") if key is not None else None
    predictor = load(run_dir, backend=settings.backend, tta=settings.tta)
    predictor.probabilities([_blank(predictor)])  # build the engine before the first request
    batcher = MicroBatcher(
        predictor.probabilities_of_prepared,
        max_batch=settings.max_batch,
        max_queue=settings.max_queue,
    )
    lanes = DecodeLanes(
        predictor.prepare, draft_size=predictor.draft_size(), large_pixels=settings.large_pixels
    )
    info = _info(Path(run_dir), predictor, settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await batcher.start()
        yield
        await batcher.stop()
        lanes.close()

    app = FastAPI(title="graft", summary="Image classification with a graft run", lifespan=lifespan)
    app.state.batcher = batcher

    def check_key(request: Request) -> None:
        if api_key is None:
            return
        sent = [value for name, value in request.headers.raw if name.lower() == b"x-api-key"]
        if len(sent) != 1 or not hmac.compare_digest(sent[0], api_key):
            raise HTTPException(401, "missing or wrong API key: send it in the X-API-Key header")

    @app.get("/health")
    async def health() -> JSONResponse:
        if not batcher.alive:
            return JSONResponse({"status": "the model worker stopped"}, status_code=503)
        return JSONResponse({"status": "ok"})

    @app.get("/info")
    async def run_info(request: Request) -> dict[str, Any]:
        check_key(request)
        return {**info, "api_key_required": api_key is not None}

    page_html = (resources.files("graft.serve") / "page.html").read_text(encoding="utf-8")

    @app.get("/", response_class=HTMLResponse)
    async def page() -> str:
        return page_html

    @app.post("/predict")
    async def predict(request: Request, top_k: int | None = None) -> JSONResponse:
        check_key(request)
        try:
            files = await read_uploads(
                request.stream(),
                request.headers.get("content-type", ""),
                content_length=request.headers.get("content-length"),
                max_files=settings.max_files,
                max_bytes=settings.max_upload_bytes,
                timeout_s=settings.body_timeout_s,
            )
        except UploadError as err:
            raise HTTPException(err.status, err.detail) from err
        if not files:
            raise HTTPException(
                415,
                "no image files in the request: send multipart/form-data with one or more files",
            )
        pixels = [await _declared_pixels(upload) for upload in files]
        if sum(pixels) > settings.max_request_pixels:
            raise HTTPException(
                413,
                f"the request's images hold {sum(pixels):,} pixels; the limit per request is "
                f"{settings.max_request_pixels:,}: send fewer or smaller images",
            )
        try:
            admission = batcher.admit(len(files))
        except TooManyImagesError as err:
            raise HTTPException(413, f"{err}; send fewer images per request") from err
        except QueueFullError as err:
            raise HTTPException(503, f"the service is busy ({err}); retry shortly") from err
        rows = await _decode_and_run(files, pixels, admission)
        k = max(1, min(top_k or settings.top_k, len(predictor.classes)))
        results = []
        for upload, row in zip(files, rows, strict=True):
            order = row.argsort()[::-1][:k]
            results.append(
                {
                    "filename": upload.filename,
                    "label": predictor.classes[int(order[0])],
                    "confidence": float(row[order[0]]),
                    "top_k": [
                        {"label": predictor.classes[int(i)], "probability": float(row[i])}
                        for i in order
                    ],
                }
            )
        return JSONResponse({"predictions": results})

    async def _declared_pixels(upload: Upload) -> int:
        """The pixel count an upload's header declares, or the HTTP answer for a bad one."""
        return int(await _checked_async(lanes.header(upload.data, upload.filename)))

    async def _decode_and_run(files: list[Upload], pixels: list[int], admission: Admission) -> Any:
        try:
            images = []
            for upload, count in zip(files, pixels, strict=True):
                images.append(
                    await _checked_async(lanes.decode(upload.data, upload.filename, count))
                )
                upload.data = bytearray()  # the bytes are not needed once decoded
            return await asyncio.wait_for(batcher.submit(images, admission), settings.timeout_s)
        except QueueFullError as err:
            raise HTTPException(503, f"the service is busy ({err}); retry shortly") from err
        except TimeoutError as err:
            raise HTTPException(
                504, f"no answer within {settings.timeout_s:g} s; retry later"
            ) from err
        finally:
            if not admission.queued:  # once queued, the worker gives the room back
                admission.release()

    return app


async def _checked_async(work: Any) -> Any:
    try:
        return await work
    except DataError as err:
        raise _http_error(err) from err


def _http_error(err: DataError) -> HTTPException:
    """415 for a file that is not an allowed image; 422 for corrupt or too large ones."""
    return HTTPException(415 if isinstance(err, NotAnImageError) else 422, str(err))


def _blank(predictor: Any) -> Any:
    from PIL import Image

    size = predictor.preprocessings[0].input_size
    return Image.new("RGB", (size, size))


def _info(run_dir: Path, predictor: Any, settings: ServeOptions) -> dict[str, Any]:
    metrics_file = run_dir / METRICS
    metrics = json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}
    summary = {
        split: {
            key: values.get(key) for key in ("accuracy", "macro_f1", "n", "intervals", "roc_auc")
        }
        for split, values in metrics.items()
    }
    return {
        "run": str(run_dir),
        "labels": predictor.classes,
        "backbone": predictor.run.backbone_names,
        "strategy": predictor.run.strategy,
        "backend": settings.backend,
        "tta": getattr(predictor, "exported_tta", predictor.tta),
        "metrics": summary,
        "limits": {
            "max_upload_bytes": settings.max_upload_bytes,
            "max_files": settings.max_files,
            "max_queue": settings.max_queue,
            "timeout_s": settings.timeout_s,
        },
    }
