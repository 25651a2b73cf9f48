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
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from graft.data.scan import FileIndex, content_hashes, default_index_path
from graft.data.transforms import eval_transform, resize_target
from graft.engines import create_engine, resolve_engine
from graft.engines.base import PRECISIONS
from graft.errors import ConfigError, DataError
from graft.features.cache import FeatureCache, default_cache_path
from graft.features.layers import POOLINGS, Pooling, feature_module
from graft.tta import view_pixels
from graft.zoo.records import BackboneRecord, Preprocessing
from graft.zoo.registry import get_backbone

if TYPE_CHECKING:
    from torch import nn

    from graft.engines import Engine

#: Bumped whenever decoding or resizing changes pixels, so old cached vectors are not reused.
PIPELINE_VERSION = "decode-v2"

ProgressCallback = Callable[[int, int], None]


@dataclass(frozen=True)
class FeatureSpec:
    """Everything that determines a feature vector, except the image.

    Attributes:
        record: The backbone and its weights.
        preprocessing: The record's preprocessing, possibly at another input size.
        layer: ``final`` or ``stageN`` (see :func:`graft.features.layers.list_layers`).
        pool: ``avg`` or ``max`` spatial pooling.
        precision: ``fp32``, ``bf16`` or ``int8`` (see :mod:`graft.engines`).
        calibration: For int8: a digest of the calibration images' contents (part of the key,
            since the quantized network depends on them).
        calibration_files: The calibration images (not part of the key).
        view: The view of each image the features are of, as (quarter turns, mirrored)
            (:func:`graft.tta.views`); the image itself by default. A linear probe with
            ``--tta flip|dihedral`` fits on the features of every view.
    """

    record: BackboneRecord
    preprocessing: Preprocessing
    layer: str = "final"
    pool: Pooling = "avg"
    precision: str = "fp32"
    calibration: str | None = None
    calibration_files: tuple[Path, ...] = field(default=(), compare=False)
    view: tuple[int, bool] = (0, False)

    @classmethod
    def create(
        cls,
        backbone: str | BackboneRecord,
        *,
        layer: str = "final",
        pool: str = "avg",
        image_size: int | None = None,
        crop_pct: float | None = None,
        precision: str = "fp32",
    ) -> FeatureSpec:
        """Build a spec from user-facing options, validating them.

        Raises:
            ConfigError: Unknown backbone, pooling or precision, bad image size, or a backbone
                without pretrained weights (features of random weights are not worth caching).
        """

        if precision not in PRECISIONS:
            raise ConfigError(f"precision {precision!r} is not one of: {', '.join(PRECISIONS)}")

        record = get_backbone(backbone) if isinstance(backbone, str) else backbone
        if not record.pretrained:
            raise ConfigError(
                f"{record.name} has random weights only: its features carry no transfer; pick a "
                "pretrained backbone (graft backbones) or add weights (graft weights add)"
            )
        if pool not in POOLINGS:
            raise ConfigError(f"pooling {pool!r} is not one of: {', '.join(POOLINGS)}")
        try:
            preprocessing = record.preprocessing.adjusted(image_size=image_size, crop_pct=crop_pct)
        except ValueError as err:
            raise ConfigError(str(err)) from None
        return cls(record, preprocessing, layer, pool, precision)

    def calibrated(self, files: Sequence[Path], hashes: Sequence[str]) -> FeatureSpec:
        """This spec with int8 calibration images (a no-op for other precisions)."""
        if self.precision != "int8":
            return self
        digest = hashlib.blake2b("\n".join(sorted(hashes)).encode(), digest_size=8).hexdigest()
        return replace(self, calibration=digest, calibration_files=tuple(files))

    def with_precision(self, precision: str) -> FeatureSpec:
        """The same features at another precision (without calibration)."""
        return replace(self, precision=precision, calibration=None, calibration_files=())

    def with_view(self, turns: int, mirror: bool) -> FeatureSpec:
        """The same features of another view of each image (see :func:`graft.tta.views`)."""
        return replace(self, view=(turns, mirror))

    def describe(self) -> dict[str, Any]:
        """Return the JSON description stored with features and runs."""
        extra: dict[str, Any] = {"calibration": self.calibration} if self.calibration else {}
        if self.view != (0, False):  # the image itself keeps the keys features had before
            extra["view"] = list(self.view)
        return {
            "backbone": self.record.name,
            "architecture": self.record.architecture,
            "weights_sha256": self.record.weights.sha256,
            "preprocessing": self.preprocessing.to_dict(),
            "layer": self.layer,
            "pool": self.pool,
            "pipeline": PIPELINE_VERSION,
            "precision": self.precision,
            **extra,
        }

    @property
    def key(self) -> str:
        """A short digest of :meth:`describe`: the cache key of these features."""
        text = json.dumps(self.describe(), sort_keys=True)
        return hashlib.blake2b(text.encode(), digest_size=12).hexdigest()

    @property
    def model_key(self) -> str:
        """The key of the compiled model: bf16 runs the fp32 model with a bf16 hint, so the
        two share one (converting it again would cost 3 s), and every view runs the same."""
        spec = replace(self, view=(0, False))
        return spec.with_precision("fp32").key if self.precision == "bf16" else spec.key


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
        spec: The spec the features belong to (for int8, with its calibration set).
    """

    features: np.ndarray
    ok: np.ndarray
    failures: list[tuple[Path, str]] = field(default_factory=list)
    computed: int = 0
    cached: int = 0
    seconds: float = 0.0
    engine: str = ""
    spec: FeatureSpec | None = None


#: Images per forward pass: the fastest end to end here (bench/engines.py measures 4-64).
ENGINE_BATCH = 16

#: Batches decoded ahead while the engine is being built (16 x 16 images of 224 px: 39 MB).
BUILD_PREFETCH = 16

#: int8 calibration images taken from the user's data.
CALIBRATION_IMAGES = 300


def calibration_sample(paths: Sequence[Path], limit: int = CALIBRATION_IMAGES) -> list[Path]:
    """A seeded sample of ``paths`` (the same for the same files in any order).

    Example:
        >>> from pathlib import Path
        >>> calibration_sample([Path(f"{i}.jpg") for i in range(5)], limit=2)
        [PosixPath('3.jpg'), PosixPath('4.jpg')]
    """
    ordered = sorted(set(paths))
    if len(ordered) <= limit:
        return ordered
    chosen = np.random.default_rng(0).choice(len(ordered), size=limit, replace=False)
    return [ordered[i] for i in sorted(chosen.tolist())]


def extract_features(
    paths: Sequence[Path | str],
    spec: FeatureSpec,
    *,
    engine: str = "auto",
    batch_size: int = ENGINE_BATCH,
    device: str | None = None,
    cache: FeatureCache | None = None,
    hashes: Sequence[str | None] | None = None,
    progress: ProgressCallback | None = None,
    calibration: Sequence[Path] | None = None,
) -> ExtractionResult:
    """Return features for ``paths``, computing only what the cache lacks.

    Args:
        paths: Image files.
        spec: Backbone, layer, pooling, preprocessing and precision.
        engine: ``auto``, ``torch``, ``onnxruntime`` or ``openvino``.
        batch_size: Images per forward pass.
        device: For the torch engine.
        cache: The feature cache; default the one in graft's cache folder.
        hashes: Content hashes of ``paths`` if already known (``None`` marks unreadable
            files); otherwise the files are scanned (:class:`graft.data.scan.FileIndex`).
        progress: Called with (images done, images to compute) after every batch.
        calibration: For an int8 spec not calibrated yet: the images to calibrate on
            (default a sample of ``paths``, :func:`calibration_sample`).
    """
    start = time.perf_counter()
    files = [Path(p) for p in paths]
    own_cache = cache is None
    store = cache if cache is not None else FeatureCache(default_cache_path())
    try:
        digests = list(hashes) if hashes is not None else content_hashes(files)
        if spec.precision == "int8" and spec.calibration is None:
            spec = calibrate(spec, files, digests, calibration)
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
            spec=spec,
        )
    finally:
        if own_cache:
            store.close()


def calibrate(
    spec: FeatureSpec,
    files: Sequence[Path],
    digests: Sequence[str | None] | None = None,
    calibration: Sequence[Path] | None = None,
) -> FeatureSpec:
    """Give an int8 spec its calibration images: a sample of ``calibration`` (default ``files``).

    Args:
        spec: An int8 spec (others are returned unchanged).
        files: Images whose content hashes are in ``digests``.
        digests: Content hashes of ``files``; scanned when not given.
        calibration: The images to sample from, if not ``files``.

    Raises:
        DataError: None of the calibration images can be read.
    """
    if spec.precision != "int8":
        return spec
    if digests is None:
        digests = content_hashes(list(files))
    known = {f: d for f, d in zip(files, digests, strict=True) if d is not None}
    chosen = calibration_sample(list(calibration) if calibration is not None else list(known))
    unknown = [f for f in chosen if f not in known]
    if unknown:
        known.update(zip(unknown, content_hashes(unknown), strict=True))  # type: ignore[arg-type]
    usable = [f for f in chosen if known.get(f) is not None]
    if not usable:
        raise DataError("int8 needs calibration images, and none of those given can be read")
    return spec.calibrated(usable, [str(known[f]) for f in usable])


def feature_engine(
    spec: FeatureSpec,
    *,
    engine: str = "auto",
    device: str | None = None,
    module: nn.Module | None = None,
) -> Engine:
    """The engine that computes ``spec``'s features from uint8 pixels (compiled once, cached).

    Args:
        spec: The features.
        engine: An engine name (:func:`graft.engines.create_engine`).
        device: Where it runs.
        module: The PyTorch module computing them, when the caller holds it already (a run's
            network); built from ``spec`` otherwise.

    Raises:
        ConfigError: See :func:`graft.engines.create_engine`.
    """
    from graft.data.loading import decode_pixels
    from graft.zoo.model import create_model

    files = spec.calibration_files
    return create_engine(
        module
        if module is not None
        else feature_module(create_model(spec.record), spec.layer, spec.pool),
        input_size=spec.preprocessing.input_size,
        engine=engine,
        precision=spec.precision,
        device=device,
        cache_key=spec.model_key,
        calibration=(lambda: decode_pixels(files, spec.preprocessing)) if files else None,
    )


def stream_features(
    files: Sequence[Path],
    spec: FeatureSpec,
    *,
    engine: str | Engine = "auto",
    batch_size: int = ENGINE_BATCH,
    device: str | None = None,
    expected_hashes: Mapping[Path, str] | None = None,
) -> Iterator[tuple[list[Path], np.ndarray, list[tuple[Path, str]]]]:
    """Yield ``(paths, features, failures)`` batch by batch, with no cache (memory stays flat).

    ``expected_hashes`` (the scanned content hash per file) makes a file that changed since
    its scan fail instead of giving features for bytes nobody hashed.

    Decoding runs on worker threads, overlapped with the engine (see
    :mod:`graft.data.loading`).

    Example:
        >>> from graft.datasets import sample_photos
        >>> spec = FeatureSpec.create("efficientnet_lite0.in1k")
        >>> paths, features, failures = next(stream_features(list(sample_photos().values()), spec))
        >>> features.shape, failures
        ((4, 1280), [])
    """
    from concurrent.futures import ThreadPoolExecutor

    from graft.data.loading import iter_batches

    transform = eval_transform(spec.preprocessing)  # imports timm here, not in two threads
    with ThreadPoolExecutor(max_workers=1) as builder:
        # The engine is built (converted, compiled: seconds when cold) while the first
        # batches decode; they wait in a bounded queue (BUILD_PREFETCH batches).
        pending = (
            builder.submit(feature_engine, spec, engine=engine, device=device)
            if isinstance(engine, str)
            else None
        )
        batches = iter_batches(
            files,
            transform,
            batch_size=batch_size,
            draft_size=resize_target(spec.preprocessing),
            prefetch=BUILD_PREFETCH if pending is not None else 2,
            expected_hashes=expected_hashes,
        )
        runner: Engine | None = engine if not isinstance(engine, str) else None
        for batch in batches:
            if not batch.paths:
                yield [], np.zeros((0, 0), np.float32), batch.failures
                continue
            if runner is None:
                assert pending is not None
                runner = pending.result()
            pixels = batch.pixels.numpy()
            if spec.view != (0, False):
                pixels = view_pixels(pixels, *spec.view)
            vectors = runner(pixels)
            if not np.isfinite(vectors).all():
                raise DataError(f"{spec.record.name}: the backbone produced NaN features")
            yield batch.paths, vectors, batch.failures


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

    by_path = {path: digest for digest, path in missing.items()}
    files = list(missing.values())
    failures: list[tuple[Path, str]] = []
    done = 0
    registered = False
    stream = stream_features(
        files, spec, engine=engine, batch_size=batch_size, device=device, expected_hashes=by_path
    )
    for paths, vectors, bad in stream:
        failures.extend(bad)
        if paths:
            fresh = {by_path[path]: vector for path, vector in zip(paths, vectors, strict=True)}
            if not registered:
                store.register(spec.key, spec.describe(), int(vectors.shape[1]))
                registered = True
            store.put(spec.key, fresh)
            found.update(fresh)
        done += len(paths) + len(bad)
        if progress is not None:
            progress(done, len(files))
    if failures:  # rescan them next time: one may have changed under its remembered hash
        index = FileIndex(default_index_path())
        try:
            index.forget([path for path, _ in failures])
        finally:
            index.close()
    return (resolve_engine(engine, device, spec.precision) if registered else ""), failures
