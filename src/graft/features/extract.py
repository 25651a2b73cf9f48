"""Feature extraction through the cache: run the backbone only on images it has not seen.

Example:
    >>> from graft.datasets import sample_photos
    >>> spec = FeatureSpec.create("efficientnet_lite0.in1k")
    >>> result = extract_features(list(sample_photos().values()), spec)
    >>> result.features.shape, result.computed
    ((4, 1280), 4)
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from graft.errors import ConfigError, DataError
from graft.features.cache import FeatureCache, default_cache_path
from graft.features.layers import POOLINGS, Pooling
from graft.zoo.records import BackboneRecord, Preprocessing

#: Bumped whenever decoding or resizing changes pixels, so old cached vectors are not reused.
PIPELINE_VERSION = "decode-v1"

ProgressCallback = Callable[[int, int], None]


@dataclass(frozen=True)
class FeatureSpec:
    """Everything that determines a feature vector, except the image.

    Attributes:
        record: The backbone and its weights.
        preprocessing: The record's preprocessing, possibly at another input size.
        layer: ``final`` or ``stageN`` (see :func:`graft.features.layers.list_layers`).
        pool: ``avg`` or ``max`` spatial pooling.
    """

    record: BackboneRecord
    preprocessing: Preprocessing
    layer: str = "final"
    pool: Pooling = "avg"

    @classmethod
    def create(
        cls,
        backbone: str | BackboneRecord,
        *,
        layer: str = "final",
        pool: str = "avg",
        image_size: int | None = None,
    ) -> FeatureSpec:
        """Build a spec from user-facing options, validating them.

        Raises:
            ConfigError: Unknown backbone, pooling, bad image size, or a backbone without
                pretrained weights (features of random weights are not worth caching).
        """
        from graft.zoo.registry import get_backbone

        record = get_backbone(backbone) if isinstance(backbone, str) else backbone
        if not record.pretrained:
            raise ConfigError(
                f"{record.name} has random weights only: its features carry no transfer; pick a "
                "pretrained backbone (graft backbones) or add weights (graft weights add)"
            )
        if pool not in POOLINGS:
            raise ConfigError(f"pooling {pool!r} is not one of: {', '.join(POOLINGS)}")
        preprocessing = record.preprocessing
        if image_size is not None:
            if not 32 <= image_size <= 1024:
                raise ConfigError(f"image size {image_size} is outside 32..1024 pixels")
            preprocessing = preprocessing.with_input_size(image_size)
        return cls(record, preprocessing, layer, pool)

    def describe(self) -> dict[str, Any]:
        """Return the JSON description stored with features and runs."""
        return {
            "backbone": self.record.name,
            "architecture": self.record.architecture,
            "weights_sha256": self.record.weights.sha256,
            "preprocessing": self.preprocessing.to_dict(),
            "layer": self.layer,
            "pool": self.pool,
            "pipeline": PIPELINE_VERSION,
            "precision": "fp32",
        }

    @property
    def key(self) -> str:
        """A short digest of :meth:`describe`: the cache key of these features."""
        text = json.dumps(self.describe(), sort_keys=True)
        return hashlib.blake2b(text.encode(), digest_size=12).hexdigest()


@dataclass
class ExtractionResult:
    """Features aligned with the input paths; rows of failed images are NaN.

    Attributes:
        features: ``N x D`` float32.
        ok: Boolean mask of rows that hold features.
        failures: ``(path, reason)`` of images that could not be read.
        computed: Images that ran through the backbone in this call.
        cached: Images served from the cache.
        seconds: Wall time of the call.
        engine: The engine that ran (``""`` when everything came from the cache).
    """

    features: np.ndarray
    ok: np.ndarray
    failures: list[tuple[Path, str]] = field(default_factory=list)
    computed: int = 0
    cached: int = 0
    seconds: float = 0.0
    engine: str = ""


def extract_features(
    paths: Sequence[Path | str],
    spec: FeatureSpec,
    *,
    engine: str = "auto",
    batch_size: int = 32,
    device: str | None = None,
    cache: FeatureCache | None = None,
    hashes: Sequence[str | None] | None = None,
    progress: ProgressCallback | None = None,
) -> ExtractionResult:
    """Return features for ``paths``, computing only what the cache lacks.

    Args:
        paths: Image files.
        spec: Backbone, layer, pooling and preprocessing.
        engine: ``auto``, ``torch`` or ``openvino``.
        batch_size: Images per forward pass.
        device: For the torch engine.
        cache: The feature cache; default the one in graft's cache folder.
        hashes: Content hashes of ``paths`` if already known (``None`` marks unreadable
            files); otherwise the files are scanned (:class:`graft.data.scan.FileIndex`).
        progress: Called with (images done, images to compute) after every batch.
    """
    start = time.perf_counter()
    files = [Path(p) for p in paths]
    own_cache = cache is None
    store = cache if cache is not None else FeatureCache(default_cache_path())
    try:
        digests = list(hashes) if hashes is not None else _scan(files)
        found = store.get(spec.key, [d for d in digests if d is not None])
        failures = [
            (f, f"{f}: cannot be read") for f, d in zip(files, digests, strict=True) if d is None
        ]
        missing: dict[str, Path] = {}
        for file, digest in zip(files, digests, strict=True):
            if digest is not None and digest not in found and digest not in missing:
                missing[digest] = file
        engine_name = ""
        if missing:
            engine_name, bad = _compute(
                missing, spec, store, engine, batch_size, device, progress, found
            )
            failures.extend(bad)
        dim = next(iter(found.values())).shape[0] if found else 0
        features = np.full((len(files), dim), np.nan, dtype=np.float32)
        ok = np.zeros(len(files), dtype=bool)
        for row, digest in enumerate(digests):
            if digest is not None and digest in found:
                features[row] = found[digest]
                ok[row] = True
        reported = {path for path, _ in failures}
        failures.extend(
            (file, f"{file}: could not be decoded (an identical file failed)")
            for file, flag in zip(files, ok, strict=True)
            if not flag and file not in reported
        )
        computed = len(missing) - sum(1 for path, _ in failures if path in set(missing.values()))
        return ExtractionResult(
            features=features,
            ok=ok,
            failures=failures,
            computed=computed,
            cached=int(ok.sum()) - sum(1 for d in digests if d in missing and d in found),
            seconds=time.perf_counter() - start,
            engine=engine_name,
        )
    finally:
        if own_cache:
            store.close()


def _scan(files: list[Path]) -> list[str | None]:
    from graft.data.scan import FileIndex, default_index_path

    index = FileIndex(default_index_path())
    try:
        return [info.content_hash if info.problem is None else None for info in index.scan(files)]
    finally:
        index.close()


def _compute(
    missing: dict[str, Path],
    spec: FeatureSpec,
    store: FeatureCache,
    engine: str,
    batch_size: int,
    device: str | None,
    progress: ProgressCallback | None,
    found: dict[str, np.ndarray],
) -> tuple[str, list[tuple[Path, str]]]:
    from graft.data.loading import iter_batches
    from graft.data.transforms import eval_transform, resize_target
    from graft.features.engines import create_engine
    from graft.features.layers import feature_module
    from graft.zoo.model import create_model

    model = create_model(spec.record)
    runner = create_engine(
        feature_module(model, spec.layer, spec.pool),
        input_size=spec.preprocessing.input_size,
        engine=engine,
        device=device,
        cache_key=spec.key,
    )
    by_path = {path: digest for digest, path in missing.items()}
    files = list(missing.values())
    failures: list[tuple[Path, str]] = []
    done = 0
    batches = iter_batches(
        files,
        eval_transform(spec.preprocessing),
        batch_size=batch_size,
        draft_size=resize_target(spec.preprocessing),
    )
    registered = False
    for batch in batches:
        failures.extend(batch.failures)
        if batch.paths:
            vectors = runner(batch.pixels.numpy())
            if not np.isfinite(vectors).all():
                raise DataError(f"{spec.record.name}: the backbone produced NaN features")
            fresh = {
                by_path[path]: vector for path, vector in zip(batch.paths, vectors, strict=True)
            }
            if not registered:
                store.register(spec.key, spec.describe(), int(vectors.shape[1]))
                registered = True
            store.put(spec.key, fresh)
            found.update(fresh)
        done += len(batch.files)
        if progress is not None:
            progress(done, len(files))
    return runner.name, failures


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


def extract_dataset(
    data: str | Path,
    specs: Sequence[FeatureSpec],
    *,
    root: Path | None = None,
    engine: str = "auto",
    batch_size: int = 32,
    progress: ProgressCallback | None = None,
) -> DatasetFeatures:
    """Extract features for every usable image of a labelled folder or table.

    Images whose features cannot be computed for every spec are left out and listed in
    ``problems``; the features of several specs are concatenated.

    Raises:
        DataError: The data cannot be read (see :func:`graft.data.dataset.read_labelled`).
    """
    from graft.data.dataset import read_labelled
    from graft.data.scan import FileIndex, default_index_path

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
    blocks, computed, cached = [], 0, 0
    for spec in specs:
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
        specs=list(specs),
        problems=list(dict(problems).items()),
        computed=computed,
        cached=cached,
    )
