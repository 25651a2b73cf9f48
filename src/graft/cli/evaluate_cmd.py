"""``graft evaluate``: metrics of a run, on its own splits or on another labelled set."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console

from graft.cli.render import confusion_table, metrics_table, per_class_table


def evaluate(
    run_dir: Path = typer.Argument(..., help="A run directory written by graft train."),
    data: Path | None = typer.Option(None, help="Another labelled folder or CSV to evaluate on."),
    root: Path | None = typer.Option(
        None, help="For a CSV --data: the folder its paths are relative to."
    ),
    split: str | None = typer.Option(
        None, help="val or test (default: the run's test split, else val)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document."),
    report: bool = typer.Option(
        False, "--report", help="Also write RUN_DIR/report.html (offline)."
    ),
    tta: str | None = typer.Option(
        None, help="Test-time augmentation: none, flip or dihedral (default: the run's own)."
    ),
) -> None:
    """Print accuracy, macro-F1, per-class precision/recall/F1 and the confusion matrix."""
    from graft.evaluation import evaluate as run_evaluation

    result = run_evaluation(run_dir, data=data, split=split, root=root, report=report, tta=tta)
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    console = Console()
    console.print(
        f"[bold]{result['run']}[/bold] on {result['data']}"
        + (f" (test-time augmentation: {result['tta']})" if result["tta"] != "none" else ""),
        highlight=False,
    )
    console.print(metrics_table({result["split"]: result}))
    console.print(per_class_table(result))
    console.print(confusion_table(result))
    if report:
        console.print(f"report written to [bold]{result['report']}[/bold]")
