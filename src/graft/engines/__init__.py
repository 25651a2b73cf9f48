"""Inference engines: the same network run by PyTorch, ONNX Runtime or OpenVINO, at fp32, bf16
or int8.

An engine maps a batch of uint8 pixels (``N x 3 x H x W`` numpy array) to float32 outputs
(features or probabilities). ``auto`` picks OpenVINO on a CPU when it is installed (four times
PyTorch eager here, same features within float32 rounding) and PyTorch otherwise, including on
CUDA. Each compiled or exported model is kept on disk in graft's cache under a key naming the
network, its weights, input size and precision, so later runs start in a fraction of a second.

Example:
    >>> import numpy as np
    >>> from graft.zoo import create_model
    >>> from graft.features.layers import feature_module
    >>> net = feature_module(create_model("efficientnet_lite0.in1k"))
    >>> engine = create_engine(net, input_size=224, engine="torch")
    >>> engine(np.zeros((2, 3, 224, 224), np.uint8)).shape
    (2, 1280)
"""

from graft.engines.base import (
    ENGINES,
    PRECISIONS,
    Calibration,
    Engine,
    available_engines,
    create_engine,
    resolve_engine,
)

__all__ = [
    "ENGINES",
    "PRECISIONS",
    "Calibration",
    "Engine",
    "available_engines",
    "create_engine",
    "resolve_engine",
]
