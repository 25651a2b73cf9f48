"""``crop_pct``: the centre crop a run trains with travels with the run (a loaded run predicts
with the run's preprocessing, not the backbone's)."""

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
    if strategy == "linear":  # and the crop changed what the model saw
        default = tmp_path / "default-crop"
        train_linear(
            split_folders, out=default, options=LinearOptions(engine="torch", precision="fp32")
        )
        _, cropped = _recorded(default, predictor.classes)
        assert np.abs(cropped - recorded).max() > 1e-3


def test_a_crop_or_size_outside_its_range_is_refused_by_every_strategy() -> None:
    with pytest.raises(ConfigError, match=r"--crop-pct 0.1 must be in \[0.25, 1\]"):
        NeuralOptions(crop_pct=0.1).validate()
    with pytest.raises(ConfigError, match=r"--crop-pct 2.0 must be in \[0.25, 1\]"):
        LinearOptions(crop_pct=2.0).specs()
    # the neural strategies check the image size as extraction does (before, a trainer took any)
    with pytest.raises(ConfigError, match=r"--image-size 8 is outside 32..1024 pixels"):
        NeuralOptions(image_size=8).validate()
    with pytest.raises(ConfigError, match=r"--image-size 4096 is outside 32..1024 pixels"):
        LinearOptions(image_size=4096).specs()
    # zero is a value, not "left out": its message names it (it was empty)
    with pytest.raises(ConfigError, match=r"--image-size 0 is outside"):
        NeuralOptions(image_size=0).validate()
    with pytest.raises(ConfigError, match=r"--crop-pct 0.0 must be in"):
        NeuralOptions(crop_pct=0.0).validate()
