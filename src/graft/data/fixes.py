"""The decisions file: what to do with each image an audit questioned.

``graft audit`` writes ``fixes.csv`` with one row per finding: ``path,action,label`` and, for
reading, ``suggested`` and ``reason``. Every action starts as ``keep``; the user changes it to
``drop`` or ``relabel`` (with the new class in ``label``) and passes the file to
``graft train --fixes FILE``, which applies it to the list of images it reads. The user's files
are never moved, renamed or edited.

Example:
    >>> import tempfile, pathlib
    >>> from graft.data.dataset import LabelledImages, Sample
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> samples = [Sample(root / "a.png", "cat"), Sample(root / "b.png", "cat"),
    ...            Sample(root / "c.png", "dog")]
    >>> images = LabelledImages(samples, "demo", "items")
    >>> _ = (root / "fixes.csv").write_text(f"path,action,label\\n{root}/b.png,relabel,dog\\n")
    >>> fixed, summary = apply_fixes(images, read_fixes(root / "fixes.csv"))
    >>> [s.label for s in fixed.samples], summary["relabelled"]
    (['cat', 'dog', 'dog'], 1)
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from graft.data.dataset import LabelledImages
from graft.errors import ConfigError
from graft.fileio import atomic_path

ACTIONS = ("keep", "drop", "relabel")
HEADER = ("path", "action", "label", "suggested", "reason")


@dataclass(frozen=True)
class Fix:
    """One decision.

    Attributes:
        path: The image (absolute, as the audit wrote it, or relative to the file's folder).
        action: ``keep``, ``drop`` or ``relabel``.
        label: The new class for ``relabel``.
        where: ``FILE, line N``, for messages.
    """

    path: Path
    action: str
    label: str = ""
    where: str = ""


@dataclass(frozen=True)
class Suggestion:
    """A row the audit proposes: the image, the suggested action and why."""

    path: Path
    suggested: str
    reason: str
    label: str = ""


def write_fixes(path: Path, suggestions: Sequence[Suggestion]) -> Path:
    """Write the decisions file, every action ``keep`` (one row per image, first reason wins)."""
    seen: set[Path] = set()
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADER)
        for item in suggestions:
            if item.path in seen:
                continue
            seen.add(item.path)
            writer.writerow(
                [os.path.abspath(item.path), "keep", item.label, item.suggested, item.reason]
            )
    return path


def read_fixes(path: Path) -> list[Fix]:
    """Read a decisions file.

    Raises:
        ConfigError: One line naming the file, the line and the value: missing columns, an
            unknown action, or ``relabel`` without a label.
    """
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            rows = list(csv.reader(handle))
    except OSError as err:
        raise ConfigError(f"--fixes {path}: cannot be read ({err.strerror})") from err
    except UnicodeDecodeError as err:
        raise ConfigError(
            f"--fixes {path}: not UTF-8 text (byte {err.start}); save it as CSV UTF-8"
        ) from err
    except csv.Error as err:
        raise ConfigError(f"--fixes {path}: not a CSV file ({err})") from err
    if not rows or [cell.strip().lower() for cell in rows[0][:2]] != ["path", "action"]:
        raise ConfigError(
            f"--fixes {path}: the first line must be the header path,action,label "
            "(graft audit writes such a file: fixes.csv)"
        )
    header = [cell.strip().lower() for cell in rows[0]]
    label_at = header.index("label") if "label" in header else None
    fixes: dict[str, Fix] = {}
    for number, row in enumerate(rows[1:], start=2):
        if not row or not any(cell.strip() for cell in row):
            continue
        where = f"{path}, line {number}"
        if len(row) < 2:
            raise ConfigError(f"--fixes {where}: expected path,action,label")
        action = row[1].strip().lower()
        if action not in ACTIONS:
            raise ConfigError(
                f"--fixes {where}: action {row[1]!r} is not one of {', '.join(ACTIONS)}"
            )
        label = row[label_at].strip() if label_at is not None and label_at < len(row) else ""
        if action == "relabel" and not label:
            raise ConfigError(f"--fixes {where}: relabel needs the new class in the label column")
        image = Path(row[0].strip())
        key = os.path.abspath(image if image.is_absolute() else path.parent / image)
        fix = Fix(Path(key), action, label, where)
        earlier = fixes.get(key)
        if earlier is not None and (earlier.action, earlier.label) != (action, label):
            raise ConfigError(
                f"--fixes {where}: {row[0].strip()} already has another decision "
                f"({earlier.where}); keep one"
            )
        fixes[key] = fix
    return list(fixes.values())


def apply_fixes(
    images: LabelledImages, fixes: Sequence[Fix]
) -> tuple[LabelledImages, dict[str, Any]]:
    """Drop and relabel images as the decisions say; return the new set and a summary.

    Paths are compared as absolute paths (symbolic links are not followed: a link is its own
    image), so a fix written with an absolute path finds an image read through a relative one.
    Fixes naming no image of the data are counted (``unmatched``).

    Raises:
        ConfigError: A relabel to a class the data does not have, or no drop/relabel row
            naming any image of the data (the file belongs to other data).
    """
    by_path = {os.path.abspath(fix.path): fix for fix in fixes if fix.action != "keep"}
    classes = set(images.classes)
    for decision in by_path.values():
        if decision.action == "relabel" and decision.label not in classes:
            raise ConfigError(
                f"--fixes {decision.where}: {decision.label!r} is not a class of the data; use "
                f"one of {', '.join(sorted(classes))}"
            )
    kept = []
    dropped = relabelled = 0
    matched: set[str] = set()
    for sample in images.samples:
        key = os.path.abspath(sample.path)
        fix = by_path.get(key)
        if fix is None:
            kept.append(sample)
            continue
        matched.add(key)
        if fix.action == "drop":
            dropped += 1
        else:
            relabelled += fix.label != sample.label
            kept.append(replace(sample, label=fix.label))
    if by_path and not matched:
        first = next(iter(by_path.values()))
        raise ConfigError(
            f"--fixes {first.where}: none of its {len(by_path)} drop/relabel rows names an image "
            f"of the data (e.g. {first.path}); pass the data the audit was made on"
        )
    summary = {
        "dropped": dropped,
        "relabelled": relabelled,
        "unmatched": len(set(by_path) - matched),
    }
    return images.with_samples(kept), summary
