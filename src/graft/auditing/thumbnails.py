"""Small grey thumbnails of images, cached by content like the features, and their hashes.

Copies of an image (resized, re-encoded, slightly cropped) are found by comparing pixels, not
only features: every image is reduced once to a 64 x 64 grey thumbnail (stored in the feature
cache under its own key, 4 KB an image, so a second audit decodes nothing), and the
perceptual hash (the DCT hash of the ``imagehash`` package: 64 bits from the lowest
frequencies) is computed from it.

Example:
    >>> import tempfile, pathlib
    >>> from PIL import Image
    >>> from skimage import data
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> photo = Image.fromarray(data.astronaut())
    >>> photo.save(root / "a.png"); photo.resize((200, 200)).save(root / "b.jpg", quality=70)
    >>> Image.fromarray(data.coffee()).save(root / "c.png")
    >>> thumbs, ok = thumbnails([root / "a.png", root / "b.jpg", root / "c.png"])
    >>> bits = perceptual_hashes(thumbs)
    >>> thumbs.shape, hamming(bits[:1], bits[1:]).tolist(), ok.tolist()
    ((3, 64, 64), [[0, 36]], [True, True, True])
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from graft.data.images import load_image
from graft.data.loading import iter_decoded
from graft.data.scan import content_hashes
from graft.features.cache import FeatureCache, default_cache_path

#: Thumbnail side in pixels (the image is squeezed to a square: copies are squeezed alike).
SIDE = 64
#: Bits per perceptual hash (an 8 x 8 DCT block).
HASH_BITS = 64
#: The cache key of the thumbnails; bump the version if the thumbnails change.
THUMB_KEY = "thumb-grey64-v1"
#: JPEGs are decoded at reduced size (at least this many pixels a side).
_DRAFT = 2 * SIDE


def thumbnails(
    paths: Sequence[Path],
    hashes: Sequence[str | None] | None = None,
    *,
    cache: FeatureCache | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Return every image's grey thumbnail, computing only what the cache lacks.

    Args:
        paths: Image files.
        hashes: Their content hashes (``None`` for unreadable files), if already scanned.
        cache: The feature cache (default graft's).

    Returns:
        ``(thumbs, ok)``: ``N x 64 x 64`` ``uint8``, and which rows hold a thumbnail (an
        undecodable file's row is zeros and not ok).
    """
    files = [Path(p) for p in paths]
    digests = list(hashes) if hashes is not None else content_hashes(files)
    own = cache is None
    store = cache if cache is not None else FeatureCache(default_cache_path())
    try:
        found = store.get(THUMB_KEY, [d for d in digests if d is not None])
        missing: dict[str, Path] = {}
        for file, digest in zip(files, digests, strict=True):
            if digest is not None and digest not in found and digest not in missing:
                missing[digest] = file
        if missing:
            store.register(THUMB_KEY, {"kind": "grey thumbnail", "side": SIDE}, SIDE * SIDE // 4)
            new = {
                digest: thumb.reshape(-1).view(np.float32)  # the bytes, stored as they are
                for digest, thumb in zip(missing, _compute(list(missing.values())), strict=True)
                if thumb is not None
            }
            store.put(THUMB_KEY, new)
            found.update(new)
    finally:
        if own:
            store.close()
    thumbs = np.zeros((len(files), SIDE, SIDE), dtype=np.uint8)
    ok = np.zeros(len(files), dtype=bool)
    for row, digest in enumerate(digests):
        if digest is not None and digest in found:
            thumbs[row] = np.frombuffer(found[digest].tobytes(), dtype=np.uint8).reshape(SIDE, SIDE)
            ok[row] = True
    return thumbs, ok


def perceptual_hashes(thumbs: np.ndarray) -> np.ndarray:
    """The 64-bit DCT perceptual hash of each thumbnail (``N x 64`` booleans)."""
    import imagehash
    from PIL import Image

    return np.array(
        [imagehash.phash(Image.fromarray(thumb)).hash.reshape(-1) for thumb in thumbs],
        dtype=bool,
    ).reshape(len(thumbs), HASH_BITS)


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise Hamming distances between two sets of hashes (``len(a) x len(b)``)."""
    a8, b8 = a.astype(np.uint8), b.astype(np.uint8)
    same = a8 @ b8.T + (1 - a8) @ (1 - b8).T
    return (HASH_BITS - same).astype(np.int16)


def _compute(files: list[Path]) -> list[np.ndarray | None]:
    from PIL import Image

    def one(path: Path) -> np.ndarray:
        image = load_image(path, draft_size=_DRAFT).convert("L")
        return np.asarray(image.resize((SIDE, SIDE), Image.Resampling.BILINEAR, reducing_gap=2.0))

    thumbs: list[np.ndarray | None] = []
    for _, results in iter_decoded(files, one, batch_size=64):
        thumbs.extend(None if isinstance(result, str) else result for result in results)
    return thumbs
