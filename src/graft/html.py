"""Self-contained HTML reports: every image embedded, no scripts, no fonts, opens offline.

The page and its pieces are Jinja2 macros (``templates/report.html.j2``) with autoescaping:
every value is text unless it is HTML graft built with these helpers.

Example:
    >>> html = render_html("t", [Section("metrics", "<p>ok</p>")])
    >>> "<script" in html, "<h2>metrics</h2>" in html
    (False, True)
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader
from markupsafe import Markup

from graft.fileio import atomic_path

_STYLE = """
body { font-family: system-ui, -apple-system, 'Segoe UI', sans-serif; margin: 2rem auto;
       max-width: 1100px; color: #1f2328; line-height: 1.45; padding: 0 1rem; }
h1 { font-size: 1.6rem; } h2 { border-bottom: 1px solid #d0d7de; padding-bottom: .3rem; }
table { border-collapse: collapse; margin: .6rem 0 1.2rem; font-size: .9rem; }
th, td { border: 1px solid #d0d7de; padding: .3rem .6rem; text-align: left; }
th { background: #f6f8fa; }
tr.best td { background: #dafbe1; } tr.worst td { background: #ffebe9; }
img { max-width: 100%; border: 1px solid #d0d7de; margin: .4rem 0; }
.note { color: #57606a; font-size: .9rem; }
pre { background: #f6f8fa; padding: .8rem; overflow-x: auto; font-size: .8rem; }
"""


@dataclass(frozen=True)
class Section:
    """A titled part of a report; ``body`` is trusted HTML built by graft."""

    title: str
    body: str


def image_tag(png: bytes, alt: str) -> str:
    """An ``<img>`` with the PNG embedded as a data URI."""
    return str(_macros().image(base64.b64encode(png).decode("ascii"), alt))


def table(
    header: Sequence[str],
    rows: Sequence[Sequence[Any]],
    *,
    row_classes: Sequence[str] | None = None,
    table_id: str = "",
) -> str:
    """An HTML table; cells are escaped."""
    return str(_macros().table(header, rows, row_classes, table_id))


def paragraph(text: str, *, note: bool = False) -> str:
    """An escaped paragraph."""
    return str(_macros().paragraph(text, note))


def json_block(data: Any) -> str:
    """Pretty JSON in a ``<pre>`` block."""
    return str(_macros().pre(json.dumps(data, indent=2, default=str)))


def card(images: Sequence[str], names: str, caption: str, title: str) -> str:
    """A small captioned block of images (from :func:`image_tag`); the texts are escaped."""
    return str(_macros().card(Markup("".join(images)), names, caption, title))


def render_html(title: str, sections: Sequence[Section]) -> str:
    """The whole document (each section's body is HTML graft built)."""
    trusted = [Section(section.title, Markup(section.body)) for section in sections]
    return str(_macros().page(title, trusted, Markup(_STYLE)))


@cache
def _macros() -> Any:
    """The macros of ``templates/report.html.j2`` (Jinja2, autoescaped)."""
    environment = Environment(loader=PackageLoader("graft", "templates"), autoescape=True)
    return environment.get_template("report.html.j2").module


def write_html(path: Path, title: str, sections: Sequence[Section]) -> Path:
    """Write the report atomically; return its path."""
    with atomic_path(path) as tmp:
        tmp.write_text(render_html(title, sections), encoding="utf-8")
    return path


def percent_with_interval(value: float, interval: Sequence[float] | None) -> str:
    """``99.20 % [98.60, 99.70]``."""
    text = f"{value * 100:.2f} %"
    if interval:
        text += f" [{interval[0] * 100:.2f}, {interval[1] * 100:.2f}]"
    return text
