"""``graft rank``: which backbone (and layer) to use, from the training images alone."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console


def rank(
    data: Path = typer.Argument(..., help="Labelled folder or CSV/TSV (as graft train takes)."),
    backbones: str = typer.Option(
        "all-available",
        "--backbones",
        help="all-available, or A,B,... (name@stageN picks a layer for one backbone).",
    ),
    layers: str | None = typer.Option(
        None, "--layers", help="Layers for every backbone named without @: final,stage4,..."
    ),
    sample: int = typer.Option(2000, help="At most N training images (stratified)."),
    root: Path | None = typer.Option(None, help="For a CSV: the folder its paths are relative to."),
    val: float | None = typer.Option(None, help="Validation fraction when the data has no split."),
    seed: int = typer.Option(0, help="Seeds the split when the data has none."),
    engine: str = typer.Option("auto", help="auto, torch, onnxruntime or openvino."),
    as_json: bool = typer.Option(False, "--json", help="Print the ranking as one JSON document."),
) -> None:
    """Rank backbones by LogME, H-score, k-NN and CV linear probe (LEEP/NCE with a head)."""
    from rich.table import Table

    from graft.data.prepare import DataOptions
    from graft.ranking.rank import rank as run_rank

    console = Console(stderr=as_json)

    def announce(candidate: object) -> None:
        console.print(f"scored {getattr(candidate, 'name', '')}", highlight=False)

    ranking = run_rank(
        data,
        backbones=backbones,
        layers=layers,
        sample=sample,
        engine=engine,
        data_options=DataOptions(root=root, val=val, seed=seed),
        on_candidate=announce,
    )
    if as_json:
        typer.echo(json.dumps(ranking.to_dict(), indent=2))
        return
    table = Table(
        title=f"ranked on {ranking.images} training images (validation and test never read)",
        title_justify="left",
    )
    columns = ("#", "candidate", "dim", "img/s", "LogME", "H-score", "k-NN", "linear CV")
    for column in (*columns, "LEEP", "NCE"):
        table.add_column(column, justify="left" if column == "candidate" else "right")
    for position, c in enumerate(ranking.candidates, 1):
        s = c.scores
        table.add_row(
            str(position),
            c.name,
            str(c.dim),
            f"{c.images_per_s:.0f}" if c.images_per_s else "cached",
            f"{s['logme']:.3f}",
            f"{s['h_score']:.2f}",
            f"{s['knn']:.1%}",
            f"{s['linear_cv']:.1%}",
            f"{s['leep']:.3f}" if "leep" in s else "",
            f"{s['nce']:.3f}" if "nce" in s else "",
        )
    console.print(table)
    console.print(
        f"recommended: [bold]{ranking.recommended.name}[/bold] (best mean rank over LogME, "
        f"H-score, k-NN and linear CV); next: graft train {data} --backbone "
        f"{ranking.recommended.backbone}"
        + (f" --layer {ranking.recommended.layer}" if ranking.recommended.layer != "final" else ""),
        highlight=False,
    )
