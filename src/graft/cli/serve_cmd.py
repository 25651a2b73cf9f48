"""``graft serve``: the web service and page for a trained run."""

from __future__ import annotations

from pathlib import Path

import typer


def serve(
    run_dir: Path = typer.Argument(..., help="A run directory written by graft train."),
    host: str = typer.Option("127.0.0.1", help="Address to bind (127.0.0.1: this machine only)."),
    port: int = typer.Option(8000, help="Port."),
    backend: str = typer.Option(
        "auto", help="auto, torch, onnxruntime, openvino or onnx (exported model)."
    ),
    tta: str | None = typer.Option(
        None, help="Test-time augmentation: none, flip or dihedral (default: the run's own)."
    ),
    api_key: str | None = typer.Option(
        None, "--api-key", help="Require this key (or GRAFT_API_KEY)."
    ),
    max_upload_mb: float = typer.Option(10.0, "--max-upload-mb", help="Largest request body."),
    max_queue: int = typer.Option(256, "--max-queue", help="Most images waiting (then 503)."),
    max_batch: int = typer.Option(32, "--max-batch", help="Most images per forward pass."),
    timeout: float = typer.Option(30.0, help="Longest wait for predictions, seconds (then 504)."),
    max_connections: int = typer.Option(
        64, "--max-connections", help="Most concurrent connections (then 503)."
    ),
) -> None:
    """Serve POST /predict, GET /health, GET /info and a page at / (uploads stay in memory)."""
    import uvicorn

    from graft.serve.app import ServeOptions, create_app

    options = ServeOptions(
        backend=backend,
        tta=tta,
        api_key=api_key,
        max_upload_bytes=int(max_upload_mb * 1024 * 1024),
        max_queue=max_queue,
        max_batch=max_batch,
        timeout_s=timeout,
        max_connections=max_connections,
    )
    app = create_app(run_dir, options)
    typer.echo(f"serving {run_dir} on http://{host}:{port}/ (Ctrl-C to stop)")
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level="warning",
        limit_concurrency=options.max_connections,
        timeout_keep_alive=5,
    )
