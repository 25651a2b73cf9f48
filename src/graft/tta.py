"""Test-time augmentation: average the class probabilities of an image and its mirror image.

``flip`` predicts each image and its horizontal mirror and averages the two probability rows
(the classic TTA of Krizhevsky et al. and fastai's ``tta``); it doubles the cost of a
prediction. It applies wherever a run predicts: ``graft evaluate``, ``predict``, ``serve``
(through :class:`graft.predictor.Predictor`), and ``graft export``, whose graph then contains
it (:class:`FlipAverage`). A run records its own choice (``graft train --tta flip``: the
final metrics are computed with it and the run predicts with it by default); every command
can override it with ``--tta``.

Example:
    >>> import numpy as np
    >>> pixels = np.arange(12, dtype=np.uint8).reshape(1, 1, 3, 4)
    >>> first_column = lambda inputs: inputs[0][:, 0, 0, :1].astype(float)
    >>> averaged(first_column, [pixels], "flip")  # (0 + 3) / 2: the image, then its mirror
    array([[1.5]])
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from graft.errors import ConfigError

TTA_MODES = ("none", "flip")


def check_tta(mode: str) -> str:
    """Return ``mode`` if it is a known TTA mode.

    Raises:
        ConfigError: Anything else, naming the choices.
    """
    if mode not in TTA_MODES:
        raise ConfigError(f"--tta {mode!r} is not one of: {', '.join(TTA_MODES)}")
    return mode


def averaged(
    probabilities: Callable[[Sequence[np.ndarray]], np.ndarray],
    inputs: Sequence[np.ndarray],
    mode: str,
) -> np.ndarray:
    """``probabilities(inputs)``, averaged with the mirrored inputs' for ``flip``.

    Args:
        probabilities: Uint8 pixels (``N x 3 x H x W``, one array per model input) to
            ``N x classes`` probabilities.
        inputs: The pixels.
        mode: ``none`` or ``flip``.
    """
    proba = probabilities(inputs)
    if mode == "flip":
        mirrored = [np.ascontiguousarray(x[..., ::-1]) for x in inputs]
        proba = (proba + probabilities(mirrored)) / 2
    return proba


def flip_average(module: Any) -> Any:
    """Wrap a PyTorch module (uint8 pixels to probabilities) so it averages with the mirror
    image: the exported graph of ``--tta flip``."""
    import torch
    from torch import nn

    class FlipAverage(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = module

        def forward(self, pixels: torch.Tensor) -> torch.Tensor:
            both = self.inner(pixels) + self.inner(torch.flip(pixels, dims=[3]))
            return both / 2

    return FlipAverage().eval()
