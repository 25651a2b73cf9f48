"""Train/validation/test splits: kept when given, otherwise seeded and stratified.

The split is computed by graft itself (a seeded shuffle per class, then the first
``round(n * test)`` images to test and the next ``round(n * val)`` to validation), so it depends
only on the seed and the files, not on a library version. It is saved with every run as
``split.csv`` (path, label, split, content hash), which reads back as a table with a split
column: any run can be reproduced exactly.

Example:
    >>> from pathlib import Path
    >>> from graft.data.dataset import LabelledImages, Sample
    >>> samples = [Sample(Path(f"{i}.png"), "ab"[i % 2]) for i in range(20)]
    >>> images = LabelledImages(samples, "demo", "items")
    >>> split = assign_splits(images, val=0.2, test=0.2, seed=0)
    >>> {name: sum(counts.values()) for name, counts in split.counts().items()}
    {'train': 12, 'val': 4, 'test': 4}
"""

from __future__ import annotations

import csv
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from graft.data.dataset import SPLITS, LabelledImages, Sample, Split
from graft.errors import ConfigError
from graft.fileio import atomic_path


def assign_splits(
    images: LabelledImages,
    *,
    val: float | None = None,
    test: float | None = None,
    seed: int = 0,
    carve: float = 0.0,
) -> LabelledImages:
    """Give every sample a split.

    Given splits are kept. Without them, ``val`` (default 0.2) and ``test`` (default 0) of each
    class go to validation and test. With given splits but no validation split, ``val`` (or,
    when ``val`` is not passed, ``carve``) carves one out of train, stratified.

    Raises:
        ConfigError: Fractions outside ``[0, 1)`` or adding up to 1 or more.
    """
    _check_fraction("val", val)
    _check_fraction("test", test)
    if images.has_splits:
        if val is None:
            val = carve
        if val and not images.split("val"):
            train = [s for s in images.samples if s.split == "train"]
            rest = [s for s in images.samples if s.split != "train"]
            return images.with_samples(_stratified(train, val=val, test=0.0, seed=seed) + rest)
        return images
    val_fraction = 0.2 if val is None else val
    test_fraction = 0.0 if test is None else test
    if val_fraction + test_fraction >= 1.0:
        raise ConfigError(
            f"--val {val_fraction} and --test {test_fraction} leave no training images"
        )
    return images.with_samples(
        _stratified(images.samples, val=val_fraction, test=test_fraction, seed=seed)
    )


def _check_fraction(name: str, value: float | None) -> None:
    if value is not None and not 0.0 <= value < 1.0:
        raise ConfigError(f"--{name} {value} must be a fraction in [0, 1), e.g. 0.2")


def _stratified(samples: Sequence[Sample], *, val: float, test: float, seed: int) -> list[Sample]:
    rng = np.random.default_rng(seed)
    by_class: dict[str, list[Sample]] = defaultdict(list)
    for sample in sorted(samples, key=lambda s: (s.label, str(s.path))):
        by_class[sample.label].append(sample)
    assigned: list[Sample] = []
    for label in sorted(by_class):
        members = by_class[label]
        order = rng.permutation(len(members))
        n_test = round(len(members) * test)
        n_val = round(len(members) * val)
        if len(members) - n_test - n_val < 1:  # every class keeps a training image
            n_val = max(0, len(members) - n_test - 1)
        for rank, index in enumerate(order):
            split: Split = "test" if rank < n_test else "val" if rank < n_test + n_val else "train"
            assigned.append(replace(members[index], split=split))
    return sorted(assigned, key=lambda s: (SPLITS.index(s.split or "train"), s.label, str(s.path)))


def subset_train(
    images: LabelledImages, *, per_class: int | None = None, limit: int | None = None, seed: int = 0
) -> LabelledImages:
    """Keep a seeded, stratified subset of the training split (validation and test stay whole).

    ``per_class`` keeps at most that many training images per class; ``limit`` then keeps at
    most that many in total, in proportion to class sizes (at least one per class).

    Raises:
        ConfigError: A count below 1.
    """
    for name, value in (("per-class", per_class), ("limit", limit)):
        if value is not None and value < 1:
            raise ConfigError(f"--{name} {value} must be at least 1")
    if per_class is None and limit is None:
        return images
    rng = np.random.default_rng(seed + 1)
    train = [s for s in images.samples if s.split == "train"]
    rest = [s for s in images.samples if s.split != "train"]
    by_class: dict[str, list[Sample]] = defaultdict(list)
    for sample in sorted(train, key=lambda s: (s.label, str(s.path))):
        by_class[sample.label].append(sample)
    shuffled = {
        label: [members[i] for i in rng.permutation(len(members))]
        for label, members in by_class.items()
    }
    if per_class is not None:
        shuffled = {label: members[:per_class] for label, members in shuffled.items()}
    if limit is not None:
        total = sum(len(members) for members in shuffled.values())
        if total > limit:
            shuffled = {
                label: members[: max(1, int(len(members) * limit / total))]
                for label, members in shuffled.items()
            }
    kept = [sample for label in sorted(shuffled) for sample in shuffled[label]]
    return images.with_samples(kept + rest)


def subset_then_carve(
    images: LabelledImages,
    *,
    per_class: int | None,
    limit: int | None,
    carve: float,
    seed: int = 0,
) -> tuple[LabelledImages, bool]:
    """:func:`subset_train`, then a validation split of ``carve`` x the training split's size
    taken from the training images the subset left out (stratified).

    The training subset is then the one :func:`subset_train` alone keeps (the linear strategy's,
    for instance), so capped runs with and without a carved validation split train on the same
    images. With no images left out, the validation split is carved first, as without a cap.

    Returns:
        The images, and whether the validation split came from the images the cap left out
        (``False``: it was carved from the training split first, as without a cap).
    """
    train = [s for s in images.samples if s.split == "train"]
    rest = [s for s in images.samples if s.split != "train"]
    subset = subset_train(images, per_class=per_class, limit=limit, seed=seed)
    kept = {s.path for s in subset.samples if s.split == "train"}
    leftover = [s for s in train if s.path not in kept]
    wanted = round(len(train) * carve)
    if not leftover or not wanted:
        carved = images.with_samples(_stratified(train, val=carve, test=0.0, seed=seed) + rest)
        return subset_train(carved, per_class=per_class, limit=limit, seed=seed), False
    fraction = min(0.999, wanted / len(leftover))
    val = [s for s in _stratified(leftover, val=fraction, test=0.0, seed=seed) if s.split == "val"]
    return (
        subset.with_samples(
            sorted(
                subset.samples + val,
                key=lambda s: (SPLITS.index(s.split or "train"), s.label, str(s.path)),
            )
        ),
        True,
    )


def write_manifest(path: Path, samples: Sequence[Sample], hashes: Sequence[str | None]) -> None:
    """Write ``split.csv``: path, label, split, content hash (atomically)."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label", "split", "content_hash"])
        for sample, digest in zip(samples, hashes, strict=True):
            writer.writerow(
                [str(sample.path.resolve()), sample.label, sample.split or "", digest or ""]
            )
