"""``graft backbones`` and ``graft weights add|list|remove``."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from graft.zoo import describe, list_backbones, remove_weights, stored_records
from graft.zoo.registry import availability

weights_app = typer.Typer(help="Manage the local weight store (weights you bring, kept offline).")


def backbones(
    as_json: bool = typer.Option(False, "--json", help="Print one JSON list instead of a table."),
) -> None:
    """List every backbone: pretrained weights on this machine or not, size, input, licence."""
    records = list_backbones()
    if as_json:
        typer.echo(json.dumps([describe(record) for record in records], indent=2))
        return
    table = Table(title="graft backbones", title_justify="left")
    table.add_column("name", no_wrap=True)
    table.add_column("weights")
    for column in ("params", "dim", "input", "top-1"):
        table.add_column(column, justify="right", no_wrap=True)
    table.add_column("licence")
    for record in records:
        state = availability(record)
        if not state.available:
            weights = f"[red]missing[/red]: {state.hint}"
        elif state.pretrained:
            weights = f"[green]{record.weights.kind}[/green]"
        else:
            weights = "[yellow]random[/yellow]"
        table.add_row(
            record.name,
            weights,
            f"{record.params / 1e6:.1f}M",
            str(record.feature_dim),
            str(record.preprocessing.input_size),
            f"{record.top1:.1f}" if record.top1 is not None else "",
            record.license,
        )
    console = Console()
    console.print(table)
    console.print(
        "random: usable from scratch; to add pretrained weights: "
        "graft weights add FILE --backbone ARCH (or pass --allow-download once)",
        highlight=False,
    )


@weights_app.command("add")
def weights_add(
    file: Path = typer.Argument(
        ..., help="State dict: .pth/.pt/.bin (torch.save) or .safetensors."
    ),
    backbone: str = typer.Option(
        ..., "--backbone", "-b", help="timm architecture it was saved from."
    ),
    tag: str = typer.Option("user", help="Stored name becomes ARCH.TAG."),
    labels: Path | None = typer.Option(
        None, help="Text file, one class name per line, for a non-ImageNet head."
    ),
) -> None:
    """Check that FILE loads strictly into an architecture, then store it for offline use."""
    from graft.zoo import add_weights  # loads PyTorch and timm: only when adding

    names = _read_labels(labels) if labels is not None else None
    record = add_weights(file, architecture=backbone, tag=tag, labels=names)
    typer.echo(
        f"stored {record.name}: {record.params:,} parameters, head {record.num_classes} classes, "
        f"sha256 {record.weights.sha256}, in {Path(record.weights.file or '').parent}"
    )
    typer.echo(f"use it with: graft classify IMAGE --backbone {record.name}")


@weights_app.command("list")
def weights_list(
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of lines."),
) -> None:
    """List the weights in the local weight store."""
    records = stored_records()
    if as_json:
        typer.echo(json.dumps([describe(record) for record in records], indent=2))
        return
    if not records:
        typer.echo(
            "the weight store is empty; add weights with: graft weights add FILE --backbone ARCH"
        )
    for record in records:
        typer.echo(f"{record.name}\t{record.num_classes} classes\t{record.weights.file}")


@weights_app.command("remove")
def weights_remove(
    name: str = typer.Argument(..., help="Stored name, e.g. resnet50.user."),
) -> None:
    """Delete stored weights."""
    remove_weights(name)
    typer.echo(f"removed {name}")


def _read_labels(path: Path) -> list[str]:
    from graft.errors import DataError

    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as err:
        raise DataError(f"{path}: cannot read the labels file ({err.strerror})") from err
    return [line.strip() for line in lines if line.strip()]
