"""The backbone zoo: records, the registry, weight sources and the model contract.

Attributes load lazily, so looking up a record (``get_backbone``) does not import PyTorch.

Example:
    >>> from graft.zoo import get_backbone
    >>> get_backbone("efficientnet_lite0.in1k").feature_dim
    1280
"""

from typing import TYPE_CHECKING

import lazy_loader

__getattr__, __dir__, _ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "labels": ["imagenet_labels", "label_names"],
        "model": ["GraftModel", "Normalize", "build_network", "create_model"],
        "records": ["BackboneRecord", "Preprocessing", "WeightSource"],
        "registry": [
            "DEFAULT_BACKBONE",
            "architecture_record",
            "availability",
            "describe",
            "get_backbone",
            "list_backbones",
        ],
        "store": ["remove_weights", "stored_records"],
        "user_weights": ["add_weights"],
    },
)

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

if TYPE_CHECKING:
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
    from graft.zoo.store import remove_weights, stored_records
    from graft.zoo.user_weights import add_weights
