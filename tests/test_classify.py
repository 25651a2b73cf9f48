"""``graft.classify``: batches keep going past bad files, results keep input order."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from graft.classification import classify
from graft.errors import ConfigError


def test_bad_files_do_not_stop_the_batch(tmp_path: Path, photos: dict[str, Path]) -> None:
    shutil.copy(photos["chelsea"], tmp_path / "1_cat.png")
    (tmp_path / "2_broken.jpg").write_text("garbage")
    shutil.copy(photos["coffee"], tmp_path / "3_coffee.png")
    results = classify([tmp_path], top_k=1, batch_size=2)
    assert [Path(r.path).name for r in results] == ["1_cat.png", "2_broken.jpg", "3_coffee.png"]
    assert [r.ok for r in results] == [True, False, True]
    assert "2_broken.jpg: not a readable image" in (results[1].error or "")
    assert results[2].predictions[0].label == "espresso"


def test_probabilities_are_sorted_and_sum_below_one(photos: dict[str, Path]) -> None:
    (result,) = classify([photos["astronaut"]], top_k=10)
    probabilities = [p.probability for p in result.predictions]
    assert probabilities == sorted(probabilities, reverse=True)
    assert 0 < sum(probabilities) <= 1.0 + 1e-6


@pytest.mark.parametrize("top_k", [0, -3])
def test_top_k_must_be_positive(photos: dict[str, Path], top_k: int) -> None:
    with pytest.raises(ConfigError, match=r"top-k must be at least 1"):
        classify([photos["chelsea"]], top_k=top_k)


def test_headless_backbone_cannot_classify(photos: dict[str, Path]) -> None:
    with pytest.raises(ConfigError, match=r"has no classifier head"):
        classify([photos["chelsea"]], backbone="mobilenetv2_100.in1k_features")
