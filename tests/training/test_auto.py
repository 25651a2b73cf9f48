"""``--strategy auto``: the ladder within a budget, the best rung on validation kept."""

from __future__ import annotations

import json
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch

import graft
from graft.errors import ConfigError
from graft.ladder import auto
from graft.ladder.auto import Deadline, parse_budget
from graft.training.callbacks import Callback, StopTraining
from synthetic import write_class_folders

QUICK = {"engine": "torch", "workers": 0, "batch_size": 4, "precision": "fp32", "augment": "none"}


def test_budgets_parse_and_bad_ones_are_refused() -> None:
    assert parse_budget("1h") == 3600 and parse_budget(" 2.5m ") == 150
    for bad in ("ten minutes", "-5s", "0"):
        with pytest.raises(ConfigError, match="--budget"):
            parse_budget(bad)


def test_the_deadline_stops_an_epoch_that_would_overrun() -> None:
    deadline = Deadline(time.monotonic() + 100)
    deadline.on_epoch_begin({"phase": "head", "epoch": 0})  # nothing known: it runs
    deadline.on_epoch_end({"phase": "head", "record": {"seconds": 30.0, "eval_seconds": 1.0}})
    deadline.on_epoch_begin({"phase": "head", "epoch": 1})  # 31 s fit in the 100 s left
    # an unfrozen epoch is estimated at three times the last one: 93 s, still fits ...
    deadline.on_epoch_begin({"phase": "unfrozen", "epoch": 2})
    deadline.on_epoch_end({"phase": "unfrozen", "record": {"seconds": 120.0}})
    with pytest.raises(StopTraining):  # ... but the measured 120 s do not
        deadline.on_epoch_begin({"phase": "unfrozen", "epoch": 3})
    assert deadline.cut == ["unfrozen epoch 4"]


def test_the_deadline_shortens_a_phase_counting_the_pauses_between_epochs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = [0.0]
    monkeypatch.setattr(auto, "time", SimpleNamespace(monotonic=lambda: clock[0]))
    deadline, lengths = Deadline(100.0), []

    def epoch(number: int, begins: float, ends: float) -> None:
        clock[0] = begins
        deadline.on_epoch_begin({"phase": "unfrozen", "epoch": number})
        clock[0] = ends
        state = {"phase": "unfrozen", "record": {"seconds": ends - begins}}
        deadline.on_epoch_end(
            {**state, "phase_epoch": number, "phase_epochs": 4, "shorten_phase": lengths.append}
        )

    deadline.on_phase_begin({"phase": "unfrozen", "epoch": 0})
    epoch(1, 0.0, 20.0)  # three more 20-s epochs fit in the 80 s left
    epoch(2, 30.0, 50.0)  # but each is followed by a 10-s pause (checkpoints): one more fits
    assert lengths == [3] and deadline.shortened == ["unfrozen from 4 to 3 epochs"]
    epoch(3, 60.0, 80.0)  # the last epoch of the shortened phase is not cut
    assert deadline.cut == []


def test_a_last_epoch_that_may_fit_is_made_the_phases_last(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [9.0]
    monkeypatch.setattr(auto, "time", SimpleNamespace(monotonic=lambda: clock[0]))
    deadline, lengths = Deadline(100.0, reserve=10.0), []
    deadline.on_phase_begin({"phase": "unfrozen", "epoch": 0})
    deadline.on_epoch_begin({"phase": "unfrozen", "epoch": 1})
    clock[0] = 49.0  # a 40-s epoch; 41 s left: another fits if its pause is under a second
    state = {"phase": "unfrozen", "record": {"seconds": 40.0}, "phase_epochs": 4}
    deadline.on_epoch_end({**state, "phase_epoch": 1, "shorten_phase": lengths.append})
    assert lengths == [2]  # so the next epoch, if it runs, ends the phase at a zero rate
    clock[0] = 49.5
    deadline.on_epoch_begin({"phase": "unfrozen", "epoch": 2})  # it runs
    assert deadline.cut == []


@pytest.mark.slow
def test_a_phase_whose_first_epoch_cannot_fit_is_not_set_up(
    colours: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # with no time left, neither phase passes its frozen stages over the training images
    # (the unfrozen phase's set-up, the longest, would be spent on an epoch that never runs)
    from graft.training import NeuralOptions, train_neural
    from graft.training.inputs import PhaseInputs

    built: list[str] = []
    set_up = PhaseInputs.epoch_data

    def spy(self: PhaseInputs, phase: Any) -> Any:
        built.append(phase.name)
        return set_up(self, phase)

    monkeypatch.setattr(PhaseInputs, "epoch_data", spy)
    deadline = Deadline(time.monotonic() - 1.0)
    options = NeuralOptions(strategy="finetune", epochs=2, freeze_epochs=1, **QUICK)
    result = train_neural(colours, out=tmp_path / "run", options=options, callbacks=[deadline])
    assert built == []
    assert deadline.cut == ["head epoch 1", "unfrozen epoch 2"]
    assert result.safeguard["kept"] == "probe" and result.metrics["test"]["accuracy"] > 0.5


@pytest.fixture(scope="module")
def colours(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("colours")
    write_class_folders(root / "train", 10)
    write_class_folders(root / "test", 3, start=100)
    return root


@pytest.mark.slow
def test_auto_keeps_the_best_rung_on_validation(colours: Path, tmp_path: Path) -> None:
    out = tmp_path / "auto"
    result = graft.train(colours, strategy="auto", out=out, budget="1h", epochs=2, **QUICK)
    config = json.loads((out / "config.json").read_text())
    auto = config["auto"]
    # train/test folders: validation carved from train; all three rungs ran on that split
    assert config["data"]["val_carved_from_train"] == 0.1
    rungs = {rung["name"]: rung for rung in auto["rungs"]}
    assert list(rungs) == ["probe", "lp-ft shallow", "lp-ft deep"]
    assert all(rung["val_accuracy"] is not None for rung in rungs.values())
    best = max(rung["val_accuracy"] for rung in rungs.values())
    first_best = next(name for name, rung in rungs.items() if rung["val_accuracy"] == best)
    assert auto["chosen"] == first_best == result.chosen
    # OUT is the chosen rung (a chosen probe refitted on train and the carved validation
    # split): same strategy, same predictions
    chosen_dir = out / rungs[first_best]["run_dir"]
    if first_best == "probe":
        assert auto["refit"].startswith("the probe")
        chosen_dir = out / "ladder" / "runs" / "probe-refit"
    assert config["strategy"] == json.loads((chosen_dir / "config.json").read_text())["strategy"]
    paths = sorted((colours / "test").rglob("*.png"))
    np.testing.assert_allclose(
        graft.load(out).predict_proba(paths), graft.load(chosen_dir).predict_proba(paths), atol=1e-6
    )
    ladder = json.loads((out / "ladder" / "compare.json").read_text())
    assert [row["strategy"] for row in ladder["rows"]] == list(rungs)
    assert (out / "ladder" / "compare.html").is_file()


@pytest.mark.slow
def test_auto_respects_a_tiny_budget(colours: Path, tmp_path: Path) -> None:
    out = tmp_path / "auto"
    result = graft.train(colours, strategy="auto", out=out, budget="1s", epochs=2, **QUICK)
    auto = json.loads((out / "config.json").read_text())["auto"]
    assert result.chosen == auto["chosen"] == "probe"
    skipped = [rung for rung in auto["rungs"] if rung["name"] != "probe"]
    assert all(rung["note"].startswith("skipped") and rung["run_dir"] is None for rung in skipped)
    assert graft.load(out).predict([sorted(colours.rglob("*.png"))[0]])[0].label


def test_auto_needs_a_validation_split(colours: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="validation split"):
        graft.train(colours, strategy="auto", out=tmp_path / "a", val=0.0, **QUICK)
    assert not (tmp_path / "a").exists()


def test_auto_refuses_test_time_augmentation(colours: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="without test-time augmentation"):
        graft.train(colours, strategy="auto", out=tmp_path / "a", tta="flip", **QUICK)


class EndAfterOneMore(Callback):
    """Shortens the unfrozen phase to two epochs after its first, as the Deadline does."""

    def on_epoch_end(self, state: dict[str, Any]) -> None:
        if state["phase"] == "unfrozen" and state["phase_epoch"] == 1:
            state["shorten_phase"](2)


@pytest.mark.slow
def test_a_shortened_phase_still_decays_its_rate_to_the_end(colours: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    graft.train(
        colours, strategy="finetune", out=out, epochs=5, callbacks=[EndAfterOneMore()], **QUICK
    )
    history = json.loads((out / "history.json").read_text())
    unfrozen = [epoch for epoch in history if epoch["phase"] == "unfrozen"]
    assert len(unfrozen) == 2  # of the 4 planned
    # the last step is the compressed schedule's last, near zero; a phase merely cut after its
    # second of four epochs would still train at about half its peak rate
    assert max(unfrozen[1]["lr"].values()) < 0.05 * max(unfrozen[0]["lr"].values())
    config = json.loads((out / "config.json").read_text())
    assert [phase["epochs"] for phase in config["phases"]] == [1, 2]
    checkpoint = torch.load(out / "checkpoint_last.pt", weights_only=True)
    assert checkpoint["state"]["phase_epochs"] == [1, 2]  # a resumed run keeps the new length
