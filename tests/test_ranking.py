"""Transferability scores and graft rank: LogME against its formula, signal above noise,
training images only."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from graft.cli import app
from graft.ranking import scores
from graft.ranking.rank import parse_candidates, rank

runner = CliRunner()


def _direct_evidence(f: np.ndarray, y: np.ndarray, alpha: float, beta: float) -> float:
    """log N(y; 0, I/beta + F F^T/alpha) / N, the evidence written out (slow, O(N^3))."""
    n = len(y)
    covariance = np.eye(n) / beta + f @ f.T / alpha
    _, logdet = np.linalg.slogdet(covariance)
    quadratic = y @ np.linalg.solve(covariance, y)
    return float(-0.5 * (n * np.log(2 * np.pi) + logdet + quadratic) / n)


@pytest.mark.parametrize(("n", "d"), [(40, 6), (60, 20)])
def test_logme_evidence_matches_the_formula_and_is_maximal(n: int, d: int) -> None:
    rng = np.random.default_rng(n)
    f = rng.standard_normal((n, d))
    y = (f[:, 0] + 0.5 * rng.standard_normal(n) > 0).astype(float)  # labels the features carry
    values, vectors = np.linalg.eigh(f.T @ f)
    fitted = scores.evidence_of(f, y, np.clip(values, 0, None), vectors)
    best = _direct_evidence(f, y, fitted.alpha, fitted.beta)
    assert fitted.evidence == pytest.approx(best, rel=1e-8, abs=1e-8)
    for da, db in [(1.2, 1.0), (0.8, 1.0), (1.0, 1.2), (1.0, 0.8)]:
        assert _direct_evidence(f, y, fitted.alpha * da, fitted.beta * db) <= best + 1e-9


def _signal_and_noise(classes: int = 3, n: int = 240) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, classes, n)
    noisy_copy = np.eye(classes)[labels] + 0.6 * rng.standard_normal((n, classes))
    signal = np.hstack([noisy_copy, rng.standard_normal((n, 29))])
    return signal, rng.standard_normal((n, 32)), labels


@pytest.mark.parametrize("score", ["logme", "h_score", "knn_accuracy", "linear_cv_accuracy"])
def test_a_noisy_copy_of_the_labels_beats_pure_noise(score: str) -> None:
    signal, noise, labels = _signal_and_noise()
    function = getattr(scores, score)
    assert function(signal, labels) > function(noise, labels)


def test_leep_and_nce_reward_source_labels_that_predict_the_target() -> None:
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 300)
    informative = np.full((300, 10), 0.01)
    informative[np.arange(300), labels * 5] = 0.91  # source class 0 -> cats, 5 -> dogs
    random = rng.dirichlet(np.ones(10), 300)
    assert scores.nce(informative, labels) == pytest.approx(0.0, abs=1e-12)
    assert scores.nce(informative, labels) > scores.nce(random, labels)
    assert scores.leep(informative, labels) > scores.leep(random, labels)


def test_one_class_is_refused() -> None:
    from graft.errors import DataError

    with pytest.raises(DataError, match="at least two classes"):
        scores.logme(np.ones((4, 2)), np.zeros(4))


def test_candidates_expand_layers_and_at_syntax() -> None:
    pairs = parse_candidates("efficientnet_lite0.in1k@stage4,squeezenet1_1.in1k", "final,stage3")
    assert pairs == [
        ("efficientnet_lite0.in1k", "stage4"),
        ("squeezenet1_1.in1k", "final"),
        ("squeezenet1_1.in1k", "stage3"),
    ]
    available = [name for name, _ in parse_candidates("all-available")]
    assert "efficientnet_lite0.in1k" in available and "resnet50" not in available


@pytest.mark.slow
def test_rank_reads_training_images_only(
    split_folders: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import graft.features.extract as extract

    seen: list[Path] = []
    original = extract.extract_features

    def spy(paths, spec, **kwargs):  # type: ignore[no-untyped-def]
        seen.extend(Path(p) for p in paths)
        return original(paths, spec, **kwargs)

    monkeypatch.setattr(extract, "extract_features", spy)
    ranking = rank(
        split_folders,
        backbones="efficientnet_lite0.in1k,squeezenet1_1.in1k,efficientnet_lite0.in1k@stage3",
        engine="torch",
    )
    assert seen and all("train" in path.parts for path in seen)
    assert ranking.images == 20
    assert {c.name for c in ranking.candidates} == {
        "efficientnet_lite0.in1k",
        "squeezenet1_1.in1k",
        "efficientnet_lite0.in1k@stage3",
    }
    lite0 = next(c for c in ranking.candidates if c.name == "efficientnet_lite0.in1k")
    assert set(lite0.scores) == {"logme", "h_score", "knn", "linear_cv", "leep", "nce"}
    assert lite0.dim == 1280
    staged = next(c for c in ranking.candidates if c.layer == "stage3")
    assert "leep" not in staged.scores  # no ImageNet head at an inner layer


@pytest.mark.slow
def test_rank_cli_json(split_folders: Path) -> None:
    result = runner.invoke(
        app,
        [
            "rank",
            str(split_folders),
            "--backbones",
            "squeezenet1_1.in1k,efficientnet_lite0.in1k",
            "--engine",
            "torch",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["recommended"] == document["candidates"][0]["name"]
    assert document["images"] == 20


def test_compare_top_n_takes_the_saved_ranking(tmp_path: Path) -> None:
    from graft.ladder.compare import _resolve_backbones

    saved = {
        "candidates": [
            {"backbone": "squeezenet1_1.in1k", "layer": "final"},
            {"backbone": "efficientnet_lite0.in1k", "layer": "stage4"},
            {"backbone": "efficientnet_lite1.in1k", "layer": "final"},
        ]
    }
    (tmp_path / "ranking.json").write_text(json.dumps(saved))
    chosen = _resolve_backbones(["top2"], tmp_path / "split.csv", tmp_path, {})
    assert chosen == ["squeezenet1_1.in1k", "efficientnet_lite1.in1k"]
    assert _resolve_backbones(["a", "b"], tmp_path, tmp_path, {}) == ["a", "b"]
