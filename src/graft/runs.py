"""The run directory, shared by every strategy, and the Predictor that loads it.

A run directory describes itself; nothing else is needed to use it::

    RUN_DIR/
      config.json           backbone, weight hash, preprocessing, classes, strategy, head and
                            its chosen hyperparameters, seed, data fingerprint, split counts,
                            library versions, timings
      head.safetensors      the classic head's arrays (linear strategy; never a pickle)
      metrics.json          metrics per evaluated split
      predictions_val.csv   path, true, predicted, one probability column per class
      predictions_test.csv
      split.csv             the split manifest: path, label, split, content hash

It is written into a temporary folder beside ``RUN_DIR`` and renamed into place at the end, so
an interrupted run never leaves a half-written run directory.

Example:
    >>> import graft
    >>> predictor = graft.load("runs/cats-vs-dogs")  # doctest: +SKIP
    >>> predictor.predict(["cat.jpg"])[0].label  # doctest: +SKIP
    'cats'
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from graft.errors import ConfigError, DataError
from graft.fileio import write_json_atomic

if TYPE_CHECKING:
    from PIL import Image

    from graft.features.engines import Engine
    from graft.features.extract import FeatureSpec
    from graft.heads import ClassicHead

CONFIG = "config.json"
METRICS = "metrics.json"
HEAD = "head.safetensors"
MANIFEST = "split.csv"
SKIPPED = "skipped.csv"
RUN_FORMAT = 1

ImageInput = "str | Path | Image.Image | np.ndarray"


def predictions_file(split: str) -> str:
    """Return the file name of a split's predictions."""
    return f"predictions_{split}.csv"


@contextmanager
def staged_run_dir(out: Path, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary folder that becomes ``out`` when the block succeeds.

    Raises:
        ConfigError: ``out`` exists and ``overwrite`` is false.
    """
    if out.exists() and not overwrite:
        raise ConfigError(f"{out} already exists; pass --overwrite or choose another --out")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    try:
        yield staging
        if out.exists():
            trash = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
            os.replace(out, trash / "run")
            os.replace(staging, out)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def write_skipped(path: Path, problems: Sequence[tuple[Path, str]]) -> None:
    """Write ``skipped.csv``: every file left out of a run, with the reason."""
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "reason"])
        writer.writerows([str(file), reason] for file, reason in problems)


def write_predictions(
    path: Path,
    paths: Sequence[Path],
    truth: Sequence[str],
    proba: np.ndarray,
    classes: Sequence[str],
) -> None:
    """Write a predictions CSV: path, true, predicted, then one probability column per class."""
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "true", "predicted", *(f"p_{name}" for name in classes)])
        for file, label, row in zip(paths, truth, proba, strict=True):
            writer.writerow(
                [str(file), label, classes[int(np.argmax(row))], *(f"{p:.6f}" for p in row)]
            )


def read_predictions(path: Path) -> tuple[list[str], list[str], np.ndarray, list[str]]:
    """Read a predictions CSV back: (paths, true labels, probabilities, classes)."""
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    header, body = rows[0], rows[1:]
    classes = [name.removeprefix("p_") for name in header[3:]]
    proba = np.array([[float(v) for v in row[3:]] for row in body], dtype=np.float64).reshape(
        len(body), len(classes)
    )
    return [row[0] for row in body], [row[1] for row in body], proba, classes


def read_config(run_dir: Path) -> dict[str, Any]:
    """Read a run's ``config.json``.

    Raises:
        DataError: ``run_dir`` is not a graft run directory.
    """
    path = Path(run_dir) / CONFIG
    if not path.is_file():
        raise DataError(
            f"{run_dir}: not a graft run directory (no {CONFIG}); pass the folder that "
            "`graft train` wrote"
        )
    try:
        config: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise DataError(f"{path}: corrupt run configuration ({err})") from err
    if config.get("format", 0) > RUN_FORMAT:
        raise DataError(
            f"{run_dir}: written by a newer graft (format {config['format']}); upgrade graft"
        )
    return config


def write_config(run_dir: Path, config: dict[str, Any]) -> None:
    """Write ``config.json`` atomically."""
    write_json_atomic(run_dir / CONFIG, {"format": RUN_FORMAT, **config})


@dataclass(frozen=True)
class Prediction:
    """The prediction for one image.

    Attributes:
        label: The most probable class (``""`` when ``error`` is set).
        confidence: Its probability.
        probabilities: Every class's probability.
        source: The file path, when the input was one.
        error: Why the image could not be read, or ``None``.
    """

    label: str
    confidence: float
    probabilities: dict[str, float] = field(default_factory=dict)
    source: str | None = None
    error: str | None = None

    def top(self, k: int) -> list[tuple[str, float]]:
        """Return the ``k`` most probable (class, probability) pairs."""
        return sorted(self.probabilities.items(), key=lambda item: -item[1])[:k]


class Predictor:
    """Raw images in, labels and probabilities out, with the run's own preprocessing.

    Build one with :func:`load`; it serves every strategy (a classic head on features, or a
    trained network).
    """

    def __init__(self, run_dir: Path, config: dict[str, Any]) -> None:
        self.run_dir = run_dir
        self.config = config
        self.engine_name = str(
            config.get("options", {}).get("engine", config.get("engine", "auto"))
        )

    @property
    def classes(self) -> list[str]:
        """Class names, in probability-column order."""
        return list(self.config["classes"])

    def _draft_size(self) -> int:
        raise NotImplementedError

    def probabilities(self, images: Sequence[Image.Image]) -> np.ndarray:
        """Return ``N x len(classes)`` probabilities for decoded RGB images."""
        raise NotImplementedError

    def predict_files(
        self, paths: Sequence[Path], hashes: Sequence[str | None] | None = None
    ) -> tuple[np.ndarray, np.ndarray, list[tuple[Path, str]]]:
        """Predict image files.

        Returns:
            Probabilities (rows of failed files are NaN), the mask of rows that succeeded, and
            ``(path, reason)`` for files that failed.
        """
        predictions = self.predict(list(paths))
        ok = np.array([p.error is None for p in predictions], dtype=bool)
        proba = np.full((len(paths), len(self.classes)), np.nan)
        for row, prediction in enumerate(predictions):
            if prediction.error is None:
                proba[row] = [prediction.probabilities[name] for name in self.classes]
        failures = [
            (Path(p), pred.error or "")
            for p, pred in zip(paths, predictions, strict=True)
            if pred.error
        ]
        return proba, ok, failures

    def predict_proba(self, images: Sequence[Any], *, batch_size: int = 32) -> np.ndarray:
        """Return ``N x len(classes)`` probabilities; unreadable inputs raise :class:`DataError`."""
        predictions = self.predict(images, batch_size=batch_size)
        failed = [p.error for p in predictions if p.error]
        if failed:
            raise DataError(failed[0] or "unreadable image")
        return np.array([[p.probabilities[name] for name in self.classes] for p in predictions])

    def predict(self, images: Sequence[Any], *, batch_size: int = 32) -> list[Prediction]:
        """Predict paths, PIL images or ``H x W x 3`` uint8 arrays; bad files get ``error``.

        The images are decoded and prepared exactly as for training (the backbone's own
        preprocessing record).

        Example:
            >>> predictor = load("runs/cats")  # doctest: +SKIP
            >>> images = ["a.jpg", PIL.Image.open("b.png")]  # doctest: +SKIP
            >>> [p.label for p in predictor.predict(images)]  # doctest: +SKIP
            ['cats', 'dogs']
        """
        draft = self._draft_size()
        results: list[Prediction] = []
        for start in range(0, len(images), batch_size):
            chunk = images[start : start + batch_size]
            decoded: list[Image.Image] = []
            slots: list[int] = []
            chunk_results: list[Prediction] = []
            for item in chunk:
                source = str(item) if isinstance(item, (str, Path)) else None
                try:
                    decoded.append(_to_image(item, draft))
                    slots.append(len(chunk_results))
                    chunk_results.append(Prediction("", 0.0, source=source))
                except DataError as err:
                    chunk_results.append(Prediction("", 0.0, source=source, error=str(err)))
            if decoded:
                proba = self.probabilities(decoded)
                for slot, row in zip(slots, proba, strict=True):
                    best = int(np.argmax(row))
                    chunk_results[slot] = Prediction(
                        self.classes[best],
                        float(row[best]),
                        {name: float(p) for name, p in zip(self.classes, row, strict=True)},
                        source=chunk_results[slot].source,
                    )
            results.extend(chunk_results)
        return results


class LinearPredictor(Predictor):
    """A classic head on backbone features (the linear strategy)."""

    def __init__(
        self, run_dir: Path, config: dict[str, Any], specs: list[FeatureSpec], head: ClassicHead
    ) -> None:
        super().__init__(run_dir, config)
        self.specs = specs
        self.head = head
        self._engines: list[Engine] = []

    def _draft_size(self) -> int:
        from graft.data.transforms import resize_target

        return max(resize_target(spec.preprocessing) for spec in self.specs)

    def features(self, images: Sequence[Image.Image]) -> np.ndarray:
        """Return backbone features (concatenated over the run's backbones) for RGB images."""
        import torch

        from graft.data.transforms import eval_transform

        if not self._engines:
            from graft.features.engines import create_engine
            from graft.features.layers import feature_module
            from graft.zoo.model import create_model

            for spec in self.specs:
                network = feature_module(create_model(spec.record), spec.layer, spec.pool)
                self._engines.append(
                    create_engine(
                        network,
                        input_size=spec.preprocessing.input_size,
                        engine=self.engine_name,
                        cache_key=spec.key,
                    )
                )
        blocks = []
        for spec, engine in zip(self.specs, self._engines, strict=True):
            transform = eval_transform(spec.preprocessing)
            blocks.append(engine(torch.stack([transform(image) for image in images]).numpy()))
        return np.concatenate(blocks, axis=1)

    def probabilities(self, images: Sequence[Image.Image]) -> np.ndarray:
        """Features through the classic head."""
        return self.head.predict_proba(self.features(images))

    def predict_files(
        self, paths: Sequence[Path], hashes: Sequence[str | None] | None = None
    ) -> tuple[np.ndarray, np.ndarray, list[tuple[Path, str]]]:
        """Predict image files through the feature cache (fast for files seen before)."""
        from graft.features.extract import extract_features

        ok = np.ones(len(paths), dtype=bool)
        blocks: list[np.ndarray] = []
        failures: dict[Path, str] = {}
        for spec in self.specs:
            result = extract_features(paths, spec, engine=self.engine_name, hashes=hashes)
            blocks.append(result.features)
            ok &= result.ok
            failures.update(result.failures)
        proba = np.full((len(paths), len(self.classes)), np.nan)
        if ok.any():
            proba[ok] = self.head.predict_proba(np.concatenate(blocks, axis=1)[ok])
        return proba, ok, list(failures.items())


class NeuralPredictor(Predictor):
    """A trained network (head, finetune and scratch strategies), run by the inference engine."""

    def __init__(self, run_dir: Path, config: dict[str, Any]) -> None:
        from graft.training.neural import load_neural_model
        from graft.zoo.records import Preprocessing

        super().__init__(run_dir, config)
        self.model = load_neural_model(run_dir, config)
        self.preprocessing = Preprocessing.from_dict(config["backbone"]["preprocessing"])
        self._engine: Engine | None = None

    def _draft_size(self) -> int:
        from graft.data.transforms import resize_target

        return resize_target(self.preprocessing)

    def _run(self, pixels: np.ndarray) -> np.ndarray:
        """The network's softmax on uint8 pixels ``N x 3 x S x S``."""
        if self._engine is None:
            from graft.features.engines import create_engine
            from graft.hashing import sha256_file

            self._engine = create_engine(
                _softmax_module(self.model),
                input_size=self.preprocessing.input_size,
                engine=self.engine_name,
                cache_key=f"run-{sha256_file(self.run_dir / 'model.safetensors')[:24]}",
            )
        return np.asarray(self._engine(pixels), dtype=np.float64)

    def probabilities(self, images: Sequence[Image.Image]) -> np.ndarray:
        """The network's softmax on decoded RGB images."""
        import torch

        from graft.data.transforms import eval_transform

        transform = eval_transform(self.preprocessing)
        return self._run(torch.stack([transform(image) for image in images]).numpy())

    def predict_files(
        self, paths: Sequence[Path], hashes: Sequence[str | None] | None = None
    ) -> tuple[np.ndarray, np.ndarray, list[tuple[Path, str]]]:
        """Predict image files, decoding on worker threads while the network runs."""
        from graft.data.loading import iter_batches
        from graft.data.transforms import eval_transform

        files = [Path(p) for p in paths]
        proba = np.full((len(files), len(self.classes)), np.nan)
        ok = np.zeros(len(files), dtype=bool)
        failures: list[tuple[Path, str]] = []
        position = 0
        batches = iter_batches(
            files, eval_transform(self.preprocessing), draft_size=self._draft_size()
        )
        for batch in batches:
            failed = {path for path, _ in batch.failures}
            rows = [position + i for i, path in enumerate(batch.files) if path not in failed]
            position += len(batch.files)
            failures.extend(batch.failures)
            if rows:
                proba[rows] = self._run(batch.pixels.numpy())
                ok[rows] = True
        return proba, ok, failures


def _softmax_module(model: Any) -> Any:
    """Wrap a model so it returns probabilities (what the inference engine runs)."""
    from torch import nn

    class Softmax(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, pixels: Any) -> Any:
            return self.model(pixels).float().softmax(dim=1)

    return Softmax().eval()


def _to_image(item: Any, draft_size: int) -> Image.Image:
    from PIL import Image

    from graft.data.images import load_image, to_rgb

    if isinstance(item, (str, Path)):
        return load_image(item, draft_size=draft_size)
    if isinstance(item, Image.Image):
        return to_rgb(item)
    if isinstance(item, np.ndarray):
        if (
            item.dtype != np.uint8
            or item.ndim not in (2, 3)
            or (item.ndim == 3 and item.shape[2] not in (1, 3, 4))
        ):
            raise DataError(
                f"array of shape {item.shape} and dtype {item.dtype}: expected H x W x 3 "
                "(or H x W) uint8 pixels"
            )
        return to_rgb(
            Image.fromarray(item.squeeze(2) if item.ndim == 3 and item.shape[2] == 1 else item)
        )
    raise DataError(
        f"cannot predict a {type(item).__name__}: pass file paths, PIL images or uint8 arrays"
    )


def load(run_dir: str | Path) -> Predictor:
    """Load a run directory as a :class:`Predictor`.

    Raises:
        DataError: Not a run directory, or a file of it is missing or corrupt.
        ConfigError: The run's strategy is not one this graft can load.
    """
    from graft.heads import ClassicHead

    folder = Path(run_dir)
    config = read_config(folder)
    strategy = config.get("strategy")
    if strategy == "linear":
        specs = [_spec(folder, entry) for entry in config["features"]]
        return LinearPredictor(folder, config, specs, ClassicHead.load(folder / HEAD))
    if strategy in ("head", "finetune", "scratch"):
        return NeuralPredictor(folder, config)
    raise ConfigError(f"{folder}: strategy {strategy!r} cannot be loaded by this graft version")


def _spec(folder: Path, entry: dict[str, Any]) -> FeatureSpec:
    """Rebuild a feature spec from a run's config, checking the weights are the same."""
    from graft.features.extract import FeatureSpec
    from graft.zoo.records import Preprocessing
    from graft.zoo.registry import get_backbone

    record = get_backbone(entry["backbone"])
    if record.weights.sha256 != entry.get("weights_sha256"):
        raise DataError(
            f"{folder}: trained on {entry['backbone']} weights with SHA-256 "
            f"{str(entry.get('weights_sha256'))[:16]}..., but this machine's are "
            f"{str(record.weights.sha256)[:16]}...; add the original weights (graft weights add)"
        )
    return FeatureSpec(
        record=record,
        preprocessing=Preprocessing.from_dict(entry["preprocessing"]),
        layer=entry["layer"],
        pool=entry["pool"],
    )
