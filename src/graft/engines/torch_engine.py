"""PyTorch eager: channels-last, inference mode, CUDA when present, bf16 by autocast.

Example:
    >>> import numpy as np, torch
    >>> engine = TorchEngine(torch.nn.Flatten())
    >>> engine(np.ones((1, 3, 2, 2), np.uint8)).tolist()
    [[1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]]
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from torch import nn


class TorchEngine:
    """PyTorch eager at fp32, or bf16 under autocast."""

    name = "torch"

    def __init__(
        self, network: nn.Module, *, device: str | None = None, precision: str = "fp32"
    ) -> None:
        import torch

        from graft.device import resolve_device

        self.precision = precision
        self.device = resolve_device(device)
        self.network = network.to(self.device).to(memory_format=torch.channels_last).eval()

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        import torch

        batch = (
            torch.from_numpy(pixels).to(self.device).contiguous(memory_format=torch.channels_last)
        )
        with (
            torch.inference_mode(),
            torch.autocast(self.device.type, torch.bfloat16, enabled=self.precision == "bf16"),
        ):
            outputs = self.network(batch)
        result: np.ndarray = outputs.float().cpu().numpy()
        return result
