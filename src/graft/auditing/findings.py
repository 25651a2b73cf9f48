"""What an audit finds, computed from cached features and perceptual hashes (no images read).

* :func:`near_duplicates`: pairs of images that are copies of each other (resized, re-encoded,
  slightly cropped), across splits (leakage) or within one (redundancy).
* :func:`out_of_fold_probabilities` and :func:`label_issues`: a probe cross-validated over every
  labelled image, ranked by confident learning (``cleanlab``).
* :func:`outliers`: images far from all others in feature space.
* :func:`class_overlap`: the class pairs the probe confuses most.

Example:
    >>> import numpy as np
    >>> labels = ["cat"] * 6 + ["dog"] * 6
    >>> rng = np.random.default_rng(0)
    >>> features = np.concatenate([rng.normal(0, 1, (6, 8)) + 3, rng.normal(0, 1, (6, 8)) - 3])
    >>> odd = np.array([[10.0, -10.0] * 4])
    >>> [o.row for o in outliers(np.vstack([features, odd]), labels + ["cat"])]
    [12]
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from graft.auditing.copies import copy_pairs
from graft.auditing.thumbnails import hamming, perceptual_hashes

#: Rows of a similarity matrix computed at once (memory stays ``_BLOCK x N`` floats).
_BLOCK = 1024


@dataclass(frozen=True)
class Pair:
    """Two images that look like copies of each other.

    Attributes:
        first: Row of the earlier image (train before val before test, then input order).
        second: Row of the later image: the copy ``--dedupe near`` drops.
        similarity: Correlation of their fine detail once aligned (1.0 for identical files;
            see :mod:`graft.auditing.copies`).
        cosine: Cosine similarity of their features (NaN when compared without features).
        hamming: Bits in which their perceptual hashes differ (0 to 64).
        across: The two are in different splits (evaluation leaks into training).
        exact: The files have identical content.
        look_alike: Either image looks like many others (e.g. uniform solar cells): the pair
            is alike, but probably not copies of one file; never dropped by ``--dedupe``.
    """

    first: int
    second: int
    similarity: float
    cosine: float
    hamming: int
    across: bool
    exact: bool = False
    look_alike: bool = False

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)


def unit_rows(features: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero)."""
    norms = np.linalg.norm(features, axis=1, keepdims=True)
    return (features / np.maximum(norms, 1e-12)).astype(np.float32)


def near_duplicates(
    features: np.ndarray | None,
    thumbs: np.ndarray,
    splits: Sequence[str | None],
    *,
    content: Sequence[str | None] | None = None,
    within: bool = True,
) -> list[Pair]:
    """Return the pairs of images that are copies of each other: identical first, then by
    similarity.

    Args:
        features: ``N x D`` features (any scale), whose nearest neighbours are candidates beside
            the thumbnails' (:func:`graft.auditing.copies.copy_pairs`), or ``None``.
        thumbs: ``N x 64 x 64`` grey thumbnails (:func:`graft.auditing.thumbnails.thumbnails`).
        splits: Each row's split; rows are ordered train, val, test for ``first``/``second``.
        content: Content hashes, to add and mark exact copies.
        within: Also return pairs inside one split (otherwise only pairs across splits).
    """
    order = {"train": 0, "val": 1, "test": 2}
    rank = [order.get(split or "train", 0) for split in splits]
    unit = unit_rows(features) if features is not None else None
    groups = None if within else np.array(rank)
    matches = copy_pairs(thumbs, unit, groups)
    scores = {(match.first, match.second): match.fine for match in matches}
    alike = {(match.first, match.second) for match in matches if match.generic}
    same: dict[str, list[int]] = {}
    for row, digest in enumerate(content or []):
        if digest is not None:
            same.setdefault(digest, []).append(row)
    for rows in same.values():
        for a, b in itertools.combinations(rows, 2):
            scores[(a, b)] = 1.0
    # hashes only of the images in a pair: every training run passes here
    involved = sorted({row for pair in scores for row in pair})
    bits = dict(zip(involved, perceptual_hashes(thumbs[involved]), strict=True))
    pairs = []
    for (a, b), similarity in scores.items():
        across = rank[a] != rank[b]
        if not (within or across):
            continue
        first, second = (a, b) if (rank[a], a) <= (rank[b], b) else (b, a)
        exact = content is not None and content[a] is not None and content[a] == content[b]
        pairs.append(
            Pair(
                first,
                second,
                round(similarity, 4),
                float(unit[a] @ unit[b]) if unit is not None else float("nan"),
                int(hamming(bits[a][None], bits[b][None])[0, 0]),
                across,
                exact,
                (a, b) in alike and not exact,
            )
        )
    pairs.sort(key=lambda p: (not p.exact, p.look_alike, -p.similarity, p.first, p.second))
    return pairs


def out_of_fold_probabilities(
    features: np.ndarray, labels: Sequence[str], classes: Sequence[str], *, seed: int = 0
) -> np.ndarray:
    """Class probabilities of each image from a probe that never saw it (k-fold).

    The probe is graft's default head, standardised logistic regression, with ``C = 0.1``
    (moderate regularisation: stable with few images a class, where a per-fold search is not).
    Folds are stratified; a class with fewer images than folds lowers the fold count (at
    least 2). A class of one image cannot be in a training fold and its test fold at once: its
    image gets the probabilities of a probe that never saw the class (so it is suspect).
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    y = _class_indices(labels, classes)
    smallest = int(np.bincount(y, minlength=len(classes)).min())
    folds = max(2, min(5, smallest))
    model = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000))
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    if smallest >= 2:
        proba = cross_val_predict(model, features, y, cv=splitter, method="predict_proba")
        return np.asarray(proba, dtype=np.float64)
    # StratifiedKFold refuses singleton classes: fold on the others, predict the singletons
    # with every fold's probe (none saw them)
    counts = np.bincount(y, minlength=len(classes))
    alone = counts[y] < 2
    proba = np.zeros((len(y), len(classes)))
    rest = np.flatnonzero(~alone)
    rest_folds = max(2, min(5, int(counts[counts >= 2].min()))) if rest.size else 0
    if rest_folds == 0 or len(np.unique(y[rest])) < 2:
        proba[:] = 1.0 / len(classes)
        return proba
    splitter = StratifiedKFold(n_splits=rest_folds, shuffle=True, random_state=seed)
    for train, test in splitter.split(features[rest], y[rest]):
        fitted = model.fit(features[rest[train]], y[rest[train]])
        seen = fitted.classes_
        proba[np.ix_(rest[test], seen)] = fitted.predict_proba(features[rest[test]])
        proba[np.ix_(np.flatnonzero(alone), seen)] += (
            fitted.predict_proba(features[alone]) / rest_folds
        )
    return proba


@dataclass(frozen=True)
class LabelIssue:
    """An image whose given label the probe doubts.

    Attributes:
        row: The image's row.
        given: The label it has.
        suggested: The label the out-of-fold probe prefers.
        quality: Probability the probe gives the given label (low = suspect).
        flagged: Confident learning (``cleanlab.filter.find_label_issues``) flags it.
    """

    row: int
    given: str
    suggested: str
    quality: float
    flagged: bool

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)


def suspect_scores(proba: np.ndarray, labels: Sequence[str], classes: Sequence[str]) -> np.ndarray:
    """``1 - `` the self-confidence label quality: higher means more likely mislabelled."""
    from cleanlab.rank import get_label_quality_scores

    y = _class_indices(labels, classes)
    return 1.0 - get_label_quality_scores(y, proba, method="self_confidence")


def label_issues(
    proba: np.ndarray, labels: Sequence[str], classes: Sequence[str]
) -> list[LabelIssue]:
    """The images confident learning flags, most suspect first."""
    from cleanlab.filter import find_label_issues

    y = _class_indices(labels, classes)
    if len(np.unique(y)) < 2:
        return []
    with warnings.catch_warnings():  # "too few examples in class k": small classes are fine
        warnings.simplefilter("ignore", UserWarning)
        # n_jobs=1: cleanlab's worker pool relies on fork-inherited globals, and fails in a
        # process started by spawn (the studio runs its jobs in one); the pruning is cheap
        flagged = find_label_issues(y, proba, return_indices_ranked_by="self_confidence", n_jobs=1)
    return [
        LabelIssue(
            int(row),
            labels[row],
            classes[int(proba[row].argmax())],
            float(proba[row, y[row]]),
            True,
        )
        for row in flagged
    ]


@dataclass(frozen=True)
class Outlier:
    """An image far from every other image.

    Attributes:
        row: The image's row.
        distance: Mean cosine distance to its ``k`` nearest neighbours.
        typical: The median of that distance over all images.
        nearest_label: The most common label among those neighbours.
    """

    row: int
    distance: float
    typical: float
    nearest_label: str

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)


#: Neighbours averaged for the outlier distance.
OUTLIER_K = 5
#: An image is an outlier when its distance is beyond the upper quartile by this many
#: interquartile ranges (Tukey's far-out fence).
OUTLIER_FENCE = 3.0


def outliers(features: np.ndarray, labels: Sequence[str]) -> list[Outlier]:
    """Images whose ``OUTLIER_K`` nearest neighbours are all unusually far, farthest first."""
    n = len(features)
    k = min(OUTLIER_K, n - 1)
    if k < 1:
        return []
    unit = unit_rows(features)
    distances = np.empty(n, dtype=np.float64)
    neighbours = np.empty((n, k), dtype=np.int64)
    for start in range(0, n, _BLOCK):
        block = 1.0 - unit[start : start + _BLOCK] @ unit.T
        for offset in range(len(block)):
            block[offset, start + offset] = np.inf  # not its own neighbour
        nearest = np.argpartition(block, k - 1, axis=1)[:, :k]
        neighbours[start : start + len(block)] = nearest
        distances[start : start + len(block)] = np.take_along_axis(block, nearest, 1).mean(1)
    q1, median, q3 = np.percentile(distances, [25, 50, 75])
    fence = q3 + OUTLIER_FENCE * (q3 - q1)
    found = []
    for row in np.argsort(-distances):
        if distances[row] <= fence:
            break
        votes = [labels[j] for j in neighbours[row]]
        found.append(
            Outlier(int(row), float(distances[row]), float(median), max(votes, key=votes.count))
        )
    return found


def class_overlap(
    proba: np.ndarray, labels: Sequence[str], classes: Sequence[str], *, top: int = 10
) -> list[dict[str, Any]]:
    """The most confusable class pairs (``cleanlab.dataset.find_overlapping_classes``).

    Each entry gives the two classes, the estimated number of images in the overlap and its
    share of the data (joint probability).
    """
    from cleanlab.dataset import find_overlapping_classes

    if len(classes) < 2:
        return []
    y = _class_indices(labels, classes)
    table = find_overlapping_classes(labels=y, pred_probs=proba)
    rows = []
    for record in table.head(top).to_dict("records"):
        rows.append(
            {
                "classes": [
                    classes[int(record["Class Index A"])],
                    classes[int(record["Class Index B"])],
                ],
                "images": int(record["Num Overlapping Examples"]),
                "joint_probability": round(float(record["Joint Probability"]), 5),
            }
        )
    return rows


def _class_indices(labels: Sequence[str], classes: Sequence[str]) -> np.ndarray:
    """Each label's position in ``classes``."""
    index = {name: position for position, name in enumerate(classes)}
    return np.array([index[label] for label in labels], dtype=np.int64)
