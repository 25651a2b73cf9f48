"""graft: offline-first transfer learning for image classification.

The public API loads lazily: ``import graft`` is quick, and PyTorch is imported only when a
model is built.

Example:
    >>> import graft
    >>> graft.get_backbone(graft.DEFAULT_BACKBONE).name
    'efficientnet_lite0.in1k'
"""

from typing import TYPE_CHECKING

import lazy_loader

__getattr__, __dir__, _ = lazy_loader.attach(
    __name__,
    submodules=["datasets"],
    submod_attrs={
        "auditing": ["AuditResult", "audit"],
        "classification": ["Classification", "LabelScore", "classify"],
        "evaluation": ["evaluate"],
        "predictor": ["Prediction", "Predictor", "load"],
        "api": ["train"],
        "errors": ["ConfigError", "DataError", "GraftError", "NetworkError", "WeightsError"],
        "zoo": [
            "DEFAULT_BACKBONE",
            "BackboneRecord",
            "GraftModel",
            "Preprocessing",
            "add_weights",
            "create_model",
            "get_backbone",
            "list_backbones",
        ],
    },
)

__all__ = [
    "DEFAULT_BACKBONE",
    "AuditResult",
    "BackboneRecord",
    "Classification",
    "ConfigError",
    "DataError",
    "GraftError",
    "GraftModel",
    "LabelScore",
    "NetworkError",
    "Prediction",
    "Predictor",
    "Preprocessing",
    "WeightsError",
    "add_weights",
    "audit",
    "classify",
    "create_model",
    "datasets",
    "evaluate",
    "get_backbone",
    "list_backbones",
    "load",
    "train",
]

if TYPE_CHECKING:
    from graft import datasets
    from graft.api import train
    from graft.auditing import AuditResult, audit
    from graft.classification import Classification, LabelScore, classify
    from graft.errors import ConfigError, DataError, GraftError, NetworkError, WeightsError
    from graft.evaluation import evaluate
    from graft.predictor import Prediction, Predictor, load
    from graft.zoo import (
        DEFAULT_BACKBONE,
        BackboneRecord,
        GraftModel,
        Preprocessing,
        add_weights,
        create_model,
        get_backbone,
        list_backbones,
    )
