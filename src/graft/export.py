"""Exporting a run: ONNX or TorchScript, optionally int8, checked against PyTorch.

The exported model is the whole classifier: it takes **RGB uint8 pixels, N x 3 x S x S**, already
resized so the shorter side is ``floor(S / crop_pct)`` and centre-cropped to ``S`` (the
``preprocessing`` entry of its metadata gives ``S``, ``crop_pct`` and the resize filter), does
its own normalisation, and returns **class probabilities, N x classes**. Its labels and
preprocessing travel inside it (ONNX ``metadata_props`` / a TorchScript extra file
``graft.json``), so it can be used with nothing else at hand.

Every export is checked against the PyTorch model on up to 300 of the run's validation and test
images (training images when it has none): the largest absolute probability difference and the
top-1 agreement. The check runs by default and the export fails loudly if it does not hold
(float: max difference at most 1e-3 and every top-1 equal; int8: top-1 agreement of at least
99 %).

int8 is NNCF's quantization with accuracy control (:mod:`graft.engines.nncf_worker`): calibrated
on up to 300 training images, the depthwise convolutions and those whose input no activation
bounds (the stem, the expansions reading the residual stream) kept in float, and the most sensitive
other operations reverted to float until the quantized model agrees with the float one on the
300 hardest of up to 1,000 other training images. The export reports float and int8 accuracy on
the validation (else test) split side by side, and refuses an int8 model that loses more than
0.5 point there (on a split of fewer than 200 images, one more misclassified image is already
too many; a run with neither split is judged on agreement alone).

Example:
    >>> result = export_model("runs/cats", format="onnx")  # doctest: +SKIP
    >>> result.path.name, result.max_difference < 1e-3  # doctest: +SKIP
    ('model.onnx', True)
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from graft.data.loading import decode_pixels
from graft.data.table import read_table
from graft.engines.onnx_io import cpu_session, export_onnx, quantize_onnx_controlled
from graft.errors import ConfigError, DataError
from graft.fileio import atomic_path
from graft.models import Probabilities
from graft.predictor import Predictor, load
from graft.runs import EXPORTS, MANIFEST, read_run_config
from graft.training.linear import library_versions
from graft.tta import view_average
from graft.zoo.records import Preprocessing

FORMATS = ("onnx", "torchscript")
FLOAT_TOLERANCE = 1e-3
INT8_AGREEMENT = 0.99
#: The most accuracy (a fraction) int8 may lose on the validation (else test) split.
INT8_MAX_DROP = 0.005
CHECK_IMAGES = 300
CALIBRATION_IMAGES = 300
#: Held-out training images the int8 accuracy control picks its hardest cases from.
CONTROL_POOL = 1000


@dataclass
class ExportResult:
    """What an export produced and how it compared with PyTorch."""

    path: Path
    format: str
    int8: bool
    max_difference: float
    agreement: float
    checked: int
    accuracy: dict[str, float] = field(default_factory=dict)
    quantization: dict[str, Any] = field(default_factory=dict)


def metadata(predictor: Predictor, preprocessing: Preprocessing, *, int8: bool) -> dict[str, str]:
    """What travels inside the exported model."""

    return {
        "graft": json.dumps(
            {
                "labels": predictor.classes,
                "input": "RGB uint8 pixels, N x 3 x S x S: resize the shorter side to "
                "floor(S / crop_pct) with the given filter, centre-crop to S",
                "output": "class probabilities, N x classes, in the order of labels",
                "preprocessing": preprocessing.to_dict(),
                "strategy": predictor.run.strategy,
                "run": str(predictor.run_dir),
                "int8": int8,
                "tta": predictor.tta,
                "versions": library_versions(),
            }
        ),
        "labels": json.dumps(predictor.classes),
        "preprocessing": json.dumps(preprocessing.to_dict()),
        "tta": predictor.tta,
    }


def export_model(
    run_dir: str | Path,
    *,
    format: Literal["onnx", "torchscript"] = "onnx",
    int8: bool = False,
    out: Path | None = None,
    check: bool = True,
    tta: str | None = None,
) -> ExportResult:
    """Export a run's classifier (see the module docstring).

    Args:
        run_dir: A complete run directory.
        format: ``onnx`` or ``torchscript``.
        int8: ONNX only: int8 quantization with accuracy control on the run's training images
            (see the module docstring); the float and int8 accuracies on the validation (else
            test) split are measured and returned.
        out: The file to write (default ``RUN_DIR/model.onnx``, ``model.int8.onnx`` or
            ``model.torchscript.pt``).
        check: Compare with PyTorch on sample images and fail if they disagree.
        tta: Test-time augmentation in the graph (``none``, ``flip``, ``dihedral``;
            :mod:`graft.tta`);
            default the run's own.

    Raises:
        ConfigError: Unknown format, or int8 with TorchScript.
        DataError: The check failed (the file is removed), or the run has no images to check.
    """
    if format not in FORMATS:
        raise ConfigError(f"--format {format!r} is not one of: {', '.join(FORMATS)}")
    if int8 and format != "onnx":
        raise ConfigError(
            "--int8 applies to ONNX exports (quantized with ONNX Runtime); "
            "drop --format torchscript"
        )
    folder = Path(run_dir)
    predictor = load(folder, tta=tta)
    # the run as one network, softmax on top: uint8 pixels in, probabilities out
    module: torch.nn.Module = Probabilities(predictor.model).eval()
    preprocessing = predictor.model.preprocessing
    if predictor.tta != "none":
        module = view_average(module, predictor.tta)
    size = preprocessing.input_size
    example = torch.zeros((1, 3, size, size), dtype=torch.uint8)
    name = {
        "onnx": EXPORTS["int8"] if int8 else EXPORTS["onnx"],
        "torchscript": EXPORTS["torchscript"],
    }[format]
    target = Path(out) if out is not None else folder / name
    info = metadata(predictor, preprocessing, int8=int8)
    quantization: dict[str, Any] = {}
    if format == "onnx":
        quantization = _export_onnx(
            module,
            example,
            target,
            info,
            int8=int8,
            training=_training_pixels(folder, preprocessing) if int8 else None,
        )
        run_exported = _onnx_runner(target)
    else:
        _export_torchscript(module, example, target, info)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch deprecates TorchScript
            scripted = torch.jit.load(str(target))

        def run_exported(pixels: np.ndarray) -> np.ndarray:
            with torch.no_grad():
                return np.asarray(scripted(torch.from_numpy(pixels)).numpy(), dtype=np.float64)

    result = ExportResult(target, format, int8, 0.0, 1.0, 0, quantization=quantization)
    if int8:
        result.accuracy = _accuracies(module, run_exported, folder, preprocessing)
    if check:
        _check(result, module, run_exported, folder, preprocessing)
    return result


def _export_onnx(
    module: Any,
    example: Any,
    target: Path,
    info: dict[str, str],
    *,
    int8: bool,
    training: tuple[np.ndarray, np.ndarray] | None,
) -> dict[str, Any]:
    """Write the ONNX file; for int8, return what the quantization did."""
    import onnx

    report: dict[str, Any] = {}
    with atomic_path(target) as tmp:
        float_path = tmp.with_suffix(".float.onnx")
        try:
            export_onnx(module, int(example.shape[-1]), float_path, output="probabilities")
            if int8:
                if training is None or not len(training[0]):
                    raise DataError(
                        "int8 calibration needs training images; the run's split.csv lists none"
                    )
                report = quantize_onnx_controlled(float_path, tmp, *training)
            else:
                float_path.replace(tmp)
            model = onnx.load(str(tmp))
            for key, value in info.items():
                entry = model.metadata_props.add()
                entry.key, entry.value = key, value
            onnx.save(model, str(tmp))
        finally:
            float_path.unlink(missing_ok=True)
    return report


def _export_torchscript(module: Any, example: Any, target: Path, info: dict[str, str]) -> None:
    import torch

    with atomic_path(target) as tmp, warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(module, example, check_trace=False)
        torch.jit.save(traced, str(tmp), _extra_files={"graft.json": info["graft"]})


def _onnx_runner(path: Path) -> Any:

    session = cpu_session(path)

    def run(pixels: np.ndarray) -> np.ndarray:
        return np.asarray(session.run(None, {"pixels": pixels})[0], dtype=np.float64)

    return run


def _sample_paths(folder: Path, splits: tuple[str, ...], limit: int) -> list[Path]:

    manifest = folder / MANIFEST
    if not manifest.is_file():
        return []
    samples = [s for s in read_table(manifest).samples if s.split in splits]
    rng = np.random.default_rng(0)
    chosen = (
        sorted(rng.choice(len(samples), size=min(limit, len(samples)), replace=False).tolist())
        if samples
        else []
    )
    return [samples[i].path for i in chosen]


def _training_pixels(folder: Path, preprocessing: Any) -> tuple[np.ndarray, np.ndarray]:
    """Calibration pixels and the accuracy-control pool, disjoint when the split allows."""

    paths = _sample_paths(folder, ("train",), CALIBRATION_IMAGES + CONTROL_POOL)
    pixels = decode_pixels(paths, preprocessing)
    if len(pixels) >= 2 * CALIBRATION_IMAGES:
        order = np.random.default_rng(1).permutation(len(pixels))
        chosen = np.sort(order[:CALIBRATION_IMAGES])
        rest = np.sort(order[CALIBRATION_IMAGES:])
        return pixels[chosen], pixels[rest]
    return pixels, pixels


def _torch_probabilities(module: Any, pixels: np.ndarray) -> np.ndarray:
    import torch

    outputs = []
    with torch.no_grad():
        for start in range(0, len(pixels), 32):
            outputs.append(module(torch.from_numpy(pixels[start : start + 32])).double().numpy())
    return np.concatenate(outputs) if outputs else np.zeros((0, 0))


def _check(
    result: ExportResult, module: Any, run_exported: Any, folder: Path, preprocessing: Any
) -> None:

    paths = _sample_paths(folder, ("val", "test"), CHECK_IMAGES) or _sample_paths(
        folder, ("train",), CHECK_IMAGES
    )
    pixels = decode_pixels(paths, preprocessing)
    if not len(pixels):
        raise DataError(
            f"{folder}: no images to check the export against (split.csv lists none readable)"
        )
    expected = _torch_probabilities(module, pixels)
    got = np.concatenate([run_exported(pixels[i : i + 32]) for i in range(0, len(pixels), 32)])
    result.max_difference = float(np.abs(expected - got).max())
    result.agreement = float((expected.argmax(1) == got.argmax(1)).mean())
    result.checked = len(pixels)
    accuracy = result.accuracy  # int8 only, and empty without a validation or test split
    drop = accuracy["float"] - accuracy["int8"] if accuracy else 0.0
    passed = (
        result.agreement >= INT8_AGREEMENT and drop <= INT8_MAX_DROP + 1e-9
        if result.int8
        else (result.max_difference <= FLOAT_TOLERANCE and result.agreement == 1.0)
    )
    if not passed:
        result.path.unlink(missing_ok=True)
        lost = (
            f", accuracy {-100 * drop + 0.0:+.2f} points on {int(accuracy['images'])} images"
            if accuracy
            else ""
        )
        fix = (
            f"int8 changes the predictions of images near this run's decision boundary (at least "
            f"{INT8_AGREEMENT:.0%} must stay the same, and at most {100 * INT8_MAX_DROP:.1f} "
            "points of accuracy may go): export without --int8, whose float model agrees with "
            "PyTorch"
            if result.int8
            else "the float export should match exactly: please report this with the run's "
            "config.json"
        )
        raise DataError(
            f"the exported model disagrees with PyTorch on {result.checked} images (max "
            f"probability difference {result.max_difference:.2e}, top-1 agreement "
            f"{result.agreement:.1%}{lost}); {result.path} was removed; {fix}"
        )


def _accuracies(
    module: Any, run_exported: Any, folder: Path, preprocessing: Any
) -> dict[str, float]:
    """Float and int8 accuracy on the validation (else test) split; none without either."""

    table = read_table(folder / MANIFEST).samples
    samples = [s for s in table if s.split == "val"] or [s for s in table if s.split == "test"]
    if not samples:
        return {}
    classes = read_run_config(folder).classes

    pixels = decode_pixels([s.path for s in samples], preprocessing)
    if len(pixels) != len(samples):
        raise DataError("some evaluation images could not be decoded; cannot compare accuracies")
    truth = np.array([classes.index(s.label) for s in samples])
    float_proba = _torch_probabilities(module, pixels)
    int8_proba = np.concatenate(
        [run_exported(pixels[i : i + 32]) for i in range(0, len(pixels), 32)]
    )
    return {
        "float": float((float_proba.argmax(1) == truth).mean()),
        "int8": float((int8_proba.argmax(1) == truth).mean()),
        "images": float(len(samples)),
    }
