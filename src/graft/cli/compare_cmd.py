"""``graft compare``: strategies x backbones on one split, in one report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from graft.cli.render import TrainingProgress, data_summary
from graft.zoo.registry import DEFAULT_BACKBONE


def compare(
    data: Path | None = typer.Argument(None, help="Labelled folder or CSV (omit to resume --out)."),
    out: Path = typer.Option(..., help="Comparison folder (runs, compare.json, compare.html)."),
    strategies: str = typer.Option(
        "linear,head,finetune,scratch", help="Comma-separated strategies."
    ),
    backbones: str = typer.Option(
        DEFAULT_BACKBONE, help="Comma-separated backbones, or topN: the N best by graft rank."
    ),
    imagenet_map: str | None = typer.Option(
        None, "--imagenet-map", help="Zero-training row: class=FIRST-LAST[+...] ImageNet indices."
    ),
    root: Path | None = typer.Option(None, help="For a CSV: the folder its paths are relative to."),
    val: float | None = typer.Option(None, help="Validation fraction when the data has no split."),
    test: float | None = typer.Option(None, help="Test fraction when the data has no split."),
    seed: int = typer.Option(0, help="Seeds the split and the training."),
    epochs: int = typer.Option(5, help="Neural strategies: total epochs."),
    freeze_epochs: int = typer.Option(
        1, "--freeze-epochs", help="finetune: epochs before unfreezing."
    ),
    unfreeze: str = typer.Option("2", help="finetune: top stages to unfreeze, or all."),
    augment: str = typer.Option("none", help="Neural strategies: augmentation preset or file."),
    batch_size: int | None = typer.Option(
        None, "--batch-size", help="Images per step (linear 16, neural 32)."
    ),
    engine: str = typer.Option("auto", help="auto, torch, onnxruntime or openvino."),
) -> None:
    """Train every strategy on every backbone on identical splits; write compare.html/json."""
    from graft.data.prepare import DataOptions
    from graft.ladder.compare import compare as run_compare
    from graft.ladder.compare import parse_imagenet_map

    console = Console()
    options: dict[str, Any] = {
        "epochs": epochs,
        "freeze_epochs": freeze_epochs,
        "unfreeze": unfreeze,
        "augment": augment,
        **({"batch_size": batch_size} if batch_size is not None else {}),
        "engine": engine,
    }

    def announce(backbone: str, strategy: str, state: str) -> None:
        console.rule(f"[bold]{backbone} / {strategy}[/bold] ({state})")

    result = run_compare(
        data,
        out=out,
        strategies=[s.strip() for s in strategies.split(",") if s.strip()],
        backbones=[b.strip() for b in backbones.split(",") if b.strip()],
        imagenet_map=parse_imagenet_map(imagenet_map) if imagenet_map else None,
        data_options=DataOptions(root=root, val=val, test=test, seed=seed),
        train_options=options,
        on_report=lambda report: data_summary(console, report),
        on_run=announce,
        callbacks=[TrainingProgress(console)],
    )
    from rich.table import Table

    table = Table(
        title=f"compared on the {result.split} split ({len(result.truth)} images)",
        title_justify="left",
    )
    for column in ("run", "accuracy [95 % CI]", "macro-F1", "ROC AUC", "train s", "img/s"):
        table.add_column(column, justify="left" if column == "run" else "right")
    for row in sorted(result.rows, key=lambda r: -r.metrics["accuracy"]):
        interval = row.metrics.get("intervals", {}).get("accuracy") or [0, 0]
        table.add_row(
            row.name,
            f"{row.metrics['accuracy'] * 100:.2f} % "
            f"[{interval[0] * 100:.1f}, {interval[1] * 100:.1f}]",
            f"{row.metrics['macro_f1']:.4f}",
            f"{row.metrics.get('roc_auc') or 0:.4f}",
            f"{row.train_seconds:.0f}" if row.train_seconds is not None else "",
            f"{row.images_per_second:.1f}" if row.images_per_second else "",
        )
    console.print(table)
    for test_result in result.mcnemar:
        console.print(
            f"McNemar {test_result['best']} vs {test_result['other']}: "
            f"p = {test_result['p_value']:.3g}",
            highlight=False,
        )
    for note in result.notes:
        console.print(f"[yellow]note:[/yellow] {note}", highlight=False)
    console.print(f"report: [bold]{out / 'compare.html'}[/bold]")
