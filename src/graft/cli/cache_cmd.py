"""``graft cache info|clear``: the feature cache and compiled engines."""

from __future__ import annotations

import shutil

import typer
from rich.console import Console
from rich.table import Table

cache_app = typer.Typer(
    help="Inspect or clear graft's cache (features, file index, compiled engines)."
)


@cache_app.command("info")
def info() -> None:
    """Show where the cache is, its size, and what features it holds."""
    from graft.config import cache_dir
    from graft.features.cache import FeatureCache, default_cache_path

    root = cache_dir()
    console = Console()
    size = (
        sum(p.stat().st_size for p in root.rglob("*") if p.is_file() and "weights" not in p.parts)
        if root.exists()
        else 0
    )
    console.print(f"cache: {root} ({size / 1e6:.1f} MB, weight store excluded)", highlight=False)
    if not default_cache_path().exists():
        console.print("no features cached yet")
        return
    with FeatureCache(default_cache_path()) as cache:
        entries = cache.entries()
    table = Table(title="cached features", title_justify="left")
    for column in ("key", "backbone", "layer", "pool", "input", "dim", "images"):
        table.add_column(
            column, justify="right" if column in ("input", "dim", "images") else "left"
        )
    for entry in entries:
        d = entry.description
        table.add_row(
            entry.feature_key,
            d["backbone"],
            d["layer"],
            d["pool"],
            str(d["preprocessing"]["input_size"]),
            str(entry.dim),
            str(entry.count),
        )
    console.print(table)


@cache_app.command("clear")
def clear() -> None:
    """Delete cached features, the file index and compiled engines (not the weight store)."""
    from graft.config import cache_dir
    from graft.data.scan import default_index_path
    from graft.features.cache import default_cache_path

    removed = 0
    for database in (default_cache_path(), default_index_path()):
        for path in (
            database,
            database.with_name(database.name + "-wal"),
            database.with_name(database.name + "-shm"),
        ):
            if path.exists():
                path.unlink()
                removed += 1
    engines = cache_dir() / "engines"
    if engines.exists():
        shutil.rmtree(engines)
        removed += 1
    typer.echo(f"cleared {removed} cache files under {cache_dir()} (the weight store is kept)")
