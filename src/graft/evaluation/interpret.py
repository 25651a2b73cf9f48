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
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch
    from PIL import Image

    from graft.predictor import Predictor


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
    """Split a run's model for Grad-CAM: (pixels -> feature maps, maps -> logits), or ``None``.

    Grad-CAM needs a convolutional feature map and a differentiable head: neural runs, and
    linear runs with a linear head (``logreg``, ``svm``) on one backbone's final features.
    """
    from graft.predictor import LinearPredictor, NeuralPredictor

    if isinstance(predictor, NeuralPredictor):
        model = predictor.model

        def head_of_maps(maps: torch.Tensor) -> torch.Tensor:
            return model.head(model.backbone.forward_head(maps, pre_logits=True))

        return model.backbone.forward_features, head_of_maps
    if isinstance(predictor, LinearPredictor):
        spec = predictor.specs[0]
        head = predictor.head
        if (
            len(predictor.specs) > 1
            or spec.layer != "final"
            or spec.pool != "avg"
            or head.kind not in ("logreg", "svm")
        ):
            return None
        import torch

        from graft.zoo.model import create_model

        backbone = create_model(spec.record).eval()
        mean, scale = (
            torch.as_tensor(head.arrays[k], dtype=torch.float32) for k in ("mean", "scale")
        )
        weight = torch.as_tensor(head.arrays["coef"], dtype=torch.float32)
        bias = torch.as_tensor(head.arrays["intercept"], dtype=torch.float32)

        def linear_of_maps(maps: torch.Tensor) -> torch.Tensor:
            features = (backbone.forward_head(maps, pre_logits=True) - mean) / scale
            scores = features @ weight.T + bias
            return torch.cat([-scores, scores], dim=1) if scores.shape[1] == 1 else scores

        return backbone.forward_features, linear_of_maps
    return None


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
