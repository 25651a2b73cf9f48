"""NNCF int8 quantization, run in a child process.

NNCF hooks into PyTorch when it quantizes (it imports ``nncf.torch``, whose function hooks stay
installed in the process), and a process that then trains with PyTorch and forks crashed in
graft's test suite. Quantizing in a child process keeps graft's own process free of NNCF: the
model and the pixels go to a temporary folder, the child writes the quantized model there, the
parent reads it back (:func:`run_child`).

Two modes:

* OpenVINO IR, for the feature engine: plain post-training quantization.

      python -m graft.engines.nncf_worker MODEL.xml CALIBRATION.npy OUT.xml

* ONNX classifier, for ``graft export --int8``: quantization **with accuracy control**. Two
  kinds of convolution stay in float: the depthwise ones (measured: on brain_mri they alone took
  top-1 agreement with the float model from 95 % to 98.7 %), and those whose input no
  activation bounds (:func:`unbounded_input_convolutions`: the stem, which reads the normalised
  image, the expansions that read the residual stream, the last 1 x 1 convolution). One scale
  per tensor cannot hold such a signed, unbounded input; kept in float (plain post-training
  quantization, graft's check of 300 held-out images, bench/README.md), the brain_mri linear
  probe flipped 2 predictions instead of 7, ELPV's 0 instead of 6. Then NNCF's accuracy
  restorer reverts the most sensitive remaining operations to float until the quantized
  classifier agrees with the float one on the hardest held-out training images (those whose
  top two float probabilities are closest, where a quantization error flips a prediction
  first) within ``MAX_DROP``.

      python -m graft.engines.nncf_worker --onnx MODEL.onnx CALIB.npy POOL.npy OUT.onnx REPORT.json

Example:
    >>> hardest(np.array([[0.9, 0.1], [0.55, 0.45], [0.2, 0.8]]), 2).tolist()
    [1, 2]
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from typing import Any

import numpy as np

from graft.errors import ConfigError

#: Held-out training images the accuracy control scores on (the hardest of the pool).
VALIDATION_ITEMS = 300
#: Largest accepted drop in top-1 agreement with the float model on those images.
MAX_DROP = 0.01
#: At most this many operations (or fused groups) go back to float.
MAX_REVERTS = 6
#: Images per validation item (NNCF scores and ranks item by item).
ITEM_IMAGES = 10


def hardest(probabilities: np.ndarray, count: int) -> np.ndarray:
    """Indices of the ``count`` rows whose top two probabilities are closest, closest first."""
    top2 = np.sort(probabilities, axis=1)[:, -2:]
    margin = top2[:, 1] - top2[:, 0] if probabilities.shape[1] > 1 else top2[:, -1]
    return np.argsort(margin, kind="stable")[:count]


def run_child(arguments: list[str]) -> None:
    """Run this module in a child Python with ``arguments``.

    Raises:
        ConfigError: NNCF is not installed, or the child failed (its last error line given).
    """
    import importlib.util

    if importlib.util.find_spec("nncf") is None:
        raise ConfigError("int8 quantization needs NNCF: pip install nncf")
    done = subprocess.run(
        [sys.executable, "-m", "graft.engines.nncf_worker", *arguments],
        stdout=subprocess.DEVNULL if not os.environ.get("GRAFT_NNCF_LOG") else None,
        stderr=subprocess.PIPE,
        text=True,
    )
    if done.returncode != 0:
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        reason = lines[-1] if lines else f"exit code {done.returncode}"
        raise ConfigError(f"int8 quantization with NNCF failed: {reason}")


def quantize_openvino(source: str, pixels_file: str, target: str) -> None:
    """Quantize the IR ``source`` with the calibration pixels into ``target``."""
    import nncf
    import openvino as ov

    calibration = np.load(pixels_file)
    model = ov.Core().read_model(source)
    dataset = nncf.Dataset([calibration[i : i + 1] for i in range(len(calibration))])
    quantized = nncf.quantize(
        model,
        dataset,
        subset_size=len(calibration),
        preset=nncf.QuantizationPreset.PERFORMANCE,
    )
    ov.save_model(quantized, target, compress_to_fp16=False)


def _session(model: Any) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )


def _probabilities(model: Any, pixels: np.ndarray) -> np.ndarray:
    session = _session(model)
    return np.concatenate(
        [session.run(None, {"pixels": pixels[i : i + 32]})[0] for i in range(0, len(pixels), 32)]
    )


def depthwise_convolutions(model: Any) -> list[str]:
    """Names of the ``Conv`` nodes with more than one group (depthwise and grouped)."""
    return [
        node.name
        for node in model.graph.node
        if node.op_type == "Conv" and any(a.name == "group" and a.i > 1 for a in node.attribute)
    ]


#: Operations a tensor passes through unchanged in range, between an activation and a
#: convolution (``Conv2dSame``'s padding, reshapes).
_PASS_THROUGH = frozenset({"Pad", "Identity", "Reshape", "Cast", "Flatten"})
#: Operations whose output is bounded or one-signed (what a per-tensor scale holds); a ``Mul``
#: counts where it gates by a sigmoid (swish, squeeze-and-excitation), not where it scales.
_GATES = frozenset({"Sigmoid", "HardSigmoid"})
_ACTIVATIONS = _GATES | {"Relu", "Clip", "HardSwish", "LeakyRelu", "Elu", "Selu"}


def unbounded_input_convolutions(model: Any) -> list[str]:
    """Names of the ``Conv`` nodes whose input comes from no activation: the graph's input (or its
    normalisation), a residual sum, or another convolution's linear output.

    Such an input is signed and its channels range widely, which one int8 scale per tensor
    cannot hold; a convolution that reads an activation's output (a ReLU6, a swish) is
    quantized.

    Example:
        >>> from onnx import helper
        >>> nodes = [
        ...     helper.make_node("Relu", ["x"], ["r"]),
        ...     helper.make_node("Conv", ["r", "w"], ["a"], name="after_relu"),
        ...     helper.make_node("Conv", ["x", "w"], ["b"], name="on_the_input"),
        ... ]
        >>> unbounded_input_convolutions(helper.make_model(helper.make_graph(nodes, "g", [], [])))
        ['on_the_input']
    """
    producer = {output: node for node in model.graph.node for output in node.output}
    names = []
    for node in model.graph.node:
        if node.op_type != "Conv":
            continue
        source = producer.get(node.input[0])
        while source is not None and source.op_type in _PASS_THROUGH:
            source = producer.get(source.input[0])
        gated = (
            source is not None
            and source.op_type == "Mul"
            and any(getattr(producer.get(name), "op_type", "") in _GATES for name in source.input)
        )
        if source is None or not (source.op_type in _ACTIVATIONS or gated):
            names.append(node.name)
    return names


def quantize_onnx_controlled(
    source: str, calibration_file: str, pool_file: str, target: str, report_file: str
) -> None:
    """Quantize the ONNX classifier ``source`` with accuracy control (see the module doc)."""
    import nncf
    import onnx
    from nncf.quantization.advanced_parameters import AdvancedAccuracyRestorerParameters

    model = onnx.load(source)
    calibration = np.load(calibration_file)
    pool = np.load(pool_file)
    reference = _probabilities(model, pool)
    chosen = hardest(reference, VALIDATION_ITEMS)
    # Items of ITEM_IMAGES images: NNCF ranks operations by per-item scores, and batches
    # run several times faster than single images.
    items = [
        (pool[chosen[i : i + ITEM_IMAGES]], reference[chosen[i : i + ITEM_IMAGES]].argmax(1))
        for i in range(0, len(chosen), ITEM_IMAGES)
    ]

    def agreement(candidate: Any, data: Any) -> tuple[float, list[float]]:
        session = _session(candidate)
        scores, counts = [], []
        for pixels, labels in data:
            scores.append(
                float((session.run(None, {"pixels": pixels})[0].argmax(1) == labels).mean())
            )
            counts.append(len(labels))
        return float(np.average(scores, weights=counts)), scores

    depthwise = depthwise_convolutions(model)
    unbounded = [name for name in unbounded_input_convolutions(model) if name not in depthwise]
    kept_float = depthwise + unbounded
    quantized = nncf.quantize_with_accuracy_control(
        model,
        nncf.Dataset([{"pixels": calibration[i : i + 1]} for i in range(len(calibration))]),
        nncf.Dataset(items, lambda item: {"pixels": item[0]}),
        agreement,
        max_drop=MAX_DROP,
        subset_size=len(calibration),
        preset=nncf.QuantizationPreset.MIXED,
        ignored_scope=nncf.IgnoredScope(names=kept_float, validate=False),
        advanced_accuracy_restorer_parameters=AdvancedAccuracyRestorerParameters(
            ranking_subset_size=len(items), max_num_iterations=MAX_REVERTS
        ),
    )
    score, _ = agreement(quantized, items)
    images = sum(len(labels) for _, labels in items)
    quantized_nodes = {
        node.name for node in quantized.graph.node if node.op_type == "DequantizeLinear"
    }
    report = {
        "method": (
            "NNCF quantize_with_accuracy_control (ONNX), depthwise convolutions and those "
            "with an unbounded input in float"
        ),
        "calibration_images": len(calibration),
        "validation_images": images,
        "validation_agreement": score,
        "max_drop": MAX_DROP,
        "float_depthwise": len(depthwise),
        "float_unbounded_input": len(unbounded),
        "dequantize_nodes": len(quantized_nodes),
    }
    onnx.save(quantized, target)
    with open(report_file, "w", encoding="utf-8") as handle:
        json.dump(report, handle)


def main(argv: list[str]) -> int:
    """Dispatch on the mode (see the module docstring)."""
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    import nncf

    nncf.set_log_level(logging.INFO if os.environ.get("GRAFT_NNCF_LOG") else logging.ERROR)
    if argv and argv[0] == "--onnx":
        quantize_onnx_controlled(*argv[1:])
    else:
        quantize_openvino(*argv)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
