"""Runs written by earlier versions of graft keep loading and predict as they did."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

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
