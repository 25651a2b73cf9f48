"""A run killed at any point between its writes resumes to the same result, or is refused
clearly; it never claims to be complete when it is not (faults injected by GRAFT_FAULT)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

import graft
from graft.data.prepare import DataOptions
from graft.errors import DataError
from graft.faults import FAULT_EXIT_CODE, InjectedCrash, reset_counts
from graft.training import LinearOptions, NeuralOptions, train_linear, train_neural
from synthetic import write_class_folders

#: No validation split: every epoch counts as the best so far, so each writes both checkpoints.
NO_VAL = DataOptions(val=0.0, test=0.25, seed=3)
OPTIONS: dict[str, Any] = {
    "strategy": "finetune",
    "epochs": 3,
    "freeze_epochs": 1,
    "unfreeze": "1",
    "augment": "none",
    "engine": "torch",
    "workers": 0,
    "batch_size": 8,
    "precision": "fp32",
}


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_class_folders(tmp_path_factory.mktemp("faults") / "data", 8)


@pytest.fixture(scope="module")
def reference(data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("reference") / "run"
    train_neural(data, out=out, data_options=NO_VAL, options=NeuralOptions(**OPTIONS))
    return out


def _crash_at(point: str, data: Path, out: Path) -> None:
    reset_counts()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GRAFT_FAULT", point)
        with pytest.raises(InjectedCrash):
            train_neural(data, out=out, data_options=NO_VAL, options=NeuralOptions(**OPTIONS))


def _same_model(a: Path, b: Path) -> None:
    mine, theirs = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
    assert mine.keys() == theirs.keys()
    for key in mine:
        torch.testing.assert_close(mine[key], theirs[key], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    "point",
    [
        "neural.between-checkpoints#1",  # after the first epoch's best checkpoint
        "neural.between-checkpoints#3",  # the last epoch: a stale best would become the model
        "neural.after-model",
        "neural.before-complete",
    ],
)
@pytest.mark.slow
def test_a_crash_between_writes_resumes_to_the_same_model(
    point: str, data: Path, reference: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    _crash_at(point, data, run)
    config = json.loads((run / "config.json").read_text())
    assert config["status"] == "running"  # never "complete" before every file exists
    with pytest.raises(DataError, match=r"has not finished"):
        graft.load(run)
    resumed = train_neural(None, resume=run)
    assert json.loads((run / "config.json").read_text())["status"] == "complete"
    assert {"model.safetensors", "metrics.json", "predictions_test.csv"} <= {
        p.name for p in run.iterdir()
    }
    _same_model(run, reference)
    assert resumed.metrics == json.loads((reference / "metrics.json").read_text())


@pytest.mark.slow
def test_a_killed_process_leaves_a_resumable_run(
    data: Path, reference: Path, tmp_path: Path
) -> None:
    """The same with os._exit: no finally block, no cleanup, as with kill -9."""
    run = tmp_path / "run"
    script = (
        "from pathlib import Path\n"
        "from graft.data.prepare import DataOptions\n"
        "from graft.training import NeuralOptions, train_neural\n"
        f"train_neural(Path({str(data)!r}), out=Path({str(run)!r}),\n"
        f"             data_options=DataOptions(val=0.0, test=0.25, seed=3),\n"
        f"             options=NeuralOptions(**{OPTIONS!r}))\n"
    )
    env = {**os.environ, "GRAFT_FAULT": "neural.between-checkpoints#3:exit"}
    child = subprocess.run([sys.executable, "-c", script], env=env, timeout=600, check=False)
    assert child.returncode == FAULT_EXIT_CODE
    assert json.loads((run / "config.json").read_text())["status"] == "running"
    train_neural(None, resume=run)
    _same_model(run, reference)


def test_a_linear_run_killed_before_its_rename_leaves_the_old_run(
    data: Path, tmp_path: Path
) -> None:
    options = LinearOptions(engine="torch")
    first = train_linear(data, out=tmp_path / "run", options=options)
    before = (first.run_dir / "config.json").read_text()
    reset_counts()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GRAFT_FAULT", "linear.before-rename")
        with pytest.raises(InjectedCrash):
            train_linear(data, out=tmp_path / "run", options=options, overwrite=True)
    assert (first.run_dir / "config.json").read_text() == before
    assert graft.load(first.run_dir).classes == ["blue", "red"]


@pytest.mark.slow
def test_a_run_resumes_with_the_preprocessing_it_recorded(data: Path, tmp_path: Path) -> None:
    """A run continues as it started, even with a value a later release refuses for new runs
    (the trainer took any ``--image-size`` before it checked the range)."""
    run = tmp_path / "run"
    _crash_at("neural.between-checkpoints#1", data, run)
    path = run / "config.json"
    config = json.loads(path.read_text())
    config["options"]["image_size"] = 16
    config["backbone"]["preprocessing"]["input_size"] = 16
    path.write_text(json.dumps(config))
    train_neural(None, resume=run)
    done = json.loads(path.read_text())
    assert done["status"] == "complete"
    assert done["backbone"]["preprocessing"]["input_size"] == 16
