"""``graft.load``: a run directory as a Predictor, raw images in, labels and probabilities out.

The Predictor prepares images exactly as training did (the run's own preprocessing record) and
serves every strategy: a classic head on backbone features (linear runs), a trained network
(head, finetune, scratch), or the run's exported ONNX model (``backend="onnx"``, ONNX Runtime).
Files are decoded on worker threads while the model runs, a bounded number of batches ahead, so
memory stays flat however many files there are.

Example:
    >>> import graft
    >>> predictor = graft.load("runs/cats-vs-dogs")  # doctest: +SKIP
    >>> predictor.predict(["cat.jpg"])[0].label  # doctest: +SKIP
    'cats'
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from graft.data.images import load_image, to_rgb
from graft.data.loading import iter_decoded
from graft.data.transforms import eval_transform, resize_target
from graft.engines import base as engine_base
from graft.engines import create_engine
from graft.engines.onnx_io import cpu_session
from graft.errors import ConfigError, DataError
from graft.features.extract import extract_features, feature_engine
from graft.hashing import sha256_file
from graft.heads import ClassicHead
from graft.models import (
    Probabilities,
    ProbeNetwork,
    RunModel,
    feature_specs,
    load_run_model,
    model_preprocessing,
    probe_network,
)
from graft.runs import EXPORTS, HEAD, MODEL, RunConfig, read_run_config
from graft.tta import averaged, check_tta
from graft.zoo.records import Preprocessing

if TYPE_CHECKING:
    from PIL import Image

    from graft.engines import Engine
    from graft.features.extract import FeatureSpec
    from graft.heads import ClassicHead
    from graft.zoo.records import Preprocessing

BACKENDS = ("auto", "torch", "onnxruntime", "openvino", "onnx")


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
    """Turns images into :class:`Prediction` objects; see the module docstring.

    Subclasses say which preprocessings their inputs need and how pixels become probabilities.
    """

    def __init__(self, run_dir: Path, run: RunConfig, engine: str = "auto") -> None:
        self.run_dir = run_dir
        #: The run's configuration, typed (:class:`graft.runs.RunConfig`).
        self.run = run
        #: ``config.json`` as written.
        self.config = run.raw
        self.engine_name = engine
        self._transforms: list[Any] | None = None
        #: Test-time augmentation (:mod:`graft.tta`): the run's own (``config.json``'s
        #: ``tta``, recorded by training), unless :func:`load` is told otherwise.
        self.tta = check_tta(run.tta)

    @property
    def classes(self) -> list[str]:
        """Class names, in probability-column order."""
        return list(self.run.classes)

    @property
    def preprocessings(self) -> list[Preprocessing]:
        """The preprocessing of each model input (one per backbone)."""
        raise NotImplementedError

    @property
    def model(self) -> RunModel:
        """The run as one network (RGB uint8 pixels in, logits out; see :mod:`graft.models`)."""
        raise NotImplementedError

    def probabilities_from_pixels(self, inputs: Sequence[np.ndarray]) -> np.ndarray:
        """``N x classes`` probabilities from uint8 pixels, one array per model input."""
        raise NotImplementedError

    # -- shared by every kind of predictor -----------------------------------------------------

    def draft_size(self) -> int:
        """The shorter side a JPEG may be decoded down to for this run's inputs."""

        return max(resize_target(p) for p in self.preprocessings)

    def _tensors(self, image: Image.Image) -> list[torch.Tensor]:

        if self._transforms is None:
            self._transforms = [eval_transform(p) for p in self.preprocessings]
        return [transform(image) for transform in self._transforms]

    def prepare(self, image: Image.Image) -> list[torch.Tensor]:
        """The model's input pixels for one decoded RGB image: one tensor per preprocessing.

        Small and fixed in size whatever the image's size (the service queues these).
        """
        return self._tensors(image)

    def probabilities_of_prepared(self, prepared: Sequence[list[torch.Tensor]]) -> np.ndarray:
        """``N x classes`` probabilities for images already through :meth:`prepare`."""
        return self._rows(list(prepared))

    def probabilities(self, images: Sequence[Image.Image]) -> np.ndarray:
        """``N x classes`` probabilities for decoded RGB images."""
        return self._rows([self._tensors(image) for image in images])

    def iter_predict(
        self, paths: Sequence[Path | str], *, batch_size: int = 32
    ) -> Iterator[Prediction]:
        """Predict image files in order, decoding on threads while the model runs.

        A file that cannot be read yields a :class:`Prediction` with ``error`` set.
        """

        draft = self.draft_size()

        def prepare(path: Path) -> list[torch.Tensor]:
            return self._tensors(load_image(path, draft_size=draft))

        files = [Path(p) for p in paths]
        for chunk, results in iter_decoded(files, prepare, batch_size=batch_size):
            good = [r for r in results if not isinstance(r, str)]
            rows = iter(self._rows(good)) if good else iter(())
            for path, result in zip(chunk, results, strict=True):
                if isinstance(result, str):
                    yield Prediction("", 0.0, source=str(path), error=result)
                else:
                    yield self._prediction(next(rows), str(path))

    def _rows(self, prepared: list[list[torch.Tensor]]) -> np.ndarray:
        import torch

        inputs = [
            torch.stack([p[i] for p in prepared]).numpy() for i in range(len(self.preprocessings))
        ]
        return averaged(self.probabilities_from_pixels, inputs, self.tta)

    def _prediction(self, row: np.ndarray, source: str | None) -> Prediction:
        best = int(np.argmax(row))
        probabilities = {name: float(p) for name, p in zip(self.classes, row, strict=True)}
        return Prediction(self.classes[best], float(row[best]), probabilities, source=source)

    def predict_files(
        self, paths: Sequence[Path], hashes: Sequence[str | None] | None = None
    ) -> tuple[np.ndarray, np.ndarray, list[tuple[Path, str]]]:
        """Predict image files.

        Returns:
            Probabilities (rows of failed files are NaN), the mask of rows that succeeded, and
            ``(path, reason)`` for files that failed.
        """
        proba = np.full((len(paths), len(self.classes)), np.nan)
        ok = np.zeros(len(paths), dtype=bool)
        failures: list[tuple[Path, str]] = []
        for row, prediction in enumerate(self.iter_predict(paths)):
            if prediction.error is None:
                proba[row] = [prediction.probabilities[name] for name in self.classes]
                ok[row] = True
            else:
                failures.append((Path(paths[row]), prediction.error))
        return proba, ok, failures

    def predict(self, images: Sequence[Any], *, batch_size: int = 32) -> list[Prediction]:
        """Predict paths, PIL images or ``H x W x 3`` uint8 arrays; bad inputs get ``error``.

        Example:
            >>> predictor = load("runs/cats")  # doctest: +SKIP
            >>> images = ["a.jpg", PIL.Image.open("b.png")]  # doctest: +SKIP
            >>> [p.label for p in predictor.predict(images)]  # doctest: +SKIP
            ['cats', 'dogs']
        """
        draft = self.draft_size()
        results: list[Prediction] = []
        for start in range(0, len(images), batch_size):
            decoded: list[Image.Image] = []
            slots: list[int] = []
            chunk: list[Prediction] = []
            for item in images[start : start + batch_size]:
                source = str(item) if isinstance(item, (str, Path)) else None
                try:
                    decoded.append(to_image(item, draft))
                    slots.append(len(chunk))
                    chunk.append(Prediction("", 0.0, source=source))
                except DataError as err:
                    chunk.append(Prediction("", 0.0, source=source, error=str(err)))
            if decoded:
                for slot, row in zip(slots, self.probabilities(decoded), strict=True):
                    chunk[slot] = self._prediction(row, chunk[slot].source)
            results.extend(chunk)
        return results

    def predict_proba(self, images: Sequence[Any], *, batch_size: int = 32) -> np.ndarray:
        """Return ``N x classes`` probabilities; an unreadable input raises :class:`DataError`."""
        predictions = self.predict(images, batch_size=batch_size)
        failed = [p.error for p in predictions if p.error]
        if failed:
            raise DataError(failed[0] or "unreadable image")
        return np.array([[p.probabilities[name] for name in self.classes] for p in predictions])


class LinearPredictor(Predictor):
    """A classic head on backbone features (the linear strategy)."""

    def __init__(
        self,
        run_dir: Path,
        run: RunConfig,
        specs: list[FeatureSpec],
        head: ClassicHead,
        engine: str = "auto",
    ) -> None:
        super().__init__(run_dir, run, engine)
        self.specs = specs
        self.head = head
        self._engines: list[Engine] = []
        self._network: ProbeNetwork | None = None

    @property
    def network(self) -> ProbeNetwork:
        """The run's network (built on first use): its extractors run on the inference engine;
        its head is the :class:`graft.heads.HeadModule` that :attr:`head` also runs (in float64)
        to score features, so cached features need no network."""
        if self._network is None:
            self._network = probe_network(self.run_dir, self.run)
        return self._network

    @property
    def model(self) -> RunModel:
        """The run as one network: :attr:`network`, taking the largest of the backbones' input
        sizes (:func:`graft.models.model_preprocessing`)."""
        return RunModel(
            self.network,
            classes=self.classes,
            preprocessing=model_preprocessing(self.run),
            strategy="linear",
        ).eval()

    @property
    def preprocessings(self) -> list[Preprocessing]:
        return [spec.preprocessing for spec in self.specs]

    def features_from_pixels(self, inputs: Sequence[np.ndarray]) -> np.ndarray:
        """Backbone features (concatenated over the run's backbones) of uint8 pixels."""
        if not self._engines:
            # A bf16 run on a machine without bf16 units predicts from fp32 features, which its
            # precision check found within tolerance of the bf16 ones it was trained on.
            native = all(s.precision != "bf16" for s in self.specs) or engine_base.bf16_native(
                self.engine_name
            )
            self._engines = [
                feature_engine(
                    spec if native else spec.with_precision("fp32"),
                    engine=self.engine_name,
                    module=extractor,
                )
                for spec, extractor in zip(self.specs, self.network.extractors, strict=True)
            ]
        return np.concatenate(
            [engine(pixels) for engine, pixels in zip(self._engines, inputs, strict=True)], axis=1
        )

    def probabilities_from_pixels(self, inputs: Sequence[np.ndarray]) -> np.ndarray:
        return self.head.predict_proba(self.features_from_pixels(inputs))

    def predict_files(
        self, paths: Sequence[Path], hashes: Sequence[str | None] | None = None
    ) -> tuple[np.ndarray, np.ndarray, list[tuple[Path, str]]]:
        """Predict image files through the feature cache (fast for files seen before; with
        test-time augmentation, the flipped images are computed)."""

        if self.tta != "none":
            return super().predict_files(paths, hashes)

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

    def __init__(self, run_dir: Path, run: RunConfig, engine: str = "auto") -> None:
        super().__init__(run_dir, run, engine)
        self._model = load_run_model(run_dir, run)
        self.preprocessing = self._model.preprocessing
        self.precision = frozen_precision(run, self.engine_name)
        self._engine: Engine | None = None

    @property
    def model(self) -> RunModel:
        return self._model

    @property
    def preprocessings(self) -> list[Preprocessing]:
        return [self.preprocessing]

    def probabilities_from_pixels(self, inputs: Sequence[np.ndarray]) -> np.ndarray:
        if self._engine is None:
            self._engine = create_engine(
                Probabilities(self.model).eval(),
                input_size=self.preprocessing.input_size,
                engine=self.engine_name,
                precision=self.precision,
                cache_key=f"run-{sha256_file(self.run_dir / MODEL)[:24]}-{self.precision}",
            )
        return np.asarray(self._engine(inputs[0]), dtype=np.float64)


def frozen_precision(run: RunConfig, engine: str = "auto") -> str:
    """The precision a neural run's network predicts at: where the run kept its probe (the
    pretrained backbone, untouched, under the probe's layer), the one the frozen backbone's
    features were computed at, so that it predicts what the linear strategy's probe predicts
    on the same features (at bf16 a few images in a thousand differ otherwise); fp32 for
    trained weights, or where the engine has no native bf16 here.

    Example:
        >>> from graft.runs import HeadEntry
        >>> run = RunConfig(1, "finetune", "complete", ["a", "b"], [], HeadEntry("neural"))
        >>> frozen_precision(run)
        'fp32'
    """
    chosen = (run.raw.get("frozen_precision") or {}).get("precision", "fp32")
    kept_probe = run.raw.get("best_weights") == "probe"
    if chosen == "bf16" and kept_probe and engine_base.bf16_native(engine):
        return "bf16"
    return "fp32"


class OnnxPredictor(Predictor):
    """A run's exported ONNX model, run by ONNX Runtime (preprocessing from its metadata)."""

    def __init__(self, run_dir: Path, run: RunConfig, model_file: Path) -> None:

        super().__init__(run_dir, run, "onnx")
        self.session = cpu_session(model_file)
        meta = self.session.get_modelmeta().custom_metadata_map
        if "labels" not in meta or "preprocessing" not in meta:
            raise DataError(
                f"{model_file}: not a graft export (no labels/preprocessing metadata); "
                "export it again"
            )
        self.labels = list(json.loads(meta["labels"]))
        self.tta = "none"  # applied here: the exported graph holds the views it was given
        self.exported_tta = str(meta.get("tta", "none"))
        self.preprocessing = Preprocessing.from_dict(json.loads(meta["preprocessing"]))
        self.model_file = model_file

    @property
    def classes(self) -> list[str]:
        return self.labels

    @property
    def preprocessings(self) -> list[Preprocessing]:
        return [self.preprocessing]

    def probabilities_from_pixels(self, inputs: Sequence[np.ndarray]) -> np.ndarray:
        return np.asarray(
            self.session.run(None, {"pixels": np.ascontiguousarray(inputs[0])})[0], dtype=np.float64
        )


def to_image(item: Any, draft_size: int) -> Image.Image:
    """A path, PIL image or uint8 array as an RGB PIL image.

    Raises:
        DataError: An unreadable file, or an array that is not uint8 pixels.
    """
    from PIL import Image

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


def load(
    run_dir: str | Path,
    *,
    backend: str = "auto",
    model_file: str | Path | None = None,
    tta: str | None = None,
) -> Predictor:
    """Load a run directory as a :class:`Predictor`.

    Args:
        run_dir: A run directory written by ``graft train``.
        backend: An engine of :mod:`graft.engines` (``auto``: OpenVINO on a CPU, else
            PyTorch; ``torch``, ``onnxruntime``, ``openvino``), or ``onnx`` (ONNX Runtime on
            the run's exported model; see ``graft export``). A linear run uses the feature
            precision it was trained with.
        model_file: For ``onnx``: the exported file (default ``RUN_DIR/model.onnx``).
        tta: Test-time augmentation, ``none`` or ``flip`` (:mod:`graft.tta`); default the
            run's own (an exported graph holds what it was exported with).

    Raises:
        DataError: Not a run directory, or a file of it is missing or corrupt.
        ConfigError: Unknown backend, or a strategy this graft cannot load.
    """

    if backend not in BACKENDS:
        raise ConfigError(f"backend {backend!r} is not one of: {', '.join(BACKENDS)}")
    folder = Path(run_dir)
    run = read_run_config(folder)
    if run.status != "complete":
        raise DataError(
            f"{folder}: the run has not finished (status {run.status!r}); finish it with "
            f"`graft train --resume {folder}`"
        )
    if backend == "onnx":
        exported = Path(model_file) if model_file is not None else folder / EXPORTS["onnx"]
        if not exported.is_file():
            raise DataError(
                f"{exported}: no exported model; run `graft export {folder} --format onnx` first"
            )
        return _with_tta(OnnxPredictor(folder, run, exported), tta)
    engine = backend if backend != "auto" else run.engine
    if run.strategy == "linear":
        specs = feature_specs(folder, run)
        head = ClassicHead.load(folder / HEAD)
        return _with_tta(LinearPredictor(folder, run, specs, head, engine), tta)
    if run.neural:
        return _with_tta(NeuralPredictor(folder, run, engine), tta)
    raise ConfigError(f"{folder}: strategy {run.strategy!r} cannot be loaded by this graft version")


def _with_tta(predictor: Predictor, tta: str | None) -> Predictor:
    if tta is not None:
        predictor.tta = check_tta(tta)
    return predictor
