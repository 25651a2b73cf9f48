"""Feature extraction and batch prediction on a Ray cluster, with Ray Data.

The image list (a labelled folder or table, a folder walk, or a text manifest of paths, which may
be large) becomes a Ray dataset; images are decoded and preprocessed in Ray tasks
(``map_batches`` with a function), the model runs in a pool of actors (``map_batches`` with a
class: each actor builds graft's engine once), and the results are written as sharded parquet.
An image that cannot be decoded becomes a row of ``errors.csv``, never a failed job. The
preprocessing and the engine are graft's own, so the outputs equal the single-machine path
(same features within float tolerance, same predictions).

Ray is optional (``pip install 'graft[ray]'``); nothing else in graft imports it. With no
``address`` a local Ray instance is started for the call; ``address="auto"`` or
``"ray://host:10001"`` joins an existing cluster.

Example:
    >>> result = extract_with_ray("data/", "features/", address=None)  # doctest: +SKIP
    >>> result.rows, result.failed  # doctest: +SKIP
    (6893, 0)
"""

from __future__ import annotations

import csv
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from graft.data.dataset import read_labelled
from graft.data.files import collect_images
from graft.data.images import load_image
from graft.data.transforms import eval_transform, resize_target
from graft.errors import ConfigError, DataError
from graft.features.extract import FeatureSpec, feature_engine
from graft.fileio import atomic_path, write_json_atomic
from graft.predictor import load
from graft.zoo.registry import DEFAULT_BACKBONE

#: Images per Ray batch (decode tasks and model actors alike).
RAY_BATCH = 64


@dataclass
class RayResult:
    """What a Ray job wrote."""

    out_dir: Path
    rows: int
    failed: int
    seconds: float

    @property
    def images_per_s(self) -> float:
        """Images (written or failed) per second of wall time, Ray start-up included."""
        return (self.rows + self.failed) / self.seconds if self.seconds else 0.0


def start_ray(address: str | None = None, num_cpus: int | None = None) -> Any:
    """Import Ray and connect (or start a local instance).

    Raises:
        ConfigError: Ray is not installed.
    """
    try:
        import ray
    except ImportError as err:
        raise ConfigError("the Ray engine needs Ray: pip install 'graft[ray]'") from err
    if not ray.is_initialized():
        # a local instance listens on loopback only
        local: dict[str, Any] = (
            {"num_cpus": num_cpus, "_node_ip_address": "127.0.0.1"} if address is None else {}
        )
        ray.init(
            address=address,
            **local,
            include_dashboard=False,
            log_to_driver=False,
            logging_level=logging.WARNING,
        )
    import ray.data

    ray.data.DataContext.get_current().enable_progress_bars = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    return ray


class Decode:
    """A Ray Data batch function: file paths -> uint8 pixels for each preprocessing."""

    def __init__(self, preprocessings: Sequence[Any]) -> None:
        self.preprocessings = list(preprocessings)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:

        transforms = [eval_transform(p) for p in self.preprocessings]
        draft = max(resize_target(p) for p in self.preprocessings)
        pixels = [
            np.zeros((len(batch["path"]), 3, p.input_size, p.input_size), np.uint8)
            for p in self.preprocessings
        ]
        errors = []
        for row, path in enumerate(batch["path"]):
            try:
                image = load_image(str(path), draft_size=draft)
                for index, transform in enumerate(transforms):
                    pixels[index][row] = transform(image).numpy()
                errors.append("")
            except DataError as err:
                errors.append(str(err))
        out = {key: value for key, value in batch.items()}
        out["error"] = np.array(errors, dtype=object)
        for index, array in enumerate(pixels):
            out[f"pixels{index}"] = array
        return out


class Features:
    """A Ray actor: graft's feature engine, built once, over decoded batches."""

    def __init__(self, spec: Any, engine: str) -> None:

        self.engine = feature_engine(spec, engine=engine)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        good = batch["error"] == ""
        pixels = batch.pop("pixels0")
        features = None
        if good.any():
            computed = self.engine(pixels[good])
            features = np.zeros((len(good), computed.shape[1]), np.float32)
            features[good] = computed
        batch["features"] = features if features is not None else np.zeros((len(good), 0))
        return batch


class Probabilities:
    """A Ray actor: a trained run's predictor, loaded once, over decoded batches."""

    def __init__(self, run_dir: str, backend: str) -> None:

        self.predictor = load(run_dir, backend=backend)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        good = batch["error"] == ""
        inputs = [batch.pop(f"pixels{i}")[good] for i in range(len(self.predictor.preprocessings))]
        classes = self.predictor.classes
        proba = np.zeros((len(good), len(classes)))
        if good.any():
            proba[good] = self.predictor.probabilities_from_pixels(inputs)
        best = proba.argmax(axis=1)
        labels = [classes[i] if flag else "" for i, flag in zip(best, good, strict=True)]
        batch["label"] = np.array(labels, dtype=object)
        batch["confidence"] = proba[np.arange(len(best)), best]
        batch["probabilities"] = proba
        return batch


def extract_with_ray(
    data: str | Path,
    out_dir: str | Path,
    *,
    backbone: str | None = None,
    layer: str = "final",
    pool: str = "avg",
    image_size: int | None = None,
    crop_pct: float | None = None,
    root: Path | None = None,
    address: str | None = None,
    num_cpus: int | None = None,
    actors: int = 1,
    engine: str = "auto",
) -> RayResult:
    """Features of every image of a labelled folder or table, as sharded parquet.

    Writes ``OUT/features/*.parquet`` (columns ``path``, ``label``, ``split``, ``features``),
    ``OUT/errors.csv`` (path, reason) and ``OUT/features.json`` (the feature spec).

    Raises:
        ConfigError: Ray missing, bad options.
        DataError: The data cannot be read.
    """

    spec = FeatureSpec.create(
        backbone or DEFAULT_BACKBONE,
        layer=layer,
        pool=pool,
        image_size=image_size,
        crop_pct=crop_pct,
    )
    images = read_labelled(data, root=root)
    items = [
        {"path": str(s.path), "label": s.label, "split": s.split or ""} for s in images.samples
    ]
    _check_output(Path(out_dir), "features", "features.json")
    start = time.perf_counter()
    ray = start_ray(address, num_cpus)
    dataset = (
        ray.data.from_items(items)
        .map_batches(Decode([spec.preprocessing]), batch_size=RAY_BATCH)
        .map_batches(
            Features,
            fn_constructor_kwargs={"spec": spec, "engine": engine},
            batch_size=RAY_BATCH,
            concurrency=actors,
        )
        .materialize()
    )
    out = Path(out_dir)
    rows, failed = _write(dataset, out / "features", out / "errors.csv", ["pixels0"])
    write_json_atomic(out / "features.json", {"spec": spec.describe(), "rows": rows})
    return RayResult(out, rows, failed + len(images.skipped), time.perf_counter() - start)


def predict_with_ray(
    run_dir: str | Path,
    paths: Sequence[str | Path],
    out_dir: str | Path,
    *,
    address: str | None = None,
    num_cpus: int | None = None,
    actors: int = 1,
    backend: str = "auto",
) -> RayResult:
    """Predictions for image files (folders walked, ``.txt`` manifests read) as parquet.

    Writes ``OUT/predictions/*.parquet`` (``path``, ``label``, ``confidence``,
    ``probabilities`` in the order of ``OUT/classes.json``) and ``OUT/errors.csv``.
    """

    _check_output(Path(out_dir), "predictions", "classes.json")
    files = expand_paths(paths)
    predictor = load(run_dir, backend=backend)
    start = time.perf_counter()
    ray = start_ray(address, num_cpus)
    dataset = (
        ray.data.from_items([{"path": str(f)} for f in files])
        .map_batches(Decode(predictor.preprocessings), batch_size=RAY_BATCH)
        .map_batches(
            Probabilities,
            fn_constructor_kwargs={"run_dir": str(run_dir), "backend": backend},
            batch_size=RAY_BATCH,
            concurrency=actors,
        )
        .materialize()
    )
    out = Path(out_dir)
    pixel_columns = [f"pixels{i}" for i in range(len(predictor.preprocessings))]
    rows, failed = _write(dataset, out / "predictions", out / "errors.csv", pixel_columns)
    write_json_atomic(out / "classes.json", predictor.classes)
    return RayResult(out, rows, failed, time.perf_counter() - start)


def expand_paths(paths: Sequence[str | Path]) -> list[Path]:
    """Image files from files, folders (walked) and ``.txt`` manifests (one path per line).

    Raises:
        DataError: A path that does not exist.
    """

    plain: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.suffix == ".txt" and path.is_file():
            lines = path.read_text(encoding="utf-8").splitlines()
            plain.extend(Path(line.strip()) for line in lines if line.strip())
        else:
            plain.append(path)
    found = collect_images(plain)
    if found.missing:
        path, reason = found.missing[0]
        raise DataError(f"{path}: {reason}")
    return found.images


def _check_output(out: Path, name: str, marker: str) -> None:
    """Refuse ``OUT/name`` if it exists and graft did not write it (``OUT/marker`` says so).

    Raises:
        ConfigError: The folder would replace something graft did not create.
    """
    folder = out / name
    if (folder.exists() or folder.is_symlink()) and (
        folder.is_symlink() or not (out / marker).is_file()
    ):
        raise ConfigError(
            f"{folder} exists and graft did not write it (no {out / marker}); graft replaces "
            "only its own output: choose another --out"
        )


def _write(dataset: Any, folder: Path, errors_file: Path, drop: list[str]) -> tuple[int, int]:
    """Write good rows as parquet shards and failed rows to a CSV; (rows, failed).

    The shards go to a new temporary folder beside ``folder`` first; an existing ``folder``
    (checked by :func:`_check_output` to be graft's) is renamed aside, then removed.
    """
    import shutil
    import tempfile

    folder.parent.mkdir(parents=True, exist_ok=True)
    from ray.data.expressions import col

    failed = dataset.filter(expr=col("error") != "").select_columns(["path", "error"])
    failures = failed.take_all()
    good = dataset.filter(expr=col("error") == "").drop_columns(["error"])
    present = [c for c in drop if c in good.columns()]
    if present:
        good = good.drop_columns(present)
    hidden = f".{folder.name}."
    staging = Path(tempfile.mkdtemp(prefix=hidden, suffix=".partial", dir=folder.parent))
    try:
        good.write_parquet(str(staging))
        if folder.exists():
            trash = Path(tempfile.mkdtemp(prefix=hidden, suffix=".old", dir=folder.parent))
            folder.rename(trash / folder.name)
            shutil.rmtree(trash, ignore_errors=True)
        staging.rename(folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    with atomic_path(errors_file) as tmp, open(tmp, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "reason"])
        writer.writerows([row["path"], row["error"]] for row in failures)
    return good.count(), len(failures)


def read_parquet_folder(folder: str | Path) -> dict[str, Any]:
    """Read a folder of graft's parquet shards (with pyarrow) into columns, sorted by path.

    Example:
        >>> table = read_parquet_folder("features/features")  # doctest: +SKIP
        >>> table["features"].shape  # doctest: +SKIP
        (6893, 1280)
    """
    import pyarrow.parquet as pq

    table = pq.read_table(str(folder))
    columns = {name: table.column(name).to_pylist() for name in table.column_names}
    order = np.argsort(np.array(columns["path"], dtype=object))
    result: dict[str, Any] = {}
    for name, values in columns.items():
        if values and isinstance(values[0], (list, np.ndarray)):
            result[name] = np.stack([np.asarray(v, dtype=np.float64) for v in values])[order]
        else:
            result[name] = [values[i] for i in order]
    return result


__all__ = [
    "RayResult",
    "expand_paths",
    "extract_with_ray",
    "predict_with_ray",
    "read_parquet_folder",
    "start_ray",
]
