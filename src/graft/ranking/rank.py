"""``graft rank``: score candidate backbones (and layers) on the training images only.

For each candidate the features of a stratified sample of the training split (2,000 images by
default) go through the feature cache, then every score of :mod:`graft.ranking.scores` is
computed. The validation and test splits are never read. The recommendation is the candidate
with the best mean rank over the four scores every candidate has (LogME, H-score, k-NN,
cross-validated linear probe), ties going to the higher LogME.

Example:
    >>> ranking = rank("data/", backbones="all-available")  # doctest: +SKIP
    >>> ranking.recommended.name  # doctest: +SKIP
    'efficientnet_lite0.in1k'
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from graft.classification import imagenet_probabilities
from graft.data.prepare import DataOptions, prepare
from graft.errors import ConfigError, DataError
from graft.features import extract as extraction
from graft.features.extract import FeatureSpec
from graft.features.layers import resolve_layer
from graft.ranking import scores
from graft.zoo.registry import availability, list_backbones

#: Scores every candidate gets, and the two that need an ImageNet head.
CORE_SCORES = ("logme", "h_score", "knn", "linear_cv")
HEAD_SCORES = ("leep", "nce")
DEFAULT_SAMPLE = 2000


@dataclass
class Candidate:
    """One backbone at one layer, with its scores on the training sample."""

    backbone: str
    layer: str
    dim: int
    images_per_s: float | None
    scores: dict[str, float] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """``backbone`` for the final layer, ``backbone@layer`` otherwise."""
        return self.backbone if self.layer == "final" else f"{self.backbone}@{self.layer}"


@dataclass
class Ranking:
    """Candidates, best first, and what they were scored on."""

    candidates: list[Candidate]
    images: int
    classes: list[str]

    @property
    def recommended(self) -> Candidate:
        """The first candidate: best mean rank over the core scores."""
        return self.candidates[0]

    def order(self, score: str) -> list[str]:
        """Candidate names from best to worst by one score (those that have it)."""
        having = [c for c in self.candidates if score in c.scores]
        return [c.name for c in sorted(having, key=lambda c: -c.scores[score])]

    def to_dict(self) -> dict[str, Any]:
        """JSON form (``graft rank --json``)."""
        return {
            "images": self.images,
            "classes": self.classes,
            "recommended": self.recommended.name,
            "candidates": [
                {
                    "name": c.name,
                    "backbone": c.backbone,
                    "layer": c.layer,
                    "dim": c.dim,
                    "images_per_s": c.images_per_s,
                    "scores": c.scores,
                }
                for c in self.candidates
            ],
        }


def parse_candidates(backbones: str, layers: str | None = None) -> list[tuple[str, str]]:
    """Expand ``--backbones`` and ``--layers`` into (backbone, layer) pairs.

    ``all-available`` means every pretrained backbone usable offline here (it may be combined
    with names). A name may carry its own layer as ``name@stage4``; ``--layers final,stage4``
    applies to the others.

    Example:
        >>> parse_candidates("efficientnet_lite0.in1k@stage4,squeezenet1_1.in1k", "final")
        [('efficientnet_lite0.in1k', 'stage4'), ('squeezenet1_1.in1k', 'final')]
    """

    names: list[str] = []
    for token in (name.strip() for name in backbones.split(",")):
        if token == "all-available":
            names.extend(
                r.name
                for r in list_backbones()
                if availability(r).available and availability(r).pretrained
            )
        elif token:
            names.append(token)
    if not names:
        raise ConfigError("--backbones names no backbone; try all-available")
    chosen_layers = [x.strip() for x in (layers or "final").split(",") if x.strip()]
    pairs: list[tuple[str, str]] = []
    for name in names:
        if "@" in name:
            backbone, layer = name.split("@", 1)
            pairs.append((backbone, layer))
        else:
            pairs.extend((name, layer) for layer in chosen_layers)
    return list(dict.fromkeys(pairs))


def rank(
    data: str | Path,
    *,
    backbones: str = "all-available",
    layers: str | None = None,
    sample: int = DEFAULT_SAMPLE,
    engine: str = "auto",
    data_options: DataOptions | None = None,
    on_candidate: Callable[[Candidate], None] | None = None,
) -> Ranking:
    """Score every candidate on a stratified sample of the training split.

    Args:
        data: A labelled folder or table (as ``graft train`` takes).
        backbones: ``all-available`` or a comma list (``name@layer`` allowed).
        layers: Layers for the names without ``@``, comma separated (default ``final``).
        sample: At most this many training images (stratified, seeded).
        engine: Feature engine (see :mod:`graft.engines`).
        data_options: Split options, for data without given splits.
        on_candidate: Called with each candidate once it is scored.

    Raises:
        ConfigError: Unknown backbone or layer, or one without pretrained weights.
        DataError: Fewer than two classes among the training images.
    """

    pairs = parse_candidates(backbones, layers)
    specs = [_spec(backbone, layer) for backbone, layer in pairs]  # validate before heavy work
    report = prepare(data, data_options or DataOptions())
    rows = _training_sample(report, sample)
    samples = report.images.samples
    paths = [samples[i].path for i in rows]
    hashes = [report.hashes[i] for i in rows]
    labels = np.array([samples[i].label for i in rows])
    if len(set(labels)) < 2:
        raise DataError(f"{report.images.source}: fewer than two classes in the training split")
    candidates = []
    for (backbone, layer), spec in zip(pairs, specs, strict=True):
        candidate = _score(backbone, layer, spec, paths, hashes, labels, engine)
        candidates.append(candidate)
        if on_candidate is not None:
            on_candidate(candidate)
    return Ranking(_recommendation_order(candidates), len(paths), sorted(set(labels)))


def _spec(backbone: str, layer: str) -> Any:

    spec = FeatureSpec.create(backbone, layer=layer)
    resolve_layer(spec.record, layer)
    return spec


def _training_sample(report: Any, limit: int) -> list[int]:
    """Stratified, seeded rows of the training split with readable images."""
    samples = report.images.samples
    train = [
        i for i, s in enumerate(samples) if s.split == "train" and report.hashes[i] is not None
    ]
    if len(train) <= limit:
        return train
    from sklearn.model_selection import train_test_split

    labels = [samples[i].label for i in train]
    chosen, _ = train_test_split(train, train_size=limit, stratify=labels, random_state=0)
    return sorted(chosen)


def _score(
    backbone: str,
    layer: str,
    spec: Any,
    paths: list[Path],
    hashes: Sequence[str | None],
    labels: np.ndarray,
    engine: str,
) -> Candidate:

    result = extraction.extract_features(paths, spec, engine=engine, hashes=hashes)
    ok = result.ok
    features, y = result.features[ok], labels[ok]
    speed = result.computed / result.seconds if result.computed else None
    candidate = Candidate(backbone, layer, int(features.shape[1]), speed)
    candidate.scores = {
        "logme": scores.logme(features, y),
        "h_score": scores.h_score(features, y),
        "knn": scores.knn_accuracy(features, y),
        "linear_cv": scores.linear_cv_accuracy(features, y),
    }
    if layer == "final" and spec.record.has_head:
        good = [p for p, flag in zip(paths, ok, strict=True) if flag]
        theta = imagenet_probabilities(good, backbone=backbone, engine=engine)
        candidate.scores["leep"] = scores.leep(theta, y)
        candidate.scores["nce"] = scores.nce(theta, y)
    return candidate


def _recommendation_order(candidates: list[Candidate]) -> list[Candidate]:
    """Sort by mean rank over the core scores; ties to the higher LogME (the score that tracked
    the real probe best in bench/rank_vs_probe.py), so the order never depends on the cache."""
    mean_rank = {id(c): 0.0 for c in candidates}
    for score in CORE_SCORES:
        ordered = sorted(candidates, key=lambda c: -c.scores[score])
        for position, candidate in enumerate(ordered):
            mean_rank[id(candidate)] += position / len(CORE_SCORES)
    return sorted(candidates, key=lambda c: (mean_rank[id(c)], -c.scores["logme"]))
