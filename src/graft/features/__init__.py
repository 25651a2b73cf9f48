"""Feature extraction: layers, engines, the on-disk cache, and feature files.

Example:
    >>> from graft.features import FeatureSpec
    >>> FeatureSpec.create("efficientnet_lite0.in1k", layer="stage3").layer
    'stage3'
"""

from typing import TYPE_CHECKING

import lazy_loader

__getattr__, __dir__, _ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "cache": ["FeatureCache", "default_cache_path"],
        "engines": ["create_engine", "resolve_engine"],
        "extract": [
            "DatasetFeatures",
            "ExtractionResult",
            "FeatureSpec",
            "extract_dataset",
            "extract_features",
        ],
        "io": ["FeatureFile", "load_features", "save_features"],
        "layers": ["Layer", "feature_module", "list_layers"],
    },
)

__all__ = [
    "DatasetFeatures",
    "ExtractionResult",
    "FeatureCache",
    "FeatureFile",
    "FeatureSpec",
    "Layer",
    "create_engine",
    "default_cache_path",
    "extract_dataset",
    "extract_features",
    "feature_module",
    "list_layers",
    "load_features",
    "resolve_engine",
    "save_features",
]

if TYPE_CHECKING:
    from graft.features.cache import FeatureCache, default_cache_path
    from graft.features.engines import create_engine, resolve_engine
    from graft.features.extract import (
        DatasetFeatures,
        ExtractionResult,
        FeatureSpec,
        extract_dataset,
        extract_features,
    )
    from graft.features.io import FeatureFile, load_features, save_features
    from graft.features.layers import Layer, feature_module, list_layers
