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


class ProbeNetwork(nn.Module):
    """A linear run's network: its backbones' features, concatenated, under the classic head.

    Args:
        extractors: One module per backbone, uint8 pixels to ``N x D_i`` features.
        head: The fitted head, features to logits.
    """

    def __init__(self, extractors: Sequence[nn.Module], head: HeadModule) -> None:
        super().__init__()
        self.extractors = nn.ModuleList(extractors)
        self.head = head

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """``N x classes`` logits of ``N x 3 x S x S`` pixels."""
        return self.head(self.features(pixels))

    def features(self, pixels: torch.Tensor) -> torch.Tensor:
        """The concatenated features the head was fitted on."""
        return torch.cat([extract(pixels).float() for extract in self.extractors], dim=1)


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
