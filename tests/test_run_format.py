"""Runs written by earlier versions of graft keep loading and predict as they did."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import graft
from fixtures.make_runs import fixture_images

FORMAT1 = Path(__file__).parent / "fixtures" / "runs" / "format1"


@pytest.mark.parametrize("run", ["linear", "finetune"])
def test_format1_runs_load_and_predict_as_they_did(
    run: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fine-tuned fixture's user weights are not on this machine: its own file suffices."""
    monkeypatch.setenv("GRAFT_WEIGHTS_DIR", str(tmp_path / "no-weights"))
    copy = shutil.copytree(FORMAT1 / run, tmp_path / run)
    expected = json.loads((FORMAT1 / "expected.json").read_text())[run]
    predictions = graft.load(copy, backend="torch").predict(fixture_images(tmp_path / "images"))
    got = [[p.probabilities[label] for label in ("blue", "red")] for p in predictions]
    want = [[row[label] for label in ("blue", "red")] for row in expected]
    np.testing.assert_allclose(got, want, atol=1e-5)


@pytest.mark.parametrize("run", ["linear", "finetune"])
def test_format1_runs_load_as_one_network(run: str, tmp_path: Path) -> None:
    """``graft.load(run).model``: uint8 pixels in, logits out, whose softmax is what the run
    predicted (the linear fixture's head under its backbone's features, computed by PyTorch)."""
    predictor = graft.load(shutil.copytree(FORMAT1 / run, tmp_path / run), backend="torch")
    model = predictor.model
    assert isinstance(model, torch.nn.Module) and model.classes == ["blue", "red"]
    images = [Image.open(path) for path in fixture_images(tmp_path / "images")]
    pixels = torch.stack([predictor.prepare(image.convert("RGB"))[0] for image in images])
    assert pixels.dtype == torch.uint8 and pixels.shape == (6, 3, 64, 64)
    with torch.no_grad():
        logits = model(pixels)
    assert logits.dtype == torch.float32 and logits.shape == (6, 2)
    expected = json.loads((FORMAT1 / "expected.json").read_text())[run]
    want = [[row[label] for label in ("blue", "red")] for row in expected]
    np.testing.assert_allclose(logits.softmax(1).numpy(), want, atol=1e-5)
