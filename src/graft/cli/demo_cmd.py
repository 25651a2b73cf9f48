"""``graft demo``: the main job on the embedded data, offline."""

from __future__ import annotations

from graft.cli.demo import run_demo


def demo() -> None:
    """Show graft end to end on data that installs with it (no network, no downloads)."""
    run_demo()
