"""``graft audit``: near-duplicates, likely label errors, outliers and class overlap."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from graft.cli.render import extraction_progress
from graft.zoo.registry import DEFAULT_BACKBONE

SHOWN = 8


def audit(
    data: Path = typer.Argument(
        ..., help="Folder (class folders or train/val/test folders) or CSV/TSV of path,label."
    ),
    root: Path | None = typer.Option(
        None, help="For a CSV/TSV: the folder its paths are relative to."
    ),
    backbone: str = typer.Option(
        DEFAULT_BACKBONE, "--backbone", "-b", help="Backbone whose cached features are compared."
    ),
    out: Path | None = typer.Option(None, help="Folder for the files (default runs/<data>-audit)."),
    val: float | None = typer.Option(
        None, help="Validation fraction when the data has no split (as graft train: 0.2)."
    ),
    test: float | None = typer.Option(None, help="Test fraction when the data has no split (0)."),
    seed: int = typer.Option(0, help="Seeds the split and the probe's folds."),
    engine: str = typer.Option("auto", help="Feature engine: auto, torch, onnxruntime, openvino."),
    report: bool = typer.Option(False, help="Also write audit.html (every finding, with images)."),
    as_json: bool = typer.Option(False, "--json", help="Print audit.json's content."),
) -> None:
    """Audit a dataset: copies across and within splits, likely label errors, outliers."""
    from graft.auditing import audit as run_audit

    console = Console(stderr=as_json)
    with extraction_progress(console, "features") as progress:
        result = run_audit(
            data,
            out=out,
            backbone=backbone,
            engine=engine,
            report=report,
            progress=progress,
            root=root,
            val=val,
            test=test,
            seed=seed,
        )
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2))
        return
    summary = result.summary()
    console.print(
        f"[bold]audit[/bold] of {result.source}: {summary['images']} images, "
        f"{len(result.classes)} classes, features of {result.backbone}",
        highlight=False,
    )
    console.print(
        f"near-duplicates: {summary['near_duplicates_across_splits']} pairs across splits, "
        f"{summary['near_duplicates_within_splits']} within a split "
        f"({summary['exact_duplicates']} exact)"
        + (
            f"; {summary['look_alike_pairs']} look-alike pairs (images that resemble many "
            "others: not copies)"
            if summary["look_alike_pairs"]
            else ""
        ),
        highlight=False,
    )
    table = Table("pair", "splits", "similarity", "cosine", box=None)
    for pair in [p for p in result.duplicates if p.across and not p.look_alike][:SHOWN]:
        first, second = result.samples[pair.first], result.samples[pair.second]
        table.add_row(
            f"{first.path.name} ~ {second.path.name}",
            f"{first.split}/{second.split}",
            f"{pair.similarity:.3f}",
            f"{pair.cosine:.3f}",
        )
    if table.row_count:
        console.print(table)
    console.print(f"likely label errors: {summary['label_issues']}", highlight=False)
    table = Table("image", "given", "suggested", "p(given)", box=None)
    for issue in result.label_issues[:SHOWN]:
        sample = result.samples[issue.row]
        table.add_row(str(sample.path.name), issue.given, issue.suggested, f"{issue.quality:.3f}")
    if table.row_count:
        console.print(table)
    console.print(f"outliers: {summary['outliers']}", highlight=False)
    for outlier in result.outliers[:SHOWN]:
        console.print(
            f"  {result.samples[outlier.row].path} (distance {outlier.distance:.3f}, "
            f"typical {outlier.typical:.3f})",
            highlight=False,
        )
    if result.overlap:
        console.print(
            "most confused classes: "
            + "; ".join(
                f"{a} / {b} ({row['images']} images)"
                for row in result.overlap[:3]
                for a, b in [row["classes"]]
            ),
            highlight=False,
        )
    assert result.out is not None and result.fixes_file is not None
    files = f"audit.json, {result.fixes_file.name}" + (", audit.html" if report else "")
    console.print(
        f"saved {files} in [bold]{result.out}[/bold]; edit {result.fixes_file.name} "
        f"(keep/drop/relabel) and train with: graft train {data} --fixes {result.fixes_file}",
        highlight=False,
    )
