"""``graft demo``: the main job on the embedded data, offline."""

from __future__ import annotations

import typer

from graft.cli.demo import DEMO_SECONDS, QUICK_EVERY, run_demo


def demo(
    quick: bool = typer.Option(
        False,
        "--quick",
        help=f"Train on one ELPV cell in {QUICK_EVERY} of each class: a short tour whose "
        "figures are not comparable with the published ones.",
    ),
    budget: str = typer.Option(
        f"{DEMO_SECONDS / 60:.0f}m",
        help="Wall-clock budget for the whole demo (90s, 8m): the fine-tune shortens its "
        "epochs to fit what the steps before it left.",
    ),
) -> None:
    """Show graft end to end on data that installs with it (no network, no downloads)."""
    from graft.ladder.auto import parse_budget  # PyTorch stays out of the CLI's start-up

    run_demo(quick=quick, budget=parse_budget(budget))
