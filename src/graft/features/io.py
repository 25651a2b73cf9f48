"""Feature files: features with their paths, labels and splits, in one safe file.

The format is safetensors (no code execution on load): one tensor ``features`` (``N x D``,
float32), and a JSON document in the header metadata under ``graft_features`` with ``paths``,
``labels``, ``splits`` (``null`` where none), ``classes`` and ``specs`` (backbone, weight hash,
preprocessing, layer, pooling per feature block). Readable without graft::

    from safetensors.numpy import load_file
    from safetensors import safe_open
    features = load_file("features.safetensors")["features"]
    meta = json.loads(safe_open("features.safetensors", "np").metadata()["graft_features"])

Example:
    >>> import tempfile, pathlib, numpy as np
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "f.safetensors"
    >>> save_features(path, np.ones((1, 2), np.float32), ["a.png"], ["cat"], [None], [])
    >>> load_features(path).labels
    ['cat']
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from graft.errors import DataError
from graft.fileio import atomic_path

_KEY = "graft_features"


@dataclass
class FeatureFile:
    """The content of a feature file."""

    features: np.ndarray
    paths: list[str]
    labels: list[str]
    splits: list[str | None]
    specs: list[dict[str, Any]]

    @property
    def classes(self) -> list[str]:
        """Sorted class names."""
        return sorted(set(self.labels))


def save_features(
    path: Path,
    features: np.ndarray,
    paths: Sequence[str | Path],
    labels: Sequence[str],
    splits: Sequence[str | None],
    specs: Sequence[dict[str, Any]],
) -> None:
    """Write a feature file atomically (see the module docstring for the format)."""
    from safetensors.numpy import save_file

    meta = {
        "paths": [str(p) for p in paths],
        "labels": list(labels),
        "splits": list(splits),
        "classes": sorted(set(labels)),
        "specs": list(specs),
    }
    with atomic_path(path) as tmp:
        save_file(
            {"features": np.ascontiguousarray(features, dtype=np.float32)},
            str(tmp),
            metadata={_KEY: json.dumps(meta)},
        )


def load_features(path: Path) -> FeatureFile:
    """Read a feature file.

    Raises:
        DataError: Missing file or not a graft feature file.
    """
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="numpy") as handle:
            meta = json.loads((handle.metadata() or {})[_KEY])
            features = handle.get_tensor("features")
    except (OSError, KeyError, ValueError, SafetensorError) as err:
        raise DataError(f"{path}: not a graft feature file ({err})") from err
    return FeatureFile(features, meta["paths"], meta["labels"], meta["splits"], meta["specs"])
