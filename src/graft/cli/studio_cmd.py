"""``graft studio``: the whole workflow in a local browser page."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path

import typer

from graft.errors import ConfigError


def studio(
    data: Path | None = typer.Argument(
        None, help="A data folder or CSV to open (the studio may read inside it)."
    ),
    root: list[Path] = typer.Option(
        [], "--root", help="Another folder the studio may read (repeat for several)."
    ),
    workspace: Path = typer.Option(
        Path("graft-studio"), help="Where the studio keeps its runs, decisions and thumbnails."
    ),
    host: str = typer.Option("127.0.0.1", help="Address to bind (127.0.0.1: this machine only)."),
    port: int = typer.Option(8765, help="Port."),
    api_key: str | None = typer.Option(
        None, "--api-key", help="Key the page must send (or GRAFT_API_KEY); required off loopback."
    ),
) -> None:
    """Open the studio: see the data, train, watch it learn, look at mistakes, try, export."""
    import uvicorn

    from graft.studio import create_studio_app

    key = api_key or os.environ.get("GRAFT_API_KEY")
    if not _loopback(host) and not key:
        raise ConfigError(
            f"--host {host} lets other machines in; give --api-key KEY (or GRAFT_API_KEY), "
            "or keep the default 127.0.0.1"
        )
    roots = [*([data.parent if data.is_file() else data] if data else []), *root]
    if not roots:
        raise ConfigError("name the data to open (graft studio DATA) or a folder with --root")
    for folder in roots:
        if not folder.is_dir():
            raise ConfigError(f"{folder}: no such folder; pass a data folder or CSV that exists")
    app = create_studio_app(roots, workspace=workspace, api_key=key, data=data)
    address = f"http://{host}:{port}/" + (f"?key={key}" if key else "")
    typer.echo(f"graft studio on {address} (runs in {workspace.resolve()}; Ctrl-C to stop)")
    uvicorn.run(app, host=host, port=port, log_level="warning", timeout_keep_alive=5)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
