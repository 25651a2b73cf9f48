"""``audit.html``: every finding with its images, self-contained like the run reports.

Each near-duplicate pair is shown side by side, each suspect label with the given and the
suggested class, each outlier with its distance; thumbnails are embedded as PNG, so the page
opens offline and can be mailed. At most ``SHOWN`` items per finding are drawn (the rest are in
``audit.json``).

Example:
    >>> from graft.auditing.api import audit
    >>> result = audit("data/", report=True)  # doctest: +SKIP
    >>> (result.out / "audit.html").exists()  # doctest: +SKIP
    True
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING

from graft.data.images import load_image
from graft.errors import DataError
from graft.html import Section, card, image_tag, paragraph, table, write_html

if TYPE_CHECKING:
    from graft.auditing.api import AuditResult

SHOWN = 40
THUMB = 160
_CSS = (
    "<style>.finding{display:inline-block;vertical-align:top;margin:.3rem;padding:.4rem;"
    "border:1px solid #d0d7de;font-size:.8rem;max-width:350px}"
    ".finding img{width:160px;margin:0 .1rem}</style>"
)


def write_audit_report(result: AuditResult, path: Path) -> Path:
    """Write ``audit.html`` for ``result``; return its path."""
    summary = result.summary()
    sections = [
        Section(
            "Summary",
            _CSS
            + paragraph(
                f"{result.source}: {summary['images']} images in {len(result.classes)} classes, "
                f"compared by aligned thumbnails and the features of {result.backbone}."
            )
            + table(["finding", "count"], list(summary.items()), table_id="summary"),
        ),
        Section("Near-duplicates across splits", _pairs(result, across=True)),
        Section("Likely label errors", _label_issues(result)),
        Section("Outliers", _outliers(result)),
        Section("Near-duplicates within a split", _pairs(result, across=False)),
        Section(
            "Look-alikes: pairs of images that each resemble many others",
            _pairs(result, across=None),
        ),
        Section(
            "Most confused classes",
            table(
                ["classes", "images in the overlap", "joint probability"],
                [
                    (" / ".join(r["classes"]), r["images"], r["joint_probability"])
                    for r in result.overlap
                ],
                table_id="overlap",
            )
            if result.overlap
            else paragraph("No class pair overlaps.", note=True),
        ),
    ]
    return write_html(path, f"graft audit: {result.source}", sections)


def _pairs(result: AuditResult, *, across: bool | None) -> str:
    """Copies across (or within) splits; ``across=None``: the look-alikes."""
    if across is None:
        pairs = [pair for pair in result.duplicates if pair.look_alike]
    else:
        pairs = [p for p in result.duplicates if p.across == across and not p.look_alike]
    if not pairs:
        return paragraph("None found.", note=True)
    cards = []
    for pair in pairs[:SHOWN]:
        first, second = result.samples[pair.first], result.samples[pair.second]
        kind = "identical files" if pair.exact else f"similarity {pair.similarity:.3f}"
        cards.append(
            _card(
                [first.path, second.path],
                f"{first.split}/{first.label} ~ {second.split}/{second.label}: {kind}, "
                f"hash distance {pair.hamming}",
                f"{first.path}\n{second.path}",
            )
        )
    return _more(len(pairs)) + "".join(cards)


def _label_issues(result: AuditResult) -> str:
    if not result.label_issues:
        return paragraph("None found.", note=True)
    cards = [
        _card(
            [result.samples[issue.row].path],
            f"given {issue.given}, suggested {issue.suggested} (p(given) {issue.quality:.3f})",
            str(result.samples[issue.row].path),
        )
        for issue in result.label_issues[:SHOWN]
    ]
    return _more(len(result.label_issues)) + "".join(cards)


def _outliers(result: AuditResult) -> str:
    if not result.outliers:
        return paragraph("None found.", note=True)
    cards = [
        _card(
            [result.samples[o.row].path],
            f"{result.samples[o.row].label}: distance {o.distance:.3f} (typical {o.typical:.3f}), "
            f"nearest images are {o.nearest_label}",
            str(result.samples[o.row].path),
        )
        for o in result.outliers[:SHOWN]
    ]
    return _more(len(result.outliers)) + "".join(cards)


def _more(count: int) -> str:
    shown = min(count, SHOWN)
    return paragraph(f"{count} found; {shown} shown (all of them in audit.json).", note=True)


def _card(paths: list[Path], caption: str, title: str) -> str:
    images = [image_tag(_thumbnail(path), path.name) for path in paths]
    return card(images, " ~ ".join(path.name for path in paths), caption, title)


def _thumbnail(path: Path) -> bytes:
    """A PNG thumbnail (a grey placeholder if the file cannot be read any more)."""
    from PIL import Image

    try:
        image = load_image(path, draft_size=THUMB)
        image.thumbnail((THUMB, THUMB))
    except DataError:
        image = Image.new("RGB", (THUMB, THUMB), (200, 200, 200))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
