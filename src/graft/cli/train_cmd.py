"""``graft train``: train a classifier on a labelled folder or table."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console

from graft.cli.render import data_summary, extraction_progress, metrics_table
from graft.zoo.registry import DEFAULT_BACKBONE


def train(
    data: Path = typer.Argument(
        ..., help="Folder (class folders or train/val/test folders) or CSV/TSV of path,label."
    ),
    root: Path | None = typer.Option(
        None, help="For a CSV/TSV: the folder its paths are relative to."
    ),
    strategy: str = typer.Option("linear", help="linear: a classic head on cached features."),
    head: str = typer.Option("logreg", help="logreg, svm, knn or centroid."),
    backbone: str = typer.Option(
        DEFAULT_BACKBONE, "--backbone", "-b", help="Backbone, or A,B to concatenate."
    ),
    out: Path | None = typer.Option(
        None, help="Run directory (default runs/<data>-<strategy>-<time>)."
    ),
    val: float | None = typer.Option(
        None, help="Validation fraction when the data has no split (default 0.2)."
    ),
    test: float | None = typer.Option(
        None, help="Test fraction when the data has no split (default 0)."
    ),
    seed: int = typer.Option(0, help="Seeds splits, subsets and cross-validation."),
    per_class: int | None = typer.Option(
        None, "--per-class", help="At most N training images per class."
    ),
    limit: int | None = typer.Option(None, help="At most N training images in total (stratified)."),
    dedupe: bool = typer.Option(False, help="Drop images that also appear in an earlier split."),
    class_weight: str | None = typer.Option(
        None, "--class-weight", help="balanced: weight rare classes up."
    ),
    layer: str = typer.Option(
        "final", help="final, or stage1..stageN for earlier, more generic features."
    ),
    pool: str = typer.Option("avg", help="avg or max spatial pooling."),
    image_size: int | None = typer.Option(
        None, "--image-size", help="Input side in pixels (default: the backbone's)."
    ),
    engine: str = typer.Option("auto", help="auto, torch or openvino."),
    batch_size: int = typer.Option(32, "--batch-size", help="Images per forward pass."),
    overwrite: bool = typer.Option(False, help="Replace --out if it exists."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as one JSON document."),
) -> None:
    """Train a classifier: validate the data, extract features (cached), fit, evaluate, save."""
    from graft.data.prepare import DataOptions
    from graft.errors import ConfigError
    from graft.training import STRATEGIES, LinearOptions
    from graft.training import train as run_training

    if strategy not in STRATEGIES:
        raise ConfigError(f"strategy {strategy!r} is not one of: {', '.join(STRATEGIES)}")
    console = Console(stderr=as_json)
    data_options = DataOptions(
        root=root, val=val, test=test, seed=seed, per_class=per_class, limit=limit, dedupe=dedupe
    )
    options = LinearOptions(
        backbone=backbone,
        head=head,
        class_weight=class_weight,
        layer=layer,
        pool=pool,
        image_size=image_size,
        engine=engine,
        batch_size=batch_size,
    )
    with extraction_progress(console, "features") as progress:
        result = run_training(
            data,
            out=out,
            data_options=data_options,
            options=options,
            overwrite=overwrite,
            on_report=lambda report: data_summary(console, report),
            progress=progress,
        )
    summary = {
        "run_dir": str(result.run_dir),
        "metrics": {
            split: {k: v for k, v in m.items() if k in ("accuracy", "macro_f1", "n")}
            for split, m in result.metrics.items()
        },
        "head": result.head_params,
        "extraction": result.extraction,
        "timings_s": {k: round(v, 2) for k, v in result.timings.items()},
    }
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
        return
    console.print(f"[bold]{strategy} probe[/bold]: {head} head on {backbone}", highlight=False)
    console.print(metrics_table(result.metrics))
    extraction = result.extraction
    console.print(
        f"features: {extraction['computed']} computed ({extraction['engine'] or 'none'}), "
        f"{extraction['cached']} from the cache; head: "
        + ", ".join(f"{k}={v}" for k, v in result.head_params.items()),
        highlight=False,
    )
    console.print(
        "time: " + ", ".join(f"{k} {v:.1f} s" for k, v in result.timings.items()), highlight=False
    )
    console.print(f"run saved to [bold]{result.run_dir}[/bold] (graft evaluate {result.run_dir})")
