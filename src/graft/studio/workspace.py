"""What the studio may read and where it writes.

It reads only inside the folders the user named (``graft studio DATA --root FOLDER``); it writes
only inside its workspace: the runs it trains (``runs/``), the decisions the user makes about
images (``fixes/<data>.csv``, the ``graft audit`` decisions format that training applies) and
cached thumbnails. The user's images are never moved, renamed or edited.

Example:
    >>> import tempfile, pathlib
    >>> home = pathlib.Path(tempfile.mkdtemp())
    >>> space = Workspace(roots=[home], folder=home / "studio")
    >>> space.inside(home / "leaves") == (home / "leaves").resolve()
    True
    >>> space.inside("/etc")
    Traceback (most recent call last):
    ...
    graft.studio.workspace.OutsideError: /etc is outside the folders this studio was opened on; \
open it with graft studio /etc (or --root)
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from PIL import Image

from graft.data.fixes import HEADER, read_fixes
from graft.data.images import load_image
from graft.data.prepare import DataOptions, prepare
from graft.data.validate import DataReport
from graft.errors import ConfigError, GraftError
from graft.fileio import atomic_path
from graft.runs import CONFIG, is_graft_run, read_run_config

THUMBNAIL = 128


class OutsideError(GraftError):
    """A path outside the folders the studio may read."""


@dataclass
class Workspace:
    """The folders the studio reads and the one it writes.

    Attributes:
        roots: Folders the user opened the studio on; every path read must be inside one.
        folder: The studio's own folder (runs, decisions, thumbnails).
        reports: Each opened data folder's validation report, by resolved path.
    """

    roots: list[Path]
    folder: Path
    reports: dict[str, DataReport] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.roots = [Path(root).resolve() for root in self.roots]
        self.folder = Path(self.folder).resolve()

    def inside(self, path: str | Path) -> Path:
        """The resolved path, when it lies inside a root (or the workspace).

        Raises:
            OutsideError: It does not.
        """
        resolved = Path(path).expanduser().resolve()
        if any(resolved.is_relative_to(root) for root in [*self.roots, self.folder]):
            return resolved
        raise OutsideError(
            f"{path} is outside the folders this studio was opened on; open it with "
            f"graft studio {path} (or --root)"
        )

    def browse(self, path: str | Path | None) -> dict[str, Any]:
        """The sub-folders and data tables of a folder inside the roots (the roots themselves
        when ``path`` is empty)."""
        if not path:
            return {"path": None, "folders": [str(root) for root in self.roots], "tables": []}
        folder = self.inside(path)
        entries = sorted(folder.iterdir()) if folder.is_dir() else []
        return {
            "path": str(folder),
            "folders": [str(e) for e in entries if e.is_dir() and not e.name.startswith(".")],
            "tables": [str(e) for e in entries if e.suffix.lower() in (".csv", ".tsv")],
        }

    def open_data(self, path: str | Path) -> dict[str, Any]:
        """Read and validate a data folder or table; return what the Data page shows.

        Raises:
            OutsideError: The path is outside the roots.
            DataError: The data cannot train a classifier (the message says why).
        """
        source = self.inside(path)
        report = prepare(source, self.data_options(source))
        self.reports[str(source)] = report
        images = report.images
        return {
            "path": str(source),
            "name": self.data_name(source),
            "layout": images.layout,
            "classes": images.classes,
            "counts": images.counts(),
            "skipped": [{"path": str(p), "reason": reason} for p, reason in report.problems],
            "duplicates": [
                {"kept": str(kept.path), "other": str(other.path)}
                for kept, other in report.duplicates
            ],
            "warnings": report.warnings,
            "fixes": report.fixes,
            "fixes_file": str(self.fixes_file(source)),
        }

    def report(self, path: str | Path) -> DataReport:
        """The opened data's report (opening it first when needed)."""
        source = self.inside(path)
        if str(source) not in self.reports:
            self.open_data(source)
        return self.reports[str(source)]

    def images(
        self, path: str | Path, label: str | None, page: int, size: int = 48
    ) -> dict[str, Any]:
        """One page of a data folder's images (of one class, when ``label`` is given)."""
        samples = [s for s in self.report(path).images.samples if label is None or s.label == label]
        chosen = samples[page * size : (page + 1) * size]
        return {
            "total": len(samples),
            "page": page,
            "pages": max(1, -(-len(samples) // size)),
            "images": [{"path": str(s.path), "label": s.label, "split": s.split} for s in chosen],
        }

    def thumbnail(self, path: str | Path) -> bytes:
        """A JPEG of at most 128 px a side, cached by the file's path, size and time.

        Raises:
            OutsideError: The image is outside the roots.
            DataError: It cannot be decoded.
        """
        image_path = self.inside(path)
        stat = image_path.stat()
        key = hashlib.sha256(f"{image_path}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()
        cached = self.folder / "thumbnails" / key[:2] / f"{key}.jpg"
        if cached.is_file():
            return cached.read_bytes()
        image = load_image(image_path)
        image.thumbnail((THUMBNAIL, THUMBNAIL), Image.Resampling.BILINEAR)
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=85)
        cached.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(cached) as tmp:
            tmp.write_bytes(buffer.getvalue())
        return buffer.getvalue()

    @staticmethod
    def data_name(source: Path) -> str:
        """A short, file-name-safe name of a data folder or table."""
        stem = source.stem if source.is_file() else source.name
        return re.sub(r"[^A-Za-z0-9_.-]+", "-", stem).strip("-") or "data"

    def fixes_file(self, source: Path) -> Path:
        """Where the decisions about a data folder's images are kept."""
        digest = hashlib.sha256(str(source).encode()).hexdigest()[:8]
        return self.folder / "fixes" / f"{self.data_name(source)}-{digest}.csv"

    def data_options(self, source: Path) -> DataOptions:
        """The data options a training on ``source`` uses: its decisions, when there are any."""
        fixes = self.fixes_file(source)
        return DataOptions(fixes=fixes if _has_decisions(fixes) else None)

    def decide(self, data: str | Path, image: str | Path, action: str, label: str = "") -> Path:
        """Record a decision (``drop``, ``relabel`` to ``label``, or ``keep`` to undo) about one
        image of an opened data folder; the next training applies it.

        Raises:
            OutsideError: The data or image is outside the roots.
            ConfigError: Unknown action, or a relabel to a class the data does not have.
        """
        source = self.inside(data)
        image_path = self.inside(image)
        if action not in ("keep", "drop", "relabel"):
            raise ConfigError(f"action {action!r} is not one of: keep, drop, relabel")
        classes = self.report(source).images.classes
        if action == "relabel" and label not in classes:
            raise ConfigError(
                f"{label!r} is not a class of {source}; use one of {', '.join(classes)}"
            )
        target = self.fixes_file(source)
        rows = {}
        if target.is_file():
            with open(target, newline="", encoding="utf-8") as handle:
                rows = {row[0]: row for row in list(csv.reader(handle))[1:] if row}
        rows[str(image_path)] = [str(image_path), action, label if action == "relabel" else ""]
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(HEADER[:3])
        writer.writerows(row[:3] for row in rows.values())
        target.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(target) as tmp:
            tmp.write_text(buffer.getvalue(), encoding="utf-8")
        read_fixes(target)  # what training will read: fails here, not in the next run
        return target

    def new_run_dir(self, source: Path, strategy: str) -> Path:
        """A fresh run folder under ``runs/``, named after the data, strategy and time."""
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        base = self.folder / "runs" / f"{self.data_name(source)}-{strategy}-{stamp}"
        run, n = base, 1
        while run.exists():
            n += 1
            run = base.with_name(f"{base.name}-{n}")
        return run

    def runs(self) -> list[dict[str, Any]]:
        """The studio's runs, newest first."""
        folder = self.folder / "runs"
        candidates = (
            [run for run in folder.iterdir() if is_graft_run(run)] if folder.is_dir() else []
        )
        found = []
        for run in sorted(candidates, key=os.path.getmtime, reverse=True):
            config = read_run_config(run)
            found.append(
                {
                    "name": run.name,
                    "strategy": config.strategy,
                    "status": config.status,
                    "data": config.data.source,
                }
            )
        return found

    def run_dir(self, name: str) -> Path:
        """A run of the studio's, by name.

        Raises:
            OutsideError: The name is not a run folder of the workspace.
        """
        run = (self.folder / "runs" / name).resolve()
        if run.parent != (self.folder / "runs").resolve() or not (run / CONFIG).is_file():
            raise OutsideError(f"{name}: no such run in {self.folder / 'runs'}")
        return run


def _has_decisions(fixes: Path) -> bool:
    return fixes.is_file() and any(fix.action != "keep" for fix in read_fixes(fixes))
