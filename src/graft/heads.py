"""Classic heads on cached features: logistic regression, linear SVM, k-NN, nearest centroid.

scikit-learn fits them; graft keeps only their numbers (coefficients, calibrators, centroids,
reference vectors) as arrays, never a pickle, so a saved head loads safely and without
scikit-learn's version in the way. Each head predicts through one PyTorch module,
:class:`HeadModule` (features in, logits out): the same module scores cached features, ends a
linear run's network (:class:`graft.models.RunModel`) and goes into its exports.

* ``logreg`` (default): multinomial logistic regression; the regularisation strength ``C`` is
  chosen by stratified cross-validation on the training split (log loss).
* ``svm``: linear SVM, ``C`` by cross-validated accuracy, probabilities by Platt scaling on
  held-out folds (scikit-learn's ``CalibratedClassifierCV``).
* ``knn``: k nearest neighbours by cosine similarity, ``k`` by leave-one-out accuracy.
* ``centroid``: nearest class mean by cosine similarity (the few-shot baseline), probabilities
  as a softmax with a fitted temperature.

Features are centred on the training mean and divided by a scale first: for the SVM, k-NN and
centroid each feature's standard deviation; for the logistic regression the square root of each
feature's variance plus the average feature's variance. That shrinks every feature's spread
toward the common one, so a feature that hardly varies in the training images (with a few
images per class, many do) is not blown up to the weight of the rest; folded into a linear
layer, such a feature had a weight of -180 in the ELPV probe. bench/README.md ("The probe's
scale (4aca854)") has the probe's accuracy before and after on every dataset.

Example:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = np.vstack([rng.normal(0, 1, (20, 4)), rng.normal(3, 1, (20, 4))]).astype(np.float32)
    >>> y = np.array(["cat"] * 20 + ["dog"] * 20)
    >>> head = fit_head("logreg", X, y)
    >>> head.classes, head.predict_proba(X[:1]).shape
    (['cat', 'dog'], (1, 2))
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from graft.errors import ConfigError, DataError
from graft.fileio import atomic_path

HeadKind = Literal["logreg", "svm", "knn", "centroid"]
HEADS: tuple[HeadKind, ...] = ("logreg", "svm", "knn", "centroid")
#: Candidate regularisation strengths for logistic regression and the SVM.
C_GRID = tuple(float(c) for c in np.logspace(-4, 2, 10))
K_GRID = (1, 3, 5, 7, 9, 15, 21)
#: Below this many images in the rarest class, the logistic regression's CV is repeated
#: ``SMALL_REPEATS`` times with other shuffles and searches C only up to ``SMALL_C_MAX``
#: (bench/fewshot.py measures both choices).
SMALL_CLASS = 20
SMALL_REPEATS = 3
#: A handful of images per class are separable in 1,000+ dimensions, and folds of a few
#: images cannot tell the weakly regularised end of the path from the rest: a few-shot probe
#: searches C up to here (the grid's 0.215 and below).
SMALL_C_MAX = 0.25


@dataclass
class ClassicHead:
    """A fitted classic head: its kind, classes, chosen hyperparameters and arrays.

    Attributes:
        kind: One of :data:`HEADS`.
        classes: Class names, in output order.
        params: The hyperparameters chosen (``C``, ``k``, ``temperature``) and how.
        arrays: ``mean`` and ``scale`` (standardisation) plus the head's own arrays.
    """

    kind: HeadKind
    classes: list[str]
    params: dict[str, Any] = field(default_factory=dict)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        """Return class probabilities, ``N x len(classes)`` (:class:`HeadModule`, in float64)."""
        module = HeadModule(self, dtype=torch.float64)
        x = torch.tensor(np.asarray(features), dtype=torch.float64)  # a copy, aligned
        with torch.no_grad():
            blocks = [
                torch.softmax(module(x[start : start + 1024]), dim=1)
                for start in range(0, len(x), 1024)
            ]
        return torch.cat(blocks).numpy() if blocks else np.zeros((0, len(self.classes)))

    def predict(self, features: np.ndarray) -> list[str]:
        """Return the most probable class name per row."""
        return [self.classes[i] for i in self.predict_proba(features).argmax(axis=1)]

    def save(self, path: Path) -> None:
        """Write the head as safetensors: arrays plus a JSON description (atomically)."""
        from safetensors.numpy import save_file

        meta = {"kind": self.kind, "classes": self.classes, "params": self.params}
        tensors = {name: np.ascontiguousarray(value) for name, value in self.arrays.items()}
        with atomic_path(path) as tmp:
            save_file(tensors, str(tmp), metadata={"graft_head": json.dumps(meta)})

    @classmethod
    def load(cls, path: Path) -> ClassicHead:
        """Read a head written by :meth:`save`.

        Raises:
            DataError: The file is missing or is not a graft head.
        """
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(str(path), framework="numpy") as handle:
                meta = json.loads((handle.metadata() or {})["graft_head"])
                arrays = {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118
        except (OSError, KeyError, ValueError, SafetensorError) as err:
            raise DataError(f"{path}: not a graft head file ({err})") from err
        return cls(
            kind=meta["kind"],
            classes=list(meta["classes"]),
            params=dict(meta["params"]),
            arrays=arrays,
        )


def fit_head(
    kind: str,
    features: np.ndarray,
    labels: np.ndarray | list[str],
    *,
    classes: list[str] | None = None,
    class_weight: str | None = None,
    seed: int = 0,
    groups: np.ndarray | None = None,
) -> ClassicHead:
    """Fit a classic head on training features.

    Args:
        kind: ``logreg``, ``svm``, ``knn`` or ``centroid``.
        features: ``N x D`` training features.
        labels: ``N`` class names.
        classes: Output order (default: sorted labels).
        class_weight: ``balanced`` to weight classes inversely to their frequency
            (``logreg`` and ``svm``), or ``None``.
        seed: Seeds the cross-validation folds.
        groups: The image each row is of, where rows are several views of each image
            (``--tta``): cross-validation keeps an image's views in one fold, and counts
            images, not rows. ``logreg`` and ``centroid`` only.

    Raises:
        ConfigError: Unknown head or class weight, or groups for ``svm`` or ``knn``.
        DataError: Fewer than two classes, or labels outside ``classes``.
    """
    if kind not in HEADS:
        raise ConfigError(f"head {kind!r} is not one of: {', '.join(HEADS)}")
    if class_weight not in (None, "balanced"):
        raise ConfigError(f"class weight {class_weight!r} must be 'balanced' or omitted")
    if groups is not None:
        check_views(kind, "groups given")
    names = sorted(set(map(str, labels))) if classes is None else list(classes)
    index = {name: i for i, name in enumerate(names)}
    unknown = sorted(set(map(str, labels)) - set(index))
    if unknown:
        raise DataError(f"labels {unknown} are not among the classes {names}")
    y = np.array([index[str(label)] for label in labels])
    if len(np.unique(y)) < 2:
        raise DataError("a head needs training images of at least two classes")
    x = np.asarray(features, dtype=np.float64)
    # The same images in another order must give the same head: the CV folds (and the sums
    # behind the mean) follow row order, so a run that lists its images sorted and one that
    # lists them as drawn chose different C values (brain_mri 5-shot, 57.60 vs 57.97 %).
    order, canonical_groups = canonical_order(x, y, None if groups is None else np.asarray(groups))
    x, y = x[order], y[order]
    mean = x.mean(axis=0)
    variance = x.var(axis=0)
    if kind == "logreg":
        # each feature's variance shrunk toward the average feature's (the module docstring)
        variance = variance + variance.mean()
    scale = np.sqrt(variance)
    scale[scale < 1e-12] = 1.0
    xs = (x - mean) / scale
    head = ClassicHead(kind=kind, classes=names, arrays={"mean": mean, "scale": scale})
    images = np.arange(len(y)) if canonical_groups is None else canonical_groups
    folds = _folds(y, images)
    if kind == "logreg":
        _fit_logreg(head, xs, y, folds, class_weight, seed, canonical_groups)
    elif kind == "svm":
        _fit_svm(head, xs, y, folds, class_weight, seed)
    elif kind == "knn":
        _fit_knn(head, xs, y)
    else:
        _fit_centroid(head, xs, y)
    if class_weight is not None:
        head.params["class_weight"] = class_weight
    return head


def check_views(kind: str, views: str) -> None:
    """Refuse a head that cannot fit on several views of each image (``svm`` and ``knn``: their
    selection would find an image's own views among its neighbours or folds).

    Args:
        kind: The head.
        views: What asks for several views, for the message (``--tta dihedral``).

    Raises:
        ConfigError: ``kind`` is ``svm`` or ``knn``.

    Example:
        >>> check_views("logreg", "--tta flip")
    """
    if kind in ("svm", "knn"):
        raise ConfigError(
            f"a {kind} head cannot fit on several views of each image ({views}): its "
            "selection would find an image's own views; use --head logreg or centroid, or "
            "--tta none"
        )


def view_groups(images: int, views: int) -> np.ndarray | None:
    """The image each row is of, for ``views`` blocks of ``images`` rows (view after view);
    ``None`` for one view. :func:`fit_head` takes it as ``groups``.

    Example:
        >>> view_groups(3, 2).tolist(), view_groups(3, 1)
        ([0, 1, 2, 0, 1, 2], None)
    """
    return np.tile(np.arange(images), views) if views > 1 else None


def canonical_order(
    x: np.ndarray, y: np.ndarray, groups: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray | None]:
    """An order of the rows that depends only on their contents, and group ids likewise.

    Rows are sorted by class, then group, then their projection on a fixed random direction;
    a group's key is the least projection among its rows (its views in any order). Unlike a
    hash of the bits, the order survives last-bit differences between engines. Rows tied on
    all three are identical images (distinct rows tie on a random projection with probability
    zero), so their order cannot matter; groups tied on their key (copies of one image) share
    one id, and so one fold. Fitting on the rows in this order
    makes a head a function of the set of (features, label, image), not of the order a run
    lists its images in.

    Args:
        x: ``N x D`` features.
        y: ``N`` class indices.
        groups: The image each row is of, or ``None`` (every row its own image).

    Returns:
        The permutation to apply to the rows, and the groups renumbered ``0..G-1`` by key
        (``None`` without groups).

    Example:
        >>> x = np.array([[1.0], [2.0], [3.0]])
        >>> a, _ = canonical_order(x, np.array([0, 1, 0]))
        >>> b, _ = canonical_order(x[::-1], np.array([0, 1, 0]))
        >>> x[a].ravel().tolist() == x[::-1][b].ravel().tolist()
        True
    """
    direction = np.random.default_rng(0).standard_normal(x.shape[1])
    projection = np.asarray(x, dtype=np.float64) @ direction
    if groups is None:
        return np.lexsort((projection, y)), None
    ids, inverse = np.unique(groups, return_inverse=True)
    keys = np.full(len(ids), np.inf)
    np.minimum.at(keys, inverse, projection)
    order = np.lexsort((projection, keys[inverse], y))
    ranks = np.unique(keys[inverse][order], return_inverse=True)[1]
    return order, ranks


def _folds(y: np.ndarray, images: np.ndarray) -> int:
    """Cross-validation folds: 5, fewer when the rarest class has fewer images (0: no CV)."""
    smallest = _rarest(y, images)
    return min(5, smallest) if smallest >= 2 else 0


def _rarest(y: np.ndarray, images: np.ndarray) -> int:
    """The number of images of the rarest class (rows of one image count once)."""
    return min(len(np.unique(images[y == label])) for label in np.unique(y))


def cv_splits(
    y: np.ndarray, folds: int, repeats: int, seed: int, groups: np.ndarray | None = None
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stratified ``folds``-fold splits, ``repeats`` times with other shuffles; with
    ``groups``, every row of a group (the views of one image) falls in the same fold.

    Example:
        >>> y, groups = np.array([0, 0, 1, 1] * 2), np.array([0, 1, 2, 3] * 2)
        >>> [sorted(set(groups[held].tolist())) for _, held in cv_splits(y, 2, 1, 0, groups)]
        [[1, 2], [0, 3]]
    """
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

    splits = []
    for repeat in range(repeats):
        if groups is None:
            splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed + repeat)
            splits.extend(splitter.split(np.zeros(len(y)), y))
        else:
            grouped = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed + repeat)
            splits.extend(grouped.split(np.zeros(len(y)), y, groups))
    return splits


def _fit_logreg(
    head: ClassicHead,
    x: np.ndarray,
    y: np.ndarray,
    folds: int,
    class_weight: str | None,
    seed: int,
    groups: np.ndarray | None,
) -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import log_loss

    def model(c: float, tol: float = 1e-4) -> LogisticRegression:
        return LogisticRegression(
            C=c, tol=tol, max_iter=3000, class_weight=class_weight, warm_start=True
        )

    if folds >= 2:
        # With few images the held-out folds are a handful each and one shuffle's loss curve
        # is noise; repeating the CV with other shuffles steadies it (at little cost: the fits
        # are tiny).
        images = np.arange(len(y)) if groups is None else groups
        small = _rarest(y, images) < SMALL_CLASS
        repeats = SMALL_REPEATS if small else 1
        grid = tuple(c for c in C_GRID if c <= SMALL_C_MAX) if small else C_GRID
        splits = cv_splits(y, folds, repeats, seed, groups)
        # A looser tolerance is enough to rank C values (same choice, twice as fast here); the
        # final model is fitted at the default tolerance.
        estimators = [model(grid[0], tol=1e-3) for _ in splits]
        labels = np.arange(len(head.classes))
        losses: list[np.ndarray] = []  # per C: the log loss of every held-out fold
        # Walk the path from strong to weak regularisation, warm-starting each fold's model (as
        # LogisticRegressionCV does), and stop once the CV loss has risen twice in a row: the
        # weakly regularised end is the slowest to fit and rarely the best.
        for c in grid:
            fold_losses = []
            for estimator, (train, held) in zip(estimators, splits, strict=True):
                estimator.set_params(C=c).fit(x[train], y[train])
                fold_losses.append(
                    log_loss(y[held], estimator.predict_proba(x[held]), labels=labels)
                )
            losses.append(np.array(fold_losses))
            means = [float(fold.mean()) for fold in losses]
            if len(means) - 1 - int(np.argmin(means)) >= 2:
                break
        best = grid[one_standard_error(losses)]
        cv = f"{folds}-fold CV" + (f" x {repeats}" if repeats > 1 else "")
        if groups is not None:
            cv += " (an image's views in one fold)"
        if small:
            cv += f", C up to {SMALL_C_MAX} (fewer than {SMALL_CLASS} images in a class),"
        head.params.update(
            C=best,
            selection=(
                f"{cv} log loss, {len(losses)} of {len(grid)} values tried, "
                "the strongest regularisation within one standard error of the best"
            ),
        )
    else:  # a single image in a class: the few-shot search's weakest regularisation
        best = max(c for c in C_GRID if c <= SMALL_C_MAX)
        head.params.update(
            C=best, selection="the few-shot default (a class has fewer than 2 images: no CV)"
        )
    final = model(best).fit(x, y)
    head.arrays["coef"] = final.coef_
    head.arrays["intercept"] = final.intercept_


def one_standard_error(losses: list[np.ndarray]) -> int:
    """The index of the strongest regularisation whose mean CV loss is within one standard
    error of the lowest (the "one-standard-error rule", Hastie et al., *The Elements of
    Statistical Learning*, 7.10; glmnet's ``lambda.1se``).

    With few images the lowest CV loss is a noisy estimate, and the least regularised of the
    values it cannot tell apart generalises worst (bench/fewshot.py measures it).

    Args:
        losses: Per value, strongest regularisation first: the held-out loss of every fold.

    Example:
        >>> one_standard_error([np.array([0.9, 1.1]), np.array([0.55, 0.65]), np.array([0.3, 0.7])])
        1
    """
    means = np.array([fold.mean() for fold in losses])
    best = int(np.argmin(means))
    spread = losses[best]
    error = float(spread.std(ddof=1) / np.sqrt(len(spread))) if len(spread) > 1 else 0.0
    return int(np.flatnonzero(means <= means[best] + error)[0])


def _fit_svm(
    head: ClassicHead, x: np.ndarray, y: np.ndarray, folds: int, class_weight: str | None, seed: int
) -> None:
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.model_selection import GridSearchCV, StratifiedKFold
    from sklearn.svm import LinearSVC

    base = LinearSVC(max_iter=10000, class_weight=class_weight)
    if folds >= 2:
        splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
        search = GridSearchCV(base, {"C": list(C_GRID)}, cv=splitter).fit(x, y)
        best = float(search.best_params_["C"])
        head.params.update(C=best, selection=f"{folds}-fold CV accuracy over {len(C_GRID)} values")
        calibrated = CalibratedClassifierCV(
            LinearSVC(C=best, max_iter=10000, class_weight=class_weight),
            method="sigmoid",
            cv=StratifiedKFold(n_splits=min(3, folds), shuffle=True, random_state=seed),
            ensemble=False,
        ).fit(x, y)
        fitted = calibrated.calibrated_classifiers_[0]
        svm = fitted.estimator
        a = np.array([c.a_ for c in fitted.calibrators])
        b = np.array([c.b_ for c in fitted.calibrators])
    else:
        svm = base.set_params(C=1.0).fit(x, y)
        head.params.update(C=1.0, selection="default (a class has fewer than 2 images: no CV)")
        a, b = -np.ones(svm.coef_.shape[0]), np.zeros(svm.coef_.shape[0])
    head.arrays.update(coef=svm.coef_, intercept=svm.intercept_, platt_a=a, platt_b=b)


def _fit_knn(head: ClassicHead, x: np.ndarray, y: np.ndarray) -> None:
    """k by leave-one-out accuracy: scikit-learn finds each image's nearest others (cosine:
    ``kneighbors()`` without a query leaves each point out of its own neighbours), and each k
    votes as :func:`knn_votes` does (uniform votes, ties to the first class)."""
    from sklearn.neighbors import NearestNeighbors

    reference = _unit(x)
    candidates = [k for k in K_GRID if k < len(y)] or [1]
    if len(y) < 2:
        scores = [0.0]
    else:
        search = NearestNeighbors(n_neighbors=min(max(candidates), len(y) - 1), metric="cosine")
        nearest = search.fit(reference).kneighbors(return_distance=False)
        votes = np.eye(len(head.classes))[y[nearest]]  # n x k_max x classes, nearest first
        scores = [float((votes[:, :k].sum(axis=1).argmax(axis=1) == y).mean()) for k in candidates]
    best = int(np.argmax(scores))
    head.params.update(
        k=candidates[best],
        metric="cosine",
        selection=f"leave-one-out accuracy over k in {candidates}",
        loo_accuracy=scores[best],
    )
    head.arrays.update(reference=reference.astype(np.float32), reference_labels=y.astype(np.int64))


def _fit_centroid(head: ClassicHead, x: np.ndarray, y: np.ndarray) -> None:
    """Class means of the unit vectors (scikit-learn's ``NearestCentroid``), normalised, and the
    temperature of their cosine similarities with the lowest training log loss."""
    from sklearn.neighbors import NearestCentroid

    unit = _unit(x)
    centroids = _unit(NearestCentroid().fit(unit, y).centroids_)
    similarity = unit @ centroids.T
    temperatures = np.logspace(0, 2.5, 26)
    losses = [
        float(-np.log(_softmax(similarity * t)[np.arange(len(y)), y] + 1e-12).mean())
        for t in temperatures
    ]
    best = float(temperatures[int(np.argmin(losses))])
    head.params.update(
        temperature=best, metric="cosine", selection="training log loss over 26 temperatures"
    )
    head.arrays["centroids"] = centroids


def _unit(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.asarray(x / np.maximum(norms, 1e-12))


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return np.asarray(exp / exp.sum(axis=1, keepdims=True))


def linear_layer(head: ClassicHead) -> tuple[torch.Tensor, torch.Tensor]:
    """A linear head's scores as one layer on raw (unstandardised) features.

    ``coef @ ((x - mean) / scale) + intercept`` becomes ``weight @ x + bias``, in float64. A
    binary logistic regression's single score ``s`` becomes the two logits ``(-s/2, s/2)``,
    whose softmax is its ``(1 - sigmoid(s), sigmoid(s))``; a binary SVM keeps its one decision
    score (its Platt scaling reads it).

    Raises:
        ConfigError: A head without coefficients (``knn``, ``centroid``).

    Example:
        >>> rng = np.random.default_rng(0)
        >>> x = np.vstack([rng.normal(0, 1, (20, 4)), rng.normal(2, 1, (20, 4))])
        >>> weight, bias = linear_layer(fit_head("logreg", x, ["a"] * 20 + ["b"] * 20))
        >>> tuple(weight.shape), tuple(bias.shape)
        ((2, 4), (2,))
    """
    if head.kind not in ("logreg", "svm"):
        raise ConfigError(f"a {head.kind} head has no linear layer; use logreg or svm")
    coef = np.ascontiguousarray(head.arrays["coef"], dtype=np.float64)
    intercept = np.ascontiguousarray(head.arrays["intercept"], dtype=np.float64)
    scale = np.ascontiguousarray(head.arrays["scale"], dtype=np.float64)
    mean = np.ascontiguousarray(head.arrays["mean"], dtype=np.float64)
    weight = coef / scale
    bias = intercept - coef @ (mean / scale)
    if head.kind == "logreg" and weight.shape[0] == 1 and len(head.classes) == 2:
        weight = np.vstack([-weight / 2, weight / 2])
        bias = np.concatenate([-bias / 2, bias / 2])
    return torch.from_numpy(weight), torch.from_numpy(bias)


def knn_votes(similarity: torch.Tensor, labels: torch.Tensor, k: int, classes: int) -> torch.Tensor:
    """Each row's share of votes per class among its ``k`` most similar references."""
    nearest = similarity.topk(min(k, similarity.shape[1]), dim=1).indices
    votes = nn.functional.one_hot(labels[nearest], classes).to(similarity.dtype)
    return votes.sum(dim=1) / nearest.shape[1]


class HeadModule(nn.Module):
    """A fitted classic head as a PyTorch module: features in, logits out.

    ``softmax(logits)`` is the head's probabilities: for ``logreg`` the logits are its scores;
    for ``centroid`` the cosine similarities times the fitted temperature; for ``svm`` (Platt
    probabilities) and ``knn`` (vote shares) the log of the probabilities. It is what
    :meth:`ClassicHead.predict_proba` computes (in float64 there), what a linear run's
    :class:`graft.models.RunModel` ends with, and what LP-FT starts a neural head from.

    Args:
        head: The fitted head.
        dtype: The buffers' dtype.
    """

    def __init__(self, head: ClassicHead, dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        self.kind = head.kind
        self.classes = len(head.classes)
        self.k = int(head.params.get("k", 1))
        self.temperature = float(head.params.get("temperature", 1.0))
        arrays: dict[str, Any] = dict(head.arrays)
        if self.kind in ("logreg", "svm"):
            arrays["weight"], arrays["bias"] = linear_layer(head)
            for name in ("coef", "intercept", "mean", "scale"):
                arrays.pop(name)
        for name, value in arrays.items():
            tensor = torch.as_tensor(value).clone()  # torch's own (aligned) memory
            self.register_buffer(name, tensor if tensor.dtype == torch.int64 else tensor.to(dtype))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """``N x classes`` logits of ``N x D`` features."""
        if self.kind in ("logreg", "svm"):
            scores = features @ self.get_buffer("weight").T + self.get_buffer("bias")
            return (
                scores
                if self.kind == "logreg"
                else _platt_log_proba(
                    scores, self.get_buffer("platt_a"), self.get_buffer("platt_b"), self.classes
                )
            )
        x = (features - self.get_buffer("mean")) / self.get_buffer("scale")
        unit = x / x.norm(dim=1, keepdim=True).clamp_min(1e-12)
        if self.kind == "centroid":
            return unit @ self.get_buffer("centroids").T * self.temperature
        similarity = unit @ self.get_buffer("reference").T
        votes = knn_votes(similarity, self.get_buffer("reference_labels"), self.k, self.classes)
        return votes.clamp_min(_TINY).log()


#: The smallest probability a log-probability head returns (its log is finite).
_TINY = 1e-30


def _platt_log_proba(
    decision: torch.Tensor, a: torch.Tensor, b: torch.Tensor, classes: int
) -> torch.Tensor:
    """Platt-scaled probabilities of SVM decision scores, as logs (one-vs-rest, normalised)."""
    calibrated = torch.sigmoid(-(decision * a + b))
    if classes == 2:
        proba = torch.cat([1 - calibrated, calibrated], dim=1)
    else:
        total = calibrated.sum(dim=1, keepdim=True)
        proba = torch.where(
            total > 0, calibrated / total.clamp_min(_TINY), torch.full_like(calibrated, 1 / classes)
        )
    return proba.clamp_min(_TINY).log()
