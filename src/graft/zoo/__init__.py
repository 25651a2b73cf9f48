"""The backbone zoo: records, the registry, weight sources and the model contract.

Example:
    >>> from graft.zoo import create_model, get_backbone
    >>> get_backbone("efficientnet_lite0.in1k").feature_dim
    1280
"""

from graft.zoo.labels import imagenet_labels, label_names
from graft.zoo.model import GraftModel, Normalize, build_network, create_model
from graft.zoo.records import BackboneRecord, Preprocessing, WeightSource
from graft.zoo.registry import (
    DEFAULT_BACKBONE,
    architecture_record,
    availability,
    describe,
    get_backbone,
    list_backbones,
)
from graft.zoo.store import add_weights, remove_weights, stored_records

__all__ = [
    "DEFAULT_BACKBONE",
    "BackboneRecord",
    "GraftModel",
    "Normalize",
    "Preprocessing",
    "WeightSource",
    "add_weights",
    "architecture_record",
    "availability",
    "build_network",
    "create_model",
    "describe",
    "get_backbone",
    "imagenet_labels",
    "label_names",
    "list_backbones",
    "remove_weights",
    "stored_records",
]
