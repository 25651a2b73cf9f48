"""Choosing and creating an engine (what engines share is :mod:`graft.engines.common`).

Example:
    >>> resolve_engine("torch")
    'torch'
    >>> resolve_engine("torch", precision="int8")
    Traceback (most recent call last):
    ...
    graft.errors.ConfigError: precision int8 runs on onnxruntime or openvino, not torch; \
pass --engine openvino (or auto)
"""

from __future__ import annotations

import importlib.util
import warnings
from typing import TYPE_CHECKING

from graft.engines.common import Calibration, Engine, compiled_path
from graft.errors import ConfigError

if TYPE_CHECKING:
    from torch import nn

# OpenVINO and ONNX export trace PyTorch modules, and torch deprecates tracing with a
# FutureWarning the user cannot act on. The filter names that one message only.
warnings.filterwarnings("ignore", message=r"`torch\.jit\.trace", category=FutureWarning)

ENGINES = ("auto", "torch", "onnxruntime", "openvino")
PRECISIONS = ("fp32", "bf16", "int8")
#: Which engine runs which precision.
SUPPORTS = {
    "torch": ("fp32", "bf16"),
    "onnxruntime": ("fp32", "int8"),
    "openvino": ("fp32", "bf16", "int8"),
}
_MODULES = {"torch": "torch", "onnxruntime": "onnxruntime", "openvino": "openvino"}
_INSTALL = {"onnxruntime": "pip install onnxruntime", "openvino": "pip install openvino nncf"}


def available_engines() -> list[str]:
    """The concrete engines installed here, fastest first on a CPU."""
    order = ("openvino", "onnxruntime", "torch")
    return [name for name in order if importlib.util.find_spec(_MODULES[name]) is not None]


def resolve_engine(engine: str, device: str | None = None, precision: str = "fp32") -> str:
    """Turn ``auto`` into a concrete engine; validate the engine and precision names.

    Raises:
        ConfigError: Unknown engine or precision, an engine that is not installed, or a
            precision the engine does not run.
    """
    if engine not in ENGINES:
        raise ConfigError(f"engine {engine!r} is not one of: {', '.join(ENGINES)}")
    if precision not in PRECISIONS:
        raise ConfigError(f"precision {precision!r} is not one of: {', '.join(PRECISIONS)}")
    installed = available_engines()
    if engine == "auto":
        from graft.device import resolve_device

        on_gpu = resolve_device(device).type == "cuda"
        candidates = ["torch"] if on_gpu and precision != "int8" else installed
        chosen = next((name for name in candidates if precision in SUPPORTS[name]), None)
        if chosen is None:
            raise ConfigError(
                f"no installed engine runs precision {precision}; {_INSTALL['openvino']}"
            )
        return chosen
    if engine not in installed:
        raise ConfigError(f"engine {engine!r} asked for but not installed: {_INSTALL[engine]}")
    if precision not in SUPPORTS[engine]:
        runners = [name for name, precisions in SUPPORTS.items() if precision in precisions]
        raise ConfigError(
            f"precision {precision} runs on {' or '.join(runners)}, not {engine}; "
            f"pass --engine {runners[-1]} (or auto)"
        )
    return engine


def create_engine(
    network: nn.Module,
    *,
    input_size: int,
    engine: str = "auto",
    precision: str = "fp32",
    device: str | None = None,
    cache_key: str | None = None,
    calibration: Calibration | None = None,
) -> Engine:
    """Wrap a network (uint8 pixels -> float outputs) in the chosen engine.

    Args:
        network: Module taking ``N x 3 x S x S`` uint8 pixels.
        input_size: ``S``, the side of the square input.
        engine: ``auto``, ``torch``, ``onnxruntime`` or ``openvino``.
        precision: ``fp32``, ``bf16`` (CPUs with bf16 units, or CUDA) or ``int8``.
        device: For the torch engine: ``auto``, ``cpu`` or ``cuda``.
        cache_key: Identifies the network, its weights and the precision; when given, the
            exported or compiled model is kept on disk under it.
        calibration: For int8: the images to calibrate on, needed only when the quantized
            model is not cached yet.

    Raises:
        ConfigError: See :func:`resolve_engine`; int8 without calibration images and no
            cached model; bf16 on a CPU without bf16 support.
    """
    chosen = resolve_engine(engine, device, precision)
    if chosen == "openvino":
        from graft.engines.openvino_engine import OpenVinoEngine

        return OpenVinoEngine(
            network,
            input_size=input_size,
            precision=precision,
            cache_key=cache_key,
            calibration=calibration,
        )
    if chosen == "onnxruntime":
        from graft.engines.onnxruntime_engine import OnnxRuntimeEngine

        return OnnxRuntimeEngine(
            network,
            input_size=input_size,
            precision=precision,
            cache_key=cache_key,
            calibration=calibration,
        )
    from graft.engines.torch_engine import TorchEngine

    return TorchEngine(network, device=device, precision=precision)


#: The file each engine keeps a compiled model in (see :func:`compiled_path`).
_SUFFIX = {"openvino": ".xml", "onnxruntime": ".onnx"}


def is_compiled(engine: str, cache_key: str, precision: str = "fp32") -> bool:
    """Whether the engine ``auto``/``engine`` resolves to already keeps a model for ``cache_key``
    (an int8 model that exists was calibrated before: no calibration needed)."""
    try:
        chosen = resolve_engine(engine, "cpu", precision)
    except ConfigError:
        return False
    suffix = _SUFFIX.get(chosen)
    return suffix is not None and compiled_path(chosen, cache_key, suffix).is_file()


def bf16_native(engine: str = "auto", device: str | None = None) -> bool:
    """Whether the engine ``engine`` resolves to for bf16 computes it natively here.

    Example:
        >>> bf16_native("onnxruntime")  # ONNX Runtime runs no bf16 in graft
        False
    """
    try:
        chosen = resolve_engine(engine, device, "bf16")
    except ConfigError:
        return False
    if chosen == "openvino":
        from graft.engines.openvino_engine import bf16_supported

        return bf16_supported()
    from graft.device import native_bf16, resolve_device

    return native_bf16(resolve_device(device))
