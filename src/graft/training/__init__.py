"""Training strategies: ``linear`` (a classic head on cached features, the default), ``head``,
``finetune`` and ``scratch`` (neural networks trained with augmentation).

Attributes load lazily (the loop needs PyTorch; callbacks do not).

Example:
    >>> from graft.training import STRATEGIES
    >>> STRATEGIES
    ('linear', 'head', 'finetune', 'scratch')
"""

from typing import TYPE_CHECKING

import lazy_loader

__getattr__, __dir__, _ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "api": ["STRATEGIES", "train"],
        "callbacks": ["Callback", "StopTraining"],
        "linear": ["LinearOptions", "RunResult", "train_linear"],
        "neural": ["NeuralOptions", "NeuralResult", "train_neural"],
    },
)

__all__ = [
    "STRATEGIES",
    "Callback",
    "LinearOptions",
    "NeuralOptions",
    "NeuralResult",
    "RunResult",
    "StopTraining",
    "train",
    "train_linear",
    "train_neural",
]

if TYPE_CHECKING:
    from graft.training.api import STRATEGIES, train
    from graft.training.callbacks import Callback, StopTraining
    from graft.training.linear import LinearOptions, RunResult, train_linear
    from graft.training.neural import NeuralOptions, NeuralResult, train_neural
