"""Classic heads: fit, probabilities, safe save/load, and agreement with scikit-learn."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.calibration import CalibratedClassifierCV
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.svm import LinearSVC

from graft.errors import ConfigError, DataError
from graft.heads import (
    C_GRID,
    HEADS,
    SMALL_C_MAX,
    SMALL_CLASS,
    ClassicHead,
    canonical_order,
    cv_splits,
    fit_head,
    linear_layer,
    one_standard_error,
)


def _blobs(
    n_classes: int, per_class: int = 30, dim: int = 8, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 3, (n_classes, dim))
    x = np.vstack([rng.normal(c, 1.0, (per_class, dim)) for c in centers]).astype(np.float32)
    y = np.repeat([f"class{i}" for i in range(n_classes)], per_class)
    return x, y


def _shrunk_scale(x: np.ndarray) -> np.ndarray:
    """The logistic regression's scale: each feature's variance plus the average one's."""
    return np.sqrt(x.var(0) + x.var(0).mean())


@pytest.mark.parametrize("kind", HEADS)
@pytest.mark.parametrize("n_classes", [2, 3])
def test_heads_fit_separable_data_and_round_trip(kind: str, n_classes: int, tmp_path: Path) -> None:
    x, y = _blobs(n_classes)
    head = fit_head(kind, x, y)
    proba = head.predict_proba(x)
    assert proba.shape == (len(x), n_classes)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-9)
    assert (np.array(head.predict(x)) == y).mean() > 0.95
    head.save(tmp_path / "head.safetensors")
    loaded = ClassicHead.load(tmp_path / "head.safetensors")
    assert loaded.kind == kind and loaded.classes == head.classes and loaded.params == head.params
    np.testing.assert_array_equal(loaded.predict_proba(x), proba)


@pytest.mark.parametrize("n_classes", [2, 4])
def test_logreg_equals_scikit_learn_at_the_chosen_c(n_classes: int) -> None:
    x, y = _blobs(n_classes, seed=1)
    head = fit_head("logreg", x, y)
    standardized = (x - x.mean(0)) / _shrunk_scale(x)
    reference = LogisticRegression(C=head.params["C"], max_iter=3000).fit(standardized, y)
    np.testing.assert_allclose(
        head.predict_proba(x), reference.predict_proba(standardized), atol=1e-4
    )


@pytest.mark.parametrize("n_classes", [2, 3])
def test_svm_probabilities_equal_scikit_learns_calibration(n_classes: int) -> None:
    x, y = _blobs(n_classes, seed=2)
    head = fit_head("svm", x, y, seed=0)
    order, _ = canonical_order(x, np.unique(y, return_inverse=True)[1])  # the order it fits in
    standardized = (x[order] - x.mean(0)) / x.std(0)
    reference = CalibratedClassifierCV(
        LinearSVC(C=head.params["C"], max_iter=10000),
        method="sigmoid",
        cv=StratifiedKFold(n_splits=3, shuffle=True, random_state=0),
        ensemble=False,
    ).fit(standardized, y[order])
    np.testing.assert_allclose(
        head.predict_proba(x[order]), reference.predict_proba(standardized), atol=1e-6
    )


def test_balanced_class_weight_helps_the_rare_class() -> None:
    rng = np.random.default_rng(0)
    x = np.vstack([rng.normal(0, 1, (200, 4)), rng.normal(1.2, 1, (12, 4))])
    y = np.array(["common"] * 200 + ["rare"] * 12)
    plain = fit_head("logreg", x, y)
    balanced = fit_head("logreg", x, y, class_weight="balanced")
    rare = y == "rare"
    recall = lambda head: (np.array(head.predict(x[rare])) == "rare").mean()  # noqa: E731
    assert recall(balanced) > recall(plain)
    assert balanced.params["class_weight"] == "balanced"


def test_the_one_standard_error_rule_prefers_stronger_regularisation() -> None:
    # the lowest mean loss is the last value, but the middle one is within a standard error
    noisy = [np.array([1.0, 1.2, 1.1]), np.array([0.5, 0.9, 0.7]), np.array([0.2, 1.0, 0.6])]
    assert one_standard_error(noisy) == 1
    # a clear minimum with tight folds is kept
    tight = [np.array([1.0, 1.0]), np.array([0.7, 0.71]), np.array([0.5, 0.51])]
    assert one_standard_error(tight) == 2


def test_a_few_shot_logreg_repeats_its_cv_and_takes_the_one_standard_error_choice() -> None:
    rng = np.random.default_rng(3)  # overlapping classes: the loss has an inner minimum
    x = rng.normal(0, 1, (15, 64)) + np.repeat(rng.normal(0, 0.3, (3, 64)), 5, axis=0)
    y = np.repeat(["a", "b", "c"], 5)
    head = fit_head("logreg", x, y)
    assert head.params["C"] < C_GRID[-1]
    assert "5-fold CV x 3" in head.params["selection"]
    # the same folds, scored here: the chosen C is the rule's, not simply the lowest mean loss
    order, _ = canonical_order(x, np.searchsorted(["a", "b", "c"], y))
    x, y = x[order], y[order]
    xs = (x - x.mean(0)) / _shrunk_scale(x)
    splits = [
        split
        for repeat in range(3)
        for split in StratifiedKFold(5, shuffle=True, random_state=repeat).split(xs, y)
    ]
    grid = [c for c in C_GRID if c <= SMALL_C_MAX]  # a few-shot search stops there
    tried = [c for c in grid if c <= head.params["C"] * 1.001] + [
        c for c in grid if c > head.params["C"] * 1.001
    ][:2]
    losses = []
    # graft ranks C values along a warm-started path at a looser tolerance; so does this
    models = [LogisticRegression(tol=1e-3, max_iter=3000, warm_start=True) for _ in splits]
    for c in tried:
        fold_losses = []
        for model, (train, held) in zip(models, splits, strict=True):
            model.set_params(C=c).fit(xs[train], y[train])
            proba = model.predict_proba(xs[held])
            truth = np.searchsorted(model.classes_, y[held])
            fold_losses.append(
                -np.mean(np.log(np.clip(proba[np.arange(len(held)), truth], 1e-15, 1)))
            )
        losses.append(np.array(fold_losses))
    assert head.params["C"] == pytest.approx(tried[one_standard_error(losses)])


@pytest.mark.parametrize("per_class", [5, 25])
def test_a_few_shot_probe_searches_only_moderate_c(per_class: int) -> None:
    # well-separated classes: the CV loss keeps falling toward weak regularisation, and the
    # rule would take C = 21.5 on 5 images a class, fitting the separating direction of a
    # handful of points; bench/fewshot.py measures the cap (potato_disease 10-shot: graft
    # minus a fixed C = 0.1 went from -0.48 to +0.01 points, no dataset worse)
    rng = np.random.default_rng(0)
    centres = np.repeat(rng.normal(0, 2, (3, 64)), per_class, axis=0)
    x = rng.normal(0, 1, (3 * per_class, 64)) + centres
    y = np.repeat(["a", "b", "c"], per_class)
    chosen = fit_head("logreg", x, y).params
    if per_class < SMALL_CLASS:
        assert chosen["C"] <= SMALL_C_MAX and "C up to 0.25" in chosen["selection"]
    else:  # enough images: the whole grid, and this data takes the weak end of it
        assert chosen["C"] > SMALL_C_MAX and "C up to" not in chosen["selection"]


def test_the_views_of_an_image_are_held_out_together() -> None:
    rng = np.random.default_rng(0)
    images = 40
    y_images = rng.integers(0, 3, images)
    y, groups = np.tile(y_images, 8), np.tile(np.arange(images), 8)  # 8 views of each image
    for train, held in cv_splits(y, 5, 3, 0, groups):
        assert not set(groups[train]) & set(groups[held])
        assert len(set(groups[held])) * 8 == len(held)


def test_views_count_as_one_image_each_and_only_some_heads_take_them() -> None:
    x, y = _blobs(2, per_class=1)
    views = np.vstack([x, x[:, ::-1]])
    head = fit_head("logreg", views, list(y) * 2, groups=np.array([0, 1, 0, 1]))
    assert "no CV" in head.params["selection"]  # one image per class, not two rows
    x, y = _blobs(2, per_class=12)
    groups = np.tile(np.arange(24), 2)
    head = fit_head("logreg", np.vstack([x, x + 0.01]), list(y) * 2, groups=groups)
    assert "5-fold CV x 3 (an image's views in one fold)" in head.params["selection"]
    for kind in ("svm", "knn"):
        with pytest.raises(
            ConfigError,
            match=f"a {kind} head cannot fit on several views",
        ):
            fit_head(kind, np.vstack([x, x]), list(y) * 2, groups=groups)


@pytest.mark.parametrize("views", [1, 2])
def test_the_same_images_in_another_order_give_the_same_head(views: int) -> None:
    # few-shot, overlapping classes: here the C choice follows the fold draw (1 to 4 values of C
    # across these orders when the rows were fitted as given), so a head that depended on row
    # order or image ids (a run listing its images sorted, another as drawn) would differ
    rng = np.random.default_rng(5)
    images = rng.normal(0, 1, (15, 64)) + np.repeat(rng.normal(0, 0.3, (3, 64)), 5, axis=0)
    x = np.vstack([images + 0.05 * v for v in range(views)])
    y = np.tile(np.repeat(["a", "b", "c"], 5), views)
    groups = np.tile(np.arange(15), views) if views > 1 else None
    first = fit_head("logreg", x, y, groups=groups)
    for seed in range(6):
        draw = np.random.default_rng(seed)
        shuffle = draw.permutation(len(y))
        renamed = None if groups is None else draw.permutation(15)[groups][shuffle]
        again = fit_head("logreg", x[shuffle], y[shuffle], groups=renamed)
        assert again.params == first.params
        np.testing.assert_array_equal(again.arrays["coef"], first.arrays["coef"])
        np.testing.assert_array_equal(again.arrays["mean"], first.arrays["mean"])
    # last-bit differences (another engine's arithmetic) keep the same choice
    for seed in range(6):
        nudged = x.copy()
        rows = np.random.default_rng(seed).random(len(y)) < 0.5
        nudged[rows] = np.nextafter(x[rows], np.inf)
        assert fit_head("logreg", nudged, y, groups=groups).params == first.params


def test_tiny_classes_fall_back_without_cross_validation() -> None:
    x = np.array([[0.0, 1.0], [1.0, 0.0], [0.1, 0.9]])
    head = fit_head("logreg", x, np.array(["a", "b", "a"]))
    assert "no CV" in head.params["selection"]
    # the few-shot search's weakest regularisation, as a 2-image class would get at most
    assert head.params["C"] == max(c for c in C_GRID if c <= SMALL_C_MAX)


def test_unknown_head_and_bad_labels() -> None:
    x, y = _blobs(2)
    with pytest.raises(ConfigError, match=r"head 'forest' is not one of"):
        fit_head("forest", x, y)
    with pytest.raises(ConfigError, match=r"class weight"):
        fit_head("logreg", x, y, class_weight="auto")
    with pytest.raises(DataError, match=r"at least two classes"):
        fit_head("logreg", x, np.array(["a"] * len(x)))
    with pytest.raises(DataError, match=r"not among the classes"):
        fit_head("logreg", x, y, classes=["class0"])


def test_a_non_head_file_is_refused(tmp_path: Path) -> None:
    bogus = tmp_path / "head.safetensors"
    bogus.write_bytes(b"nonsense")
    with pytest.raises(DataError, match=r"not a graft head file"):
        ClassicHead.load(bogus)


def test_a_nearly_constant_feature_gets_no_outsized_weight() -> None:
    # eight informative features and one that hardly varies but tracks the label: divided by
    # its own spread it counted as much as the rest, and its folded weight (coefficient over
    # spread) went into the thousands, so a noise of 1e-3 in it (int8, bf16) moved the logits
    # by several units (the ELPV probe: -180 on a feature of spread 1.2e-4)
    rng = np.random.default_rng(0)
    y = np.repeat(["a", "b"], 100)
    informative = rng.normal(0, 1, (200, 8)) + (y == "b")[:, None] * 0.8
    faint = 1e-4 * (rng.normal(0, 1, (200, 1)) + (y == "b")[:, None] * 2.0)
    x = np.hstack([informative, faint])
    head = fit_head("logreg", x, y)
    weight, _ = linear_layer(head)
    assert float(weight[:, 8].abs().max()) <= float(weight[:, :8].abs().max())
    noisy = x.copy()
    noisy[:, 8] += 1e-3
    assert np.abs(head.predict_proba(noisy) - head.predict_proba(x)).max() < 0.01
