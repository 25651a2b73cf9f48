"""A labelled image set's records: :class:`Sample` (a file, its label and split) and
:class:`LabelledImages` (the samples as read, with what was skipped).

Example:
    >>> images = LabelledImages([Sample(Path("a.png"), "cat", "train")], "x", "items")
    >>> images.classes, images.counts()
    (['cat'], {'train': {'cat': 1}})
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

Split = Literal["train", "val", "test"]
SPLITS: tuple[Split, ...] = ("train", "val", "test")
#: Folder and column values understood as split names (case-insensitive).
SPLIT_NAMES: dict[str, Split] = {
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "dev": "val",
    "test": "test",
    "testing": "test",
}
Layout = Literal["class-folders", "split-folders", "table", "items"]


@dataclass(frozen=True)
class Sample:
    """One labelled image; ``split`` is ``None`` until splits are assigned."""

    path: Path
    label: str
    split: Split | None = None


@dataclass
class LabelledImages:
    """A labelled image set as read from disk.

    Attributes:
        samples: Usable images with their labels (and splits where given).
        source: What the user passed (folder, table, or a name).
        layout: How it was read.
        skipped: ``(path, reason)`` for files found but not usable.
        notes: Warnings found while reading.
    """

    samples: list[Sample]
    source: str
    layout: Layout
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def classes(self) -> list[str]:
        """Sorted class names."""
        return sorted({sample.label for sample in self.samples})

    @property
    def has_splits(self) -> bool:
        """Whether every sample came with a split."""
        return bool(self.samples) and all(sample.split is not None for sample in self.samples)

    def split(self, name: Split) -> list[Sample]:
        """Return the samples of one split."""
        return [sample for sample in self.samples if sample.split == name]

    def counts(self) -> dict[str, dict[str, int]]:
        """Return ``{split: {class: count}}`` (split ``all`` when none are assigned)."""
        table: dict[str, Counter[str]] = {}
        for sample in self.samples:
            table.setdefault(sample.split or "all", Counter())[sample.label] += 1
        order = [*SPLITS, "all"]
        return {name: dict(sorted(table[name].items())) for name in order if name in table}

    def with_samples(self, samples: list[Sample]) -> LabelledImages:
        """Return a copy holding ``samples`` instead."""
        return replace(self, samples=samples)
