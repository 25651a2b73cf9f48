"""Test-time augmentation: average the class probabilities of several views of each image.

``flip`` predicts each image and its horizontal mirror and averages the two probability rows
(the classic TTA of Krizhevsky et al. and fastai's ``tta``); it doubles the cost of a
prediction. ``dihedral`` averages the eight flips and quarter turns of the (square) input,
for images with no up or down trained with ``--augment dihedral``; it costs eight.

It applies wherever a run predicts: ``graft evaluate``, ``predict``, ``serve`` (through
:class:`graft.predictor.Predictor`), and ``graft export``, whose graph then contains it
(:func:`view_average`). A run records its own choice (``graft train --tta flip``: the final
metrics are computed with it and the run predicts with it by default); every command can
override it with ``--tta``.

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

TTA_MODES = ("none", "flip", "dihedral")


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
    """``probabilities(inputs)``, averaged over the mode's views of the inputs.

    Args:
        probabilities: Uint8 pixels (``N x 3 x H x W``, one array per model input) to
            ``N x classes`` probabilities.
        inputs: The pixels.
        mode: ``none``, ``flip`` (the image and its mirror) or ``dihedral`` (the eight flips
            and quarter turns).
    """
    total, chosen = None, views(mode)
    for turns, mirror in chosen:
        view = [view_pixels(x, turns, mirror) for x in inputs] if (turns or mirror) else inputs
        proba = probabilities(view)
        total = proba if total is None else total + proba
    assert total is not None
    return total / len(chosen)


def views(mode: str) -> list[tuple[int, bool]]:
    """The mode's views as (quarter turns, mirrored), the image itself first.

    Example:
        >>> views("flip")
        [(0, False), (0, True)]
    """
    if mode == "none":
        return [(0, False)]
    if mode == "flip":
        return [(0, False), (0, True)]
    return [(turns, mirror) for turns in range(4) for mirror in (False, True)]


def view_pixels(pixels: np.ndarray, turns: int, mirror: bool) -> np.ndarray:
    """One view of a batch of pixels (``N x C x H x W``): ``turns`` quarter turns, then a
    horizontal mirror if ``mirror``.

    Example:
        >>> view_pixels(np.arange(4).reshape(1, 1, 2, 2), 0, True)[0, 0].tolist()
        [[1, 0], [3, 2]]
    """
    turned = np.rot90(pixels, turns, axes=(2, 3)) if turns else pixels
    return np.ascontiguousarray(turned[..., ::-1] if mirror else turned)


def view_average(module: Any, mode: str) -> Any:
    """Wrap a PyTorch module (uint8 pixels to probabilities) so it averages over the mode's
    views, as :func:`averaged` does: the exported graph of ``--tta flip|dihedral``."""
    import torch
    from torch import nn

    others = views(mode)[1:]  # the image itself is the first

    class ViewAverage(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = module

        def forward(self, pixels: torch.Tensor) -> torch.Tensor:
            total = self.inner(pixels)
            for turns, mirror in others:
                view = _quarter_turns(pixels, turns)
                total = total + self.inner(torch.flip(view, dims=[3]) if mirror else view)
            return total / (len(others) + 1)

    return ViewAverage().eval()


def _quarter_turns(pixels: Any, turns: int) -> Any:
    """``torch.rot90(pixels, turns, dims=[2, 3])`` from transposes and flips (ONNX has no
    ``rot90``)."""
    if turns == 1:
        return pixels.transpose(2, 3).flip(2)
    if turns == 2:
        return pixels.flip(2).flip(3)
    if turns == 3:
        return pixels.transpose(2, 3).flip(3)
    return pixels
