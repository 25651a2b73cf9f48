"""``graft classify``: top-k ImageNet labels for images, with the pretrained head."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console

from graft.classification import iter_classify
from graft.cli.demo import print_classification
from graft.zoo.registry import DEFAULT_BACKBONE


def classify(
    paths: list[Path] = typer.Argument(..., help="Image files or folders (walked recursively)."),
    backbone: str = typer.Option(
        DEFAULT_BACKBONE, "--backbone", "-b", help="Backbone with a head."
    ),
    top_k: int = typer.Option(5, "--top-k", "-k", help="Classes to show per image."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document."),
    batch_size: int = typer.Option(32, help="Images per forward pass."),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
    allow_download: bool = typer.Option(
        False, "--allow-download", help="Fetch hub-only weights once."
    ),
) -> None:
    """Classify images with a pretrained backbone's ImageNet head (exit 1 if any image failed)."""
    console = Console()
    errors = Console(stderr=True)
    results = []
    failed = 0
    for result in iter_classify(
        paths,
        backbone=backbone,
        top_k=top_k,
        batch_size=batch_size,
        device=device,
        allow_download=allow_download,
    ):
        if not result.ok:
            failed += 1
            errors.print(f"[red]error:[/red] {result.error}", highlight=False, soft_wrap=True)
        if as_json:
            results.append(result.to_dict())
        elif result.ok:
            print_classification(console, result)
    if as_json:
        typer.echo(json.dumps(results, indent=2))
    if failed:
        raise typer.Exit(code=1)
