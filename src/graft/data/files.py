"""Turning the paths a user gives into the list of image files to read.

A folder is walked recursively in sorted order; files with an image extension are taken,
hidden files and folders (``.DS_Store``, ``.ipynb_checkpoints``) are ignored, and any other file
is reported as skipped, never silently dropped. A file named explicitly is always taken, whatever
its extension, so decoding can say what is wrong with it.

Example:
    >>> import tempfile, pathlib
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (root / "a.jpg").write_bytes(b""); _ = (root / "notes.txt").write_text("x")
    >>> found = collect_images([root])
    >>> [p.name for p in found.images], [p.name for p, _ in found.skipped]
    (['a.jpg'], ['notes.txt'])
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from graft.data.images import IMAGE_EXTENSIONS, SUPPORTED_FORMATS


@dataclass
class CollectedImages:
    """The image files found, and what was passed over with the reason.

    Attributes:
        images: Image files, in the order given (folders expanded in sorted order).
        skipped: ``(path, reason)`` for non-image files found in folders.
        missing: ``(path, reason)`` for paths that do not exist.
    """

    images: list[Path] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    missing: list[tuple[Path, str]] = field(default_factory=list)


def is_image_file(path: Path) -> bool:
    """Whether ``path`` has one of the image extensions (case-insensitive)."""
    return path.suffix.lower() in IMAGE_EXTENSIONS


def collect_images(paths: Iterable[str | Path]) -> CollectedImages:
    """Expand files and folders into image files, reporting what was not taken and why."""
    found = CollectedImages()
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            for file in walk_folder(path):
                if is_image_file(file):
                    found.images.append(file)
                else:
                    found.skipped.append(
                        (file, f"not an image file extension (graft reads {SUPPORTED_FORMATS})")
                    )
        elif path.exists():
            found.images.append(path)
        else:
            found.missing.append((path, "no such file or folder; check the path"))
    return found


def walk_folder(root: Path) -> list[Path]:
    """Return every non-hidden file under ``root``, sorted, following no hidden folders."""
    files: list[Path] = []
    for current, folders, names in os.walk(root):
        folders[:] = sorted(d for d in folders if not d.startswith("."))
        files.extend(Path(current) / name for name in sorted(names) if not name.startswith("."))
    return files
