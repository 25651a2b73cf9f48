"""A trained run as one network: RGB uint8 pixels in, logits out, whatever its strategy.

:func:`graft.models.load_run_model` builds it from a run directory: the fine-tuned network of a
neural run, or the backbones' feature extractors under the fitted classic head of a linear run
(:class:`graft.heads.HeadModule`). The predictor, export, serving, Grad-CAM and the comparison
all take this one module; its :attr:`RunModel.preprocessing` says how images become its input.

Example:
    >>> import torch
    >>> from graft.models import build_transfer_model
    >>> network = build_transfer_model("efficientnet_lite0.in1k", num_classes=2)
    >>> model = RunModel(network, classes=["cat", "dog"],
    ...                  preprocessing=network.record.preprocessing, strategy="head")
    >>> model(torch.zeros(1, 3, 224, 224, dtype=torch.uint8)).shape
    torch.Size([1, 2])
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from graft.heads import HeadModule
from graft.zoo.records import Preprocessing


def resize_matrix(size_in: int, size_out: int) -> torch.Tensor:
    """The ``size_in x size_out`` matrix of an antialiased bilinear resize along one axis.

    ``x @ M`` resizes the last axis of ``x`` as ``F.interpolate(..., mode="bilinear",
    antialias=True)`` does (which, like PIL's, widens its filter when shrinking). As a matrix
    product it exports to ONNX and OpenVINO, whose exporters lack the antialiased resize.

    Example:
        >>> resize_matrix(4, 2).sum(0)
        tensor([1., 1.])
    """
    identity = torch.eye(size_in)[None, None]
    rows = torch.nn.functional.interpolate(
        identity, size=(size_in, size_out), mode="bilinear", antialias=True, align_corners=False
    )
    return rows[0, 0]


class Resize(nn.Module):
    """Resizes ``N x C x S x S`` pixels to ``N x C x size x size`` (antialiased bilinear), as
    float pixel values.

    Args:
        size_in: The side of the input.
        size_out: The side of the output.
    """

    def __init__(self, size_in: int, size_out: int) -> None:
        super().__init__()
        self.size_in, self.size_out = size_in, size_out
        self.register_buffer("matrix", resize_matrix(size_in, size_out), persistent=False)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        matrix = self.get_buffer("matrix")
        return matrix.T @ pixels.float() @ matrix

    def extra_repr(self) -> str:
        return f"{self.size_in} -> {self.size_out}"


class ProbeNetwork(nn.Module):
    """A linear run's network: its backbones' features, concatenated, under the classic head.

    Its input is one ``N x 3 x S x S`` image, ``S`` the largest of the backbones' input sizes;
    a backbone that takes a smaller size gets the image resized inside the network
    (:class:`Resize`; the predictor instead resizes each image once per backbone, so the two
    agree closely but not exactly when the sizes differ).

    Args:
        extractors: One module per backbone, uint8 pixels to ``N x D_i`` features.
        head: The fitted head, features to logits.
        input_sizes: Each extractor's input side; all taken as the input's when omitted.
    """

    def __init__(
        self,
        extractors: Sequence[nn.Module],
        head: HeadModule,
        input_sizes: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        self.extractors = nn.ModuleList(extractors)
        self.head = head
        sizes: list[int | None] = [*input_sizes] if input_sizes else [None] * len(extractors)
        self.input_size = max((size for size in sizes if size), default=None)
        self.resizes = nn.ModuleList(
            Resize(self.input_size, size)
            if size and self.input_size and size != self.input_size
            else nn.Identity()
            for size in sizes
        )

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """``N x classes`` logits of ``N x 3 x S x S`` pixels."""
        return self.head(self.features(pixels))

    def features(self, pixels: torch.Tensor) -> torch.Tensor:
        """The concatenated features the head was fitted on."""
        return torch.cat(
            [
                extract(resize(pixels)).float()
                for extract, resize in zip(self.extractors, self.resizes, strict=True)
            ],
            dim=1,
        )


class RunModel(nn.Module):
    """A run's whole classifier: ``N x 3 x S x S`` RGB uint8 pixels in, ``N x classes`` float32
    logits out (softmax gives the probabilities :meth:`graft.predictor.Predictor.predict`
    reports).

    Args:
        network: A :class:`graft.models.TransferModel` (neural runs) or a
            :class:`ProbeNetwork` (linear runs).
        classes: Class names, in logit order.
        preprocessing: How an image becomes the input (resize, crop to ``S``); the network
            normalises the pixels itself.
        strategy: The run's strategy.
    """

    def __init__(
        self,
        network: nn.Module,
        *,
        classes: Sequence[str],
        preprocessing: Preprocessing,
        strategy: str,
    ) -> None:
        super().__init__()
        self.network = network
        self.classes = list(classes)
        self.preprocessing = preprocessing
        self.strategy = strategy

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """``N x classes`` logits."""
        return self.network(pixels).float()


class Probabilities(nn.Module):
    """A model's logits as probabilities (what the inference engines and exports run).

    Args:
        model: Any module returning logits.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """``N x classes`` probabilities, float32."""
        return torch.softmax(self.model(pixels).float(), dim=1)
