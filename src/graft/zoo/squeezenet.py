"""SqueezeNet 1.1 with the timm model contract, and the safe reader of its embedded weights.

The weights ship inside the ``ndf`` package as a pickle of numpy arrays (Keras layout: kernels
are ``(height, width, in, out)``). A pickle can run arbitrary code when loaded, so
:func:`read_ndf_pickle` uses an unpickler that admits the three numpy callables an array needs
and refuses everything else.

Example:
    >>> import torch
    >>> net = SqueezeNet(num_classes=1000)
    >>> net.forward_head(net.forward_features(torch.zeros(1, 3, 64, 64)), pre_logits=True).shape
    torch.Size([1, 512])
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch
from torch import nn
from torchvision.models import squeezenet1_1

from graft.errors import WeightsError

#: The array constructor numpy's pickles call (``numpy.core`` in numpy 1, ``numpy._core`` in 2).
_RECONSTRUCT = np.zeros(0).__reduce__()[0]

#: The only globals a pickle of plain numpy arrays needs; every other global is refused.
_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}

#: Layer names in the pickle, in the order of torchvision's ``squeezenet1_1`` state dict.
NDF_LAYER_ORDER: tuple[str, ...] = (
    "conv1",
    *(f"fire{i}/{part}" for i in range(2, 10) for part in ("squeeze1x1", "expand1x1", "expand3x3")),
    "conv10",
)


class _NumpyOnlyUnpickler(pickle.Unpickler):
    def __init__(self, file: BinaryIO, source: str) -> None:
        super().__init__(file)
        self._source = source

    def find_class(self, module: str, name: str) -> Any:
        allowed = _ALLOWED_GLOBALS.get((module, name))
        if allowed is None:
            raise WeightsError(
                f"{self._source}: refusing to unpickle {module}.{name}; graft only loads pickles "
                "of plain numpy arrays (this file may be tampered with: reinstall the package "
                "that ships it)"
            )
        return allowed


def read_ndf_pickle(path: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Read ``squeezenet_weights.pkl`` safely: numpy arrays only, anything else is refused.

    Args:
        path: The pickle file.

    Returns:
        Layer name to ``(kernel HWIO, bias)`` arrays.

    Raises:
        WeightsError: The pickle holds anything but numpy arrays, or is not the expected layout.

    Example:
        >>> from graft.zoo.embedded import embedded_file
        >>> weights = read_ndf_pickle(embedded_file("squeezenet1_1.in1k"))
        >>> weights["conv1"][0].shape
        (3, 3, 3, 64)
    """
    with open(path, "rb") as handle:
        try:
            data = _NumpyOnlyUnpickler(handle, str(path)).load()
        except WeightsError:
            raise
        except Exception as err:  # a broken pickle can raise almost anything
            raise WeightsError(f"{path}: not a readable weight pickle ({err})") from err
    if not isinstance(data, dict) or any(name not in data for name in NDF_LAYER_ORDER):
        raise WeightsError(
            f"{path}: expected a dict with SqueezeNet 1.1 layers {NDF_LAYER_ORDER[0]}..."
            f"{NDF_LAYER_ORDER[-1]}; reinstall the 'ndf' package"
        )
    return {
        name: (np.asarray(data[name][0]), np.asarray(data[name][1])) for name in NDF_LAYER_ORDER
    }


def ndf_to_state_dict(weights: dict[str, tuple[np.ndarray, np.ndarray]]) -> list[torch.Tensor]:
    """Return the tensors in torchvision order, kernels transposed from HWIO to OIHW."""
    tensors: list[torch.Tensor] = []
    for name in NDF_LAYER_ORDER:
        kernel, bias = weights[name]
        tensors.append(torch.from_numpy(np.ascontiguousarray(kernel.transpose(3, 2, 0, 1))))
        tensors.append(torch.from_numpy(np.ascontiguousarray(bias)))
    return tensors


class _PooledLinear(nn.Module):
    """A new head: global average pooling, dropout, then a linear layer."""

    def __init__(self, in_features: int, num_classes: int, drop_rate: float) -> None:
        super().__init__()
        self.drop = nn.Dropout(drop_rate)
        self.fc = nn.Linear(in_features, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.drop(x.mean((2, 3))))


class SqueezeNet(nn.Module):
    """torchvision's SqueezeNet 1.1 exposing timm's ``forward_features`` / ``forward_head``.

    The original ImageNet head (dropout, 1x1 convolution, ReLU, average pooling) is kept as it is
    so the embedded weights reproduce their predictions; :meth:`reset_classifier` replaces it
    with the usual pooled linear head.

    Args:
        num_classes: Outputs of the head; ``0`` for a feature extractor without a head.
        drop_rate: Dropout before the classifier.
    """

    num_features = 512

    def __init__(self, num_classes: int = 1000, drop_rate: float = 0.5) -> None:
        super().__init__()
        reference = squeezenet1_1(num_classes=max(num_classes, 1), dropout=drop_rate)
        self.features = reference.features
        self.drop_rate = drop_rate
        self.num_classes = num_classes
        self.classifier: nn.Module = reference.classifier if num_classes > 0 else nn.Identity()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Return the last feature map, ``(N, 512, H/16, W/16)``."""
        out: torch.Tensor = self.features(x)
        return out

    #: Index in ``features`` after which each feature-extraction stage ends (conv1, fire3,
    #: fire5, fire9): the ``stageN`` layers of ``graft extract``.
    STAGE_ENDS = (1, 4, 7, 12)
    #: The modules in ``features`` that hold parameters: the stem, then each fire module.
    _PARAMETRIC = (0, 3, 4, 6, 7, 9, 10, 11, 12)

    @classmethod
    def stage_of(cls, index: int) -> int:
        """Return the fine-tuning stage (0 = stem) that ``features[index]`` belongs to."""
        return sum(1 for start in cls._PARAMETRIC[1:] if start <= index)

    def group_matcher(self, coarse: bool = False) -> dict[str, str]:
        """timm's parameter grouping: the stem, then one group per fire module."""
        return {"stem": r"^features\.0\.", "blocks": r"^features\.(\d+)\."}

    def stage_output(self, x: torch.Tensor, stage: int) -> torch.Tensor:
        """Return the feature map at the end of ``stage`` (0-based, see ``STAGE_ENDS``)."""
        end = self.STAGE_ENDS[stage]
        for index, module in enumerate(self.features):
            x = module(x)
            if index == end:
                break
        return x

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Return pooled features (``pre_logits``) or class scores from a feature map."""
        if pre_logits or self.num_classes == 0:
            return x.mean((2, 3))
        return torch.flatten(self.classifier(x), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return class scores (or pooled features when there is no head)."""
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        """Return the head module."""
        return self.classifier

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the head with a pooled linear layer of ``num_classes`` outputs."""
        self.num_classes = num_classes
        self.classifier = (
            _PooledLinear(self.num_features, num_classes, self.drop_rate)
            if num_classes > 0
            else nn.Identity()
        )
