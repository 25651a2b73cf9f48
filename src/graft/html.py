"""Self-contained HTML reports: every image embedded, no scripts, no fonts, opens offline.

Example:
    >>> html = render_html("t", [Section("metrics", "<p>ok</p>")])
    >>> "<script" in html, "<h2>metrics</h2>" in html
    (False, True)
"""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
    data = base64.b64encode(png).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def table(
    header: Sequence[str],
    rows: Sequence[Sequence[Any]],
    *,
    row_classes: Sequence[str] | None = None,
    table_id: str = "",
) -> str:
    """An HTML table; cells are escaped."""
    attributes = f' id="{html.escape(table_id)}"' if table_id else ""
    lines = [f"<table{attributes}><thead><tr>"]
    lines += [f"<th>{html.escape(str(cell))}</th>" for cell in header]
    lines.append("</tr></thead><tbody>")
    for index, row in enumerate(rows):
        css = f' class="{row_classes[index]}"' if row_classes and row_classes[index] else ""
        lines.append(
            f"<tr{css}>" + "".join(f"<td>{html.escape(str(cell))}</td>" for cell in row) + "</tr>"
        )
    lines.append("</tbody></table>")
    return "".join(lines)


def paragraph(text: str, *, note: bool = False) -> str:
    """An escaped paragraph."""
    css = ' class="note"' if note else ""
    return f"<p{css}>{html.escape(text)}</p>"


def json_block(data: Any) -> str:
    """Pretty JSON in a ``<pre>`` block."""
    return f"<pre>{html.escape(json.dumps(data, indent=2, default=str))}</pre>"


def render_html(title: str, sections: Sequence[Section]) -> str:
    """The whole document."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    for section in sections:
        parts.append(f"<section><h2>{html.escape(section.title)}</h2>{section.body}</section>")
    parts.append("</body></html>")
    return "\n".join(parts)


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
