"""``crop_pct``: the centre crop a run trains with travels with the run (predict, serve and
export read the run's preprocessing, not the backbone's)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

import graft
from graft.errors import ConfigError
from graft.training import LinearOptions, NeuralOptions, train_linear, train_neural


def _recorded(run_dir: Path, classes: list[str]) -> tuple[list[Path], np.ndarray]:
    """The validation images and the probabilities the run wrote for them."""
    with open(run_dir / "predictions_val.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    probabilities = [[float(r[f"p_{c}"]) for c in classes] for r in rows]
    return [Path(r["path"]) for r in rows], np.array(probabilities)


@pytest.mark.parametrize("strategy", ["linear", "head"])
def test_a_whole_image_run_predicts_on_the_whole_image(
    split_folders: Path, tmp_path: Path, strategy: str
) -> None:
    run_dir = tmp_path / strategy
    if strategy == "linear":
        train_linear(
            split_folders,
            out=run_dir,
            options=LinearOptions(engine="torch", precision="fp32", crop_pct=1.0),
        )
    else:
        options = NeuralOptions(
            strategy="head", epochs=1, engine="torch", workers=0, batch_size=4, crop_pct=1.0
        )
        train_neural(split_folders, out=run_dir, options=options)
    predictor = graft.load(run_dir, backend="torch")
    assert [p.crop_pct for p in predictor.preprocessings] == [1.0]
    paths, recorded = _recorded(run_dir, predictor.classes)
    predictions = predictor.predict(paths)
    again = np.array([[p.probabilities[c] for c in predictor.classes] for p in predictions])
    # the run's own figures are the loaded predictor's: it crops as the run did
    assert np.abs(again - recorded).max() < 1e-4


def test_a_crop_outside_the_unit_interval_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"--crop-pct 0.0 must be in \(0, 1\]"):
        NeuralOptions(crop_pct=0.0).validate()
    with pytest.raises(ConfigError, match=r"crop fraction 2.0 is outside \(0, 1\]"):
        LinearOptions(crop_pct=2.0).specs()
