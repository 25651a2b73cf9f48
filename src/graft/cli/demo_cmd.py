"""``graft demo``: the main job on the embedded data, offline."""

from __future__ import annotations

import typer

from graft.cli.demo import QUICK_EVERY, run_demo


def demo(
    quick: bool = typer.Option(
        False,
        "--quick",
        help=f"Train on one ELPV cell in {QUICK_EVERY} of each class: a short tour whose "
        "figures are not comparable with the published ones.",
    ),
) -> None:
    """Show graft end to end on data that installs with it (no network, no downloads)."""
    run_demo(quick=quick)
