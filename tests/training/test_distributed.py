"""DistributedDataParallel through torchrun: two CPU processes (gloo) train like one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from graft.training.distributed import Distributed
from graft.training.neural import NeuralOptions, train_neural
from synthetic import write_class_folders

HEAD = [
    "--strategy",
    "head",
    "--augment",
    "none",
    "--epochs",
    "2",
    "--batch-size",
    "8",
    "--dropout",
    "0",
    "--engine",
    "torch",
    "--workers",
    "0",
    "--precision",
    "fp32",
]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("ddp") / "data"
    write_class_folders(root / "train", 11)  # 22 images: the last global batch is partial
    write_class_folders(root / "validation", 4, start=100)
    return root


def _graft(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    return subprocess.run(
        [sys.executable, "-m", "graft", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.mark.slow
def test_two_processes_train_like_one_with_the_same_global_batch(
    data: Path, tmp_path: Path
) -> None:
    done = _graft("train", str(data), *HEAD, "--out", "ddp", "--nproc", "2", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    run = tmp_path / "ddp"
    config = json.loads((run / "config.json").read_text())
    assert config["status"] == "complete"
    assert config["distributed"] == {
        "world_size": 2,
        "backend": "gloo",
        "parameters_identical": True,
    }
    assert [p.name for p in tmp_path.iterdir()] == ["ddp"]  # one run directory, from rank 0
    single = train_neural(
        data,
        out=tmp_path / "single",
        options=NeuralOptions(
            strategy="head",
            augment="none",
            epochs=2,
            batch_size=8,
            dropout=0.0,
            engine="torch",
            workers=0,
            precision="fp32",
        ),
    )
    ours, theirs = (
        load_file(run / "model.safetensors"),
        load_file(single.run_dir / "model.safetensors"),
    )
    for name, tensor in theirs.items():
        # padding the last global batch (22 = 8 + 8 + 6 images, 3 per process) is exact here
        torch.testing.assert_close(ours[name], tensor, atol=1e-5, rtol=1e-5)
    history = json.loads((run / "history.json").read_text())
    for mine, reference in zip(history, single.history, strict=True):
        assert mine["train_loss"] == pytest.approx(reference["train_loss"], abs=1e-5)
        assert mine["val_accuracy"] == reference["val_accuracy"]


@pytest.mark.slow
def test_finetune_with_augmentation_keeps_every_process_in_step(data: Path, tmp_path: Path) -> None:
    args = ["--strategy", "finetune", "--unfreeze", "1", "--freeze-epochs", "1", "--epochs", "2"]
    common = ["--augment", "light", "--batch-size", "4", "--engine", "torch", "--workers", "0"]
    done = _graft("train", str(data), *args, *common, "--out", "ft", "--nproc", "2", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    config = json.loads((tmp_path / "ft" / "config.json").read_text())
    assert config["distributed"]["parameters_identical"] is True
    assert [h["path"] for h in json.loads((tmp_path / "ft" / "history.json").read_text())] == [
        "frozen-engine",
        "frozen-lower",
    ]


@pytest.mark.slow
def test_uneven_batches_and_the_linear_strategy_are_refused(data: Path, tmp_path: Path) -> None:
    from graft.errors import ConfigError

    with pytest.raises(ConfigError, match="does not split evenly across 2 processes"):
        Distributed(rank=0, world_size=2).local_batch(7)
    done = _graft("train", str(data), "--nproc", "2", "--out", "x", cwd=tmp_path)
    assert done.returncode == 2 and "--nproc trains the neural strategies" in done.stderr


def test_shards_cover_every_image_once_per_epoch() -> None:
    order = list(range(22))
    shards = [Distributed(rank, 2).shard(order, batch_size=8) for rank in (0, 1)]
    assert sorted(shards[0] + shards[1]) == order
    assert len(shards[0]) == len(shards[1]) == 11


@pytest.mark.slow
def test_a_kept_probe_is_refitted_at_the_end_on_one_process(tmp_path: Path) -> None:
    # no validation folder: graft carves one, the probe is kept (a vanishing learning rate)
    # and fitted again at the end, on rank 0 alone, on both views of every image (--tta flip)
    data = tmp_path / "data"
    write_class_folders(data / "train", 12)
    write_class_folders(data / "test", 3, start=100)
    args = [*HEAD[:-2], "--lr", "1e-12", "--tta", "flip", "--precision", "fp32"]
    done = _graft("train", str(data), *args, "--out", "kept", "--nproc", "2", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    config = json.loads((tmp_path / "kept" / "config.json").read_text())
    assert config["safeguard"]["kept"] == "probe" and "refit_C" in config["probe"]
    assert json.loads((tmp_path / "kept" / "metrics.json").read_text())["test"]["n"] == 6
