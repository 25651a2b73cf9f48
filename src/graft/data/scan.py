"""Knowing each image file by content, cheaply: hashes and header checks, remembered.

Scanning reads a file once: its bytes are hashed (BLAKE2b, the key of the feature cache and of
duplicate detection) and its header is parsed (format and size, without decoding pixels), which
catches non-images and decompression bombs before any heavy work. The result is remembered by
(path, size, modification time), so a rerun over unchanged files reads nothing.

Example:
    >>> import tempfile, pathlib
    >>> from PIL import Image
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> Image.new("RGB", (4, 4)).save(folder / "a.png"); _ = (folder / "b.png").write_text("?")
    >>> index = FileIndex(folder / "index.sqlite")
    >>> infos = index.scan([folder / "a.png", folder / "b.png"])
    >>> [(info.width, info.problem is None) for info in infos]
    [(4, True), (0, False)]
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from graft.config import cache_dir, max_pixels
from graft.data.images import (
    SUPPORTED_FORMATS,
    NotAnImageError,
    open_image,
    open_regular_file,
)
from graft.errors import DataError
from graft.hashing import image_hasher
from graft.sqlite import Transaction, connect, select_in

_CHUNK = 1 << 20  # hashing reads a megabyte at a time, never a whole large file at once

_SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    path TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    content_hash TEXT NOT NULL,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    problem TEXT
) WITHOUT ROWID;
"""


@dataclass(frozen=True)
class FileInfo:
    """What a scan learned about one file.

    Attributes:
        content_hash: BLAKE2b-128 of the bytes, ``None`` if the file could not be read.
        width: Pixel width from the header (0 if not an image).
        height: Pixel height from the header (0 if not an image).
        problem: One line saying why the file is unusable, or ``None``.
    """

    content_hash: str | None
    width: int
    height: int
    problem: str | None


class FileIndex:
    """Remembered scans, in a SQLite file (by default graft's cache database).

    Args:
        path: The database file.
    """

    def __init__(self, path: Path) -> None:
        self._db = connect(path, _SCHEMA)

    def close(self) -> None:
        """Close the database connection."""
        self._db.close()

    def scan(self, paths: Sequence[Path], *, threads: int = 4) -> list[FileInfo]:
        """Return a :class:`FileInfo` per path, reading only new or changed files."""
        stats: dict[str, tuple[int, int]] = {}
        for path in paths:
            try:
                stat = path.stat()
            except OSError:
                continue
            stats[str(path)] = (stat.st_size, stat.st_mtime_ns)
        known = self._lookup(stats)
        todo = [path for path in stats if path not in known]
        with ThreadPoolExecutor(max_workers=threads) as pool:
            fresh = dict(zip(todo, pool.map(_read, todo), strict=True))
        with Transaction(self._db):
            self._db.executemany(
                "INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    (path, *stats[path], info.content_hash, info.width, info.height, info.problem)
                    for path, info in fresh.items()
                    if info.content_hash is not None
                ],
            )
        known.update(fresh)
        limit = max_pixels()
        results = []
        for path in paths:
            info = known.get(str(path))
            if info is None:
                results.append(
                    FileInfo(None, 0, 0, f"{path}: cannot be read (missing or no permission)")
                )
            elif info.problem is None and info.width * info.height > limit:
                results.append(
                    FileInfo(
                        info.content_hash,
                        info.width,
                        info.height,
                        f"{path}: {info.width}x{info.height} exceeds the pixel limit of {limit:,} "
                        "(decompression-bomb guard); raise it with GRAFT_MAX_PIXELS if genuine",
                    )
                )
            else:
                results.append(info)
        return results

    def forget(self, paths: Sequence[Path]) -> None:
        """Drop what was remembered of ``paths``, so the next scan reads them again."""
        with Transaction(self._db):
            self._db.executemany("DELETE FROM files WHERE path = ?", [(str(p),) for p in paths])

    def _lookup(self, stats: dict[str, tuple[int, int]]) -> dict[str, FileInfo]:
        known: dict[str, FileInfo] = {}
        query = (
            "SELECT path, size, mtime_ns, content_hash, width, height, problem FROM files "
            "WHERE path IN ({marks})"
        )
        for path, size, mtime, digest, width, height, problem in select_in(
            self._db, query, list(stats)
        ):
            if stats[path] == (size, mtime):
                known[path] = FileInfo(digest, width, height, problem)
        return known


def _read(path: str) -> FileInfo:
    """Hash a regular file in chunks (at most its size at opening) and parse its header."""
    from PIL import Image

    try:
        fd, size = open_regular_file(Path(path))
    except DataError as err:
        return FileInfo(None, 0, 0, str(err))
    digest = image_hasher()
    with os.fdopen(fd, "rb") as handle:
        left = size
        while left > 0:
            chunk = handle.read(min(_CHUNK, left))
            if not chunk:
                break
            digest.update(chunk)
            left -= len(chunk)
        handle.seek(0)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                with open_image(handle, path) as image:  # the header only
                    width, height = image.size
        except Image.DecompressionBombError as err:
            return FileInfo(digest.hexdigest(), 0, 0, f"{path}: {err} (decompression-bomb guard)")
        except NotAnImageError as err:
            return FileInfo(digest.hexdigest(), 0, 0, str(err))
        except (OSError, ValueError, SyntaxError):
            return FileInfo(
                digest.hexdigest(),
                0,
                0,
                f"{path}: not a readable image (supported: {SUPPORTED_FORMATS})",
            )
    return FileInfo(digest.hexdigest(), width, height, None)


def default_index_path() -> Path:
    """Return the file index database in graft's cache folder."""

    return cache_dir() / "files.sqlite"


def content_hashes(files: Sequence[Path]) -> list[str | None]:
    """Scan ``files`` with graft's file index; ``None`` marks a file that cannot be read."""
    index = FileIndex(default_index_path())
    try:
        return [info.content_hash if info.problem is None else None for info in index.scan(files)]
    finally:
        index.close()
