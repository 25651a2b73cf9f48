"""What an audit finds, computed from cached features and perceptual hashes (no images read).

* :func:`near_duplicates`: pairs of images that are copies of each other (resized, re-encoded,
  slightly cropped), across splits (leakage) or within one (redundancy).
* :func:`out_of_fold_probabilities` and :func:`label_issues`: a probe cross-validated over every
  labelled image, ranked by confident learning (``cleanlab``).
* :func:`outliers`: images far from all others in feature space.
* :func:`class_overlap`: the class pairs the probe confuses most.

Example:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> features = rng.normal(size=(6, 8)).astype(np.float32)
    >>> features[5] = features[0] + 0.01
    >>> bits = rng.random((6, 64)) > 0.5
    >>> bits[5] = bits[0]
    >>> pairs = near_duplicates(features, bits, ["train"] * 5 + ["val"])
    >>> [(p.first, p.second, p.across) for p in pairs]
    [(0, 5, True)]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from graft.auditing.phash import hamming

#: A pair is a near-duplicate when its features' cosine similarity is at least this and its
#: perceptual hashes differ in at most ``HAMMING_CONFIRM`` bits, or when the cosine alone is at
#: least ``COSINE_ALONE``. Calibrated with 50 planted copies (cropped 2-8 % a side, resized,
#: re-encoded) per dataset, bench/audit.py: on cats_and_dogs_filtered this finds 48 of 50 and
#: one other pair (a real copy); on potato_disease and brain_mri, whose images are alike
#: (leaves on one background, centred scans), it finds fewer and more other pairs
#: (bench/README.md).
COSINE_MIN = 0.85
HAMMING_CONFIRM = 20
COSINE_ALONE = 0.97
#: Perceptual hashes this close are a copy whatever the features say (a re-encode of the same
#: picture; on the three sets, distinct photos came no closer than 2 bits only in pairs that
#: were copies).
HAMMING_ALONE = 4
#: Rows of the similarity matrix computed at once (memory stays ``_BLOCK x N`` floats).
_BLOCK = 1024


@dataclass(frozen=True)
class Pair:
    """Two images that look like copies of each other.

    Attributes:
        first: Row of the earlier image (train before val before test, then input order).
        second: Row of the later image: the copy ``--dedupe near`` drops.
        cosine: Cosine similarity of their features (1.0 = same direction).
        hamming: Bits in which their perceptual hashes differ (0 to 64).
        across: The two are in different splits (evaluation leaks into training).
        exact: The files have identical content.
    """

    first: int
    second: int
    cosine: float
    hamming: int
    across: bool
    exact: bool = False

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)


def unit_rows(features: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero)."""
    norms = np.linalg.norm(features, axis=1, keepdims=True)
    return (features / np.maximum(norms, 1e-12)).astype(np.float32)


def near_duplicates(
    features: np.ndarray | None,
    bits: np.ndarray,
    splits: Sequence[str | None],
    *,
    content: Sequence[str | None] | None = None,
    within: bool = True,
) -> list[Pair]:
    """Return the near-duplicate pairs, most similar first.

    Args:
        features: ``N x D`` features (any scale), or ``None`` to use the hashes alone (then a
            pair needs ``HAMMING_ALONE`` bits or fewer).
        bits: ``N x 64`` perceptual hashes.
        splits: Each row's split; rows are ordered train, val, test for ``first``/``second``.
        content: Content hashes, to mark exact copies.
        within: Also return pairs inside one split (otherwise only pairs across splits).
    """
    order = {"train": 0, "val": 1, "test": 2}
    rank = np.array([order.get(split or "train", 0) for split in splits])
    unit = unit_rows(features) if features is not None else None
    n = len(bits)
    pairs: list[Pair] = []
    for start in range(0, n, _BLOCK):
        stop = min(n, start + _BLOCK)
        distance = hamming(bits[start:stop], bits)
        if unit is not None:
            cosine = unit[start:stop] @ unit.T
            hit = ((cosine >= COSINE_MIN) & (distance <= HAMMING_CONFIRM)) | (
                cosine >= COSINE_ALONE
            )
            hit |= distance <= HAMMING_ALONE
        else:
            cosine = np.full(distance.shape, np.nan, dtype=np.float32)
            hit = distance <= HAMMING_ALONE
        rows, cols = np.nonzero(hit)
        for row, col in zip((rows + start).tolist(), cols.tolist(), strict=True):
            if col <= row:
                continue  # each pair once, never an image with itself
            across = bool(rank[row] != rank[col])
            if not (within or across):
                continue
            first, second = (row, col) if (rank[row], row) <= (rank[col], col) else (col, row)
            exact = content is not None and content[row] is not None
            exact = exact and content[row] == content[col]  # type: ignore[index]
            pairs.append(
                Pair(
                    first,
                    second,
                    float(cosine[row - start, col]),
                    int(distance[row - start, col]),
                    across,
                    bool(exact),
                )
            )
    pairs.sort(key=lambda p: p.hamming - 64 * (p.cosine if p.cosine == p.cosine else 0))
    return pairs


def out_of_fold_probabilities(
    features: np.ndarray, labels: Sequence[str], classes: Sequence[str], *, seed: int = 0
) -> np.ndarray:
    """Class probabilities of each image from a probe that never saw it (k-fold).

    The probe is graft's default head, standardised logistic regression, with ``C = 0.1``
    (moderate regularisation: stable with few images a class, where a per-fold search is not).
    Folds are stratified; a class with fewer images than folds lowers the fold count (at
    least 2).
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    y = np.array([list(classes).index(label) for label in labels])
    smallest = int(np.bincount(y, minlength=len(classes)).min())
    folds = max(2, min(5, smallest))
    model = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000))
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    proba = cross_val_predict(model, features, y, cv=splitter, method="predict_proba")
    return np.asarray(proba, dtype=np.float64)


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

    y = np.array([list(classes).index(label) for label in labels])
    return 1.0 - get_label_quality_scores(y, proba, method="self_confidence")


def label_issues(
    proba: np.ndarray, labels: Sequence[str], classes: Sequence[str]
) -> list[LabelIssue]:
    """The images confident learning flags, most suspect first."""
    from cleanlab.filter import find_label_issues

    y = np.array([list(classes).index(label) for label in labels])
    if len(np.unique(y)) < 2:
        return []
    flagged = find_label_issues(y, proba, return_indices_ranked_by="self_confidence")
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
    y = np.array([list(classes).index(label) for label in labels])
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
