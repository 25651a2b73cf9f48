"""``graft extract``: backbone features of a labelled set, to a file (and the cache)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from graft.cli.render import extraction_progress, precision_line
from graft.zoo.registry import DEFAULT_BACKBONE


def extract(
    data: Path = typer.Argument(..., help="Folder or CSV/TSV of labelled images."),
    out: Path = typer.Option(..., help="Feature file to write (safetensors with JSON metadata)."),
    backbone: str = typer.Option(
        DEFAULT_BACKBONE, "--backbone", "-b", help="Backbone, or A,B to concatenate."
    ),
    layer: str = typer.Option("final", help="final, or stage1..stageN."),
    pool: str = typer.Option("avg", help="avg or max."),
    image_size: int | None = typer.Option(None, "--image-size", help="Input side in pixels."),
    crop_pct: float | None = typer.Option(
        None,
        "--crop-pct",
        help="Fraction of the resized image the centre crop keeps (1.0: no centre crop).",
    ),
    root: Path | None = typer.Option(
        None, help="For a CSV/TSV: the folder its paths are relative to."
    ),
    engine: str = typer.Option(
        "auto", help="auto, torch, onnxruntime, openvino, or ray (a Ray cluster; --out a folder)."
    ),
    address: str | None = typer.Option(
        None, help="ray: an existing cluster (auto, or ray://host:10001); default a local one."
    ),
    actors: int = typer.Option(1, help="ray: model actors (one model each)."),
    precision: str = typer.Option(
        "auto",
        help="auto (the fastest that passes the check vs fp32), fp32, bf16 or int8 "
        "(calibrated on the training images); bf16/int8 are checked vs fp32.",
    ),
    precision_tolerance: float = typer.Option(
        1.0, "--precision-tolerance", help="Largest accepted probe-accuracy drop, in points."
    ),
    force_precision: bool = typer.Option(
        False, "--force-precision", help="Keep bf16/int8 even past the tolerance."
    ),
    batch_size: int = typer.Option(16, "--batch-size", help="Images per forward pass."),
) -> None:
    """Write features, paths, labels and splits of every usable image to one file."""
    from graft.features import extract_dataset, save_features
    from graft.training.linear import LinearOptions

    if engine == "ray":
        _extract_with_ray(
            data, out, backbone, layer, pool, image_size, crop_pct, root, address, actors
        )
        return

    specs = LinearOptions(
        backbone=backbone,
        layer=layer,
        pool=pool,
        image_size=image_size,
        crop_pct=crop_pct,
        precision=precision,
    ).specs()
    console = Console()
    with extraction_progress(console, "features") as progress:
        result = extract_dataset(
            data,
            specs,
            root=root,
            engine=engine,
            batch_size=batch_size,
            progress=progress,
            tolerance=precision_tolerance,
            force=force_precision,
            precision=precision,
        )
    for choice in result.choices:
        console.print(precision_line(choice.to_dict()), highlight=False)
    for _, reason in result.problems:
        console.print(f"[yellow]skipped:[/yellow] {reason}", highlight=False, soft_wrap=True)
    save_features(
        out,
        result.features,
        result.paths,
        result.labels,
        result.splits,
        [s.describe() for s in result.specs],
    )
    console.print(
        f"wrote {out}: {result.features.shape[0]} images x {result.features.shape[1]} features "
        f"({result.computed} computed, {result.cached} from the cache, "
        f"{len(result.problems)} skipped)",
        highlight=False,
    )


def _extract_with_ray(
    data: Path,
    out: Path,
    backbone: str,
    layer: str,
    pool: str,
    image_size: int | None,
    crop_pct: float | None,
    root: Path | None,
    address: str | None,
    actors: int,
) -> None:
    from graft.errors import ConfigError
    from graft.scaleout.ray_data import extract_with_ray

    if "," in backbone:
        raise ConfigError("--engine ray extracts one backbone at a time; drop the comma list")
    result = extract_with_ray(
        data,
        out,
        backbone=backbone,
        layer=layer,
        pool=pool,
        image_size=image_size,
        crop_pct=crop_pct,
        root=root,
        address=address,
        actors=actors,
    )
    Console().print(
        f"wrote {out}/features/*.parquet: {result.rows} images, {result.failed} failed "
        f"(listed in {out}/errors.csv), {result.images_per_s:.1f} img/s",
        highlight=False,
    )
