"""Neural strategies: frozen parts stay frozen, schedules, fast paths, exact resume."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

import graft
from graft.data.prepare import DataOptions
from graft.errors import ConfigError, DataError
from graft.training import Callback, NeuralOptions, train_neural
from graft.training.neural import plan_phases
from spies import record_precision
from synthetic import write_class_folders

#: Small and quick: torch for frozen parts (no conversion), no worker processes; the probe
#: safeguard off, so the model kept is the trained one these tests inspect.
QUICK = {"engine": "torch", "workers": 0, "batch_size": 4, "safeguard": False}


def _options(**overrides: Any) -> NeuralOptions:
    return NeuralOptions(**{**QUICK, **overrides})


class Recorder(Callback):
    """Records, per epoch, which parameters got gradients, the learning rates of each step,
    and a frozen and an unfrozen BatchNorm's running mean."""

    def __init__(self) -> None:
        self.grads: dict[int, set[str]] = {}
        self.lrs: list[tuple[int, dict[str, float]]] = []
        self.phases: dict[int, str] = {}
        self.decay: dict[str, float] = {}  # each parameter's weight decay

    def on_epoch_begin(self, state: dict[str, Any]) -> None:
        self.phases[state["epoch"]] = state["phase"]

    def on_batch_end(self, state: dict[str, Any]) -> None:
        model = state["model"]
        epoch = state["epoch"]
        if epoch not in self.grads:
            self.grads[epoch] = {
                n
                for n, p in model.named_parameters()
                if p.grad is not None and p.grad.abs().sum() > 0
            }
        self.lrs.append((epoch, {g["name"]: g["lr"] for g in state["optimizer"].param_groups}))
        if not self.decay:
            names = {id(p): n for n, p in model.named_parameters()}
            for group in state["optimizer"].param_groups:
                self.decay.update({names[id(p)]: group["weight_decay"] for p in group["params"]})


def _bn_means(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: b.clone() for n, b in model.named_buffers() if n.endswith("running_mean")}


def test_phases_of_each_strategy() -> None:
    assert [
        (p.name, p.epochs, p.top)
        for p in plan_phases(NeuralOptions(strategy="head", epochs=3), stage_count=8)
    ] == [("head", 3, 0)]
    finetune = plan_phases(
        NeuralOptions(
            epochs=4, freeze_epochs=1, unfreeze="all", lr=1e-3, backbone_lr=0.1, stage_lr_decay=0.5
        ),
        stage_count=3,
    )
    assert [(p.name, p.top) for p in finetune] == [("head", 0), ("unfrozen", 3)]
    assert finetune[1].base_lrs == pytest.approx(
        {"head": 5e-4, "@0": 1e-4, "@1": 5e-5, "@2": 2.5e-5}
    )
    scratch = plan_phases(NeuralOptions(strategy="scratch", epochs=2), stage_count=3)
    assert scratch[0].top == 3 and len(scratch[0].base_lrs) == 4


def test_bad_options_are_refused(split_folders: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--freeze-epochs 3 must be below --epochs 3"):
        train_neural(split_folders, out=tmp_path / "r", options=_options(epochs=3, freeze_epochs=3))
    with pytest.raises(ConfigError, match=r"--unfreeze '99' must be 1\.\.8"):
        train_neural(split_folders, out=tmp_path / "r", options=_options(epochs=2, unfreeze="99"))
    with pytest.raises(ConfigError, match=r"unknown option 'epoch' .* did you mean 'epochs'"):
        graft.train(split_folders, strategy="head", epoch=3)


@pytest.fixture(scope="module")
def finetuned(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Path, Recorder, dict[str, torch.Tensor]]:
    """A 3-epoch fine-tune (1 frozen, 2 with the top 2 stages unfrozen), full PyTorch path."""
    root = tmp_path_factory.mktemp("ft")
    data = root / "data"
    write_class_folders(data / "train", 12)
    write_class_folders(data / "validation", 4, start=100)
    from graft.models.transfer import build_transfer_model

    before = _bn_means(build_transfer_model("efficientnet_lite0.in1k", num_classes=2).backbone)
    recorder = Recorder()
    options = _options(
        epochs=3, freeze_epochs=1, unfreeze="2", fast_paths=False, augment="light", bn="unfrozen"
    )
    train_neural(data, out=root / "run", options=options, callbacks=[recorder])
    return root / "run", recorder, before


@pytest.mark.slow
def test_only_the_intended_parameters_receive_gradients(
    finetuned: tuple[Path, Recorder, Any],
) -> None:
    _, recorder, _ = finetuned
    assert recorder.phases == {0: "head", 1: "unfrozen", 2: "unfrozen"}
    assert recorder.grads[0] and all(name.startswith("head.") for name in recorder.grads[0])
    unfrozen = recorder.grads[1]
    assert {n.split(".")[0] for n in unfrozen} == {"head", "backbone"}
    stages = {n.split(".")[3] for n in unfrozen if n.startswith("backbone.net.blocks.")}
    assert stages == {"5", "6"}  # the top two stages: blocks 5 and 6 (with conv_head)
    assert any(n.startswith("backbone.net.conv_head") for n in unfrozen)
    assert not any(
        n.startswith(("backbone.net.conv_stem", "backbone.net.blocks.4")) for n in unfrozen
    )


def test_weight_decay_spares_biases_and_normalisation(
    finetuned: tuple[Path, Recorder, Any],
) -> None:
    """Matrices and kernels decay at --weight-decay; 1-D parameters (biases, BatchNorm scales
    and shifts) take none, in every group."""
    run, recorder, _ = finetuned
    model = graft.load(run).model.network
    shapes = {name: p.ndim for name, p in model.named_parameters()}
    assert set(recorder.decay) == set(shapes)
    assert {recorder.decay[n] for n, ndim in shapes.items() if ndim > 1} == {0.01}
    assert {recorder.decay[n] for n, ndim in shapes.items() if ndim <= 1} == {0.0}
    assert any(".bn" in n for n, ndim in shapes.items() if ndim <= 1)


def test_frozen_batchnorm_statistics_are_unchanged(
    finetuned: tuple[Path, Recorder, dict[str, torch.Tensor]],
) -> None:
    run, _, before = finetuned
    state = torch.load(run / "checkpoint_last.pt", weights_only=True)[
        "model"
    ]  # after the last epoch
    after = {
        k.removeprefix("backbone."): v
        for k, v in state.items()
        if k.startswith("backbone.") and k.endswith("running_mean")
    }
    frozen = [
        k
        for k in before
        if k.startswith(("net.bn1", "net.blocks.0", "net.blocks.3", "net.blocks.4"))
    ]
    unfrozen = [k for k in before if k.startswith(("net.blocks.5", "net.blocks.6"))]
    assert frozen and unfrozen
    assert all(torch.equal(before[k], after[k]) for k in frozen)
    assert any(not torch.equal(before[k], after[k]) for k in unfrozen)


def test_learning_rates_follow_the_schedule(finetuned: tuple[Path, Recorder, Any]) -> None:
    """Expected rates written out by hand: 24 images in batches of 4 = 6 steps an epoch; the
    head phase (1 epoch) warms up over round(0.1 * 6) = 1 step, then follows a cosine from the
    full rate towards zero; the unfrozen phase (2 epochs = 12 steps, warmup 1 step) restarts."""
    run, recorder, _ = finetuned
    config = json.loads((run / "config.json").read_text())
    head_lr = config["phases"][0]["base_lrs"]["head"]
    unfrozen = config["phases"][1]["base_lrs"]
    assert len(recorder.lrs) == 18

    def cosine(step: int, total: int) -> float:  # warmup of one step, then cosine to zero
        return 1.0 if step == 0 else 0.5 * (1 + math.cos(math.pi * (step - 1) / (total - 1)))

    head_phase = [lrs["head"] for epoch, lrs in recorder.lrs if epoch == 0]
    assert head_phase == pytest.approx([head_lr * cosine(i, 6) for i in range(6)])
    assert head_phase[1] == pytest.approx(head_lr)  # warmup done: the full rate
    assert head_phase[2] == pytest.approx(head_lr * 0.5 * (1 + math.cos(math.pi / 5)))
    assert head_phase[-1] == pytest.approx(head_lr * 0.5 * (1 + math.cos(math.pi * 4 / 5)))
    later = [lrs for epoch, lrs in recorder.lrs if epoch > 0]
    for step, lrs in enumerate(later):
        assert lrs["head"] == pytest.approx(unfrozen["head"] * cosine(step, 12))
        assert lrs["@0"] == pytest.approx(unfrozen["@0"] * cosine(step, 12))
    first = later[0]  # the first step of the unfrozen phase: full base rates
    assert first["@1"] == pytest.approx(first["@0"] * 0.5)
    assert first["@2"] == 0.0
    assert all(lrs["@2"] == 0.0 for lrs in later)  # that stage stays frozen


def test_neural_run_directory_and_predictor(finetuned: tuple[Path, Recorder, Any]) -> None:
    run, _, _ = finetuned
    names = {p.name for p in run.iterdir()}
    assert {
        "config.json",
        "model.safetensors",
        "history.json",
        "metrics.json",
        "split.csv",
        "predictions_val.csv",
        "checkpoint_last.pt",
    } <= names
    config = json.loads((run / "config.json").read_text())
    assert config["status"] == "complete" and config["strategy"] == "finetune"
    history = json.loads((run / "history.json").read_text())
    assert [h["phase"] for h in history] == ["head", "unfrozen", "unfrozen"]
    assert history[1]["trainable"] == ["head", "stage6", "stage7"]
    assert all(h["path"] == "full" for h in history)
    predictor = graft.load(run)
    red = next((run.parent / "data" / "validation" / "red").iterdir())
    (prediction,) = predictor.predict([red])
    assert (
        prediction.label in ("red", "blue")
        and abs(sum(prediction.probabilities.values()) - 1) < 1e-4
    )
    assert graft.evaluate(run)["n"] == 8


@pytest.mark.slow
def test_bn_train_updates_frozen_statistics(split_folders: Path, tmp_path: Path) -> None:
    from graft.models.transfer import build_transfer_model

    before = _bn_means(build_transfer_model("efficientnet_lite0.in1k", num_classes=2).backbone)
    options = _options(strategy="head", epochs=1, bn="train", augment="none")
    train_neural(split_folders, out=tmp_path / "r", options=options)
    state = load_file(str(tmp_path / "r" / "model.safetensors"))
    assert not torch.equal(before["net.bn1.running_mean"], state["backbone.net.bn1.running_mean"])


@pytest.mark.slow
def test_cached_feature_path_gives_the_same_head_as_the_slow_path(
    split_folders: Path, tmp_path: Path
) -> None:
    common = {"strategy": "head", "epochs": 2, "augment": "none", "precision": "fp32"}
    fast = train_neural(split_folders, out=tmp_path / "fast", options=_options(**common))
    slow = train_neural(
        split_folders, out=tmp_path / "slow", options=_options(**common, fast_paths=False)
    )
    assert [h["path"] for h in fast.history] == ["cached-features"] * 2
    assert [h["path"] for h in slow.history] == ["full"] * 2
    fast_state = load_file(str(tmp_path / "fast" / "model.safetensors"))
    slow_state = load_file(str(tmp_path / "slow" / "model.safetensors"))
    for key in [k for k in fast_state if k.startswith("head.")]:
        torch.testing.assert_close(fast_state[key], slow_state[key], atol=1e-4, rtol=1e-4)
    assert fast.history[-1]["val_loss"] == pytest.approx(slow.history[-1]["val_loss"], abs=1e-4)


@pytest.mark.slow
def test_boundary_cache_and_frozen_lower_paths(split_folders: Path, tmp_path: Path) -> None:
    from graft.models.transfer import build_transfer_model

    before = _bn_means(build_transfer_model("efficientnet_lite0.in1k", num_classes=2).backbone)
    cached = train_neural(
        split_folders,
        out=tmp_path / "a",
        options=_options(epochs=2, freeze_epochs=1, augment="none"),
    )
    augmented = train_neural(
        split_folders,
        out=tmp_path / "b",
        options=_options(epochs=2, freeze_epochs=1, augment="light"),
    )
    assert [h["path"] for h in cached.history] == ["cached-features", "cached-boundary"]
    assert [h["path"] for h in augmented.history] == ["frozen-engine", "frozen-lower"]
    # --bn eval (the default): even the unfrozen stages keep their pretrained statistics
    state = load_file(str(tmp_path / "b" / "model.safetensors"))
    assert all(torch.equal(before[k], state[f"backbone.{k}"]) for k in before)


def test_unfrozen_convolutions_train_in_channels_last_memory(
    split_folders: Path, tmp_path: Path
) -> None:
    """Every convolution that trains sees its weight and its input in channels-last memory
    (bench/finetune_speed.py: the unfrozen step is faster so on a CPU): the top stage on the
    boundary from the frozen lower part, and everything on decoded pixels. The stem matters:
    a 1 x 1 or depthwise kernel is laid out the same either way, its 3 x 3 x 3 one is not, so
    the first case checks the batches' layout and the second the model's."""
    layouts: list[tuple[bool, bool]] = []

    class ConvLayouts(Callback):
        def on_train_begin(self, state: dict[str, Any]) -> None:
            for module in state["model"].modules():
                if isinstance(module, torch.nn.Conv2d):
                    module.register_forward_pre_hook(self.record)

        @staticmethod
        def record(conv: torch.nn.Conv2d, args: tuple[torch.Tensor, ...]) -> None:
            if conv.weight.requires_grad:  # unfrozen
                layouts.append(
                    (
                        conv.weight.is_contiguous(memory_format=torch.channels_last),
                        args[0].is_contiguous(memory_format=torch.channels_last),
                    )
                )

    # the boundary from the frozen lower part; decoded pixels through everything, stem included
    for unfreeze, fast_paths, path in (("1", True, "frozen-lower"), ("all", False, "full")):
        layouts.clear()
        options = _options(
            epochs=2, freeze_epochs=1, unfreeze=unfreeze, augment="light", fast_paths=fast_paths
        )
        result = train_neural(
            split_folders, out=tmp_path / path, options=options, callbacks=[ConvLayouts()]
        )
        assert result.history[1]["path"] == path
        assert layouts, "no trainable convolution ran"
        assert all(weight and inputs for weight, inputs in layouts), layouts[:3]


@pytest.mark.slow
def test_scratch_trains_everything_from_random_weights(split_folders: Path, tmp_path: Path) -> None:
    result = train_neural(
        split_folders,
        out=tmp_path / "s",
        options=_options(strategy="scratch", epochs=1, augment="none"),
    )
    config = json.loads((tmp_path / "s" / "config.json").read_text())
    assert config["backbone"]["pretrained"] is False
    assert result.history[0]["path"] == "full" and result.history[0]["trainable"][-1] == "stage7"


def _three_colours(tmp_path: Path) -> Path:
    return write_class_folders(tmp_path / "three", 6, classes=("red", "blue", "green"))


def _head_on(source: Path, **overrides: Any) -> NeuralOptions:
    """One epoch of a new head on the backbone of the run in ``source``."""
    return _options(
        strategy="head", epochs=1, backbone=f"run:{source}", augment="none", **overrides
    )


@pytest.mark.slow
def test_transfer_from_an_earlier_run(
    finetuned: tuple[Path, Recorder, Any], tmp_path: Path
) -> None:
    source, _, _ = finetuned
    result = train_neural(
        _three_colours(tmp_path), out=tmp_path / "third", options=_head_on(source)
    )
    config = json.loads((tmp_path / "third" / "config.json").read_text())
    assert config["backbone"]["from_run"] == str(source) and config["classes"] == [
        "blue",
        "green",
        "red",
    ]
    old = load_file(str(source / "model.safetensors"))
    new = load_file(str(tmp_path / "third" / "model.safetensors"))
    key = "backbone.net.blocks.6.0.conv_pw.weight"  # fine-tuned in the source run, frozen here
    assert torch.equal(old[key], new[key])
    assert new["head.layers.1.weight"].shape[0] == 3
    assert result.metrics["val"]["n"] > 0


@pytest.mark.slow
def test_a_kept_probe_on_an_earlier_runs_backbone_is_evaluated_by_the_network(
    finetuned: tuple[Path, Recorder, Any], tmp_path: Path
) -> None:
    # the feature cache holds the library's pretrained backbone, not the earlier run's
    # fine-tuned one: a probe kept on that backbone is evaluated by the saved network itself
    from graft.predictor import NeuralPredictor
    from graft.runs import predictions_file, read_predictions

    source, _, _ = finetuned
    data = _three_colours(tmp_path)
    # lr 50 wrecks the head: the safeguard keeps the probe
    options = _head_on(source, lr=50.0, safeguard=True, precision="fp32")
    ran: list[int] = []
    network_pass = NeuralPredictor.probabilities_from_pixels

    def spy(self: NeuralPredictor, inputs: Any) -> Any:
        ran.append(len(inputs[0]))
        return network_pass(self, inputs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(NeuralPredictor, "probabilities_from_pixels", spy)
        train_neural(data, out=tmp_path / "third", options=options)
    config = json.loads((tmp_path / "third" / "config.json").read_text())
    assert config["best_weights"] == "probe"
    paths, _, proba, _ = read_predictions(tmp_path / "third" / predictions_file("val"))
    assert not (tmp_path / "third" / predictions_file("test")).exists()
    assert sum(ran) == len(paths) > 0  # the network predicted every validation image
    network = graft.load(tmp_path / "third").predict_proba(paths)
    np.testing.assert_allclose(proba, network, atol=1e-5, rtol=0)


def test_resume_of_a_complete_run_is_refused(finetuned: tuple[Path, Recorder, Any]) -> None:
    run, _, _ = finetuned
    with pytest.raises(ConfigError, match="this run is complete"):
        train_neural(None, resume=run)


@pytest.mark.slow
def test_killed_training_resumes_to_the_same_result(tmp_path: Path) -> None:
    data = tmp_path / "data"
    write_class_folders(data / "train", 12)
    write_class_folders(data / "validation", 4, start=100)
    options = dict(
        QUICK, epochs=3, freeze_epochs=1, unfreeze="2", augment="light", precision="fp32"
    )
    reference = train_neural(data, out=tmp_path / "reference", options=NeuralOptions(**options))
    script = textwrap.dedent(
        f"""
        from pathlib import Path
        from graft.training import Callback, NeuralOptions, train_neural
        class Beat(Callback):
            def on_batch_end(self, state):
                print("batch", state["epoch"], flush=True)
        train_neural(Path({str(data)!r}), out=Path({str(tmp_path / "killed")!r}),
                     options=NeuralOptions(**{options!r}), callbacks=[Beat()])
        """
    )
    child = subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert child.stdout is not None
    beats = 0
    for line in child.stdout:
        if line.startswith("batch 1"):  # inside the first unfrozen epoch
            beats += 1
            if beats == 3:
                break
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=60)
    assert child.returncode == -signal.SIGKILL
    config = json.loads((tmp_path / "killed" / "config.json").read_text())
    assert config["status"] == "running"
    with pytest.raises(DataError, match=r"has not finished .* `graft train --resume"):
        graft.load(tmp_path / "killed")
    resumed = train_neural(None, resume=tmp_path / "killed")
    assert [h["phase"] for h in resumed.history] == ["head", "unfrozen", "unfrozen"]
    assert [h["trainable"] for h in resumed.history] == [h["trainable"] for h in reference.history]
    for mine, theirs in zip(resumed.history, reference.history, strict=True):
        assert mine["train_loss"] == pytest.approx(theirs["train_loss"], abs=1e-5)
        assert mine["val_loss"] == pytest.approx(theirs["val_loss"], abs=1e-5)
    assert resumed.metrics["val"]["accuracy"] == reference.metrics["val"]["accuracy"]
    a = load_file(str(tmp_path / "killed" / "model.safetensors"))
    b = load_file(str(tmp_path / "reference" / "model.safetensors"))
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=1e-5, rtol=1e-5)


@pytest.mark.slow
def test_early_stopping_ends_the_phase(split_folders: Path, tmp_path: Path) -> None:
    result = train_neural(
        split_folders,
        out=tmp_path / "e",
        options=_options(
            strategy="head", epochs=6, augment="none", monitor="val_loss", patience=1, lr=5.0
        ),
    )
    assert len(result.history) < 6 and result.history[-1].get("early_stop")


@pytest.mark.slow
def test_early_stopping_keeps_its_count_across_a_resume(
    split_folders: Path, tmp_path: Path
) -> None:
    """The count of epochs without a new best is early stopping's own state, kept in the last
    checkpoint: a run that crashes in its fourth epoch (the third without a new best, here:
    epoch 2 reaches a validation loss of 0) and resumes stops where one that never crashed
    stops."""

    class CrashError(Exception):
        pass

    class CrashInFourthEpoch(Callback):
        def on_epoch_end(self, state: dict[str, Any]) -> None:
            if state["epoch"] == 3:
                raise CrashError

    options = _options(
        strategy="head", epochs=6, augment="none", monitor="val_loss", patience=2, lr=5.0
    )
    reference = train_neural(split_folders, out=tmp_path / "reference", options=options)
    with pytest.raises(CrashError):
        train_neural(
            split_folders,
            out=tmp_path / "crashed",
            options=options,
            callbacks=[CrashInFourthEpoch()],
        )
    saved = torch.load(tmp_path / "crashed" / "checkpoint_last.pt", weights_only=True)
    assert saved["callbacks"]["EarlyStopping"]["bad_epochs"] == 1  # the third epoch: no gain
    resumed = train_neural(None, resume=tmp_path / "crashed")
    assert reference.history[-1].get("early_stop") and len(reference.history) == 4
    assert [h["epoch"] for h in resumed.history] == [h["epoch"] for h in reference.history]
    assert resumed.history[-1].get("early_stop")


@pytest.mark.slow
def test_a_phase_ended_early_stays_ended_across_a_resume(
    split_folders: Path, tmp_path: Path
) -> None:
    """Early stopping ends the frozen phase; a crash before the next phase's first epoch
    (a callback raising at its start) leaves a last checkpoint that marks the phase as ended,
    so the resumed run goes on with the unfrozen phase, as one that never crashed does."""

    class CrashError(Exception):
        pass

    class CrashAtTheSecondPhase(Callback):
        def on_phase_begin(self, state: dict[str, Any]) -> None:
            if state["phase_index"] == 1:
                raise CrashError

    options = _options(
        strategy="finetune", epochs=8, freeze_epochs=6, augment="none", monitor="val_loss",
        patience=1, lr=5.0, head_init="random", safeguard=False,
    )  # fmt: skip
    reference = train_neural(split_folders, out=tmp_path / "reference", options=options)
    phases = [h["phase"] for h in reference.history]
    assert phases.count("head") < 6 and "unfrozen" in phases  # the frozen phase ended early
    with pytest.raises(CrashError):
        train_neural(
            split_folders,
            out=tmp_path / "crashed",
            options=options,
            callbacks=[CrashAtTheSecondPhase()],
        )
    saved = torch.load(tmp_path / "crashed" / "checkpoint_last.pt", weights_only=True)
    assert saved["state"]["stopped_phases"] == [0] and saved["state"]["epoch"] == 6
    resumed = train_neural(None, resume=tmp_path / "crashed")
    assert [h["phase"] for h in resumed.history] == phases


def test_preflight_warns_about_swapped_channels(photos: dict[str, Path], tmp_path: Path) -> None:
    from graft.training.preflight import preflight

    swapped = []
    for name, path in photos.items():
        array = np.asarray(Image.open(path).convert("RGB"))[:, :, ::-1]
        target = tmp_path / f"{name}.png"
        Image.fromarray(np.ascontiguousarray(array)).save(target)
        swapped.append(target)
    dark = tmp_path / "dark.png"
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(dark)
    assert preflight(list(photos.values()), "efficientnet_lite0.in1k") == []
    assert any("BGR saved as RGB" in w for w in preflight(swapped, "efficientnet_lite0.in1k"))
    assert any("BGR saved as RGB" in w for w in preflight(swapped, "mobilenetv2_100.in1k_features"))
    assert any("already normalised" in w for w in preflight([dark] * 4, "efficientnet_lite0.in1k"))


@pytest.mark.slow
def test_cli_trains_a_neural_strategy(split_folders: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from graft.cli import app

    out = tmp_path / "cli"
    result = CliRunner().invoke(
        app,
        [
            "train",
            str(split_folders),
            "--strategy",
            "head",
            "--epochs",
            "1",
            "--augment",
            "none",
            "--engine",
            "torch",
            "--workers",
            "0",
            "--out",
            str(out),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["history"][0]["path"] == "cached-features"
    resumed = CliRunner().invoke(app, ["train", "--resume", str(out)])
    assert isinstance(resumed.exception, ConfigError)


@pytest.mark.slow
@pytest.mark.parametrize("fast_paths", [True, False])
def test_strong_augmentation_mixes_pixels_before_the_frozen_part(
    split_folders: Path, tmp_path: Path, fast_paths: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the frozen part (or, on the full path, the whole model) receives is the mixed
    batch: every sample a blend of itself and its partner (timm pairs i with n-1-i), not the
    decoded images, and the targets are soft."""
    import graft.training.inputs as inputs

    unmixed: list[torch.Tensor] = []
    produced: list[tuple[torch.Tensor, torch.Tensor]] = []
    seen: list[torch.Tensor] = []
    real_mixed, real_runner = inputs.mixed, inputs.frozen_runner

    def spy_mixed(batches: Any, mixer: Any) -> Any:
        def tee() -> Any:
            for pixels, targets in batches:
                unmixed.append(pixels.clone())
                yield pixels, targets

        for pixels, targets in real_mixed(tee(), mixer):
            produced.append((pixels.clone(), targets.clone()))
            yield pixels, targets

    def spy_runner(*args: Any, **kwargs: Any) -> Any:
        runner = real_runner(*args, **kwargs)

        def run(pixels: torch.Tensor) -> torch.Tensor:
            seen.append(pixels.clone())
            return runner(pixels)

        return run

    class ModelInput(Callback):
        def on_epoch_begin(self, state: dict[str, Any]) -> None:
            state["model"].register_forward_pre_hook(lambda _, args: seen.append(args[0].clone()))

    monkeypatch.setattr(inputs, "mixed", spy_mixed)
    monkeypatch.setattr(inputs, "frozen_runner", spy_runner)
    options = _options(strategy="head", epochs=1, augment="strong", fast_paths=fast_paths)
    result = train_neural(
        split_folders, out=tmp_path / "strong", options=options, callbacks=[ModelInput()]
    )
    assert result.history[0]["path"] == ("frozen-engine" if fast_paths else "full")
    assert np.isfinite(result.history[0]["train_loss"])
    assert len(produced) == len(unmixed) == 5  # 20 training images in batches of 4
    training_inputs = [p for p in seen if p.dtype == torch.uint8 and len(p) == 4]
    changed = 0
    for (mixed_pixels, soft), original in zip(produced, unmixed, strict=True):
        assert soft.dtype.is_floating_point and soft.shape == (4, 2)
        assert ((soft > 0.01) & (soft < 0.99)).any()  # soft targets, not one-hot
        assert any(torch.equal(mixed_pixels, x) for x in training_inputs)  # what the model saw
        partner = original.flip(0)
        low = torch.minimum(original, partner).int() - 1
        high = torch.maximum(original, partner).int() + 1
        assert ((mixed_pixels.int() >= low) & (mixed_pixels.int() <= high)).all()
        changed += int(not torch.equal(mixed_pixels, original))
    assert changed == len(produced)  # every batch was mixed
    assert not any(torch.equal(x, original) for x in training_inputs for original in unmixed)


@pytest.mark.slow
def test_frozen_parts_take_the_guarded_auto_precision_and_keep_it_on_resume(
    split_folders: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import graft.features.precision as precision

    if not precision.bf16_native("openvino"):
        pytest.skip("this CPU computes no bf16 natively")
    import graft.training.inputs as inputs

    monkeypatch.setattr(precision, "AUTO_MIN_IMAGES", 0)
    monkeypatch.setattr(precision, "AUTO_MIN_HELD", 0)
    # the precision each frozen-part engine is built with
    built = record_precision(monkeypatch, inputs, "frozen_runner")
    options = NeuralOptions(strategy="head", epochs=1, augment="light", workers=0, batch_size=4)
    train_neural(split_folders, out=tmp_path / "auto", options=options)
    chosen = json.loads((tmp_path / "auto" / "config.json").read_text())["frozen_precision"]
    assert chosen["requested"] == "auto" and chosen["precision"] == "bf16"
    assert built == ["bf16"]
    assert [c["precision"] for c in chosen["checks"]] == ["bf16"]
    # --precision fp32 restores fp32 frozen parts, with no check.
    fp32 = NeuralOptions(**{**options.to_dict(), "precision": "fp32"})
    train_neural(split_folders, out=tmp_path / "fp32", options=fp32)
    kept = json.loads((tmp_path / "fp32" / "config.json").read_text())["frozen_precision"]
    assert kept["precision"] == "fp32" and kept["checks"] == []
    assert built == ["bf16", "fp32"]
    # Without bf16 units, auto keeps fp32.
    monkeypatch.setattr(precision, "bf16_native", lambda engine="auto", device=None: False)
    train_neural(split_folders, out=tmp_path / "none", options=options)
    none = json.loads((tmp_path / "none" / "config.json").read_text())["frozen_precision"]
    assert none["precision"] == "fp32" and none["checks"] == []


@pytest.mark.parametrize("per_class", [None, 4, 12])
def test_the_precision_check_sees_the_splits_the_linear_strategy_sees(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, per_class: int | None
) -> None:
    # train/test folders only: the linear strategy's check holds out part of train; the neural
    # run's must see the same images in the same splits, so both choose the same precision and
    # the safeguard's probe is the linear strategy's. A carved validation split is train to
    # the check; with --per-class 4 it comes from the images the cap left out, which the linear
    # strategy never sees, so the check leaves it out; a cap of 12 leaves nothing out, the
    # split is carved from train, and is train to the check again.
    import graft.training.inputs as inputs
    import graft.training.linear as linear
    from graft.training import LinearOptions, train_linear

    root = tmp_path / "data"
    write_class_folders(root / "train", 12)
    write_class_folders(root / "test", 3, start=100)
    seen: dict[str, list[tuple[str, str | None]]] = {}

    def spy(module: Any, name: str) -> None:
        select = module.select_precision

        def recorded(
            spec: Any, requested: str, paths: Any, labels: Any, splits: Any, *a: Any, **k: Any
        ) -> Any:
            seen[name] = sorted(zip([str(p) for p in paths], splits, strict=True))
            return select(spec, requested, paths, labels, splits, *a, **k)

        monkeypatch.setattr(module, "select_precision", recorded)

    spy(inputs, "neural")
    spy(linear, "linear")
    data = DataOptions(per_class=per_class)
    options = _options(strategy="head", epochs=1, precision="auto")
    result = train_neural(root, out=tmp_path / "run", options=options, data_options=data)
    train_linear(
        root, out=tmp_path / "linear", data_options=data, options=LinearOptions(engine="torch")
    )
    assert result.report.carved_val > 0  # the run did carve one
    splits = [split for _, split in seen["neural"]]
    assert splits.count("train") == (8 if per_class == 4 else 24) and splits.count("test") == 6
    # the same images in the same splits as the linear strategy's check
    assert seen["neural"] == seen["linear"]
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["data"]["val_carved_beyond_cap"] is (per_class == 4)
