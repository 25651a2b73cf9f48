"""``graft.audit``: near-duplicates, likely label errors, outliers and class overlap of a dataset.

The audit reads the data exactly as ``graft train`` does (same layouts, splits and feature
cache), so a warm audit runs no forward pass: it cross-validates a probe on the cached
features, compares every pair of images by feature similarity and perceptual hash, and writes
``audit.json``, ``fixes.csv`` (decisions to edit, for ``graft train --fixes``) and, on request,
a self-contained ``audit.html``.

Example:
    >>> import graft, tempfile, pathlib
    >>> from graft.datasets import elpv
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "audit"
    >>> result = graft.audit(elpv("binary")[:120], out=out, name="elpv")  # doctest: +SKIP
    >>> sorted(p.name for p in out.iterdir())  # doctest: +SKIP
    ['audit.json', 'fixes.csv']
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from graft.auditing import copies, findings
from graft.auditing.report import write_audit_report
from graft.auditing.thumbnails import thumbnails
from graft.data.dataset import LabelledImages, Sample
from graft.data.fixes import Suggestion, read_fixes, write_fixes
from graft.data.prepare import DataOptions, prepare
from graft.errors import ConfigError, DataError
from graft.features.extract import ENGINE_BATCH, FeatureSpec, ProgressCallback, extract_features
from graft.fileio import write_json_atomic
from graft.zoo.registry import DEFAULT_BACKBONE

AUDIT_JSON = "audit.json"
AUDIT_HTML = "audit.html"
FIXES = "fixes.csv"
FIXES_NEW = "fixes.new.csv"
#: ``audit.json``'s ``kind``: how graft knows a folder holds an audit it wrote.
KIND = "graft-audit"


@dataclass
class AuditResult:
    """Everything an audit found.

    Attributes:
        source: The data as the user named it.
        samples: The audited images (rows of every finding).
        classes: Class names.
        backbone: The backbone whose features were compared.
        duplicates: Near-duplicate pairs: exact copies, then copies, then look-alikes (pairs
            of images that each resemble many others), most similar first.
        label_issues: Images confident learning flags, most suspect first.
        suspect: Every image's suspect score (1 - probability of its given label).
        outliers: Images far from all others, farthest first.
        overlap: The most confusable class pairs.
        skipped: ``(path, reason)`` of unusable files.
        timings: Seconds per phase.
        out: The folder the files were written to.
        fixes_file: The decisions file written: ``fixes.csv``, or ``fixes.new.csv`` when the
            folder's ``fixes.csv`` already holds the user's decisions.
    """

    source: str
    samples: list[Sample]
    classes: list[str]
    backbone: str
    duplicates: list[findings.Pair]
    label_issues: list[findings.LabelIssue]
    suspect: np.ndarray
    outliers: list[findings.Outlier]
    overlap: list[dict[str, Any]]
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    out: Path | None = None
    fixes_file: Path | None = None

    def summary(self) -> dict[str, int]:
        """Counts of each finding."""
        copies = [pair for pair in self.duplicates if not pair.look_alike]
        across = sum(pair.across for pair in copies)
        return {
            "images": len(self.samples),
            "near_duplicates_across_splits": across,
            "near_duplicates_within_splits": len(copies) - across,
            "exact_duplicates": sum(pair.exact for pair in copies),
            "look_alike_pairs": len(self.duplicates) - len(copies),
            "label_issues": len(self.label_issues),
            "outliers": len(self.outliers),
            "skipped": len(self.skipped),
        }

    def to_dict(self) -> dict[str, Any]:
        """The content of ``audit.json``."""

        def image(row: int) -> dict[str, Any]:
            sample = self.samples[row]
            return {"path": str(sample.path), "label": sample.label, "split": sample.split}

        return {
            "kind": KIND,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "source": self.source,
            "backbone": self.backbone,
            "classes": self.classes,
            "summary": self.summary(),
            "thresholds": {
                "near_duplicate": {
                    "neighbours": copies.NEIGHBOURS,
                    "candidate_min": copies.CANDIDATE_MIN,
                    "coarse_min": copies.COARSE_MIN,
                    "fine_min": copies.FINE_MIN,
                    "look_alike_rank": copies.HUB_RANK,
                },
                "outlier": {"k": findings.OUTLIER_K, "iqr_fence": findings.OUTLIER_FENCE},
            },
            "near_duplicates": [
                {
                    "first": image(p.first),
                    "second": image(p.second),
                    "similarity": p.similarity,
                    "cosine": round(p.cosine, 4),
                    "hamming": p.hamming,
                    "across_splits": p.across,
                    "exact": p.exact,
                    "look_alike": p.look_alike,
                }
                for p in self.duplicates
            ],
            "label_issues": [
                {
                    **image(issue.row),
                    "suggested": issue.suggested,
                    "probability_of_given": round(issue.quality, 4),
                }
                for issue in self.label_issues
            ],
            "outliers": [
                {
                    **image(o.row),
                    "distance": round(o.distance, 4),
                    "typical_distance": round(o.typical, 4),
                    "nearest_label": o.nearest_label,
                }
                for o in self.outliers
            ],
            "class_overlap": self.overlap,
            "skipped": [{"path": str(path), "reason": reason} for path, reason in self.skipped],
            "timings_s": {name: round(value, 3) for name, value in self.timings.items()},
        }

    def suggestions(self) -> list[Suggestion]:
        """The rows of ``fixes.csv``: cross-split copies, label issues, outliers, then others."""
        rows = self._copy_suggestions(across=True)
        for issue in self.label_issues:
            rows.append(
                Suggestion(
                    self.samples[issue.row].path,
                    "relabel",
                    f"labelled {issue.given}, the probe says {issue.suggested} "
                    f"(p({issue.given}) = {issue.quality:.3f})",
                    issue.suggested,
                )
            )
        for outlier in self.outliers:
            rows.append(
                Suggestion(
                    self.samples[outlier.row].path,
                    "review",
                    f"far from every image (distance {outlier.distance:.3f}, typical "
                    f"{outlier.typical:.3f})",
                )
            )
        rows += self._copy_suggestions(across=False)
        return rows

    def _copy_suggestions(self, *, across: bool) -> list[Suggestion]:
        """Drop the later image of each copy pair across (or within) splits."""
        rows = []
        for pair in self.duplicates:
            if pair.across == across and not pair.look_alike:
                first = self.samples[pair.first]
                where = first.split if across else "the same split"
                rows.append(
                    Suggestion(
                        self.samples[pair.second].path,
                        "drop",
                        f"copy of {first.path} in {where} (similarity "
                        f"{pair.similarity:.3f}, cosine {pair.cosine:.3f})",
                    )
                )
        return rows


def audit(
    data: str | Path | LabelledImages | Iterable[tuple[str | Path, str]],
    *,
    out: str | Path | None = None,
    backbone: str = DEFAULT_BACKBONE,
    engine: str = "auto",
    batch_size: int = ENGINE_BATCH,
    report: bool = False,
    name: str | None = None,
    progress: ProgressCallback | None = None,
    **data_options: Any,
) -> AuditResult:
    """Audit a labelled dataset and write ``audit.json`` and ``fixes.csv`` (and ``audit.html``).

    Args:
        data: A folder, a CSV/TSV file, a :class:`LabelledImages` or ``(path, label)`` pairs,
            as for ``graft.train``.
        out: The folder for the files (default ``runs/<data>-audit``); it must be new or an
            earlier audit.
        backbone: The backbone whose cached features are compared.
        engine: Feature extraction engine.
        batch_size: Images per forward pass.
        report: Also write ``audit.html``.
        name: A name for data given as pairs.
        progress: Called with (done, total) during feature extraction.
        **data_options: :class:`graft.data.prepare.DataOptions` fields (``val``, ``test``,
            ``seed``, ``root``, ``per_class``, ``limit``); splits are made as ``graft train``
            makes them.

    Raises:
        DataError: Unusable data.
        ConfigError: Bad options, or ``out`` holds something that is not a graft audit.
    """
    clock = time.perf_counter()
    timings: dict[str, float] = {}

    def lap(phase: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[phase] = now - clock
        clock = now

    try:
        options = DataOptions(**data_options)
    except TypeError as err:
        raise ConfigError(f"graft.audit: {err}") from err
    prepared = prepare(data, options, name=name)
    source = prepared.images.source
    folder = Path(out) if out is not None else Path("runs") / f"{Path(source).stem or 'data'}-audit"
    _check_out(folder)
    spec = FeatureSpec.create(backbone)
    paths = [sample.path for sample in prepared.images.samples]
    extracted = extract_features(
        paths, spec, engine=engine, batch_size=batch_size, hashes=prepared.hashes, progress=progress
    )
    lap("features")
    thumbs, thumbed = thumbnails(paths, prepared.hashes)
    lap("thumbnails")
    ok = extracted.ok & thumbed
    samples = [sample for sample, keep in zip(prepared.images.samples, ok, strict=True) if keep]
    skipped = list(prepared.problems) + list(extracted.failures)
    if len({sample.label for sample in samples}) < 2:
        raise DataError(f"{source}: fewer than two classes have decodable images to audit")
    features = extracted.features[ok]
    labels = [sample.label for sample in samples]
    classes = sorted(set(labels))
    content = [digest for digest, keep in zip(prepared.hashes, ok, strict=True) if keep]
    duplicates = findings.near_duplicates(
        features, thumbs[ok], [sample.split for sample in samples], content=content
    )
    lap("duplicates")
    proba = findings.out_of_fold_probabilities(features, labels, classes, seed=options.seed)
    lap("probe")
    result = AuditResult(
        source=source,
        samples=samples,
        classes=classes,
        backbone=spec.record.name,
        duplicates=duplicates,
        label_issues=findings.label_issues(proba, labels, classes),
        suspect=findings.suspect_scores(proba, labels, classes),
        outliers=findings.outliers(features, labels),
        overlap=findings.class_overlap(proba, labels, classes),
        skipped=skipped,
        timings=timings,
        out=folder,
    )
    lap("findings")
    folder.mkdir(parents=True, exist_ok=True)
    write_json_atomic(folder / AUDIT_JSON, result.to_dict())  # first: it marks the folder ours
    # a fixes.csv the user has edited is never replaced: the new suggestions go beside it
    result.fixes_file = folder / (FIXES_NEW if _has_decisions(folder / FIXES) else FIXES)
    write_fixes(result.fixes_file, result.suggestions())
    html = folder / AUDIT_HTML
    if report:
        write_audit_report(result, html)
        lap("report")
    elif html.is_file() and not html.is_symlink():
        html.unlink()  # an earlier audit's report, which no longer matches audit.json
    return result


def _has_decisions(path: Path) -> bool:
    """Whether ``path`` is a fixes file with any action other than keep (or unreadable)."""
    if not path.exists():
        return False
    try:
        return any(fix.action != "keep" for fix in read_fixes(path))
    except ConfigError:
        return True


def _check_out(folder: Path) -> None:
    """Refuse an output folder holding anything but an earlier audit graft wrote."""
    if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
        raise ConfigError(f"--out {folder}: exists and is not a folder; choose another --out")
    if not folder.exists() or not any(folder.iterdir()):
        return
    marker = folder / AUDIT_JSON
    try:
        kind = json.loads(marker.read_text(encoding="utf-8")).get("kind")
    except (OSError, ValueError, AttributeError):
        kind = None
    if kind != KIND or marker.is_symlink():
        raise ConfigError(
            f"--out {folder}: exists and is not a graft audit (no {AUDIT_JSON} of kind {KIND}); "
            "choose another --out"
        )
