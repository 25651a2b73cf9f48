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
from graft.errors import DataError
from graft.runs import read_run_config
from graft.training import LinearOptions, NeuralOptions

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


def test_both_shapes_of_format1_read_as_one_typed_config(tmp_path: Path) -> None:
    """A linear run's ``features`` list and top-level ``engine`` and a neural run's ``backbone``
    and ``options.engine`` come out in the same fields."""
    linear, tuned = (read_run_config(FORMAT1 / run) for run in ("linear", "finetune"))
    assert [b.name for b in linear.backbones] == ["efficientnet_lite0.in1k"]
    assert [b.name for b in tuned.backbones] == ["test_efficientnet.user"]
    assert linear.engine == tuned.engine == "torch"
    assert linear.backbones[0].preprocessing.input_size == 64
    assert tuned.backbones[0].preprocessing.input_size == 64
    assert (linear.head.kind, linear.neural) == ("logreg", False)
    assert (tuned.head.kind, tuned.head.num_classes, tuned.neural) == ("neural", 2, True)
    assert linear.classes == tuned.classes == ["blue", "red"]
    broken = shutil.copytree(FORMAT1 / "finetune", tmp_path / "broken")
    config = json.loads((broken / "config.json").read_text())
    del config["backbone"]
    (broken / "config.json").write_text(json.dumps(config))
    with pytest.raises(DataError, match="missing or malformed field 'backbone'"):
        read_run_config(broken)


def test_data_phases_and_timings_read_as_records() -> None:
    """The data record, a neural run's phases and both strategies' timings are typed."""
    linear, tuned = (read_run_config(FORMAT1 / run) for run in ("linear", "finetune"))
    for run in (linear, tuned):
        assert run.data.layout == "split-folders" and run.data.manifest == "split.csv"
        assert run.data.counts == {"train": {"blue": 6, "red": 6}, "val": {"blue": 3, "red": 3}}
        assert run.data.options["seed"] == 0
        assert run.data.cleaning["near_duplicates_across_splits"]["pairs"] == 0
    assert [(p.name, p.epochs, p.top) for p in tuned.phases] == [("head", 1, 0), ("unfrozen", 1, 2)]
    assert tuned.phases[1].base_lrs["@1"] == 5e-05 and tuned.phases[0].path == "cached-features"
    assert linear.phases == []
    assert linear.timings.steps_s["fit"] == 1.339
    assert linear.timings.total_s == pytest.approx(0.022 + 0.6 + 0.04 + 1.339 + 0.02)
    assert tuned.timings.epoch_s == {"head": 0.02, "unfrozen": 0.03}
    assert tuned.timings.total_s is None


def test_options_read_as_the_strategy_options(tmp_path: Path) -> None:
    """``config.json``'s options become the strategy's own dataclass; unknown fields are named."""
    linear, tuned = (read_run_config(FORMAT1 / run) for run in ("linear", "finetune"))
    probe = LinearOptions.from_run(linear)
    assert (probe.backbone, probe.head, probe.image_size, probe.engine) == (
        "efficientnet_lite0",
        "logreg",
        64,
        "torch",
    )
    options = NeuralOptions.from_run(tuned)
    assert (options.strategy, options.epochs, options.freeze_epochs, options.ema) == (
        "finetune",
        2,
        1,
        0.998,
    )
    with pytest.raises(DataError, match="has no NeuralOptions"):
        NeuralOptions.from_run(linear)
    newer = json.loads((FORMAT1 / "finetune" / "config.json").read_text())
    newer["options"]["warp_drive"] = True
    (tmp_path / "config.json").write_text(json.dumps(newer))
    with pytest.raises(DataError, match="unknown options warp_drive"):
        NeuralOptions.from_run(read_run_config(tmp_path))
