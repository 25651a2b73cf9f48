"""Decoding workers never fork a process that runs engine threads (the notebook crash)."""

from __future__ import annotations

import gc
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import Dataset

from graft.engines.signal_stack import current_signal_stack
from graft.errors import ConfigError
from graft.features.extract import FeatureSpec, feature_engine
from graft.training import NeuralOptions, train_neural
from graft.training.pipelines import pixel_batches
from synthetic import write_class_folders


class _ParentOfWorker(Dataset[tuple[torch.Tensor, int]]):
    """Each item says which process started the worker that made it."""

    def __len__(self) -> int:
        return 4

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return torch.zeros((3, 2, 2), dtype=torch.uint8), os.getppid()


@pytest.mark.slow
def test_workers_are_not_forked_from_this_process() -> None:
    """A forked worker's parent is this process; a forkserver's worker's parent is the server."""
    parents: set[int] = set()
    for _, targets in pixel_batches(
        _ParentOfWorker(), list(range(4)), batch_size=2, workers=2, seed=0, epoch=0
    ):
        parents.update(int(t) for t in targets)
    assert parents and os.getpid() not in parents


def _build_and_drop_engines(precision: str = "fp32") -> None:
    """Two OpenVINO engines (the second from graft's on-disk cache), used, then dropped."""
    spec = FeatureSpec.create("efficientnet_lite0.in1k", precision=precision)
    for _ in range(2):
        runner = feature_engine(spec, engine="openvino")
        assert runner(np.zeros((2, 3, 224, 224), np.uint8)).shape == (2, 1280)
    del runner
    gc.collect()


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_an_openvino_engine_leaves_the_thread_signal_stack_as_it_was(precision: str) -> None:
    """OpenVINO's CPU plugin (compiling, or only asking whether it has bf16 units) installs a
    signal stack on the calling thread and frees it later; graft gives the thread back the
    registration it had."""
    before = current_signal_stack()
    try:
        _build_and_drop_engines(precision)
    except ConfigError as err:
        pytest.skip(str(err))  # a CPU without bf16 units
    assert current_signal_stack() == before


@pytest.mark.slow
def test_engine_then_training_with_workers_then_a_subprocess(tmp_path: Path) -> None:
    """The sequence that crashed a long-lived process, all in this process: OpenVINO engines
    built and dropped, training with decoding worker processes (whose DataLoader installs a
    SIGCHLD handler), then subprocesses, each ending with a SIGCHLD handled on this thread."""
    _build_and_drop_engines()
    data = write_class_folders(tmp_path / "data", 8)
    options = NeuralOptions(
        strategy="finetune",
        epochs=2,
        freeze_epochs=1,
        unfreeze="1",
        augment="light",
        workers=2,
        batch_size=8,
        engine="openvino",
    )
    result = train_neural(data, out=tmp_path / "run", options=options)
    assert [h["path"] for h in result.history] == ["frozen-engine", "frozen-lower"]
    for _ in range(3):
        child = subprocess.run(
            [sys.executable, "-c", "import torch; print(int(torch.ones(3).sum()))"],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert child.returncode == 0 and child.stdout.strip() == "3", child.stderr[-2000:]
    signal.pthread_kill(threading.get_ident(), signal.SIGCHLD)  # one more, on this thread


@pytest.mark.slow
def test_a_script_without_a_main_guard_is_told_how_to_fix_it(tmp_path: Path) -> None:
    """Workers start fresh and import the script; without `if __name__ == '__main__':` the
    user gets the fix in one line, not a broken pipe."""
    data = write_class_folders(tmp_path / "data", 4)
    script = tmp_path / "train.py"
    script.write_text(
        "from graft.training import NeuralOptions, train_neural\n"
        f"train_neural({str(data)!r}, out={str(tmp_path / 'run')!r}, options=NeuralOptions(\n"
        "    strategy='head', epochs=1, augment='light', workers=2, batch_size=4,\n"
        "    engine='torch'))\n"
    )
    child = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=300, check=False
    )
    assert child.returncode != 0
    assert "if __name__ == '__main__':" in child.stderr.splitlines()[-1], child.stderr[-1500:]
