"""The weight average: its update rule, and a run keeping it when it is better on validation."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from graft.training import Callback, NeuralOptions, train_neural
from graft.training.ema import WeightAverage
from synthetic import write_class_folders


def test_the_average_follows_the_warmed_up_decay() -> None:
    model = torch.nn.Linear(3, 2)
    start = model.weight.detach().clone()
    average = WeightAverage(model, decay=0.9)
    with torch.no_grad():
        model.weight.add_(1.0)
    average.update(model)  # decay min(0.9, 1/10) = 0.1: 90 % of the way to the new weights
    torch.testing.assert_close(average.state["weight"], start + 0.9)
    for _ in range(200):
        average.update(model)
    assert average.current_decay() == 0.9
    torch.testing.assert_close(average.state["weight"], start + 1.0)
    # swapped in for a block, then the model's own weights come back
    with torch.no_grad():
        model.weight.add_(5.0)
    with average.swapped_in(model):
        torch.testing.assert_close(model.weight, start + 1.0)
    torch.testing.assert_close(model.weight, start + 6.0)


class Weights(Callback):
    """The head's weights before training and after every step."""

    def __init__(self) -> None:
        self.start: dict[str, torch.Tensor] = {}
        self.steps: list[dict[str, torch.Tensor]] = []

    def on_epoch_begin(self, state: dict[str, Any]) -> None:
        if state["epoch"] == 0:
            self.start = _head(state["model"])

    def on_batch_end(self, state: dict[str, Any]) -> None:
        self.steps.append(_head(state["model"]))


def _head(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items() if k.startswith("head.")}


@pytest.mark.slow
@pytest.mark.parametrize("ema", [0.998, 0.0])
def test_a_run_keeps_the_average_when_it_is_better_on_validation(
    tmp_path: Path, ema: float
) -> None:
    classes = ("red", "blue", "green")
    write_class_folders(tmp_path / "d" / "train", 8, classes)
    write_class_folders(tmp_path / "d" / "validation", 4, classes, start=100)
    # a rate high enough that the raw weights jump about and the average is calmer (seeded:
    # the average wins the first epoch on validation loss)
    options = NeuralOptions(
        strategy="head",
        epochs=2,
        augment="none",
        head_init="random",
        safeguard=False,
        lr=1.0,
        monitor="val_loss",
        label_smoothing=0.0,
        ema=ema,
        engine="torch",
        workers=0,
        batch_size=4,
        precision="fp32",
    )
    weights = Weights()
    result = train_neural(
        tmp_path / "d", out=tmp_path / "run", options=options, callbacks=[weights]
    )
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    saved = {
        k: v
        for k, v in load_file(str(tmp_path / "run" / "model.safetensors")).items()
        if k.startswith("head.")
    }
    steps_per_epoch = len(weights.steps) // 2
    if not ema:
        assert "ema" not in result.history[0] and config["best_weights"] == "raw"
        return
    assert config["best_weights"] == "ema" and config["best_epoch"] == 1
    first = result.history[0]
    assert first["ema"]["val_loss"] < first["val_loss"]
    # the saved head is the average of the first epoch's steps, by the documented rule
    expected = dict(weights.start)
    for step, state in enumerate(weights.steps[:steps_per_epoch]):
        keep = min(ema, (1 + step) / (10 + step))
        expected = {k: keep * expected[k] + (1 - keep) * state[k] for k in expected}
    for name, value in expected.items():
        torch.testing.assert_close(saved[name], value, atol=1e-5, rtol=1e-5)
