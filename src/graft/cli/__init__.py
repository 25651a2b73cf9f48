"""The ``graft`` command: a thin Typer layer over the Python API.

Every command parses its options, calls one API function, and prints with Rich (or plain JSON
with ``--json``). A :class:`graft.errors.GraftError` becomes one ``error:`` line on stderr and
exit code 2; per-image failures are reported line by line and give exit code 1.

Example:
    >>> from typer.testing import CliRunner
    >>> result = CliRunner().invoke(app, ["backbones", "--json"])
    >>> result.exit_code
    0
"""

from __future__ import annotations

import sys

import typer
from rich.console import Console

from graft.cli import (
    audit_cmd,
    cache_cmd,
    classify_cmd,
    compare_cmd,
    demo_cmd,
    evaluate_cmd,
    export_cmd,
    extract_cmd,
    predict_cmd,
    rank_cmd,
    serve_cmd,
    studio_cmd,
    train_cmd,
    zoo_cmd,
)
from graft.errors import GraftError

app = typer.Typer(
    name="graft",
    help="Offline-first transfer learning for image classification.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command("backbones")(zoo_cmd.backbones)
app.add_typer(zoo_cmd.weights_app, name="weights")
app.command("classify")(classify_cmd.classify)
app.command("train")(train_cmd.train)
app.command("evaluate")(evaluate_cmd.evaluate)
app.command("audit")(audit_cmd.audit)
app.command("rank")(rank_cmd.rank)
app.command("compare")(compare_cmd.compare)
app.command("predict")(predict_cmd.predict)
app.command("export")(export_cmd.export)
app.command("serve")(serve_cmd.serve)
app.command("studio")(studio_cmd.studio)
app.command("extract")(extract_cmd.extract)
app.add_typer(cache_cmd.cache_app, name="cache")
app.command("demo")(demo_cmd.demo)


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", help="Print graft's version and exit."),
) -> None:
    if version:
        from importlib.metadata import version as package_version

        typer.echo(package_version("graft"))
        raise typer.Exit()


def main() -> None:
    """Console-script entry point: run the app, turning graft errors into one-line messages."""
    try:
        app()
    except GraftError as err:
        Console(stderr=True).print(
            f"[bold red]error:[/bold red] {err}", highlight=False, soft_wrap=True
        )
        sys.exit(2)
