"""Finding copies: candidates from thumbnails (and features), then a pixel check that aligns them.

A copy of an image that was cropped a little and resized shows the same pixels as a box of the
original. So for each image graft takes its closest images as candidates (the most similar
thumbnails, whole or with a 5 % border cut off, and the most similar features), then checks each
candidate pair in two steps:

1. **Align**: the normalised cross-correlation of one thumbnail with each of 81 boxes of the
   other (each side cut by 0, 4 or 8 %), both at 24 x 24 pixels (from half-size thumbnails),
   in both directions; the best
   box and its correlation (``coarse``) are kept.
2. **Confirm**: the correlation of the two at 64 x 64 pixels, high-pass filtered (each pixel
   minus the mean of its 5 x 5 neighbourhood), in that box refined by 1 % steps (``fine``).
   Distinct images of one kind (two potato leaves on the same background, two centred
   scans) correlate well in coarse shape, but not in their fine detail; a copy does in both.

The thresholds are calibrated with planted copies in bench/audit.py (bench/README.md).

Example:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> from scipy.ndimage import gaussian_filter, zoom
    >>> scene = gaussian_filter(rng.random((80, 80)), 1.5)
    >>> scene = ((scene - scene.min()) / np.ptp(scene) * 255)
    >>> original = zoom(scene, 0.8, order=1)[:64, :64]
    >>> cropped = zoom(scene[4:76, 3:75], 64 / 72, order=1)[:64, :64]
    >>> other = gaussian_filter(rng.random((64, 64)), 1.5) * 255
    >>> thumbs = np.clip(np.stack([original, cropped, other]), 0, 255).astype(np.uint8)
    >>> [(p.first, p.second) for p in copy_pairs(thumbs)]
    [(0, 1)]
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn.functional import avg_pool2d
from torchvision.ops import roi_align

#: Each side of a box is cut by one of these fractions (81 boxes).
CUTS = (0.0, 0.04, 0.08)
#: Side of the aligning correlation, in pixels.
COARSE_SIDE = 24
#: Candidates per image from thumbnails and from features.
NEIGHBOURS = 2
#: A candidate's thumbnail similarity must reach this (planted copies: >= 0.64 on potatoes).
CANDIDATE_MIN = 0.5
#: Alignment correlation a copy reaches (planted: >= 0.92).
COARSE_MIN = 0.85
#: High-pass correlation a copy reaches in its refined box (planted: >= 0.85; distinct leaves
#: of one kind and distinct scans stay below, adjacent slices of one scan reach 0.8-0.9).
FINE_MIN = 0.8
#: Box refinement: pairs whose unrefined correlation reaches ``REFINE_FROM`` (planted: >= 0.29)
#: have each box side moved by ``REFINE_STEP`` while that helps, ``REFINE_ROUNDS`` times.
REFINE_FROM = 0.25
REFINE_STEP = 0.01
REFINE_ROUNDS = 2
#: An image whose ``HUB_RANK``-th nearest thumbnail passes the check as well looks like many
#: others; its pairs are look-alikes (ELPV's defect-free cells: 1,922 of 2,624 images), not
#: copies (planted copies on cats_and_dogs_filtered and potato_disease: none).
HUB_RANK = 20
#: Images whose boxes are cut at once (memory: 81 x 24 x 24 floats each).
_BLOCK = 256

_BOXES = torch.tensor(
    [
        (left, top, 1 - right, 1 - bottom)
        for left, top, right, bottom in itertools.product(CUTS, repeat=4)
    ],
    dtype=torch.float32,
)


@dataclass(frozen=True)
class CopyMatch:
    """A confirmed pair: ``first < second`` are rows; ``coarse`` and ``fine`` correlations;
    ``generic`` when either image looks like many others (see :func:`_generic`)."""

    first: int
    second: int
    coarse: float
    fine: float
    generic: bool = False


def copy_pairs(
    thumbs: np.ndarray, features: np.ndarray | None = None, groups: np.ndarray | None = None
) -> list[CopyMatch]:
    """Return the pairs of thumbnails that are copies of each other.

    Args:
        thumbs: ``N x S x S`` ``uint8`` grey thumbnails.
        features: ``N x D`` unit-length features whose nearest neighbours are candidates too.
        groups: If given, only pairs of rows in different groups (splits) are checked.
    """
    n = len(thumbs)
    if n < 2:
        return []
    side = thumbs.shape[-1]
    images = torch.from_numpy(np.ascontiguousarray(thumbs)).float().unsqueeze(1)
    # the aligning views are cut from half-size thumbnails, one sample a pixel: 4x cheaper
    # than sampling the full ones, and the averaging keeps them from aliasing
    small = avg_pool2d(images, 2)
    whole = _cut(small, torch.arange(n), torch.tensor([[0.0, 0.0, 1.0, 1.0]]))[:, 0]
    inner = _cut(small, torch.arange(n), torch.tensor([[0.05, 0.05, 0.95, 0.95]]))[:, 0]
    candidates = _candidates(whole, inner, features)
    if not candidates:
        return []
    pairs = np.array(sorted(candidates), dtype=np.int64)
    if groups is not None:
        pairs = pairs[groups[pairs[:, 0]] != groups[pairs[:, 1]]]
        if not len(pairs):
            return []
    coarse, boxes, flipped = _align(small, whole, pairs)
    keep = coarse >= COARSE_MIN
    pairs, coarse, boxes, flipped = pairs[keep], coarse[keep], boxes[keep], flipped[keep]
    if not len(pairs):
        return []
    fine = _confirm(images, pairs, boxes, flipped, side)
    confirmed = fine >= FINE_MIN
    pairs, coarse, fine = pairs[confirmed], coarse[confirmed], fine[confirmed]
    generic = _generic(images, small, whole, inner, np.unique(pairs))
    return [
        CopyMatch(int(a), int(b), float(c), float(f), a in generic or b in generic)
        for (a, b), c, f in zip(pairs.tolist(), coarse, fine, strict=True)
    ]


def _generic(
    images: torch.Tensor,
    small: torch.Tensor,
    whole: torch.Tensor,
    inner: torch.Tensor,
    rows: np.ndarray,
) -> set[int]:
    """The rows whose ``HUB_RANK``-th nearest thumbnail passes the copy check too.

    Such an image looks like many others (a defect-free solar cell among hundreds, a slice
    among its scan's neighbours): its pairs are look-alikes, not copies of one file.
    """
    n = len(whole)
    if n <= HUB_RANK or not len(rows):
        return set()
    chosen = torch.from_numpy(rows)
    similarity = torch.maximum(
        torch.maximum(whole[chosen] @ whole.T, whole[chosen] @ inner.T), inner[chosen] @ whole.T
    )
    similarity[torch.arange(len(rows)), chosen] = -2.0
    far = similarity.topk(HUB_RANK, dim=1).indices[:, -1].numpy()
    pairs = np.stack([rows, far], axis=1)
    coarse, boxes, flipped = _align(small, whole, pairs)
    fine = np.full(len(pairs), -1.0)
    close = coarse >= COARSE_MIN
    if close.any():
        fine[close] = _confirm(images, pairs[close], boxes[close], flipped[close], images.shape[-1])
    return {int(row) for row, value in zip(rows, fine, strict=True) if value >= FINE_MIN}


def _normalise(x: torch.Tensor) -> torch.Tensor:
    x = x - x.mean(-1, keepdim=True)
    return x / x.norm(dim=-1, keepdim=True).clamp_min(1e-6)


def _cut(images: torch.Tensor, rows: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """Normalised ``COARSE_SIDE``-pixel views of ``boxes`` (fractions) of each image in rows."""
    count, side = len(boxes), images.shape[-1]
    index = rows.repeat_interleave(count).float().unsqueeze(1)
    rois = torch.cat([index, boxes.repeat(len(rows), 1) * side], dim=1)
    views = roi_align(images, rois, (COARSE_SIDE, COARSE_SIDE), sampling_ratio=1, aligned=True)
    return _normalise(views.reshape(len(rows), count, -1))


def _candidates(
    whole: torch.Tensor, inner: torch.Tensor, features: np.ndarray | None
) -> set[tuple[int, int]]:
    n = len(whole)
    k = min(NEIGHBOURS, n - 1)
    unit = torch.from_numpy(features).float() if features is not None else None
    found: set[tuple[int, int]] = set()
    for start in range(0, n, _BLOCK * 4):
        rows = slice(start, min(n, start + _BLOCK * 4))
        similarity = torch.maximum(
            torch.maximum(whole[rows] @ whole.T, whole[rows] @ inner.T), inner[rows] @ whole.T
        )
        scores = [similarity] + ([unit[rows] @ unit.T] if unit is not None else [])
        for score in scores:
            diagonal = torch.arange(rows.start, rows.stop)
            score[diagonal - rows.start, diagonal] = -2.0
            top = score.topk(k, dim=1)
            for offset, (values, columns) in enumerate(zip(top.values, top.indices, strict=True)):
                row = rows.start + offset
                for value, column in zip(values.tolist(), columns.tolist(), strict=True):
                    if value >= CANDIDATE_MIN:
                        found.add((min(row, column), max(row, column)))
    return found


def _align(
    images: torch.Tensor, whole: torch.Tensor, pairs: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Best box correlation of each pair, either image being the one cut."""
    best = np.full(len(pairs), -1.0)
    box = np.zeros(len(pairs), dtype=np.int64)
    flipped = np.zeros(len(pairs), dtype=bool)
    needed = np.unique(pairs)
    for start in range(0, len(needed), _BLOCK):
        block = needed[start : start + _BLOCK]
        views = _cut(images, torch.from_numpy(block), _BOXES)
        for column in (0, 1):
            chosen = np.flatnonzero(np.isin(pairs[:, column], block))
            if not len(chosen):
                continue
            # each image of the block against its few partners: one batched product, with
            # no copy of the 81 views per pair
            position = np.searchsorted(block, pairs[chosen, column])
            order = np.argsort(position, kind="stable")
            chosen, position = chosen[order], position[order]
            counts = np.bincount(position, minlength=len(block))
            slot = np.arange(len(position)) - np.repeat(np.cumsum(counts) - counts, counts)
            partners = np.zeros((len(block), int(counts.max())), dtype=np.int64)
            partners[position, slot] = pairs[chosen, 1 - column]
            products = torch.bmm(views, whole[torch.from_numpy(partners)].transpose(1, 2))
            scores = products.max(dim=1)
            values = scores.values.numpy()[position, slot]
            arg = scores.indices.numpy()[position, slot]
            better = values > best[chosen]
            best[chosen[better]] = values[better]
            box[chosen[better]] = arg[better]
            flipped[chosen[better]] = column == 1
    return best, box, flipped


def _confirm(
    images: torch.Tensor, pairs: np.ndarray, boxes: np.ndarray, flipped: np.ndarray, side: int
) -> np.ndarray:
    """High-pass correlation of each pair at full thumbnail size, its box refined.

    The aligning boxes step by 4 % of a side, a pixel and more off at 64 pixels, which is
    enough to blur fine detail apart; so each side of the box moves by ``REFINE_STEP`` while
    that raises the correlation (``REFINE_ROUNDS`` rounds), for pairs already above
    ``REFINE_FROM``.
    """
    cut_rows = torch.from_numpy(np.where(flipped, pairs[:, 1], pairs[:, 0])).float().unsqueeze(1)
    whole_rows = torch.from_numpy(np.where(flipped, pairs[:, 0], pairs[:, 1]))
    target = _normalise(_high_pass(images[whole_rows]).flatten(1))

    def correlation(box: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        # filtered after the cut is resampled (filtering first, once, is faster but lost 3 of
        # 150 planted copies: the resampling blurs the detail differently)
        rois = torch.cat([cut_rows[rows], box * side], dim=1)
        cut = roi_align(images, rois, (side, side), sampling_ratio=1, aligned=True)
        return (_normalise(_high_pass(cut).flatten(1)) * target[rows]).sum(dim=1)

    box = _BOXES[torch.from_numpy(boxes)].clone()
    every = torch.arange(len(pairs))
    score = correlation(box, every)
    for _ in range(REFINE_ROUNDS):
        for edge in range(4):
            for step in (-REFINE_STEP, REFINE_STEP):
                rows = every[(score >= REFINE_FROM) & (score < FINE_MIN)]  # others are decided
                moved = box[rows].clone()
                moved[:, edge] += step
                tried = correlation(moved, rows)
                better = tried > score[rows]
                box[rows[better]] = moved[better]
                score[rows[better]] = tried[better]
    return score.numpy()


def _high_pass(x: torch.Tensor) -> torch.Tensor:
    return x - avg_pool2d(x, 5, stride=1, padding=2, count_include_pad=False)
