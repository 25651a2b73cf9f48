"""Looking inside the mistakes: top losses, the most confused class pairs, Grad-CAM.

Example:
    >>> import numpy as np
    >>> proba = np.array([[0.9, 0.1], [0.2, 0.8], [0.99, 0.01]])
    >>> [t.index for t in top_losses(["a", "b", "b"], proba, ["a", "b"], k=1)]
    [2]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from graft.models import ProbeNetwork, TransferModel
from graft.predictor import LinearPredictor, Predictor
from graft.zoo.model import GraftModel

if TYPE_CHECKING:
    import torch
    from PIL import Image


@dataclass(frozen=True)
class Loss:
    """One evaluated image, ranked by its loss."""

    index: int
    true: str
    predicted: str
    confidence: float
    loss: float


def top_losses(
    true_labels: Sequence[str], probabilities: np.ndarray, classes: Sequence[str], *, k: int = 16
) -> list[Loss]:
    """The ``k`` images with the highest cross-entropy: the most confidently wrong first."""
    index = {name: i for i, name in enumerate(classes)}
    truth = np.array([index[label] for label in true_labels])
    p_true = probabilities[np.arange(len(truth)), truth]
    losses = -np.log(np.clip(p_true, 1e-12, 1.0))
    order = np.argsort(-losses, kind="stable")[:k]
    return [
        Loss(
            int(i),
            classes[truth[i]],
            classes[int(probabilities[i].argmax())],
            float(probabilities[i].max()),
            float(losses[i]),
        )
        for i in order
    ]


def confused_pairs(
    confusion: Sequence[Sequence[int]], classes: Sequence[str], *, k: int = 5
) -> list[dict[str, Any]]:
    """The ``k`` largest off-diagonal cells: (true, predicted, count), largest first."""
    cells = [
        (int(count), classes[i], classes[j])
        for i, row in enumerate(confusion)
        for j, count in enumerate(row)
        if i != j and count > 0
    ]
    cells.sort(key=lambda cell: -cell[0])
    return [{"true": t, "predicted": p, "count": c} for c, t, p in cells[:k]]


def gradcam_model(predictor: Predictor) -> tuple[Any, Any] | None:
    """Split a run's network for Grad-CAM: (pixels -> feature maps, maps -> logits), or ``None``.

    Grad-CAM needs a convolutional feature map and a differentiable head: neural runs, and
    linear runs on one backbone's final, average-pooled features under any head but ``knn``
    (its votes have no gradient). Both parts come from :attr:`Predictor.model`.
    """
    network = predictor.model.network
    if isinstance(network, TransferModel):

        def head_of_maps(maps: torch.Tensor) -> torch.Tensor:
            return network.head(network.backbone.forward_head(maps, pre_logits=True))

        return network.backbone.forward_features, head_of_maps
    assert isinstance(network, ProbeNetwork)
    specs = predictor.specs if isinstance(predictor, LinearPredictor) else []
    if (
        len(specs) != 1
        or specs[0].layer != "final"
        or specs[0].pool != "avg"
        or network.head.kind == "knn"
    ):
        return None
    backbone = cast(GraftModel, network.extractors[0].model)

    def probe_of_maps(maps: torch.Tensor) -> torch.Tensor:
        return network.head(backbone.forward_head(maps, pre_logits=True).float())

    return backbone.forward_features, probe_of_maps


def gradcam(parts: tuple[Any, Any], pixels: torch.Tensor, targets: Sequence[int]) -> np.ndarray:
    """Grad-CAM heat maps (``N x h x w``, in ``[0, 1]``) for the ``targets`` classes.

    The gradient of each target score with respect to the last feature map weighs its channels
    (Selvaraju et al. 2017); the weighted sum, rectified and normalised, shows where the evidence
    for the class lies.
    """
    import torch

    to_maps, to_logits = parts
    with torch.enable_grad():
        maps = to_maps(pixels).detach().requires_grad_(True)
        if maps.ndim != 4:
            raise ValueError("Grad-CAM needs a convolutional feature map")
        logits = to_logits(maps)
        chosen = logits[torch.arange(len(targets)), torch.as_tensor(list(targets))]
        (grads,) = torch.autograd.grad(chosen.sum(), maps)
    weights = grads.mean(dim=(2, 3), keepdim=True)
    cam = torch.relu((weights * maps).sum(dim=1)).detach()
    peak = cam.flatten(1).amax(1).clamp_min(1e-12)[:, None, None]
    return (cam / peak).numpy()


def overlay(image: Image.Image, cam: np.ndarray, alpha: float = 0.45) -> Image.Image:
    """Blend a heat map (resized to the image) over it, with matplotlib's ``jet`` colours."""
    from matplotlib import colormaps
    from PIL import Image

    heat = Image.fromarray(np.uint8(np.clip(cam, 0, 1) * 255)).resize(
        image.size, Image.Resampling.BILINEAR
    )
    coloured = colormaps["jet"](np.asarray(heat) / 255.0)[..., :3]
    blended = (1 - alpha) * np.asarray(
        image.convert("RGB"), dtype=np.float64
    ) / 255 + alpha * coloured
    return Image.fromarray(np.uint8(np.clip(blended, 0, 1) * 255))
