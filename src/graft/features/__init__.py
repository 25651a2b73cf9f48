"""Feature extraction: layers, the on-disk cache, and feature files (engines: :mod:`graft.engines`).

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
        "dataset": ["DatasetFeatures", "extract_dataset"],
        "extract": [
            "ExtractionResult",
            "FeatureSpec",
            "extract_features",
            "stream_features",
            "calibrate",
        ],
        "precision": ["PrecisionCheck", "check_precision"],
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
    "PrecisionCheck",
    "calibrate",
    "check_precision",
    "default_cache_path",
    "extract_dataset",
    "extract_features",
    "feature_module",
    "list_layers",
    "load_features",
    "save_features",
    "stream_features",
]

if TYPE_CHECKING:
    from graft.features.cache import FeatureCache, default_cache_path
    from graft.features.dataset import DatasetFeatures, extract_dataset
    from graft.features.extract import (
        ExtractionResult,
        FeatureSpec,
        calibrate,
        extract_features,
        stream_features,
    )
    from graft.features.io import FeatureFile, load_features, save_features
    from graft.features.layers import Layer, feature_module, list_layers
    from graft.features.precision import PrecisionCheck, check_precision
