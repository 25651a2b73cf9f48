"""``graft serve``: a small web service and page for a trained run.

Routes:

* ``POST /predict``: multipart form with one or many image files; returns the top-k labels per
  image. Concurrent requests are micro-batched (:mod:`graft.serve.batcher`).
* ``GET /health``: ``{"status": "ok"}``.
* ``GET /info``: labels, backbone, strategy and the run's metrics.
* ``GET /``: a page to choose or drag-and-drop images and see each with its label and confidence
  bars.

Abuse and bad input: a request body over the upload limit is refused with 413 (checked against
``Content-Length`` and while reading, so it is never held whole); a file that is not an image gets
415, a corrupt or over-the-pixel-limit one 422, each naming the file; a full queue gives 503 and
a request that waits longer than the timeout 504. Uploads are read into memory and never written
to disk. With an API key (``--api-key`` or ``GRAFT_API_KEY``), ``/predict`` requires it in the
``X-API-Key`` header (401 otherwise). The server binds 127.0.0.1 unless told otherwise.

Example:
    >>> from fastapi.testclient import TestClient
    >>> app = create_app("runs/cats")  # doctest: +SKIP
    >>> TestClient(app).get("/health").json()  # doctest: +SKIP
    {'status': 'ok'}
"""

from __future__ import annotations

import asyncio
import email.parser
import email.policy
import hmac
import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse

from graft.data.images import (
    CorruptImageError,
    ImageTooLargeError,
    NotAnImageError,
    decode_image_bytes,
)
from graft.serve.batcher import MicroBatcher, QueueFullError


@dataclass(frozen=True)
class ServeOptions:
    """Limits and settings of the service.

    Attributes:
        backend: Predictor backend (``auto``, ``torch``, ``openvino``, ``onnx``).
        api_key: Required in ``X-API-Key`` on ``/predict`` when set.
        max_upload_bytes: Largest request body accepted.
        max_files: Most images per request.
        max_queue: Most images waiting for the model.
        max_batch: Most images per forward pass.
        timeout_s: Longest a request may wait for its predictions.
        top_k: Default number of labels per image.
    """

    backend: str = "auto"
    api_key: str | None = None
    max_upload_bytes: int = 10 * 1024 * 1024
    max_files: int = 64
    max_queue: int = 256
    max_batch: int = 32
    timeout_s: float = 30.0
    top_k: int = 3


def create_app(run_dir: str | Path, options: ServeOptions | None = None) -> FastAPI:
    """Build the FastAPI application serving ``run_dir``.

    Raises:
        DataError: The run cannot be loaded.
    """
    from graft.predictor import load

    settings = options or ServeOptions()
    api_key = settings.api_key or os.environ.get("GRAFT_API_KEY") or None
    predictor = load(run_dir, backend=settings.backend)
    predictor.probabilities([_blank(predictor)])  # build the engine before the first request
    batcher = MicroBatcher(
        predictor.probabilities, max_batch=settings.max_batch, max_queue=settings.max_queue
    )
    info = _info(Path(run_dir), predictor, settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await batcher.start()
        yield
        await batcher.stop()

    app = FastAPI(title="graft", summary="Image classification with a graft run", lifespan=lifespan)
    app.state.batcher = batcher

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/info")
    async def run_info() -> dict[str, Any]:
        return {**info, "api_key_required": api_key is not None}

    page_html = (resources.files("graft.serve") / "page.html").read_text(encoding="utf-8")

    @app.get("/", response_class=HTMLResponse)
    async def page() -> str:
        return page_html

    @app.post("/predict")
    async def predict(request: Request, top_k: int | None = None) -> JSONResponse:
        if api_key is not None and not hmac.compare_digest(
            request.headers.get("x-api-key", ""), api_key
        ):
            raise HTTPException(401, "missing or wrong API key: send it in the X-API-Key header")
        files = _parse_multipart(
            request.headers.get("content-type", ""),
            await _read_body(request, settings.max_upload_bytes),
        )
        if not files:
            raise HTTPException(
                415,
                "no image files in the request: send multipart/form-data with one or more files",
            )
        if len(files) > settings.max_files:
            raise HTTPException(
                413, f"{len(files)} files in one request; the limit is {settings.max_files}"
            )
        images = [await asyncio.to_thread(_decode, name, data) for name, data in files]
        try:
            rows = await asyncio.wait_for(batcher.submit(images), settings.timeout_s)
        except QueueFullError as err:
            raise HTTPException(503, f"the service is busy ({err}); retry shortly") from err
        except TimeoutError as err:
            raise HTTPException(
                504, f"no answer within {settings.timeout_s:g} s; retry later"
            ) from err
        k = max(1, min(top_k or settings.top_k, len(predictor.classes)))
        results = []
        for (name, _), row in zip(files, rows, strict=True):
            order = row.argsort()[::-1][:k]
            results.append(
                {
                    "filename": name,
                    "label": predictor.classes[int(order[0])],
                    "confidence": float(row[order[0]]),
                    "top_k": [
                        {"label": predictor.classes[int(i)], "probability": float(row[i])}
                        for i in order
                    ],
                }
            )
        return JSONResponse({"predictions": results})

    return app


def _blank(predictor: Any) -> Any:
    from PIL import Image

    size = predictor.preprocessings[0].input_size
    return Image.new("RGB", (size, size))


def _info(run_dir: Path, predictor: Any, settings: ServeOptions) -> dict[str, Any]:
    config = predictor.config
    metrics_file = run_dir / "metrics.json"
    metrics = json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}
    backbone = config.get("backbone", {}).get("name") or ", ".join(
        f["backbone"] for f in config.get("features", [])
    )
    summary = {
        split: {
            key: values.get(key) for key in ("accuracy", "macro_f1", "n", "intervals", "roc_auc")
        }
        for split, values in metrics.items()
    }
    return {
        "run": str(run_dir),
        "labels": predictor.classes,
        "backbone": backbone,
        "strategy": config.get("strategy"),
        "backend": settings.backend,
        "metrics": summary,
        "limits": {
            "max_upload_bytes": settings.max_upload_bytes,
            "max_files": settings.max_files,
            "max_queue": settings.max_queue,
            "timeout_s": settings.timeout_s,
        },
    }


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise HTTPException(
            413, f"request body of {int(declared):,} bytes exceeds the upload limit of {limit:,}"
        )
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPException(413, f"request body exceeds the upload limit of {limit:,} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _parse_multipart(content_type: str, body: bytes) -> list[tuple[str, bytes]]:
    """The (filename, bytes) of every file part of a multipart/form-data body, in memory."""
    if not content_type.lower().startswith("multipart/form-data"):
        raise HTTPException(
            415,
            "expected multipart/form-data with image files, "
            f"got {content_type or 'no content type'!r}",
        )
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body
    )
    files = []
    for part in message.iter_parts():
        name = part.get_filename()
        if name is None:
            continue
        payload = part.get_payload(decode=True)
        files.append((name, payload if isinstance(payload, bytes) else b""))
    return files


def _decode(name: str, data: bytes) -> Any:
    try:
        return decode_image_bytes(data, name)
    except NotAnImageError as err:
        raise HTTPException(415, str(err)) from err
    except (CorruptImageError, ImageTooLargeError) as err:
        raise HTTPException(422, str(err)) from err
