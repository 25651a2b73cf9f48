"""The pretrained model as a classifier: top-k ImageNet labels for each image.

Example:
    >>> from graft.datasets import sample_photos
    >>> result = classify([sample_photos()["chelsea"]], top_k=3)[0]
    >>> result.ok, len(result.predictions)
    (True, 3)
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from graft.data.files import collect_images
from graft.data.transforms import eval_transform, resize_target
from graft.engines import create_engine
from graft.errors import ConfigError, DataError
from graft.zoo.labels import label_names
from graft.zoo.registry import DEFAULT_BACKBONE

if TYPE_CHECKING:
    import torch

    from graft.zoo.model import GraftModel


@dataclass(frozen=True)
class LabelScore:
    """One predicted class: its name, probability and index in the head."""

    label: str
    probability: float
    index: int


@dataclass(frozen=True)
class Classification:
    """The top-k predictions for one image, or the reason it could not be read.

    Attributes:
        path: The image file.
        predictions: Best first; empty when ``error`` is set.
        error: One line saying why the file failed, or ``None``.
    """

    path: str
    predictions: tuple[LabelScore, ...] = field(default_factory=tuple)
    error: str | None = None

    @property
    def ok(self) -> bool:
        """Whether the image was classified."""
        return self.error is None

    def to_dict(self) -> dict[str, object]:
        """Return the JSON form used by ``graft classify --json``."""
        data: dict[str, object] = {
            "path": self.path,
            "predictions": [
                {"label": p.label, "probability": p.probability, "index": p.index}
                for p in self.predictions
            ],
        }
        if self.error is not None:
            data["error"] = self.error
        return data


def classify(
    paths: Iterable[str | Path],
    *,
    backbone: str = DEFAULT_BACKBONE,
    top_k: int = 5,
    batch_size: int = 32,
    device: str | None = None,
    allow_download: bool = False,
) -> list[Classification]:
    """Classify images with a pretrained backbone's own head (ImageNet-1k classes).

    Args:
        paths: Image files and folders (walked recursively).
        backbone: A backbone with a classifier head (see ``graft backbones``).
        top_k: How many classes to return per image.
        batch_size: Images per forward pass.
        device: ``auto`` (default), ``cpu`` or ``cuda``.
        allow_download: Allow fetching hub-only weights once.

    Returns:
        One :class:`Classification` per file, in input order (paths that do not exist come
        first); files that fail carry ``error``.

    Raises:
        ConfigError: Bad ``top_k``, or the backbone has no head.
        WeightsError: The backbone has no pretrained weights on this machine.
    """
    return list(
        iter_classify(
            paths,
            backbone=backbone,
            top_k=top_k,
            batch_size=batch_size,
            device=device,
            allow_download=allow_download,
        )
    )


def iter_classify(
    paths: Iterable[str | Path],
    *,
    backbone: str = DEFAULT_BACKBONE,
    top_k: int = 5,
    batch_size: int = 32,
    device: str | None = None,
    allow_download: bool = False,
) -> Iterator[Classification]:
    """Like :func:`classify`, but yield results as batches finish (flat memory on big folders)."""
    if top_k < 1:
        raise ConfigError(f"top-k must be at least 1, got {top_k}")
    if batch_size < 1:
        raise ConfigError(f"batch size must be at least 1, got {batch_size}")
    from graft.data.loading import iter_batches
    from graft.device import resolve_device
    from graft.zoo.model import create_model

    found = collect_images(paths)
    for path, reason in found.missing:
        yield Classification(str(path), error=f"{path}: {reason}")
    if not found.images:
        return
    model = create_model(backbone, pretrained=True, allow_download=allow_download)
    labels = label_names(model.record)
    target = resolve_device(device)
    model = model.to(target)
    k = min(top_k, len(labels))
    pre = model.record.preprocessing
    batches = iter_batches(
        found.images, eval_transform(pre), batch_size=batch_size, draft_size=resize_target(pre)
    )
    for batch in batches:
        results = {
            str(path): Classification(str(path), error=reason) for path, reason in batch.failures
        }
        if batch.paths:
            probabilities = _probabilities(model, batch.pixels.to(target))
            values, indices = probabilities.topk(k, dim=1)
            for path, row_values, row_indices in zip(batch.paths, values, indices, strict=True):
                results[str(path)] = Classification(
                    str(path),
                    tuple(
                        LabelScore(labels[int(i)], float(v), int(i))
                        for v, i in zip(row_values, row_indices, strict=True)
                    ),
                )
        yield from (results[str(path)] for path in batch.files)


def _probabilities(model: GraftModel, pixels: torch.Tensor) -> torch.Tensor:
    import torch

    with torch.inference_mode():
        return model(pixels).float().softmax(dim=1).cpu()


def imagenet_probabilities(
    paths: Sequence[str | Path], *, backbone: str = DEFAULT_BACKBONE, engine: str = "auto"
) -> np.ndarray:
    """The pretrained head's full softmax (``N x 1000``) for image files, on the fast engine.

    Raises:
        ConfigError: The backbone has no ImageNet head.
        DataError: An image cannot be read.
    """
    import torch

    from graft.data.loading import iter_batches
    from graft.zoo.model import create_model

    model = create_model(backbone)
    label_names(model.record)  # raises for a backbone without a head

    class _Softmax(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, pixels: torch.Tensor) -> torch.Tensor:
            return self.model(pixels).float().softmax(dim=1)

    pre = model.record.preprocessing
    runner = create_engine(
        _Softmax().eval(),
        input_size=pre.input_size,
        engine=engine,
        cache_key=f"imagenet-{model.record.weights.sha256}",
    )
    blocks = []
    for batch in iter_batches(
        [Path(p) for p in paths], eval_transform(pre), draft_size=resize_target(pre)
    ):
        if batch.failures:
            raise DataError(batch.failures[0][1])
        blocks.append(runner(batch.pixels.numpy()))
    return np.concatenate(blocks) if blocks else np.zeros((0, len(label_names(model.record))))
