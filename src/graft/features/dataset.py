"""A labelled data set's features, as ``graft extract`` writes them: read the set, check or
choose each spec's precision (:mod:`graft.features.precision`), extract and concatenate.

Example:
    >>> callable(extract_dataset)
    True
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from graft.data.dataset import read_labelled
from graft.data.scan import FileIndex, default_index_path
from graft.features.extract import ENGINE_BATCH, FeatureSpec, ProgressCallback, extract_features
from graft.features.precision import (
    DEFAULT_TOLERANCE,
    PrecisionCheck,
    PrecisionChoice,
    select_precision,
)


@dataclass
class DatasetFeatures:
    """Features of a labelled set, as ``graft extract`` writes them."""

    features: np.ndarray
    paths: list[Path]
    labels: list[str]
    splits: list[str | None]
    specs: list[FeatureSpec]
    problems: list[tuple[Path, str]]
    computed: int = 0
    cached: int = 0
    checks: list[PrecisionCheck] = field(default_factory=list)
    choices: list[PrecisionChoice] = field(default_factory=list)


def extract_dataset(
    data: str | Path,
    specs: Sequence[FeatureSpec],
    *,
    root: Path | None = None,
    engine: str = "auto",
    batch_size: int = ENGINE_BATCH,
    progress: ProgressCallback | None = None,
    tolerance: float | None = None,
    force: bool = False,
    precision: str | None = None,
) -> DatasetFeatures:
    """Extract features for every usable image of a labelled folder or table.

    Images whose features cannot be computed for every spec are left out and listed in
    ``problems``; the features of several specs are concatenated. A bf16 or int8 spec is first
    checked against fp32 (:mod:`graft.features.precision`); ``precision="auto"`` chooses each
    spec's precision (:func:`graft.features.precision.auto_precision`), another value replaces
    the specs' own.

    Raises:
        DataError: The data cannot be read (see :func:`graft.data.dataset.read_labelled`).
        ConfigError: A reduced precision loses more accuracy than ``tolerance`` points.
    """
    images = read_labelled(data, root=root)
    index = FileIndex(default_index_path())
    try:
        infos = index.scan([sample.path for sample in images.samples])
    finally:
        index.close()
    problems = list(images.skipped)
    samples, hashes = [], []
    for sample, info in zip(images.samples, infos, strict=True):
        if info.problem is None and info.content_hash is not None:
            samples.append(sample)
            hashes.append(info.content_hash)
        else:
            problems.append((sample.path, info.problem or f"{sample.path}: cannot be read"))
    paths = [sample.path for sample in samples]
    ok = np.ones(len(paths), dtype=bool)
    blocks, computed, cached, resolved = [], 0, 0, []
    checks: list[PrecisionCheck] = []
    choices: list[PrecisionChoice] = []
    for spec in specs:
        spec, choice = select_precision(
            spec,
            precision or spec.precision,
            paths,
            [s.label for s in samples],
            [s.split for s in samples],
            hashes,
            engine=engine,
            batch_size=batch_size,
            tolerance=DEFAULT_TOLERANCE if tolerance is None else tolerance,
            force=force,
        )
        resolved.append(spec)
        choices.append(choice)
        checks.extend(choice.checks)
        result = extract_features(
            paths, spec, engine=engine, batch_size=batch_size, hashes=hashes, progress=progress
        )
        blocks.append(result.features)
        ok &= result.ok
        computed += result.computed
        cached += result.cached
        problems.extend(result.failures)
    features = np.concatenate(blocks, axis=1)[ok] if blocks else np.zeros((0, 0), np.float32)
    kept = [sample for sample, flag in zip(samples, ok, strict=True) if flag]
    return DatasetFeatures(
        features=features,
        paths=[s.path for s in kept],
        labels=[s.label for s in kept],
        splits=[s.split for s in kept],
        specs=resolved,
        problems=list(dict(problems).items()),
        computed=computed,
        cached=cached,
        checks=checks,
        choices=choices,
    )
