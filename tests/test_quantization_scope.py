"""Which convolutions the int8 export keeps in float (:mod:`graft.engines.nncf_worker`)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn
from torch.nn import functional

from graft.engines.nncf_worker import depthwise_convolutions, unbounded_input_convolutions
from graft.engines.onnx_io import export_onnx

onnx = pytest.importorskip("onnx")


class _Blocks(nn.Module):
    """One convolution of each kind of input: the scaled image, an activation, a residual sum,
    a sigmoid gate, a padded activation, and a depthwise convolution."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.after_relu6 = nn.Conv2d(8, 8, 1)
        self.after_sum = nn.Conv2d(8, 8, 1)
        self.after_gate = nn.Conv2d(8, 8, 1)
        self.after_pad = nn.Conv2d(8, 8, 3)
        self.depthwise = nn.Conv2d(8, 8, 3, padding=1, groups=8)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        x = (pixels.float() - 127.5) * (1 / 127.5)  # ends in a Mul that scales, not gates
        stem = self.stem(x)
        bounded = functional.relu6(stem)
        residual = self.after_relu6(bounded) + stem
        expanded = self.after_sum(residual)
        gated = self.after_gate(expanded * torch.sigmoid(expanded))
        padded = self.after_pad(functional.pad(bounded, (1, 1, 1, 1)))
        spatial = self.depthwise(bounded)
        return (gated + padded + spatial).mean(dim=(2, 3))


def test_convolutions_reading_an_unbounded_input_are_the_ones_kept_in_float(
    tmp_path: Path,
) -> None:
    """The stem (it reads the normalised image) and the convolution after a residual sum stay
    float; those reading a ReLU6, a sigmoid gate or a padded activation are quantized."""
    path = tmp_path / "blocks.onnx"
    export_onnx(_Blocks().eval(), 8, path)
    model = onnx.load(str(path))

    def module(name: str) -> str:
        return name.split("/")[1]

    assert sorted(map(module, unbounded_input_convolutions(model))) == ["after_sum", "stem"]
    assert list(map(module, depthwise_convolutions(model))) == ["depthwise"]
