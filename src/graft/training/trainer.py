"""The neural trainer: one run's model, optimizer and loop state between epochs.

:class:`Trainer` runs the phases :func:`graft.training.options.plan_phases` planned: each
phase sets which stages train and at which rates, and its epochs run the loop of
:mod:`graft.training.loop` on the inputs :class:`graft.training.inputs.PhaseInputs` builds.
After every epoch its last callback, :class:`graft.training.checkpoints.Checkpointing`, writes
the last checkpoint (and, on improvement, the best) atomically, so a killed run resumes with the
same schedule, optimizer state and data order.

Example:
    >>> callable(Trainer.fit)
    True
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from graft.data.prepare import DataOptions
from graft.data.splits import write_manifest
from graft.data.validate import DataReport
from graft.device import resolve_device
from graft.errors import ConfigError
from graft.fileio import write_json_atomic
from graft.models.loading import transfer_model_from_run
from graft.models.transfer import TransferModel, build_transfer_model
from graft.runs import (
    HISTORY,
    MANIFEST,
    SKIPPED,
    remove_run,
    write_config,
    write_skipped,
)
from graft.training.augment import AugmentConfig, batch_mixer, preset
from graft.training.checkpoints import Checkpointing, restore_checkpoint
from graft.training.distributed import Distributed
from graft.training.ema import WeightAverage
from graft.training.finetuning import FineTuning
from graft.training.finishing import run_config
from graft.training.inputs import PhaseInputs
from graft.training.loop import (
    Callback,
    EpochData,
    LoopSettings,
    Phase,
    StopTraining,
    memory_format,
    monitored,
    phase_schedule,
    train_epoch,
    validation_scores,
)
from graft.training.lpft import probe_margin, start_from_the_probe
from graft.training.options import NeuralOptions, plan_phases, resolve_precision
from graft.training.pipelines import seed_epoch
from graft.training.stages import (
    backbone_stages,
    resolve_unfreeze,
    stage_parameter_groups,
    without_decay_on_1d,
)
from graft.training.standard_callbacks import EarlyStopping, WeightAveraging
from graft.zoo.records import Preprocessing


class Trainer:
    """Holds one run's model, data, optimizer and state between epochs."""

    def __init__(
        self,
        run_dir: Path,
        report: DataReport,
        options: NeuralOptions,
        data_options: DataOptions,
        config: dict[str, Any],
        callbacks: Sequence[Callback],
        context: Distributed | None = None,
    ) -> None:
        self.context = context or Distributed()
        self.run_dir = run_dir
        self.report = report
        self.options = options
        self.data_options = data_options
        self.config = config
        self.device = resolve_device(options.device)
        if self.device.type == "cuda" and self.context.enabled:
            self.device = torch.device("cuda", self.context.local_rank)
        self.precision = resolve_precision(options.precision, self.device)
        self.seed = data_options.seed
        self.classes = report.images.classes
        self.augment: AugmentConfig = preset(options.augment)
        torch.manual_seed(self.seed)
        self.model, self.source = build_model(options, len(self.classes))
        # a resumed run continues with the preprocessing it started with (recorded before the
        # first epoch, whatever a later release checks); a new one takes its options' (checked
        # by NeuralOptions.validate)
        recorded = config.get("backbone", {}).get("preprocessing")
        self.preprocessing = (
            Preprocessing.from_dict(recorded)
            if recorded
            else self.model.record.preprocessing.adjusted(
                image_size=options.image_size, crop_pct=options.crop_pct
            )
        )
        self.stages = backbone_stages(self.model.backbone.net)
        needed = 2 * len(self.classes)
        if self.uses_probe and (options.hidden or needed) < needed:
            raise ConfigError(  # before the run directory exists
                f"--hidden {options.hidden} is too narrow to hold the linear probe (LP-FT's start "
                f"and the safeguard need 2 x {len(self.classes)} classes = {needed} units); pass "
                f"--hidden {needed} or more, or --head-init random --no-safeguard"
            )
        if options.strategy == "finetune":
            resolve_unfreeze(options.unfreeze, self.stages)  # names the stages if out of range
        self.phases = plan_phases(options, stage_count=len(self.stages))
        #: The trainer's own callbacks, around the caller's: the weight average first, the
        #: fine-tuning policy, early stopping last; the checkpoints keep their state.
        self.averaging = WeightAveraging(options.ema) if options.ema else None
        self.fine_tuning = FineTuning(
            self.model.backbone.net,
            self.stages,
            bn=options.bn,
            from_scratch=options.strategy == "scratch",
        )
        self.stopping = (
            EarlyStopping(options.monitor, options.patience)
            if options.patience is not None
            else None
        )
        self.own_callbacks: list[Callback] = [
            callback for callback in (self.averaging, self.stopping) if callback is not None
        ]
        self.callbacks = [
            *([self.averaging] if self.averaging else []),
            self.fine_tuning,
            *callbacks,
            *([self.stopping] if self.stopping else []),
            Checkpointing(self),
        ]
        self.inputs = PhaseInputs(
            model=self.model,
            stages=self.stages,
            options=options,
            preprocessing=self.preprocessing,
            augment=self.augment,
            report=report,
            classes=self.classes,
            seed=self.seed,
            context=self.context,
            device=self.device,
            mixer=batch_mixer(self.augment, len(self.classes), options.label_smoothing),
            frozen_precision=config.get("frozen_precision"),
        )
        self.samples = self.inputs.samples
        self.optimizer = torch.optim.AdamW(
            self.optimizer_groups(), lr=options.lr, weight_decay=options.weight_decay
        )
        self.settings = LoopSettings(
            schedule=options.schedule,
            warmup=options.warmup,
            monitor=options.monitor,
            patience=options.patience,
            precision=self.precision,
            label_smoothing=options.label_smoothing,
            class_weights=self._class_weights(),
            device=self.device,
        )
        self.epoch = 0
        self.history: list[dict[str, Any]] = []
        self.best: dict[str, Any] = {"value": None, "epoch": None}
        self.probe: dict[str, Any] | None = None
        self.safeguard: dict[str, Any] = {}
        self.stopped_phases: list[int] = []
        self.finished = False
        # channels-last on a CPU (loop.memory_format); loop.to_device lays the batches out alike
        self.model.to(self.device).to(memory_format=memory_format(self.device))

    @property
    def uses_probe(self) -> bool:
        """Whether the run fits the linear probe: to start from it (LP-FT) or to guard against
        it (training from scratch has no pretrained features to probe)."""
        options = self.options
        return options.strategy != "scratch" and (options.head_init == "probe" or options.safeguard)

    def optimizer_groups(self, *, decay_1d: bool = False) -> list[dict[str, Any]]:
        """The optimizer's groups: the head (with any backbone parameter outside the stages)
        and each stage from the top (``@0``, ``@1``...), each split so that 1-D parameters
        take no weight decay (``decay_1d``: the grouping of runs started before, for their
        resume)."""
        groups = stage_parameter_groups(
            self.model.backbone.net, self.stages, lr=self.options.lr, decay=1.0
        )
        for depth, group in enumerate(groups):
            group["name"] = f"@{depth}"
        stage_ids = {id(p) for group in groups for p in group["params"]}
        rest = [p for p in self.model.backbone.parameters() if id(p) not in stage_ids]
        head = {
            "params": [*self.model.head.parameters(), *rest],
            "lr": self.options.lr,
            "name": "head",
        }
        if decay_1d:
            return [head, *groups]
        return without_decay_on_1d([head, *groups], self.options.weight_decay)

    def _class_weights(self) -> torch.Tensor | None:
        if self.options.class_weight != "balanced":
            return None
        counts = np.bincount(self.inputs.targets["train"], minlength=len(self.classes)).astype(
            np.float64
        )
        weights = counts.sum() / (len(self.classes) * np.maximum(counts, 1))
        return torch.tensor(weights, dtype=torch.float32, device=self.device)

    def start(self, *, overwrite: bool) -> None:
        """Create the run directory with its configuration and split manifest.

        With ``overwrite``, an existing folder is removed only if it is a graft run.
        """
        if overwrite and (self.run_dir.exists() or self.run_dir.is_symlink()):
            remove_run(self.run_dir)
        self.run_dir.mkdir(parents=True)
        write_manifest(self.run_dir / MANIFEST, self.report.images.samples, self.report.hashes)
        if self.report.problems:
            write_skipped(self.run_dir / SKIPPED, self.report.problems)
        self.config = run_config(self, "running")
        write_config(self.run_dir, self.config)

    def fit(self) -> list[dict[str, Any]]:
        """Run (or continue) the phases; return the history."""
        restore_checkpoint(self)
        if self.epoch == 0 and self.uses_probe:
            start_from_the_probe(self)
        shared = {
            "model": self.model,
            "run_dir": self.run_dir,
            "phases": self.phases,
            "epoch": self.epoch,
            "history": self.history,
        }
        for callback in self.callbacks:
            callback.on_train_begin(shared)
        start = 0
        for index, phase in enumerate(self.phases):
            if self.epoch < start + phase.epochs and index not in self.stopped_phases:
                self._run_phase(index, phase, start)
            start += phase.epochs  # a phase a callback shortened ends sooner
        self.finished = True
        for callback in self.callbacks:
            callback.on_train_end(shared)
        return self.history

    def _scores(self, module: nn.Module, data: EpochData) -> dict[str, float]:
        assert data.val is not None
        return validation_scores(module, data.val(), self.settings, self.classes)

    def _total(self) -> int:
        return sum(phase.epochs for phase in self.phases)

    def shorten_phase(self, phase: Phase, start: int, epochs: int) -> None:
        """End ``phase`` (its first epoch is ``start``) after ``epochs`` of its epochs, never
        fewer than it has run nor more than planned: the rest of its learning-rate schedule is
        compressed into them, so the rate still decays to its end. The checkpoint keeps the
        new length (``--resume`` continues on the same curve)."""
        phase.epochs = max(self.epoch - start, min(epochs, phase.epochs))

    def _run_phase(self, index: int, phase: Phase, start: int) -> None:
        state: dict[str, Any] = {
            "phase": phase.name,
            "phase_index": index,
            "phase_top": phase.top,
            "model": self.model,
            "trainable_stages": [],
            "epoch": self.epoch,
            "stopped": False,
        }
        try:
            # the fine-tuning policy freezes and unfreezes; a callback may end the phase before
            # its set-up (its inputs' pass through the frozen stages), as before an epoch
            for callback in self.callbacks:
                callback.on_phase_begin(state)
            trainable_stages = list(state["trainable_stages"])
            data = self.inputs.epoch_data(phase)
            data.trainable = self.context.wrap(data.trainable, self.device)
            while self.epoch < start + phase.epochs:
                self._run_epoch(index, phase, data, start, trainable_stages)
        except StopTraining:
            self.stopped_phases.append(index)
            self.epoch = start + phase.epochs
            state["stopped"] = True
        for callback in self.callbacks:  # a stopped phase's last checkpoint is written here
            callback.on_phase_end(state)

    @property
    def average(self) -> WeightAverage | None:
        """The weight average, when the run keeps one (``--ema``)."""
        return self.averaging.average if self.averaging is not None else None

    def _run_epoch(
        self, index: int, phase: Phase, data: EpochData, start: int, trainable_stages: list[str]
    ) -> None:
        epoch = self.epoch
        seed_epoch(self.seed + 7919 * self.context.rank, epoch)  # per-process dropout draws
        self.model.train()
        data.trainable.train()  # the fine-tuning policy then freezes BatchNorm statistics
        state = {
            "model": self.model,
            "optimizer": self.optimizer,
            "epoch": epoch,
            "phase": phase.name,
            "phase_index": index,
            "path": phase.path,
            "total_epochs": self._total(),
            "steps": data.steps_per_epoch,
            "phase_epoch": epoch - start + 1,
            "phase_epochs": phase.epochs,
        }
        for callback in self.callbacks:
            callback.on_epoch_begin(state)
        steps = data.steps_per_epoch
        schedule = phase_schedule(
            self.optimizer,
            phase,
            total_steps=phase.epochs * steps,
            done=(epoch - start) * steps,
            schedule=self.settings.schedule,
            warmup=self.settings.warmup,
        )
        rates: dict[str, float] = {}  # those of the epoch's last step

        def on_batch(batch: dict[str, Any]) -> None:
            rates.update({g["name"]: g["lr"] for g in self.optimizer.param_groups if g["lr"] > 0})
            state["batch"] = batch
            for callback in self.callbacks:
                callback.on_batch_end(state)

        clock = time.perf_counter()
        train = train_epoch(
            data.trainable, data.train(epoch), self.optimizer, self.settings, schedule, on_batch
        )
        seconds = time.perf_counter() - clock
        loss_sum, correct, images = self.context.sum(
            [train["loss"] * train["images"], train["accuracy"] * train["images"], train["images"]]
        )
        train = {"loss": loss_sum / images, "accuracy": correct / images, "images": images}
        record: dict[str, Any] = {
            "epoch": epoch + 1,
            "phase": phase.name,
            "path": phase.path,
            "trainable": ["head", *trainable_stages],
            "train_loss": train["loss"],
            "train_accuracy": train["accuracy"],
            "lr": dict(rates),
            "seconds": seconds,
            "images_per_s": train["images"] / seconds,
        }
        if data.val is not None:
            record.update(self._scores(data.trainable, data))
            if self.average is not None:
                with self.average.swapped_in(self.model):
                    record["ema"] = self._scores(data.trainable, data)
        record["eval_seconds"] = time.perf_counter() - clock - seconds
        self.history.append(record)
        self.epoch = epoch + 1
        if self.context.is_main:
            write_json_atomic(self.run_dir / HISTORY, self.history)
        state["record"], state["improved"] = record, self._improved(record)
        # once the epoch is done, a callback may end the phase sooner (the Deadline)
        state["shorten_phase"] = lambda epochs: self.shorten_phase(phase, start, epochs)
        stop: StopTraining | None = None
        for callback in self.callbacks:  # early stopping may end the phase; checkpoints last
            try:
                callback.on_epoch_end(state)
            except StopTraining as err:
                stop, state["stopping"] = stop or err, True
        if stop is not None:
            raise stop

    def _improved(self, record: dict[str, Any]) -> bool:
        """Whether the epoch's raw or averaged weights beat the best so far (raw on ties)."""
        monitor = self.settings.monitor
        if monitor not in record:
            self.best = {"value": None, "epoch": record["epoch"], "weights": "raw"}
            return True
        value, weights = monitored(record, monitor), "raw"
        if "ema" in record and monitored(record["ema"], monitor) > value:
            value, weights = monitored(record["ema"], monitor), "ema"
        # to replace the probe, a trained epoch must beat it by more than the noise of the
        # validation estimate (a one-standard-error rule: the simpler model on near-ties)
        margin = probe_margin(self) if self.best.get("epoch") == 0 else 0.0
        if self.best["value"] is None or value > self.best["value"] + margin:
            self.best = {"value": value, "epoch": record["epoch"], "weights": weights}
            return True
        return False


def build_model(options: NeuralOptions, num_classes: int) -> tuple[TransferModel, str | None]:
    """Build the model: pretrained (or random for scratch), or from an earlier run's backbone."""
    if options.backbone.startswith("run:"):
        source = Path(options.backbone.removeprefix("run:"))
        model = transfer_model_from_run(
            source, num_classes=num_classes, hidden=options.hidden, dropout=options.dropout
        )
        return model, str(source)
    model = build_transfer_model(
        options.backbone,
        num_classes=num_classes,
        hidden=options.hidden,
        dropout=options.dropout,
        pretrained=options.strategy != "scratch",
    )
    return model, None
