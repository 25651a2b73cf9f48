"""The fast path: frozen pretrained features, cached, under a classic head.

``train`` reads and validates the data, extracts features through the cache (only images not
seen before run through the backbone), fits the head on the training split, evaluates the
validation and test splits, and writes the run directory (see :mod:`graft.runs`).

Example:
    >>> from graft.datasets import elpv
    >>> from graft.data.prepare import DataOptions
    >>> import tempfile, pathlib
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "run"
    >>> options = DataOptions(val=0.0, test=0.25)
    >>> result = train_linear(elpv("binary")[:200], out=out, data_options=options, name="elpv")
    >>> sorted(result.metrics)
    ['test']
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from graft.auditing.leakage import check_near_duplicates
from graft.data.dataset import LabelledImages
from graft.data.prepare import DataOptions, prepare
from graft.data.splits import write_manifest
from graft.data.validate import DataReport
from graft.errors import ConfigError, DataError
from graft.features.extract import (
    ENGINE_BATCH,
    FeatureSpec,
    ProgressCallback,
    extract_features,
)
from graft.features.precision import select_precision
from graft.fileio import write_json_atomic
from graft.heads import check_views, fit_head, view_groups
from graft.metrics import classification_metrics
from graft.runs import (
    HEAD,
    MANIFEST,
    METRICS,
    SKIPPED,
    RunConfig,
    predictions_file,
    staged_run_dir,
    write_config,
    write_predictions,
    write_skipped,
)
from graft.training.options import options_from_run
from graft.tta import check_tta, views
from graft.zoo.registry import DEFAULT_BACKBONE

if TYPE_CHECKING:
    from graft.features.precision import PrecisionChoice


@dataclass(frozen=True)
class LinearOptions:
    """Options of the linear-probe strategy.

    Attributes:
        backbone: One backbone, or several joined by commas (their features are concatenated).
        head: ``logreg``, ``svm``, ``knn`` or ``centroid``.
        class_weight: ``balanced`` or ``None``.
        layer: ``final`` or ``stageN``.
        pool: ``avg`` or ``max``.
        image_size: Input side in pixels, overriding the backbone record's.
        crop_pct: Fraction of the resized image its centre crop keeps, in [0.25, 1],
            overriding the backbone record's (1.0: no centre crop, for data whose borders
            matter).
        engine: ``auto``, ``torch``, ``onnxruntime`` or ``openvino``.
        batch_size: Images per forward pass.
        precision: Feature precision: ``auto`` (the fastest that passes the accuracy check,
            :func:`graft.features.precision.auto_precision`), ``fp32``, ``bf16`` or ``int8``
            (int8 is calibrated on the training images; bf16 and int8 are checked against fp32
            first, see :mod:`graft.features.precision`).
        precision_tolerance: Largest accepted probe-accuracy drop of bf16/int8, in points.
        force_precision: Use bf16/int8 even when the drop exceeds the tolerance.
        tta: ``flip`` or ``dihedral`` (:mod:`graft.tta`): the head is fitted on the features
            of every view of each training image (the image, its mirror, and for
            ``dihedral`` its quarter turns: augmentation for images with no up or down), and
            the run predicts with the views' probabilities averaged. ``none``: the image only.
    """

    backbone: str = DEFAULT_BACKBONE
    head: str = "logreg"
    class_weight: str | None = None
    layer: str = "final"
    pool: str = "avg"
    image_size: int | None = None
    crop_pct: float | None = None
    engine: str = "auto"
    batch_size: int = ENGINE_BATCH
    precision: str = "auto"
    precision_tolerance: float = 1.0
    force_precision: bool = False
    tta: str = "none"

    @classmethod
    def from_run(cls, run: RunConfig) -> LinearOptions:
        """The options a linear run was trained with (``config.json``'s ``options``).

        Raises:
            DataError: The run is not a linear run, or its options are not these fields.
        """
        return cast(LinearOptions, options_from_run(cls, run, {}))

    def specs(self) -> list[FeatureSpec]:
        """Return one feature spec per backbone named."""
        names = [name.strip() for name in self.backbone.split(",") if name.strip()]
        if not names:
            raise ConfigError("--backbone is empty; name a backbone (see graft backbones)")
        return [
            FeatureSpec.create(
                name,
                layer=self.layer,
                pool=self.pool,
                image_size=self.image_size,
                crop_pct=self.crop_pct,
                precision="fp32" if self.precision == "auto" else self.precision,
            )
            for name in names
        ]


@dataclass
class RunResult:
    """What ``train`` produced.

    Attributes:
        run_dir: The run directory.
        metrics: Metrics per evaluated split (``val``, ``test``).
        report: The data validation report.
        timings: Seconds per phase.
        extraction: Images computed and served from the cache.
        head_params: The head's chosen hyperparameters.
    """

    run_dir: Path
    metrics: dict[str, dict[str, Any]]
    report: DataReport
    timings: dict[str, float] = field(default_factory=dict)
    extraction: dict[str, Any] = field(default_factory=dict)
    head_params: dict[str, Any] = field(default_factory=dict)


def train_linear(
    data: str | Path | LabelledImages | Iterable[tuple[str | Path, str]],
    *,
    out: str | Path | None = None,
    data_options: DataOptions | None = None,
    options: LinearOptions | None = None,
    name: str | None = None,
    overwrite: bool = False,
    on_report: Callable[[DataReport], None] | None = None,
    progress: ProgressCallback | None = None,
) -> RunResult:
    """Train a linear probe and write its run directory.

    Args:
        data: A folder, a CSV/TSV file, a :class:`LabelledImages` or ``(path, label)`` pairs.
        out: The run directory (default ``runs/<data>-linear-<time>``).
        data_options: Split and subset options.
        options: Backbone, head and extraction options.
        name: A name for the data when it is given as pairs.
        overwrite: Replace ``out`` if it exists.
        on_report: Called with the validation report before any heavy work.
        progress: Called with (done, total) during feature extraction.

    Raises:
        DataError: Unusable data.
        ConfigError: Bad options, or ``out`` exists without ``overwrite``.
    """

    options = options or LinearOptions()
    data_options = data_options or DataOptions()
    clock = _Clock()
    specs = options.specs()
    chosen_views = views(check_tta(options.tta))
    if len(chosen_views) > 1:  # refused before any extraction
        check_views(options.head, f"--tta {options.tta}")
    report = prepare(data, data_options, name=name)
    clock.lap("validate")
    if on_report is not None:
        on_report(report)
    specs, choices = _guard(report, specs, options)
    # every view's specs in one extraction (it merges their failures and counts); the
    # columns come view by view, each view as wide as the image's own features
    features, ok, extraction, failures = _features(
        report,
        [spec.with_view(*view) for view in chosen_views for spec in specs],
        options,
        progress,
    )
    view_features = np.split(features, len(chosen_views), axis=1)
    extraction["precision"] = [choice.to_dict() for choice in choices]
    checks = [check for choice in choices for check in choice.checks]
    if checks:
        extraction["precision_checks"] = [check.to_dict() for check in checks]
    clock.lap("extract")
    keep = check_near_duplicates(report, features=view_features[0], dedupe=str(data_options.dedupe))
    ok = ok[keep]
    view_features = [block[keep] for block in view_features]
    clock.lap("near-copies")
    samples = report.images.samples
    report.problems.extend(failures)
    labels = np.array([s.label for s in samples])
    splits = np.array([s.split for s in samples])
    classes = report.images.classes
    train_rows = ok & (splits == "train")
    if len(set(labels[train_rows])) < 2:
        raise DataError(
            f"{report.images.source}: fewer than two classes have decodable training images"
        )
    head = fit_head(
        options.head,
        np.concatenate([block[train_rows] for block in view_features]),
        np.tile(labels[train_rows], len(view_features)),
        classes=classes,
        class_weight=options.class_weight,
        seed=data_options.seed,
        # each training image's views share a group: the C search holds them out together
        groups=view_groups(int(train_rows.sum()), len(view_features)),
    )
    clock.lap("fit")
    run_dir = Path(out) if out is not None else default_run_dir(report.images.source, "linear")
    metrics: dict[str, dict[str, Any]] = {}
    with staged_run_dir(run_dir, overwrite=overwrite) as staging:
        for split in ("val", "test"):
            rows = ok & (splits == split)
            if not rows.any():
                continue
            # with views, the views' probabilities averaged: what the run's predictor computes
            proba = np.mean([head.predict_proba(block[rows]) for block in view_features], axis=0)
            metrics[split] = classification_metrics(list(labels[rows]), proba, classes)
            paths = [s.path for s, keep in zip(samples, rows, strict=True) if keep]
            write_predictions(
                staging / predictions_file(split), paths, list(labels[rows]), proba, classes
            )
        head.save(staging / HEAD)
        write_manifest(staging / MANIFEST, samples, report.hashes)
        if report.problems:
            write_skipped(staging / SKIPPED, report.problems)
        write_json_atomic(staging / METRICS, metrics)
        clock.lap("evaluate")
        write_config(
            staging,
            _config(report, specs, options, data_options, head.params, extraction, clock.laps),
        )
    return RunResult(run_dir, metrics, report, clock.laps, extraction, head.params)


def _guard(
    report: DataReport, specs: list[FeatureSpec], options: LinearOptions
) -> tuple[list[FeatureSpec], list[PrecisionChoice]]:
    """Choose (``auto``) or calibrate and check each spec's precision against fp32."""

    paths, labels, splits, hashes = report.uncarved()
    resolved, choices = [], []
    for spec in specs:
        spec, choice = select_precision(
            spec,
            options.precision,
            paths,
            labels,
            splits,
            hashes,
            engine=options.engine,
            batch_size=options.batch_size,
            tolerance=options.precision_tolerance,
            force=options.force_precision,
        )
        resolved.append(spec)
        choices.append(choice)
    return resolved, choices


def _features(
    report: DataReport,
    specs: list[FeatureSpec],
    options: LinearOptions,
    progress: ProgressCallback | None,
) -> tuple[np.ndarray, np.ndarray, dict[str, Any], list[tuple[Path, str]]]:
    """Extract (and concatenate) the features of every spec; rows failing any spec are not ok."""
    paths = [s.path for s in report.images.samples]
    blocks, ok = [], np.ones(len(paths), dtype=bool)
    stats: dict[str, Any] = {"computed": 0, "cached": 0, "engine": ""}
    failures: dict[Path, str] = {}
    for spec in specs:
        result = extract_features(
            paths,
            spec,
            engine=options.engine,
            batch_size=options.batch_size,
            hashes=report.hashes,
            progress=progress,
        )
        blocks.append(result.features)
        ok &= result.ok
        stats["computed"] += result.computed
        stats["cached"] += result.cached
        stats["engine"] = result.engine or stats["engine"]
        failures.update(result.failures)
    stats["failed"] = len(failures)
    return np.concatenate(blocks, axis=1), ok, stats, list(failures.items())


def _config(
    report: DataReport,
    specs: list[FeatureSpec],
    options: LinearOptions,
    data_options: DataOptions,
    head_params: dict[str, Any],
    extraction: dict[str, Any],
    timings: dict[str, float],
) -> dict[str, Any]:
    """Return the run's ``config.json`` content."""
    return {
        "strategy": "linear",
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "classes": report.images.classes,
        "features": [
            {
                **spec.describe(),
                **(
                    {"calibration_files": [str(f) for f in spec.calibration_files]}
                    if spec.calibration_files
                    else {}
                ),
            }
            for spec in specs
        ],
        "head": {"kind": options.head, "params": head_params},
        "options": asdict(options),
        "tta": options.tta,
        "data": {
            "source": report.images.source,
            "layout": report.images.layout,
            "fingerprint": report.fingerprint(),
            "counts": report.images.counts(),
            "options": data_options.to_dict(),
            "skipped": len(report.problems),
            "duplicates_across_splits": len(report.duplicates),
            **report.cleaning(),
            "manifest": MANIFEST,
        },
        "seed": data_options.seed,
        "engine": options.engine,
        "extraction": extraction,
        "timings_s": {k: round(v, 3) for k, v in timings.items()},
        "versions": library_versions(),
    }


def library_versions() -> dict[str, str]:
    """Return the versions of Python and the libraries a run depends on (no imports)."""
    versions = {"python": platform.python_version()}
    for name in (
        "graft",
        "torch",
        "timm",
        "numpy",
        "scikit-learn",
        "pillow",
        "openvino",
        "nncf",
        "onnxruntime",
        "safetensors",
    ):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def default_run_dir(source: str, strategy: str) -> Path:
    """Return ``runs/<data name>-<strategy>-<UTC time>`` under the current folder."""
    stem = Path(source).stem if source else "data"
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{stem}-{strategy}-{stamp}"


class _Clock:
    def __init__(self) -> None:
        self._last = time.perf_counter()
        self.laps: dict[str, float] = {}

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.laps[name] = now - self._last
        self._last = now
