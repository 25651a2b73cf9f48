"""``graft predict``: top-k labels for image files with a trained run, streamed."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import typer
from rich.console import Console


def predict(
    run_dir: Path = typer.Argument(..., help="A run directory written by graft train."),
    paths: list[Path] = typer.Argument(..., help="Image files or folders (walked recursively)."),
    out: Path | None = typer.Option(None, help="Write a CSV (path, label, confidence, top-k)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON list to stdout."),
    top_k: int = typer.Option(1, "--top-k", "-k", help="Labels per image."),
    backend: str = typer.Option(
        "auto", help="auto, torch, onnxruntime, openvino, or onnx (the exported model)."
    ),
    batch_size: int = typer.Option(32, "--batch-size", help="Images per forward pass."),
    tta: str | None = typer.Option(
        None, help="Test-time augmentation: none, flip or dihedral (default: the run's own)."
    ),
    engine: str = typer.Option(
        "local", help="local, or ray: a Ray cluster writes OUT/predictions/*.parquet."
    ),
    address: str | None = typer.Option(
        None, help="ray: an existing cluster (auto, or ray://host:10001); default a local one."
    ),
    actors: int = typer.Option(1, help="ray: model actors (one model each)."),
) -> None:
    """Predict images with a trained run; bad files are reported and skipped (exit 1).

    A ``.txt`` argument with ``--engine ray`` is a manifest: one image path per line.
    """
    from graft.data.files import collect_images
    from graft.errors import ConfigError
    from graft.predictor import load

    if top_k < 1:
        raise ConfigError(f"--top-k must be at least 1, got {top_k}")
    if engine not in ("local", "ray"):
        raise ConfigError(f"--engine {engine!r} is not one of: local, ray")
    if engine == "ray":
        if tta not in (None, "none"):
            raise ConfigError("--tta applies to --engine local; the Ray path predicts without it")
        if out is None:
            raise ConfigError("--engine ray writes parquet shards: pass --out FOLDER")
        from graft.scaleout.ray_data import predict_with_ray

        result = predict_with_ray(
            run_dir, paths, out, address=address, actors=actors, backend=backend
        )
        Console().print(
            f"wrote {out}/predictions/*.parquet: {result.rows} images, {result.failed} failed "
            f"(listed in {out}/errors.csv), {result.images_per_s:.1f} img/s",
            highlight=False,
        )
        if result.failed:
            raise typer.Exit(1)
        return
    predictor = load(run_dir, backend=backend, tta=tta)
    found = collect_images(paths)
    errors = Console(stderr=True)
    console = Console()
    failed = 0
    for path, reason in found.missing:
        failed += 1
        errors.print(f"[red]error:[/red] {path}: {reason}", highlight=False, soft_wrap=True)
    handle = open(out, "w", newline="", encoding="utf-8") if out is not None else None  # noqa: SIM115
    writer = csv.writer(handle) if handle is not None else None
    if writer is not None:
        writer.writerow(["path", "label", "confidence", *(f"top{i}" for i in range(2, top_k + 1))])
    first = True
    if as_json:
        sys.stdout.write("[")
    try:
        for prediction in predictor.iter_predict(found.images, batch_size=batch_size):
            if prediction.error is not None:
                failed += 1
                errors.print(
                    f"[red]error:[/red] {prediction.error}", highlight=False, soft_wrap=True
                )
                continue
            top = prediction.top(top_k)
            if writer is not None:
                writer.writerow(
                    [
                        prediction.source,
                        prediction.label,
                        f"{prediction.confidence:.6f}",
                        *(f"{n}:{p:.6f}" for n, p in top[1:]),
                    ]
                )
            if as_json:
                entry = {
                    "path": prediction.source,
                    "predictions": [{"label": n, "probability": p} for n, p in top],
                }
                sys.stdout.write(("\n" if first else ",\n") + json.dumps(entry))
                first = False
            elif writer is None:
                labels = ", ".join(f"{n} {p * 100:.1f} %" for n, p in top)
                console.print(f"{prediction.source}\t{labels}", highlight=False, soft_wrap=True)
    finally:
        if as_json:
            sys.stdout.write("\n]\n")
        if handle is not None:
            handle.close()
    if failed:
        raise typer.Exit(code=1)
