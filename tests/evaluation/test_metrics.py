"""Metrics against scikit-learn on random data, and the bootstrap's coverage."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import (
    accuracy_score,
    f1_score,
    log_loss,
    precision_score,
    recall_score,
    roc_auc_score,
    top_k_accuracy_score,
)

from graft.metrics import (
    bootstrap_intervals,
    classification_metrics,
    expected_calibration_error,
)


@st.composite
def predictions(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, int]:
    n_classes = draw(st.integers(2, 6))
    n = draw(st.integers(n_classes * 2, 80))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    y = np.concatenate([np.arange(n_classes), rng.integers(0, n_classes, n - n_classes)])
    logits = rng.normal(size=(n, n_classes)) + 2.0 * np.eye(n_classes)[y] * rng.random()
    proba = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return y, proba, n_classes


@pytest.mark.slow
@settings(max_examples=60, deadline=None)
@given(predictions())
def test_metrics_match_scikit_learn(case: tuple[np.ndarray, np.ndarray, int]) -> None:
    y, proba, k = case
    classes = [f"c{i}" for i in range(k)]
    m = classification_metrics([classes[i] for i in y], proba, classes, bootstrap=0)
    pred = proba.argmax(1)
    labels = list(range(k))
    assert m["accuracy"] == pytest.approx(accuracy_score(y, pred))
    assert m["macro_f1"] == pytest.approx(
        f1_score(y, pred, labels=labels, average="macro", zero_division=0)
    )
    assert m["weighted_f1"] == pytest.approx(
        f1_score(y, pred, labels=labels, average="weighted", zero_division=0)
    )
    assert m["macro_precision"] == pytest.approx(
        precision_score(y, pred, labels=labels, average="macro", zero_division=0)
    )
    assert m["macro_recall"] == pytest.approx(
        recall_score(y, pred, labels=labels, average="macro", zero_division=0)
    )
    assert m["log_loss"] == pytest.approx(log_loss(y, proba, labels=labels), rel=1e-6)
    expected_auc = (
        roc_auc_score(y, proba[:, 1])
        if k == 2
        else roc_auc_score(y, proba, multi_class="ovr", average="macro")
    )
    assert m["roc_auc"] == pytest.approx(expected_auc)
    for top, value in m["top_k_accuracy"].items():
        assert value == pytest.approx(top_k_accuracy_score(y, proba, k=int(top), labels=labels))
    assert np.array(m["confusion_matrix"]).sum() == len(y)


@pytest.mark.slow
@settings(max_examples=25, deadline=None)
@given(predictions())
def test_vectorised_bootstrap_equals_a_plain_loop(case: tuple[np.ndarray, np.ndarray, int]) -> None:
    y, proba, k = case
    pred = proba.argmax(1)
    fast = bootstrap_intervals(y, pred, k, samples=200, seed=7)
    rng = np.random.default_rng(7)
    draws = rng.integers(0, len(y), size=(200, len(y)))
    accuracies = [accuracy_score(y[d], pred[d]) for d in draws]
    f1s = [
        f1_score(y[d], pred[d], labels=np.unique(y[d]), average="macro", zero_division=0)
        for d in draws
    ]
    assert fast["accuracy"] == pytest.approx(list(np.percentile(accuracies, [2.5, 97.5])))
    assert fast["macro_f1"] == pytest.approx(list(np.percentile(f1s, [2.5, 97.5])))


def test_one_image_has_a_point_interval() -> None:
    assert bootstrap_intervals(np.array([1]), np.array([0]), 2) == {
        "accuracy": [0.0, 0.0],
        "macro_f1": [0.0, 0.0],
    }
    assert bootstrap_intervals(np.array([1]), np.array([1]), 2)["macro_f1"] == [1.0, 1.0]


def test_bootstrap_interval_covers_the_true_accuracy_at_about_95_percent() -> None:
    """Simulate many test sets from a classifier with known accuracy 0.8."""
    rng = np.random.default_rng(0)
    trials, n, truth = 400, 200, 0.8
    covered = 0
    for trial in range(trials):
        y = rng.integers(0, 2, n)
        right = rng.random(n) < truth
        pred = np.where(right, y, 1 - y)
        low, high = bootstrap_intervals(y, pred, 2, samples=400, seed=trial)["accuracy"]
        covered += low <= truth <= high
    rate = covered / trials
    assert 0.91 <= rate <= 0.98, rate


def test_calibration_error_separates_honest_from_overconfident() -> None:
    rng = np.random.default_rng(1)
    n = 4000
    confidence = rng.uniform(0.5, 1.0, n)
    y = np.zeros(n, dtype=int)
    right = rng.random(n) < confidence
    honest = np.column_stack(
        [np.where(right, confidence, 1 - confidence), np.where(right, 1 - confidence, confidence)]
    )
    overconfident = np.column_stack([np.where(right, 0.999, 0.001), np.where(right, 0.001, 0.999)])
    assert expected_calibration_error(y, honest) < 0.03
    assert expected_calibration_error(y, overconfident) > 0.15


def test_metrics_json_keeps_the_earlier_fields_and_adds_the_new() -> None:
    m = classification_metrics(
        ["a", "b", "b", "a"], np.array([[0.7, 0.3], [0.4, 0.6], [0.2, 0.8], [0.6, 0.4]]), ["a", "b"]
    )
    assert {
        "accuracy",
        "macro_f1",
        "n",
        "per_class",
        "roc_auc",
        "log_loss",
        "ece",
        "intervals",
        "confusion_matrix",
    } <= set(m)
