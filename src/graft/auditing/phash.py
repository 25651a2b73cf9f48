"""Perceptual hashes of images, cached by content like the features.

A perceptual hash (the DCT hash of the ``imagehash`` package: 64 bits from the lowest
frequencies of a 32 x 32 grey thumbnail) changes little when an image is resized, re-encoded or
slightly cropped, so a small Hamming distance between two hashes marks a likely copy whatever
backbone is used. Hashes are stored in the feature cache under their own key (a 64-value vector
of 0/1), so a second audit decodes nothing.

Example:
    >>> import tempfile, pathlib
    >>> from PIL import Image
    >>> from skimage import data
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> photo = Image.fromarray(data.astronaut())
    >>> photo.save(root / "a.png"); photo.resize((200, 200)).save(root / "b.jpg", quality=70)
    >>> Image.fromarray(data.coffee()).save(root / "c.png")
    >>> bits, ok = perceptual_hashes([root / "a.png", root / "b.jpg", root / "c.png"])
    >>> hamming(bits[:1], bits[1:]).tolist(), ok.tolist()
    ([[0, 36]], [True, True, True])
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from graft.data.loading import iter_decoded
from graft.data.scan import content_hashes
from graft.features.cache import FeatureCache, default_cache_path

#: Bits per hash (an 8 x 8 DCT block).
HASH_BITS = 64
#: The cache key of the hashes; bump the version if the hashing changes.
PHASH_KEY = "phash-dct8-v1"
#: JPEGs are decoded at reduced size (at least this many pixels a side): the hash looks at
#: 32 x 32 pixels, so a full decode is wasted work.
_DRAFT = 64


def perceptual_hashes(
    paths: Sequence[Path],
    hashes: Sequence[str | None] | None = None,
    *,
    cache: FeatureCache | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Return the 64-bit perceptual hash of every image, computing only what the cache lacks.

    Args:
        paths: Image files.
        hashes: Their content hashes (``None`` for unreadable files), if already scanned.
        cache: The feature cache (default graft's).

    Returns:
        ``(bits, ok)``: ``N x 64`` booleans, and which rows hold a hash (an undecodable file's
        row is all False and not ok).
    """
    files = [Path(p) for p in paths]
    digests = list(hashes) if hashes is not None else content_hashes(files)
    own = cache is None
    store = cache if cache is not None else FeatureCache(default_cache_path())
    try:
        found = store.get(PHASH_KEY, [d for d in digests if d is not None])
        missing: dict[str, Path] = {}
        for file, digest in zip(files, digests, strict=True):
            if digest is not None and digest not in found and digest not in missing:
                missing[digest] = file
        if missing:
            store.register(PHASH_KEY, {"kind": "perceptual hash", "hash": "dct 8x8"}, HASH_BITS)
            computed = _compute(list(missing.values()))
            new = {
                digest: vector
                for digest, vector in zip(missing, computed, strict=True)
                if vector is not None
            }
            store.put(PHASH_KEY, new)
            found.update(new)
    finally:
        if own:
            store.close()
    bits = np.zeros((len(files), HASH_BITS), dtype=bool)
    ok = np.zeros(len(files), dtype=bool)
    for row, digest in enumerate(digests):
        if digest is not None and digest in found:
            bits[row] = found[digest] > 0.5
            ok[row] = True
    return bits, ok


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise Hamming distances between two sets of hashes (``len(a) x len(b)``)."""
    a8, b8 = a.astype(np.uint8), b.astype(np.uint8)
    same = a8 @ b8.T + (1 - a8) @ (1 - b8).T
    return (HASH_BITS - same).astype(np.int16)


def _compute(files: list[Path]) -> list[np.ndarray | None]:
    import imagehash

    from graft.data.images import load_image

    def one(path: Path) -> np.ndarray:
        image = load_image(path, draft_size=_DRAFT)
        return np.asarray(imagehash.phash(image).hash, dtype=np.float32).reshape(-1)

    vectors: list[np.ndarray | None] = []
    for _, results in iter_decoded(files, one, batch_size=64):
        vectors.extend(None if isinstance(result, str) else result for result in results)
    return vectors
