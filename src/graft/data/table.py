"""Reading ``path,label[,split]`` tables: CSV, TSV, semicolon or whitespace separated.

The delimiter is detected from the first lines. A header is recognised by its column names
(``path``/``file``/``filename``/``image``/``id`` and ``label``/``class``/``category``/
``target``/``breed``; optional ``split``); without one, the first column is the path and the
second the label. Paths are relative to ``root`` (default: the table's folder); a path without an
extension is matched to ``path + .jpg/.png/...`` (Kaggle's ``id`` columns).

Example:
    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> for name in ("a.jpg", "b.jpg"):
    ...     _ = (folder / name).write_bytes(b"")
    >>> _ = (folder / "labels.csv").write_text("id,breed\\na,husky\\nb,pug\\n")
    >>> [(s.path.name, s.label) for s in read_table(folder / "labels.csv").samples]
    [('a.jpg', 'husky'), ('b.jpg', 'pug')]
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

from graft.data.images import IMAGE_EXTENSIONS
from graft.data.samples import SPLIT_NAMES, LabelledImages, Sample, Split
from graft.errors import DataError

PATH_COLUMNS = (
    "path",
    "file",
    "filename",
    "file_name",
    "image",
    "image_path",
    "img",
    "id",
    "image_id",
    "name",
)
LABEL_COLUMNS = ("label", "class", "category", "target", "breed", "species", "y", "class_name")
SPLIT_COLUMNS = ("split", "subset", "set")


def read_table(table: Path, *, root: Path | None = None) -> LabelledImages:
    """Read a labelled table; see the module docstring.

    Raises:
        DataError: Unreadable file, too few columns, unknown split values, or no row whose
            image exists (the message shows a path it looked for).
    """
    base = root if root is not None else table.parent
    if not base.is_dir():
        raise DataError(f"--root {base}: no such folder (the table's paths are relative to it)")
    rows = _read_rows(table)
    if not rows:
        raise DataError(f"{table}: the table is empty; expected path,label rows")
    path_col, label_col, split_col, body = _columns(table, rows)
    images = LabelledImages([], source=str(table), layout="table")
    missing: list[Path] = []
    for number, row in body:
        if len(row) <= max(path_col, label_col, split_col if split_col is not None else -1):
            raise DataError(
                f"{table}:{number}: expected at least {max(path_col, label_col) + 1} columns, "
                f"got {row!r}"
            )
        raw, label = row[path_col].strip(), row[label_col].strip()
        if not raw or not label:
            images.skipped.append((base / raw, f"{table}:{number}: empty path or label"))
            continue
        split = _split_value(table, number, row[split_col]) if split_col is not None else None
        found = _resolve(base, raw)
        if found is None:
            missing.append(base / raw)
            images.skipped.append((base / raw, f"{table}:{number}: {base / raw} not found"))
            continue
        images.samples.append(Sample(found, label, split))
    if not images.samples and missing:
        raise DataError(
            f"{table}: none of the {len(missing)} listed images exist (looked for {missing[0]}); "
            "pass --root with the folder the paths are relative to"
        )
    if missing:
        images.notes.append(
            f"{len(missing)} rows of {table.name} name images that do not exist (skipped)"
        )
    return images


def _read_rows(table: Path) -> list[list[str]]:
    try:
        text = table.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise DataError(
            f"{table}: not a text table (expected UTF-8 CSV/TSV of path,label)"
        ) from err
    except OSError as err:
        raise DataError(f"{table}: cannot read ({err.strerror})") from err
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        return []
    sample = lines[:20]
    if table.suffix.lower() in {".tsv", ".tab"} or all("\t" in line for line in sample):
        return list(csv.reader(lines, delimiter="\t"))
    for delimiter in (",", ";"):
        if all(delimiter in line for line in sample):
            return list(csv.reader(lines, delimiter=delimiter))
    return [re.split(r"\s+", line.strip()) for line in lines]


def _columns(
    table: Path, rows: list[list[str]]
) -> tuple[int, int, int | None, list[tuple[int, list[str]]]]:
    header = [cell.strip().lower() for cell in rows[0]]
    numbered = list(enumerate(rows, 1))
    path_col = next((header.index(name) for name in PATH_COLUMNS if name in header), None)
    label_col = next((header.index(name) for name in LABEL_COLUMNS if name in header), None)
    if path_col is not None and label_col is not None:
        split_col = next((header.index(name) for name in SPLIT_COLUMNS if name in header), None)
        return path_col, label_col, split_col, numbered[1:]
    if len(rows[0]) < 2:
        raise DataError(
            f"{table}: expected at least two columns (path, label); the first line has "
            f"{len(rows[0])}: {rows[0]!r}"
        )
    looks_like_header = any(cell in PATH_COLUMNS + LABEL_COLUMNS for cell in header)
    if not looks_like_header:  # a header of other names: no image file in the first row, but
        # image files in the rows below it
        later = [row[0].strip() for row in rows[1:21] if row]
        looks_like_header = not _is_image_name(rows[0][0]) and any(map(_is_image_name, later))
    if looks_like_header:
        raise DataError(
            f"{table}: cannot tell the path and label columns from the header {rows[0]!r}; name "
            f"them e.g. 'path' and 'label'"
        )
    return 0, 1, None, numbered


def _is_image_name(cell: str) -> bool:
    return Path(cell.strip()).suffix.lower() in IMAGE_EXTENSIONS


def _split_value(table: Path, number: int, raw: str) -> Split:
    value = raw.strip().lower()
    if value not in SPLIT_NAMES:
        raise DataError(
            f"{table}:{number}: split {raw!r} is not one of train, val (validation), test"
        )
    return SPLIT_NAMES[value]


def _resolve(base: Path, raw: str) -> Path | None:
    candidate = base / raw
    if candidate.is_file():
        return candidate
    if not Path(raw).suffix:
        for extension in IMAGE_EXTENSIONS:
            for variant in (extension, extension.upper()):
                with_extension = base / f"{raw}{variant}"
                if with_extension.is_file():
                    return with_extension
    return None
