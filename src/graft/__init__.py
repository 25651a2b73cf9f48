"""graft: offline-first transfer learning for image classification.

Example:
    >>> import graft
    >>> graft.get_backbone(graft.DEFAULT_BACKBONE).name
    'efficientnet_lite0.in1k'
"""

from graft import datasets
from graft.classify import Classification, LabelScore, classify
from graft.errors import ConfigError, DataError, GraftError, NetworkError, WeightsError
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

__all__ = [
    "DEFAULT_BACKBONE",
    "BackboneRecord",
    "Classification",
    "ConfigError",
    "DataError",
    "GraftError",
    "GraftModel",
    "LabelScore",
    "NetworkError",
    "Preprocessing",
    "WeightsError",
    "add_weights",
    "classify",
    "create_model",
    "datasets",
    "get_backbone",
    "list_backbones",
]
