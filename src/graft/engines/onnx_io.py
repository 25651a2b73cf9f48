"""Writing a PyTorch module as ONNX, and static int8 quantization with ONNX Runtime.

Shared by the onnxruntime engine and ``graft export``. The input is named ``pixels`` (uint8,
``N x 3 x S x S``, dynamic batch).

Example:
    >>> import tempfile, pathlib, torch
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "flat.onnx"
    >>> export_onnx(torch.nn.Flatten(), 2, path)
    >>> path.stat().st_size > 0
    True
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np

from graft.errors import DataError

INPUT = "pixels"


def export_onnx(module: Any, input_size: int, path: Path, *, output: str = "output") -> None:
    """Export ``module`` (uint8 pixels in) to ``path`` by tracing (opset 17)."""
    import torch

    example = torch.zeros((1, 3, input_size, input_size), dtype=torch.uint8)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            (example,),
            str(path),
            input_names=[INPUT],
            output_names=[output],
            dynamic_axes={INPUT: {0: "batch"}, output: {0: "batch"}},
            opset_version=17,
            dynamo=False,
        )


def cpu_session(path: Path, *, threads: int | None = None) -> Any:
    """An ONNX Runtime session on the CPU provider, quiet (errors only).

    Args:
        path: The ``.onnx`` file.
        threads: Intra-op threads; ONNX Runtime's default when not given.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads is not None:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def quantize_onnx(source: Path, target: Path, calibration: np.ndarray) -> None:
    """Static int8 quantization (QDQ, per-channel int8 weights, uint8 activations).

    Raises:
        DataError: No calibration images.
    """
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if not len(calibration):
        raise DataError("int8 calibration needs images; none could be decoded")
    batches = [{INPUT: calibration[i : i + 16]} for i in range(0, len(calibration), 16)]

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter(batches)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.batches, None)

    prepared = source.with_suffix(".prep.onnx")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
            quantize_static(
                str(prepared),
                str(target),
                Reader(),
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
            )
    finally:
        prepared.unlink(missing_ok=True)


def quantize_onnx_controlled(
    source: Path, target: Path, calibration: np.ndarray, pool: np.ndarray
) -> dict[str, Any]:
    """int8 quantization of an ONNX classifier with accuracy control (NNCF, in a child process).

    Args:
        source: The float classifier (uint8 pixels in, probabilities out).
        target: Where the QDQ int8 model goes.
        calibration: Pixels the activation ranges are calibrated on.
        pool: Held-out pixels; the hardest of them score the accuracy control
            (:mod:`graft.engines.nncf_worker`).

    Returns:
        What the quantization did: images used, agreement reached, operations kept in float.

    Raises:
        DataError: No calibration images.
        ConfigError: NNCF is missing or failed.
    """
    import json
    import tempfile

    from graft.engines.nncf_worker import run_child

    if not len(calibration) or not len(pool):
        raise DataError("int8 calibration needs images; none could be decoded")
    with tempfile.TemporaryDirectory(prefix="graft-int8-") as scratch:
        folder = Path(scratch)
        np.save(folder / "calibration.npy", calibration)
        np.save(folder / "pool.npy", pool)
        report = folder / "report.json"
        run_child(
            [
                "--onnx",
                str(source),
                str(folder / "calibration.npy"),
                str(folder / "pool.npy"),
                str(target),
                str(report),
            ]
        )
        result: dict[str, Any] = json.loads(report.read_text())
    return result
