"""From what the user passed to a validated, split labelled set: the first step of every run.

Example:
    >>> from graft.datasets import elpv
    >>> report = prepare(elpv("binary"), DataOptions(val=0.0, test=0.25), name="elpv")
    >>> sorted(report.images.counts())
    ['test', 'train']
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from graft.data.dataset import LabelledImages, from_items, read_labelled
from graft.data.fixes import apply_fixes, read_fixes
from graft.data.splits import assign_splits, subset_then_carve, subset_train
from graft.data.validate import DataReport, validate
from graft.errors import ConfigError

#: ``--dedupe`` modes.
DEDUPE = ("none", "exact", "near")


@dataclass(frozen=True)
class DataOptions:
    """How to read and split the data (the ``graft train`` data options).

    Attributes:
        root: For a CSV/TSV source, the folder its paths are relative to.
        val: Validation fraction (default 0.2 when the data has no splits).
        test: Test fraction (default 0 when the data has no splits).
        seed: Seeds the split and the subsets.
        per_class: Keep at most this many training images per class.
        limit: Keep at most this many training images in total (stratified).
        dedupe: Drop the later copy of images found in two splits: ``none`` (or False),
            ``exact`` (or True: identical files) or ``near`` (also resized, re-encoded or
            slightly cropped copies; done by the trainer, which has the features).
        fixes: A decisions file (``graft audit``'s ``fixes.csv``: path,action,label) to apply
            to the images read: drop or relabel, never touching the files.
        carve_val: When the data comes with splits but none is for validation and ``val`` is
            not given, carve this fraction of each class out of train (the neural strategies
            set it: they select epochs and guard against the probe on validation).
    """

    root: Path | None = None
    val: float | None = None
    test: float | None = None
    seed: int = 0
    per_class: int | None = None
    limit: int | None = None
    dedupe: bool | str = False
    fixes: Path | None = None
    carve_val: float = 0.0

    def __post_init__(self) -> None:
        mode = self.dedupe if isinstance(self.dedupe, str) else ("exact" if self.dedupe else "none")
        if mode not in DEDUPE:
            raise ConfigError(f"--dedupe {self.dedupe!r} must be one of: {', '.join(DEDUPE)}")
        object.__setattr__(self, "dedupe", mode)
        if self.fixes is not None:
            object.__setattr__(self, "fixes", Path(self.fixes))

    @property
    def capped(self) -> bool:
        """Whether the training images are capped (``per_class`` or ``limit``)."""
        return self.per_class is not None or self.limit is not None

    def carving(self, fraction: float) -> DataOptions:
        """These options, carving ``fraction`` of train for validation when the data has no
        validation split, unless ``val`` or a carve is already given.

        Example:
            >>> DataOptions().carving(0.1).carve_val, DataOptions(val=0.0).carving(0.1).carve_val
            (0.1, 0.0)
        """
        if self.val is not None or self.carve_val:
            return self
        return replace(self, carve_val=fraction)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        data = asdict(self)
        data["root"] = str(self.root) if self.root is not None else None
        data["fixes"] = str(self.fixes) if self.fixes is not None else None
        return data


def prepare(
    data: str | Path | LabelledImages | Iterable[tuple[str | Path, str]],
    options: DataOptions | None = None,
    *,
    name: str | None = None,
) -> DataReport:
    """Read, split, subset and validate the data.

    Args:
        data: A folder, a CSV/TSV file, a :class:`LabelledImages`, or ``(path, label)`` pairs.
        options: Split and subset options (defaults: :class:`DataOptions`).
        name: A name for ``(path, label)`` pairs, used in messages.

    Raises:
        DataError: The data cannot train a classifier.
        ConfigError: Bad fractions or counts.
    """
    options = options or DataOptions()
    if isinstance(data, LabelledImages):
        images = data
    elif isinstance(data, (str, Path)):
        images = read_labelled(data, root=options.root)
    else:
        images = from_items(data, source=name or "items")
    carving = (
        options.val is None
        and options.carve_val > 0
        and images.has_splits
        and not images.split("val")
    )
    capped = options.capped
    images = assign_splits(
        images,
        val=options.val,
        test=options.test,
        seed=options.seed,
        carve=0.0 if capped else options.carve_val,
    )
    fixed: dict[str, Any] = {}
    if options.fixes is not None:  # after the split: every image keeps the split it had
        images, fixed = apply_fixes(images, read_fixes(options.fixes))
        fixed = {"file": str(options.fixes), **fixed}
    beyond_cap = False
    if carving and capped:  # the capped training images stay those of an uncarved run
        images, beyond_cap = subset_then_carve(
            images,
            per_class=options.per_class,
            limit=options.limit,
            carve=options.carve_val,
            seed=options.seed,
        )
    else:
        images = subset_train(
            images, per_class=options.per_class, limit=options.limit, seed=options.seed
        )
    report = validate(images, dedupe=options.dedupe != "none")
    if carving:
        report.carved_val = options.carve_val
        report.carved_beyond_cap = beyond_cap
    if fixed:
        report.fixes = fixed
        report.warnings.append(
            f"--fixes {options.fixes}: dropped {fixed['dropped']} and relabelled "
            f"{fixed['relabelled']} images"
            + (
                f"; {fixed['unmatched']} rows name no image of the data"
                if fixed["unmatched"]
                else ""
            )
        )
    return report
