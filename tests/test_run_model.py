"""A linear run's network over backbones of different input sizes: one input, resized inside."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn.functional import interpolate

from graft.heads import HeadModule, fit_head
from graft.models import ProbeNetwork
from graft.models.run_model import Resize


class _Recorder(nn.Module):
    """A stand-in extractor: keeps its input, returns its per-channel means as features."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: torch.Tensor | None = None

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        self.seen = pixels
        return pixels.float().mean(dim=(2, 3))


def test_resize_is_the_antialiased_bilinear_resize() -> None:
    pixels = torch.randint(0, 256, (2, 3, 24, 24), dtype=torch.uint8)
    want = interpolate(pixels.float(), size=(16, 16), mode="bilinear", antialias=True)
    torch.testing.assert_close(Resize(24, 16)(pixels), want, atol=1e-3, rtol=0)


def test_each_backbone_gets_its_own_input_size() -> None:
    rng = np.random.default_rng(0)
    features = rng.normal(size=(40, 6)).astype(np.float32)
    head = HeadModule(fit_head("logreg", features, np.repeat(["a", "b"], 20)))
    small, large = _Recorder(), _Recorder()
    network = ProbeNetwork([small, large], head, input_sizes=[16, 24])
    assert network.input_size == 24
    pixels = torch.randint(0, 256, (2, 3, 24, 24), dtype=torch.uint8)
    logits = network(pixels)
    assert logits.shape == (2, 2)
    assert small.seen is not None and large.seen is not None
    assert small.seen.shape == (2, 3, 16, 16) and large.seen is pixels
    want = interpolate(pixels.float(), size=(16, 16), mode="bilinear", antialias=True)
    torch.testing.assert_close(small.seen, want, atol=1e-3, rtol=0)
