"""Content hashes of files: SHA-256 for weight files, BLAKE2b for images.

Weight files are checked against published SHA-256 digests. Images are identified by a 128-bit
BLAKE2b digest of their bytes (about three times faster than SHA-256 here): it keys the feature
cache and finds exact duplicates across splits.

Example:
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "x"
    >>> _ = p.write_bytes(b"graft")
    >>> sha256_file(p)[:12], content_hash(p)[:12]
    ('4e762e9903ee', '4227bc05e5ac')
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from graft.errors import WeightsError

_CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    """Return the hex SHA-256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def image_hasher() -> hashlib.blake2b:
    """A fresh hasher of an image's identity: 128-bit BLAKE2b (feed it, then ``hexdigest``)."""
    return hashlib.blake2b(digest_size=16)


def bytes_content_hash(data: bytes | bytearray) -> str:
    """The identity of an image held in memory; equals :func:`content_hash` of its file.

    Example:
        >>> bytes_content_hash(b"graft")[:12]
        '4227bc05e5ac'
    """
    digest = image_hasher()
    digest.update(data)
    return digest.hexdigest()


def content_hash(path: Path) -> str:
    """Return the hex 128-bit BLAKE2b digest of a file's bytes (the image's identity)."""
    digest = image_hasher()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_sha256(path: Path, expected: str | None, *, hint: str) -> None:
    """Raise :class:`WeightsError` unless ``path`` hashes to ``expected`` (``None``: no check)."""
    if expected is None:
        return
    actual = sha256_file(path)
    if actual != expected:
        raise WeightsError(
            f"{path}: SHA-256 is {actual[:16]}..., expected {expected[:16]}...; the file is "
            f"corrupt or was replaced ({hint})"
        )
