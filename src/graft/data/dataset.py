"""Reading a labelled image set from the three layouts users have.

1. **Class folders**: ``DATA/<class>/<image>`` (Keras' ``image_dataset_from_directory``).
2. **Split folders**: ``DATA/train|val|validation|test/<class>/<image>``, as in
   ``cats_and_dogs_filtered``; the given splits are kept.
3. **A table**: a CSV/TSV (or whitespace-separated) file of ``path,label`` rows, paths relative to
   ``root`` (default: the table's folder); a path without extension is matched to an image file
   (Kaggle's ``id`` columns). An optional ``split`` column keeps given splits, so a run's saved
   ``split.csv`` reproduces it exactly.

Reading never decodes an image: it only finds files and labels. Problems that make the set
unusable (no classes, one class, a folder one level off) raise :class:`graft.errors.DataError`
with the fix; files that cannot be used are listed in ``skipped``.

Example:
    >>> from graft.datasets import elpv
    >>> images = from_items(elpv("binary"), source="elpv")
    >>> images.classes, len(images.samples)
    (['defective', 'functional'], 2624)
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from graft.data.files import is_image_file, walk_folder
from graft.data.images import SUPPORTED_FORMATS
from graft.data.samples import (
    SPLIT_NAMES,
    SPLITS,
    LabelledImages,
    Layout,
    Sample,
    Split,
)
from graft.data.table import read_table
from graft.errors import DataError

__all__ = [
    "SPLITS",
    "SPLIT_NAMES",
    "LabelledImages",
    "Layout",
    "Sample",
    "Split",
    "check_classes",
    "from_items",
    "read_labelled",
]


def read_labelled(source: str | Path, *, root: str | Path | None = None) -> LabelledImages:
    """Read a labelled image set from a folder or a table (see the module docstring).

    Args:
        source: A folder (class folders or split folders) or a CSV/TSV file.
        root: For a table: the folder its paths are relative to (default: the table's folder).

    Raises:
        DataError: The source does not exist, has no usable images, has one class only, or
            looks one level off (the message names the folder to pass instead).
    """
    path = Path(source)
    if not path.exists():
        raise DataError(f"{path}: no such folder or file; pass a folder of class folders or a CSV")
    if path.is_file():
        images = read_table(path, root=Path(root) if root is not None else None)
    else:
        if root is not None:
            raise DataError(
                f"--root {root} only applies to a CSV/TSV source, and {path} is a folder"
            )
        images = _read_folder(path)
    check_classes(images)
    return images


def from_items(items: Iterable[tuple[str | Path, str]], *, source: str) -> LabelledImages:
    """Build a labelled set from ``(path, label)`` pairs, such as :func:`graft.datasets.elpv`."""
    samples = [Sample(Path(path), str(label)) for path, label in items]
    images = LabelledImages(samples, source=source, layout="items")
    check_classes(images)
    return images


def check_classes(images: LabelledImages) -> None:
    """Raise :class:`DataError` unless there are images of at least two classes."""
    if not images.samples:
        reasons = (
            f" ({len(images.skipped)} files skipped, e.g. {images.skipped[0][1]})"
            if images.skipped
            else ""
        )
        raise DataError(
            f"{images.source}: no labelled images found{reasons}; expected class folders "
            f"(DATA/<class>/<image>) or a CSV of path,label rows ({SUPPORTED_FORMATS})"
        )
    if len(images.classes) < 2:
        raise DataError(
            f"{images.source}: only one class ({images.classes[0]!r}) found; a classifier needs "
            "at least two classes: add a folder (or label) per class"
        )


def _read_folder(root: Path) -> LabelledImages:
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    loose = [p for p in root.iterdir() if p.is_file() and is_image_file(p)]
    split_folders = {
        p: SPLIT_NAMES[p.name.lower()] for p in folders if p.name.lower() in SPLIT_NAMES
    }
    if not folders:
        hint = (
            f"; it holds {len(loose)} images but no class folders: pass its parent "
            f"{root.parent} if that holds one folder per class"
            if loose
            else ""
        )
        raise DataError(
            f"{root}: expected one folder per class (or train/validation/test folders){hint}"
        )
    if len(folders) == 1 and not split_folders:
        inner = folders[0]
        inner_folders = [p for p in inner.iterdir() if p.is_dir() and not p.name.startswith(".")]
        if len(inner_folders) >= 2:
            raise DataError(
                f"{root}: holds a single folder {inner.name!r} with {len(inner_folders)} folders "
                f"inside; the data is probably one level down: pass {inner}"
            )
    if split_folders:
        others = [p.name for p in folders if p not in split_folders]
        images = LabelledImages([], source=str(root), layout="split-folders")
        if others:
            images.notes.append(
                f"folders {', '.join(others)} are not split folders (train, val/validation, test) "
                "and were ignored"
            )
        for folder, split in split_folders.items():
            _read_class_folders(folder, images, split)
        _check_split_classes(images)
    else:
        _refuse_folder_of_datasets(root, folders)
        images = LabelledImages([], source=str(root), layout="class-folders")
        _read_class_folders(root, images, None)
    if loose:
        images.notes.append(
            f"{len(loose)} images directly in {root} are not in a class folder and were ignored"
        )
    return images


def _refuse_folder_of_datasets(root: Path, folders: list[Path]) -> None:
    """Refuse a folder one level too high: its "class" folders are themselves datasets.

    A class folder that holds train/validation/test folders is a dataset; so is one that holds
    no image itself but several folders of images, when every class folder looks like that.
    """

    def subfolders(folder: Path) -> list[Path]:
        return [p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")]

    with_splits = [
        folder
        for folder in folders
        if any(p.name.lower() in SPLIT_NAMES for p in subfolders(folder))
    ]
    nested = [
        folder
        for folder in folders
        if not any(p.is_file() and is_image_file(p) for p in folder.iterdir())
        and len(subfolders(folder)) >= 2
    ]
    datasets = with_splits or (nested if len(nested) == len(folders) else [])
    if datasets:
        names = ", ".join(str(folder) for folder in datasets[:3])
        more = f" (and {len(datasets) - 3} more)" if len(datasets) > 3 else ""
        raise DataError(
            f"{root}: its class folders look like datasets themselves (each holds "
            f"{'train/validation/test' if with_splits else 'class'} folders); pass one dataset "
            f"folder, e.g. {names}{more}. To use nested folders as classes, list path,label "
            "rows in a CSV instead"
        )


def _read_class_folders(root: Path, images: LabelledImages, split: Split | None) -> None:
    classes = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if split is not None and any(p.name.lower() in SPLIT_NAMES for p in classes):
        raise DataError(
            f"{root}: split folders inside a split folder; pass the folder that holds "
            f"train/validation/test, not {root.parent}"
        )
    for folder in classes:
        files = walk_folder(folder)
        found = 0
        for file in files:
            if is_image_file(file):
                images.samples.append(Sample(file, folder.name, split))
                found += 1
            else:
                images.skipped.append(
                    (file, f"{file}: not an image file extension ({SUPPORTED_FORMATS})")
                )
        if found == 0:
            where = f"{split} split" if split else "data"
            images.notes.append(f"class folder {folder} is empty and was ignored ({where})")


def _check_split_classes(images: LabelledImages) -> None:
    by_split: dict[str, set[str]] = {}
    for sample in images.samples:
        by_split.setdefault(sample.split or "", set()).add(sample.label)
    train = by_split.get("train", set())
    for split, labels in by_split.items():
        unknown = labels - train
        if split != "train" and train and unknown:
            raise DataError(
                f"{images.source}: the {split} split has classes that train lacks "
                f"({', '.join(sorted(unknown))}); every class needs training images"
            )
