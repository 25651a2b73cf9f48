"""The cheap part of the audit that every ``graft train`` runs: near-copies across splits.

An evaluation image that is a resized or re-encoded copy of a training image inflates the
score as an identical file does, but its content hash differs, so the validation pass cannot
see it. After the data is validated, :func:`check_near_duplicates` compares every image's
cached grey thumbnail (and, for the linear probe, the features it has just computed) across
splits (:mod:`graft.auditing.copies`), warns with the count and, with ``--dedupe near``,
drops the later copy of each pair.

Example:
    >>> from graft.data.prepare import DataOptions, prepare
    >>> report = prepare("data/")  # doctest: +SKIP
    >>> keep = check_near_duplicates(report, dedupe="near")  # doctest: +SKIP
    >>> report.near_duplicates["dropped"]  # doctest: +SKIP
    0
"""

from __future__ import annotations

from typing import Any

import numpy as np

from graft.auditing.findings import near_duplicates
from graft.auditing.thumbnails import thumbnails
from graft.data.validate import DataReport

#: Pairs listed in ``config.json`` (the count is always complete).
LISTED = 50


def check_near_duplicates(
    report: DataReport, *, features: np.ndarray | None = None, dedupe: str = "none"
) -> np.ndarray:
    """Find near-copies across splits; record them in ``report``; return the rows to keep.

    Args:
        report: The validated data; its ``warnings``, ``near_duplicates`` and, with
            ``dedupe="near"``, ``images``/``hashes``/``dropped`` are updated.
        features: Features of ``report.images.samples`` (rows of unreadable images may be
            NaN), whose nearest neighbours are candidates too, or ``None`` (thumbnails alone).
        dedupe: ``near`` drops the later image of each pair (validation before test, both
            after train); anything else only reports.

    Returns:
        A boolean mask over the samples as they were on entry: False for dropped rows.
    """
    return apply_near_copies(report, find_near_copies(report, features=features, dedupe=dedupe))


def find_near_copies(
    report: DataReport, *, features: np.ndarray | None = None, dedupe: str = "none"
) -> dict[str, Any]:
    """What :func:`check_near_duplicates` records, without changing ``report``.

    Distributed training computes this on one process and sends it to the others, so every
    process drops the same images.
    """
    samples = report.images.samples
    if len({sample.split for sample in samples}) < 2:
        return {"pairs": 0, "dropped": 0, "method": "none (one split)", "drop_rows": []}
    thumbs, usable = thumbnails([s.path for s in samples], report.hashes)
    if features is not None:
        usable &= np.isfinite(features).all(axis=1)
    rows = np.flatnonzero(usable)
    pairs = near_duplicates(
        features[rows] if features is not None else None,
        thumbs[rows],
        [samples[row].split for row in rows],
        content=[report.hashes[row] for row in rows],
        within=False,
    )
    # identical files: the validation pass; look-alikes (images like many others) stay
    alike = sum(pair.look_alike for pair in pairs)
    pairs = [pair for pair in pairs if not pair.exact and not pair.look_alike]
    method = "thumbnails and features" if features is not None else "thumbnails"
    drop_rows = sorted({int(rows[pair.second]) for pair in pairs}) if dedupe == "near" else []
    found: dict[str, Any] = {
        "pairs": len(pairs),
        "look_alike_pairs": alike,
        "dropped": len(drop_rows),
        "method": method,
        "listed": [
            {
                "first": str(samples[rows[p.first]].path),
                "second": str(samples[rows[p.second]].path),
                "similarity": p.similarity,
                "cosine": round(p.cosine, 4) if features is not None else None,
            }
            for p in pairs[:LISTED]
        ],
        "drop_rows": drop_rows,
    }
    if pairs:
        action = (
            f"dropped the later copy of each ({len(drop_rows)} images, --dedupe near)"
            if dedupe == "near"
            else "they leak evaluation images into training: check them with graft audit, or "
            "pass --dedupe near to drop the later copy"
        )
        found["warning"] = (
            f"{len(pairs)} image pairs across splits look like near-copies ({method}); {action}"
        )
    return found


def apply_near_copies(report: DataReport, found: dict[str, Any]) -> np.ndarray:
    """Record ``found`` (:func:`find_near_copies`) in ``report`` and drop its rows."""
    samples = report.images.samples
    keep = np.ones(len(samples), dtype=bool)
    keep[found["drop_rows"]] = False
    report.near_duplicates = {k: v for k, v in found.items() if k != "drop_rows"}
    if "warning" in found:
        report.warnings.append(found["warning"])
    if not keep.all():
        report.dropped.extend(s for s, k in zip(samples, keep, strict=True) if not k)
        report.images = report.images.with_samples(
            [s for s, k in zip(samples, keep, strict=True) if k]
        )
        report.hashes = [h for h, k in zip(report.hashes, keep, strict=True) if k]
    return keep
