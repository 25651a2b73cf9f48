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

from graft.errors import ConfigError, DataError

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


#: The operations whose second input is a weight that :func:`compress_weights_onnx` stores as int8.
WEIGHTED_OPS = ("Conv", "Gemm", "MatMul")


def compress_weights_onnx(
    source: Path, target: Path, *, keep: tuple[str, ...] = ()
) -> dict[str, Any]:
    """int8 weights, float activations: every weight of a ``Conv``, ``Gemm`` or ``MatMul`` is
    stored as int8 with one symmetric scale per output channel and dequantized in the graph
    (``DequantizeLinear``), and every activation stays float.

    ``keep`` names parts of the graph whose weights stay float: the operations whose names
    contain any of these strings. ``graft export`` keeps its classifier head (``/head/``): a
    probe's standardisation is folded into its weight, so a feature with little spread gets a
    large weight, and one scale per class then rounds most of the others to zero (measured on
    the test suite's images: probabilities off by 0.81 with the head in int8, 0.004 without).

    The file is about a quarter of the float one; the arithmetic is float, so it runs at float
    speed. The error is that of rounding each weight to 1/254 of its channel's largest, which
    does not depend on the data (no calibration): the fallback of ``graft export --int8`` when
    quantizing the activations too changes predictions.

    Returns:
        What it did: ``{"method", "weights", "parameters", "kept_float"}`` (tensors and values
        compressed, operations left float).

    Example:
        >>> import tempfile, pathlib, torch
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> class Tiny(torch.nn.Module):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.conv = torch.nn.Conv2d(3, 4, 1)
        ...     def forward(self, pixels):
        ...         return self.conv(pixels.float())
        >>> export_onnx(Tiny(), 2, folder / "f.onnx")
        >>> compress_weights_onnx(folder / "f.onnx", folder / "w.onnx")["weights"]
        1
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(source))
    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)
    if opset < 13:
        raise ConfigError(f"{source}: opset {opset}; int8 weights need ONNX opset 13 or later")
    graph = model.graph
    weighted = [n for n in graph.node if n.op_type in WEIGHTED_OPS and len(n.input) > 1]
    kept_nodes = [n for n in weighted if any(part in n.name for part in keep)]
    # a weight the kept operations read, or a graph input, stays as it is for every reader
    untouched = {n.input[1] for n in kept_nodes} | {i.name for i in graph.input}
    initializers = {tensor.name: tensor for tensor in graph.initializer}
    dequantize: list[Any] = []
    done: set[str] = set()
    parameters = 0
    for node in weighted:
        if node.input[1] in done or node.input[1] in untouched:
            continue
        tensor = initializers.get(node.input[1])
        if tensor is None or tensor.data_type != TensorProto.FLOAT or len(tensor.dims) < 2:
            continue
        weight = numpy_helper.to_array(tensor)
        axis = _output_axis(node, weight.ndim)
        others = tuple(i for i in range(weight.ndim) if i != axis)
        scale = np.abs(weight).max(axis=others) / 127.0
        scale[scale == 0] = 1.0
        shape = [1] * weight.ndim
        shape[axis] = -1
        quantized = np.clip(np.round(weight / scale.reshape(shape)), -127, 127).astype(np.int8)
        name = tensor.name
        graph.initializer.remove(tensor)
        graph.initializer.extend(
            [
                numpy_helper.from_array(quantized, f"{name}_int8"),
                numpy_helper.from_array(scale.astype(np.float32), f"{name}_scale"),
                numpy_helper.from_array(np.zeros(len(scale), np.int8), f"{name}_zero"),
            ]
        )
        dequantize.append(
            helper.make_node(
                "DequantizeLinear",
                [f"{name}_int8", f"{name}_scale", f"{name}_zero"],
                [name],
                name=f"{name}_dequantize",
                axis=axis,
            )
        )
        done.add(name)
        parameters += int(weight.size)
    for position, node in enumerate(dequantize):  # before every use: they read constants only
        graph.node.insert(position, node)
    onnx.checker.check_model(model)
    onnx.save(model, str(target))
    return {
        "method": "int8 weights (per output channel, symmetric), float activations",
        "weights": len(done),
        "parameters": parameters,
        "kept_float": len(kept_nodes),
    }


def _output_axis(node: Any, ndim: int) -> int:
    """The axis of a weight that indexes output channels (one scale each)."""
    if node.op_type == "Conv":
        return 0
    if node.op_type == "Gemm":
        transposed = any(a.name == "transB" and a.i for a in node.attribute)
        return 0 if transposed else 1
    return ndim - 1  # MatMul: x @ W, W is in x out
