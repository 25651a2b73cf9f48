"""The one validation pass before any heavy work.

It scans every image (hash and header, see :mod:`graft.data.scan`) and reports, without ever
stopping half-way: unusable files (listed and skipped), exact duplicates across splits (leakage:
counted, and dropped from the later split with ``dedupe``), identical images with different
labels, classes missing from training, and strong class imbalance (with the fix). Only a set
that cannot train at all raises :class:`graft.errors.DataError`.

Example:
    >>> from graft.data.dataset import from_items
    >>> from graft.data.splits import assign_splits
    >>> from graft.datasets import elpv
    >>> images = assign_splits(from_items(elpv("binary"), source="elpv"), test=0.25)
    >>> report = validate(images)
    >>> len(report.hashes) == len(report.images.samples), report.problems
    (True, [])
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from graft.data.dataset import SPLITS, LabelledImages, Sample
from graft.data.scan import FileIndex, default_index_path
from graft.errors import DataError

#: Largest/smallest training class ratio above which graft suggests class weights.
IMBALANCE_RATIO = 3.0


@dataclass
class DataReport:
    """The outcome of :func:`validate`.

    Attributes:
        images: The usable samples (problem files and dropped duplicates removed).
        hashes: Content hash of each sample in ``images.samples``.
        problems: ``(path, reason)`` of unusable files (skipped).
        duplicates: Pairs ``(kept, other)`` of identical images found in two splits.
        dropped: Samples dropped by ``dedupe``.
        warnings: Human-readable warnings, each with its fix.
        near_duplicates: What the cross-split near-copy check found and dropped
            (:func:`graft.auditing.leakage.check_near_duplicates`).
        fixes: What a ``--fixes`` file changed (dropped, relabelled, unmatched).
        carved_val: The fraction of train carved out as the validation split, when the data
            came with splits but none for validation (0: none carved).
        carved_beyond_cap: Whether the carved validation images came from the training images
            that ``--per-class``/``--limit`` left out: the same data without the carve never
            sees them.
    """

    images: LabelledImages
    hashes: list[str]
    problems: list[tuple[Path, str]] = field(default_factory=list)
    duplicates: list[tuple[Sample, Sample]] = field(default_factory=list)
    dropped: list[Sample] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    near_duplicates: dict[str, Any] = field(default_factory=dict)
    fixes: dict[str, Any] = field(default_factory=dict)
    carved_val: float = 0.0
    carved_beyond_cap: bool = False

    def uncarved(self) -> tuple[list[Path], list[str], list[str | None], list[str]]:
        """The paths, labels, splits and content hashes of the same data without the carve,
        as the linear strategy sees it: a carved validation image is train, or left out when
        it came from beyond a cap.

        Example:
            >>> images = LabelledImages(
            ...     [Sample(Path("a.png"), "x", "train"), Sample(Path("b.png"), "x", "val")],
            ...     source="demo", layout="items")
            >>> report = DataReport(images, ["h1", "h2"], carved_val=0.1)
            >>> report.uncarved()[2]
            ['train', 'train']
            >>> report.carved_beyond_cap = True
            >>> report.uncarved()[2]
            ['train']
        """
        rows = list(zip(self.images.samples, self.hashes, strict=True))
        if self.carved_val and self.carved_beyond_cap:
            rows = [(sample, digest) for sample, digest in rows if sample.split != "val"]
        elif self.carved_val:
            rows = [
                (replace(sample, split="train") if sample.split == "val" else sample, digest)
                for sample, digest in rows
            ]
        return (
            [sample.path for sample, _ in rows],
            [sample.label for sample, _ in rows],
            [sample.split for sample, _ in rows],
            [digest for _, digest in rows],
        )

    def cleaning(self) -> dict[str, Any]:
        """What was found and dropped beyond unreadable files, for a run's ``config.json``."""
        return {
            "near_duplicates_across_splits": self.near_duplicates,
            "dropped": [str(sample.path) for sample in self.dropped],
            **({"fixes": self.fixes} if self.fixes else {}),
            **(
                {
                    "val_carved_from_train": self.carved_val,
                    "val_carved_beyond_cap": self.carved_beyond_cap,
                }
                if self.carved_val
                else {}
            ),
        }

    def fingerprint(self) -> str:
        """A digest of (content, label, split) of every sample: the data's identity."""
        import hashlib

        digest = hashlib.blake2b(digest_size=12)
        for sample, content in sorted(
            zip(self.images.samples, self.hashes, strict=True),
            key=lambda pair: (pair[1], pair[0].label),
        ):
            digest.update(f"{content}\t{sample.label}\t{sample.split}\n".encode())
        return digest.hexdigest()


def validate(
    images: LabelledImages, *, dedupe: bool = False, index: FileIndex | None = None
) -> DataReport:
    """Check a split labelled set before extraction; see the module docstring.

    Raises:
        DataError: After removing unusable files, training lacks images or a second class, or
            a validation/test class has no training images.
    """
    own_index = index is None
    scanner = index if index is not None else FileIndex(default_index_path())
    try:
        infos = scanner.scan([sample.path for sample in images.samples])
    finally:
        if own_index:
            scanner.close()
    problems = list(images.skipped)
    kept: list[tuple[Sample, str]] = []
    for sample, info in zip(images.samples, infos, strict=True):
        if info.problem is not None or info.content_hash is None:
            problems.append((sample.path, info.problem or f"{sample.path}: cannot be read"))
        else:
            kept.append((sample, info.content_hash))
    report = DataReport(images, [], problems=problems, warnings=list(images.notes))
    kept = _check_duplicates(kept, report, dedupe)
    report.images = images.with_samples([sample for sample, _ in kept])
    report.hashes = [digest for _, digest in kept]
    if problems:
        report.warnings.append(f"{len(problems)} files are not usable images and were skipped")
    _check_classes(report)
    return report


def _check_duplicates(
    kept: list[tuple[Sample, str]], report: DataReport, dedupe: bool
) -> list[tuple[Sample, str]]:
    by_hash: dict[str, list[Sample]] = defaultdict(list)
    for sample, digest in kept:
        by_hash[digest].append(sample)
    drop: set[Path] = set()
    conflicting = 0
    for samples in by_hash.values():
        if len(samples) < 2:
            continue
        if len({s.label for s in samples}) > 1:
            conflicting += 1
        ordered = sorted(samples, key=lambda s: SPLITS.index(s.split) if s.split else 0)
        first = ordered[0]
        for other in ordered[1:]:
            if other.split != first.split:
                report.duplicates.append((first, other))
                if dedupe:
                    drop.add(other.path)
    if report.duplicates:
        pairs = len(report.duplicates)
        action = (
            f"dropped {pairs} from the later split (--dedupe)"
            if dedupe
            else "this leaks evaluation images into training: pass --dedupe to drop them from "
            "the later split"
        )
        report.warnings.append(f"{pairs} images appear in two splits (identical content); {action}")
    if conflicting:
        report.warnings.append(
            f"{conflicting} identical images carry different labels; check those labels"
        )
    report.dropped = [sample for sample, _ in kept if sample.path in drop]
    return [(sample, digest) for sample, digest in kept if sample.path not in drop]


def _check_classes(report: DataReport) -> None:
    images = report.images
    train: dict[str, int] = defaultdict(int)
    for sample in images.samples:
        if sample.split == "train":
            train[sample.label] += 1
    if len(train) < 2:
        raise DataError(
            f"{images.source}: the training split has {sum(train.values())} usable images in "
            f"{len(train)} class(es); a classifier needs at least two classes with training images"
        )
    for name in ("val", "test"):
        unknown = {s.label for s in images.split(name)} - set(train)
        if unknown:
            raise DataError(
                f"{images.source}: the {name} split has classes with no training images "
                f"({', '.join(sorted(unknown))}); add training images for them"
            )
    largest, smallest = max(train.values()), min(train.values())
    if largest / smallest >= IMBALANCE_RATIO:
        rare = min(train, key=lambda label: train[label])
        report.warnings.append(
            f"strong class imbalance in training ({largest} vs {smallest} images, rarest "
            f"{rare!r}); consider --class-weight balanced"
        )
    tiny = sorted(label for label, count in train.items() if count < 5)
    if tiny:
        report.warnings.append(
            f"classes with fewer than 5 training images ({', '.join(tiny)}): results on them "
            "will be noisy"
        )
