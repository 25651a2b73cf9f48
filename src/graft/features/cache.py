"""The persistent feature cache: one SQLite database of feature vectors.

Rows are keyed by (feature key, image content hash). The feature key hashes everything that
changes a feature vector: backbone, weight file hash, preprocessing, layer, pooling, precision
and graft's decode pipeline version. So a second run over the same images runs no forward pass,
a changed image (new content hash) is recomputed alone, and a renamed or copied image is found
by its content.

SQLite in WAL mode gives the safety the cache needs: each batch is committed in one
transaction, so a run killed at any moment leaves every finished batch usable and no half row;
two runs at once take turns at the write lock (``busy_timeout``) instead of corrupting anything.

Example:
    >>> import tempfile, pathlib, numpy as np
    >>> cache = FeatureCache(pathlib.Path(tempfile.mkdtemp()) / "features.sqlite")
    >>> cache.put("key", {"abc": np.ones(3, np.float32)})
    >>> cache.get("key", ["abc", "missing"])["abc"].tolist()
    [1.0, 1.0, 1.0]
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from graft.config import cache_dir
from graft.sqlite import Transaction, connect, select_in

_SCHEMA = """
CREATE TABLE IF NOT EXISTS keys (
    feature_key TEXT PRIMARY KEY,
    description TEXT NOT NULL,
    dim INTEGER NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS features (
    feature_key TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    vector BLOB NOT NULL,
    PRIMARY KEY (feature_key, content_hash)
) WITHOUT ROWID;
"""


@dataclass(frozen=True)
class CacheEntry:
    """What ``graft cache info`` shows for one feature key."""

    feature_key: str
    description: dict[str, Any]
    dim: int
    count: int


class FeatureCache:
    """Feature vectors by (feature key, content hash).

    Args:
        path: The SQLite file (created with its folder if missing).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = connect(path, _SCHEMA)

    def close(self) -> None:
        """Close the database connection."""
        self._db.close()

    def __enter__(self) -> FeatureCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def register(self, feature_key: str, description: Mapping[str, Any], dim: int) -> None:
        """Record what a feature key means (shown by ``graft cache info``)."""
        self._db.execute(
            "INSERT OR IGNORE INTO keys VALUES (?, ?, ?, ?)",
            (feature_key, json.dumps(description, sort_keys=True), dim, time.time()),
        )

    def get(self, feature_key: str, hashes: Sequence[str]) -> dict[str, np.ndarray]:
        """Return the cached vectors among ``hashes`` (missing ones are simply absent)."""
        query = (
            "SELECT content_hash, vector FROM features WHERE feature_key = ? "
            "AND content_hash IN ({marks})"
        )
        rows = select_in(self._db, query, list(dict.fromkeys(hashes)), before=(feature_key,))
        return {content_hash: np.frombuffer(blob, dtype=np.float32) for content_hash, blob in rows}

    def count(self, feature_key: str, hashes: Sequence[str]) -> int:
        """How many of ``hashes`` have a cached vector under ``feature_key``."""
        query = "SELECT COUNT(*) FROM features WHERE feature_key = ? AND content_hash IN ({marks})"
        rows = select_in(self._db, query, list(dict.fromkeys(hashes)), before=(feature_key,))
        return sum(int(count) for (count,) in rows)

    def put(self, feature_key: str, vectors: Mapping[str, np.ndarray]) -> None:
        """Store vectors in one transaction (all or nothing)."""
        rows = [
            (feature_key, content_hash, np.ascontiguousarray(vector, dtype=np.float32).tobytes())
            for content_hash, vector in vectors.items()
        ]
        with self._transaction():
            self._db.executemany("INSERT OR REPLACE INTO features VALUES (?, ?, ?)", rows)

    def entries(self) -> list[CacheEntry]:
        """Return one entry per feature key, with its vector count."""
        counts = dict(
            self._db.execute("SELECT feature_key, COUNT(*) FROM features GROUP BY feature_key")
        )
        return [
            CacheEntry(key, json.loads(description), dim, int(counts.get(key, 0)))
            for key, description, dim in self._db.execute(
                "SELECT feature_key, description, dim FROM keys ORDER BY created"
            )
        ]

    def clear(self) -> int:
        """Delete every cached vector; return how many were removed."""
        (count,) = self._db.execute("SELECT COUNT(*) FROM features").fetchone()
        with self._transaction():
            self._db.execute("DELETE FROM features")
            self._db.execute("DELETE FROM keys")
        self._db.execute("VACUUM")
        return int(count)

    def _transaction(self) -> Transaction:
        return Transaction(self._db)


def default_cache_path() -> Path:
    """Return the cache database in graft's cache folder (``GRAFT_CACHE_DIR`` moves it)."""

    return cache_dir() / "features.sqlite"
