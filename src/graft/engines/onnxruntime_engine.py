"""ONNX Runtime on the CPU, at fp32 or static int8; the exported model cached on disk.

Example:
    >>> import numpy as np, torch
    >>> engine = OnnxRuntimeEngine(torch.nn.Flatten(), input_size=2)
    >>> engine(np.ones((1, 3, 2, 2), np.uint8)).shape
    (1, 12)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from graft.engines.common import Calibration, compiled_path, need_calibration, threads
from graft.engines.onnx_io import INPUT, cpu_session, export_onnx, quantize_onnx
from graft.fileio import atomic_path

if TYPE_CHECKING:
    from torch import nn


class OnnxRuntimeEngine:
    """ONNX Runtime's CPU execution provider."""

    name = "onnxruntime"

    def __init__(
        self,
        network: nn.Module,
        *,
        input_size: int,
        precision: str = "fp32",
        cache_key: str | None = None,
        calibration: Calibration | None = None,
    ) -> None:
        import tempfile
        from pathlib import Path

        self.precision = precision
        path = compiled_path(self.name, cache_key, ".onnx") if cache_key else None
        with tempfile.TemporaryDirectory(prefix="graft-onnx-") as scratch:
            if path is None or not path.is_file():
                target = path or Path(scratch) / "model.onnx"
                with atomic_path(target) as tmp:
                    if precision == "int8":
                        pixels = need_calibration(calibration, precision)
                        float_path = Path(scratch) / "float.onnx"
                        export_onnx(network, input_size, float_path)
                        quantize_onnx(float_path, tmp, pixels)
                    else:
                        export_onnx(network, input_size, tmp)
                path = target
            self._session = cpu_session(path, threads=threads())

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        outputs = self._session.run(None, {INPUT: np.ascontiguousarray(pixels)})
        return np.asarray(outputs[0], dtype=np.float32)
