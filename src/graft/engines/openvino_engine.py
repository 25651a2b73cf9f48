"""OpenVINO on the CPU: fp32, bf16 (CPUs with bf16 units) or int8 quantized with NNCF.

The network is converted once (by tracing, 2 s) with its uint8 input and normalisation inside,
so the engine takes the decoder's pixels as they are. int8 uses NNCF's post-training
quantization calibrated on the user's own images (300 by default); the quantized model is
cached like the float one, under a key that names the calibration set.

Example:
    >>> import numpy as np, torch
    >>> engine = OpenVinoEngine(torch.nn.Flatten(), input_size=2)
    >>> engine(np.ones((1, 3, 2, 2), np.uint8)).shape
    (1, 12)
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from graft.engines.common import Calibration, compiled_path, need_calibration, threads
from graft.engines.signal_stack import preserved_signal_stack
from graft.errors import ConfigError

if TYPE_CHECKING:
    from torch import nn

_HINTS = {"fp32": "f32", "bf16": "bf16", "int8": "f32"}  # int8 layers come from the model


class OpenVinoEngine:
    """OpenVINO's CPU plugin, one synchronous request using every core."""

    name = "openvino"

    def __init__(
        self,
        network: nn.Module,
        *,
        input_size: int,
        precision: str = "fp32",
        cache_key: str | None = None,
        calibration: Calibration | None = None,
    ) -> None:
        import openvino as ov

        # Loading OpenVINO's CPU plugin (compile, but also asking its properties) leaves a
        # signal stack on this thread that OpenVINO frees later: the thread keeps its own.
        with preserved_signal_stack():
            core = ov.Core()
            if precision == "bf16" and not bf16_supported(core):
                raise ConfigError(
                    "this CPU has no bf16 units (OpenVINO reports none); use --precision fp32 "
                    "or int8"
                )
            self.precision = precision
            path = compiled_path(self.name, cache_key, ".xml") if cache_key else None
            if path is not None and path.is_file():
                model = core.read_model(str(path))
            else:
                model = convert(network, input_size)
                if precision == "int8":
                    model = quantize(model, need_calibration(calibration, precision))
                if path is not None:
                    save_atomically(model, path)
            config = {
                "INFERENCE_PRECISION_HINT": _HINTS[precision],
                "PERFORMANCE_HINT": "LATENCY",
                "INFERENCE_NUM_THREADS": str(threads()),
            }
            self._request = core.compile_model(model, "CPU", config).create_infer_request()

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        with preserved_signal_stack():
            self._request.infer({0: np.ascontiguousarray(pixels)})
        result: np.ndarray = self._request.get_output_tensor(0).data.copy()
        return result


def bf16_supported(core: Any = None) -> bool:
    """Whether OpenVINO's CPU plugin runs bf16 natively here (AVX512-BF16 or AMX)."""
    import openvino as ov

    with preserved_signal_stack():
        capabilities = (core or ov.Core()).get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    return "BF16" in capabilities


def convert(network: nn.Module, input_size: int) -> Any:
    """Convert a PyTorch module taking uint8 ``N x 3 x S x S`` to an OpenVINO model."""
    import openvino as ov
    import torch

    example = torch.zeros((1, 3, input_size, input_size), dtype=torch.uint8)
    # OpenVINO traces the module (2 s here; torch.export takes three times as long).
    with torch.no_grad():
        return ov.convert_model(
            network, example_input=example, input=[(-1, 3, input_size, input_size)]
        )


def quantize(model: Any, calibration: np.ndarray) -> Any:
    """NNCF post-training int8 quantization, in a child process (see
    :mod:`graft.engines.nncf_worker`), one calibration image per step.

    Raises:
        ConfigError: NNCF is not installed, or the child failed (its last error line given).
    """
    import tempfile

    import openvino as ov

    from graft.engines.nncf_worker import run_child

    with tempfile.TemporaryDirectory(prefix="graft-int8-") as scratch:
        folder = Path(scratch)
        ov.save_model(model, str(folder / "float.xml"), compress_to_fp16=False)
        np.save(folder / "calibration.npy", calibration)
        run_child(
            [str(folder / "float.xml"), str(folder / "calibration.npy"), str(folder / "int8.xml")]
        )
        quantized = ov.Core().read_model(str(folder / "int8.xml"))
        # read_model maps the weights file; keep them in memory before the folder goes
        return quantized.clone()


def save_atomically(model: Any, path: Path) -> None:
    """Save ``.xml`` + ``.bin`` under temporary names, then rename (``.bin`` first)."""
    import openvino as ov

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.xml")
    ov.save_model(model, str(tmp), compress_to_fp16=False)
    os.replace(tmp.with_suffix(".bin"), path.with_suffix(".bin"))
    os.replace(tmp, path)
