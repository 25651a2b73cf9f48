"""The neural strategies: a new head on a frozen base, fine-tuning, and training from scratch.

* ``head``: the backbone frozen (BatchNorm in inference mode), a new head trained with
  augmentation.
* ``finetune``: ``head`` for ``freeze_epochs``, then the top ``unfreeze`` stages are unfrozen and
  trained with discriminative learning rates (fastai's ``fine_tune``).
* ``scratch``: the same architecture from random weights, same data, budget and augmentation:
  the baseline that shows what transfer buys.

The run directory is written as training goes (``config.json`` says ``running``, then
``complete``): ``checkpoint_last.pt`` after every epoch and ``checkpoint_best.pt`` when the
monitored metric improves, both atomically, so ``graft train --resume RUN_DIR`` continues after a
kill with the same schedule, optimizer state, unfreeze state and data order. At the end the best
weights become ``model.safetensors`` and the splits are evaluated as for every strategy.

Example:
    >>> options = NeuralOptions(strategy="finetune", epochs=4, freeze_epochs=1, unfreeze="2")
    >>> [(p.name, p.epochs, p.top) for p in plan_phases(options, stage_count=8)]
    [('head', 1, 0), ('unfrozen', 3, 2)]
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from graft.auditing.leakage import apply_near_copies, find_near_copies
from graft.data.dataset import LabelledImages, Sample
from graft.data.prepare import DataOptions, prepare
from graft.data.splits import write_manifest
from graft.data.validate import DataReport
from graft.device import native_bf16
from graft.errors import ConfigError, DataError
from graft.faults import fault_point
from graft.fileio import atomic_path, write_json_atomic
from graft.heads import ClassicHead, fit_head
from graft.models.loading import record_of_run
from graft.models.transfer import TransferModel, build_transfer_model
from graft.runs import (
    CHECKPOINT_BEST,
    CHECKPOINT_LAST,
    HISTORY,
    MANIFEST,
    METRICS,
    MODEL,
    SKIPPED,
    check_replaceable,
    read_config,
    remove_run,
    write_config,
    write_skipped,
)
from graft.training.augment import AugmentConfig, batch_mixer, preset, train_transform
from graft.training.distributed import Distributed
from graft.training.ema import WeightAverage
from graft.training.loop import (
    Callback,
    EpochData,
    LoopSettings,
    Phase,
    StopTraining,
    evaluate_batches,
    lr_factor,
    monitored,
    train_epoch,
)
from graft.training.pipelines import (
    ImageDataset,
    NormalizedLower,
    epoch_order,
    frozen_runner,
    mixed,
    pixel_batches,
    precompute,
    seed_epoch,
    tensor_batches,
)
from graft.training.probe import HEAD_INITS, probe_layer, safeguard_summary, start_from_probe
from graft.training.stages import (
    Stage,
    backbone_stages,
    freeze_norm_statistics,
    resolve_unfreeze,
    set_trainable,
    split_network,
    stage_parameter_groups,
)
from graft.tta import TTA_MODES
from graft.zoo.registry import DEFAULT_BACKBONE

NEURAL_STRATEGIES = ("head", "finetune", "scratch")
#: BatchNorm statistics while fine-tuning: ``eval`` keeps every pretrained layer's (Keras'
#: advice for fine-tuning; the unfrozen layers' scale and shift still train), ``unfrozen`` lets
#: the unfrozen stages update theirs, ``train`` lets every layer update them (frozen ones too).
BN_MODES = ("eval", "unfrozen", "train")
#: The fraction of train that becomes the validation split when the given splits have none
#: (Keras' ``validation_split``): without one nothing selects the epoch or guards the run.
CARVED_VAL = 0.1


@dataclass(frozen=True)
class NeuralOptions:
    """Options of the neural strategies (the ``graft train`` training options).

    Attributes:
        strategy: ``head``, ``finetune`` or ``scratch``.
        backbone: A backbone name, or ``run:RUN_DIR`` to start from an earlier run's backbone.
        epochs: Total epochs (for ``finetune``: frozen epochs included).
        freeze_epochs: ``finetune``: epochs with the backbone frozen before unfreezing.
        unfreeze: ``finetune``: top stages to unfreeze, or ``all``.
        lr: Learning rate of the new head (AdamW).
        backbone_lr: ``finetune``: the top unfrozen stage's rate, as a fraction of ``lr``.
        stage_lr_decay: Each stage below gets this fraction of the rate above it.
        weight_decay: AdamW weight decay.
        schedule: ``cosine`` (with warmup) or ``onecycle``, restarted at each phase.
        warmup: Warmup fraction of each phase (cosine).
        label_smoothing: Cross-entropy label smoothing.
        class_weight: ``balanced`` to weight the loss by inverse class frequency.
        sampler: ``random`` or ``balanced`` (draws classes equally often).
        augment: A preset (``none``, ``light``, ``standard``, ``dihedral``, ``strong``) or a
            JSON file. ``none`` by default: measured with LP-FT on potato_disease and ELPV it
            ties or beats ``light`` and beats the seeds' ``standard`` (ELPV validation: 85.3,
            84.3 and 81.7 %), and it lets every epoch run on cached activations.
        hidden: Width of an optional hidden layer in the head.
        head_init: ``probe`` (LP-FT: the head starts as the linear probe fitted on the
            cached features, see :mod:`graft.training.probe`) or ``random``. ``scratch``
            always starts at random.
        ema: Decay of an exponential moving average of the weights (:mod:`graft.training.ema`),
            scored on validation each epoch beside the raw weights, the better kept; 0: off.
        tta: Test-time augmentation the run predicts with (``none``, ``flip``, ``dihedral``;
            :mod:`graft.tta`): the final metrics use it, and so do its predictions by default.
        safeguard: Score the linear probe on validation before the first epoch and keep it
            unless a trained epoch does better (``False``: keep the best trained epoch).
        dropout: Dropout in the head.
        bn: BatchNorm statistics: ``eval`` (every pretrained layer keeps its own), ``unfrozen``
            (the unfrozen stages update theirs) or ``train`` (all update, frozen ones too).
            Frozen layers keep theirs in the first two; training from scratch always updates.
        monitor: ``val_accuracy``, ``val_macro_f1`` or ``val_loss``.
        patience: Early-stopping patience in epochs (``None``: off).
        batch_size: Images per step.
        precision: ``auto`` (bf16 where the hardware has it), ``fp32`` or ``bf16``.
        image_size: Input side in pixels (default: the backbone record's).
        engine: Engine for frozen parts: ``auto``, ``torch`` or ``openvino``.
        workers: Data-loading processes (default: as many as cores, at most 4).
        device: ``auto``, ``cpu`` or ``cuda``.
        fast_paths: Use cached features/activations and the inference engine for frozen parts.
    """

    strategy: str = "finetune"
    backbone: str = DEFAULT_BACKBONE
    epochs: int = 5
    freeze_epochs: int = 1
    unfreeze: str = "2"
    lr: float = 1e-3
    backbone_lr: float = 0.1
    stage_lr_decay: float = 0.5
    weight_decay: float = 0.01
    schedule: str = "cosine"
    warmup: float = 0.1
    label_smoothing: float = 0.1
    class_weight: str | None = None
    sampler: str = "random"
    augment: str = "none"
    hidden: int | None = None
    head_init: str = "probe"
    safeguard: bool = True
    tta: str = "none"
    ema: float = 0.998
    dropout: float = 0.2
    bn: str = "eval"
    monitor: str = "val_accuracy"
    patience: int | None = None
    batch_size: int = 32
    precision: str = "auto"
    image_size: int | None = None
    engine: str = "auto"
    workers: int | None = None
    device: str | None = None
    fast_paths: bool = True

    def validate(self) -> None:
        """Raise :class:`ConfigError` for any option out of range, naming it and the fix."""
        checks = [
            (
                self.strategy in NEURAL_STRATEGIES,
                f"strategy {self.strategy!r} is not one of {NEURAL_STRATEGIES}",
            ),
            (self.epochs >= 1, f"--epochs {self.epochs} must be at least 1"),
            (
                self.strategy != "finetune" or 0 <= self.freeze_epochs < self.epochs,
                f"--freeze-epochs {self.freeze_epochs} must be below --epochs {self.epochs} "
                "(fine-tuning needs unfrozen epochs)",
            ),
            (self.lr > 0, f"--lr {self.lr} must be positive"),
            (0 < self.backbone_lr <= 10, f"--backbone-lr {self.backbone_lr} must be in (0, 10]"),
            (
                0 < self.stage_lr_decay <= 1,
                f"--stage-lr-decay {self.stage_lr_decay} must be in (0, 1]",
            ),
            (
                0 <= self.label_smoothing < 1,
                f"--label-smoothing {self.label_smoothing} must be in [0, 1)",
            ),
            (
                self.class_weight in (None, "balanced"),
                f"--class-weight {self.class_weight!r} must be 'balanced'",
            ),
            (
                self.sampler in ("random", "balanced"),
                f"--sampler {self.sampler!r} must be random or balanced",
            ),
            (
                self.bn in BN_MODES,
                f"--bn {self.bn!r} must be one of {', '.join(BN_MODES)}",
            ),
            (self.batch_size >= 1, f"--batch-size {self.batch_size} must be at least 1"),
            (
                self.precision in ("auto", "fp32", "bf16"),
                f"--precision {self.precision!r} must be auto, fp32 or bf16",
            ),
            (0 <= self.dropout < 1, f"--dropout {self.dropout} must be in [0, 1)"),
            (0 <= self.ema < 1, f"--ema {self.ema} must be in [0, 1) (0 turns it off)"),
            (self.tta in TTA_MODES, f"--tta {self.tta!r} must be one of {', '.join(TTA_MODES)}"),
            (
                self.head_init in HEAD_INITS,
                f"--head-init {self.head_init!r} must be one of {', '.join(HEAD_INITS)}",
            ),
            (
                self.patience is None or self.patience >= 1,
                f"--patience {self.patience} must be at least 1",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return asdict(self)


def plan_phases(options: NeuralOptions, *, stage_count: int) -> list[Phase]:
    """Return the phases of a strategy: which stages train, for how long, at which rates."""
    if options.strategy == "head":
        return [Phase("head", options.epochs, 0, {"head": options.lr})]
    if options.strategy == "scratch":
        rates = {"head": options.lr, **{f"@{i}": options.lr for i in range(stage_count)}}
        return [Phase("scratch", options.epochs, stage_count, rates)]
    unfreeze = resolve_unfreeze(options.unfreeze, [Stage(str(i), ()) for i in range(stage_count)])
    phases = []
    if options.freeze_epochs:
        phases.append(Phase("head", options.freeze_epochs, 0, {"head": options.lr}))
    top_lr = options.lr * options.backbone_lr
    rates = {"head": options.lr * 0.5}
    for depth in range(unfreeze):  # "@k" names the k-th stage from the top
        rates[f"@{depth}"] = top_lr * options.stage_lr_decay**depth
    phases.append(Phase("unfrozen", options.epochs - options.freeze_epochs, unfreeze, rates))
    return phases


@dataclass
class NeuralResult:
    """What ``train_neural`` produced."""

    run_dir: Path
    metrics: dict[str, dict[str, Any]]
    history: list[dict[str, Any]]
    report: DataReport | None
    timings: dict[str, float] = field(default_factory=dict)
    safeguard: dict[str, Any] = field(default_factory=dict)


def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto`` becomes ``bf16`` where the hardware computes it natively, else ``fp32``."""
    if precision != "auto":
        return precision
    return "bf16" if native_bf16(device) else "fp32"


def train_neural(
    data: str | Path | LabelledImages | Iterable[tuple[str | Path, str]] | None,
    *,
    out: str | Path | None = None,
    data_options: DataOptions | None = None,
    options: NeuralOptions | None = None,
    name: str | None = None,
    overwrite: bool = False,
    resume: Path | None = None,
    on_report: Callable[[DataReport], None] | None = None,
    callbacks: Sequence[Callback] = (),
) -> NeuralResult:
    """Train with a neural strategy, or resume a run, and write its run directory.

    Args:
        data: A folder, table, :class:`LabelledImages` or pairs (``None`` with ``resume``).
        out: The run directory (default ``runs/<data>-<strategy>-<time>``).
        data_options: Split and subset options.
        options: Strategy, model and loop options.
        name: A name for data given as pairs.
        overwrite: Replace ``out`` if it exists.
        resume: A run directory to continue (its own options and split are used).
        on_report: Called with the validation report before training.
        callbacks: Loop callbacks (progress display, ...).

    Raises:
        DataError: Unusable data.
        ConfigError: Bad options, ``out`` exists, or nothing to resume.
    """
    from graft.training.distributed import from_environment
    from graft.training.linear import default_run_dir

    started = time.perf_counter()
    context = from_environment()
    if resume is not None:
        run_dir = Path(resume)
        config = read_config(run_dir)
        if config.get("strategy") not in NEURAL_STRATEGIES:
            raise ConfigError(f"{run_dir}: a {config.get('strategy')} run has no epochs to resume")
        if config.get("status") == "complete":
            raise ConfigError(f"{run_dir}: this run is complete; nothing to resume")
        # a run written before LP-FT, the safeguard and EMA resumes as it started
        legacy = {"head_init": "random", "safeguard": False, "ema": 0.0}
        options = NeuralOptions(**{**legacy, **config["options"]})
        data_options = DataOptions(**{**config["data"]["options"], "root": None})
        report = prepare(run_dir / MANIFEST, DataOptions(seed=data_options.seed))
        # split.csv already holds the data after fixes and drops; keep the record of them
        stored = config.get("data", {})
        report.near_duplicates = stored.get("near_duplicates_across_splits", {})
        report.fixes = stored.get("fixes", {})
        report.dropped = [Sample(Path(path), "") for path in stored.get("dropped", [])]
        report.carved_val = float(stored.get("val_carved_from_train", 0.0))
    else:
        options = options or NeuralOptions()
        data_options = data_options or DataOptions()
        options.validate()
        data_options = data_options.carving(CARVED_VAL)
        if data is None:
            raise ConfigError("no data given; pass DATA, or --resume RUN_DIR")
        report = prepare(data, data_options, name=name)
        run_dir = context.broadcast(  # every process writes to rank 0's choice
            Path(out)
            if out is not None
            else default_run_dir(report.images.source, options.strategy)
        )
        check_replaceable(run_dir, overwrite=overwrite, resume_hint=True)
        # rank 0 decides which near-copies to drop, so every process trains on the same images
        found = (
            find_near_copies(report, dedupe=str(data_options.dedupe)) if context.is_main else None
        )
        apply_near_copies(report, context.broadcast(found))
        config = {}
    trainer = _Trainer(
        run_dir,
        report,
        options,
        data_options,
        config,
        callbacks if context.is_main else (),
        context,
    )
    if resume is None and options.strategy != "scratch":
        from graft.training.preflight import preflight

        train_paths = [sample.path for sample in report.images.split("train")]
        report.warnings.extend(preflight(train_paths, trainer.model.record))
    if on_report is not None and context.is_main:
        on_report(report)
    if resume is None:
        context.barrier()  # every process has checked the run directory before it is made
        if context.is_main:
            trainer.start(overwrite=overwrite)
    context.barrier()
    history = trainer.fit()
    identical = context.identical(trainer.model)
    metrics: dict[str, dict[str, Any]] = {}
    if trainer.finished:
        if context.is_main:
            metrics = trainer.finish(parameters_identical=identical)
        context.barrier()
        if not context.is_main:
            metrics = json.loads((run_dir / METRICS).read_text())
    return NeuralResult(
        run_dir,
        metrics,
        history,
        report,
        {"total": time.perf_counter() - started},
        trainer.safeguard,
    )


class _Trainer:
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
        from graft.device import resolve_device

        self.context = context or Distributed()
        self.run_dir = run_dir
        self.report = report
        self.options = options
        self.data_options = data_options
        self.config = config
        self.callbacks = list(callbacks)
        self.device = resolve_device(options.device)
        if self.device.type == "cuda" and self.context.enabled:
            self.device = torch.device("cuda", self.context.local_rank)
        self.local_batch = self.context.local_batch(options.batch_size)
        self.precision = resolve_precision(options.precision, self.device)
        self.seed = data_options.seed
        self.classes = report.images.classes
        self.augment: AugmentConfig = preset(options.augment)
        torch.manual_seed(self.seed)
        self.model, self.source = _build_model(options, len(self.classes))
        self.preprocessing = self.model.record.preprocessing
        if options.image_size is not None:
            self.preprocessing = self.preprocessing.with_input_size(options.image_size)
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
        self.samples = {split: report.images.split(split) for split in ("train", "val", "test")}
        self.targets = {
            split: [self.classes.index(s.label) for s in samples]
            for split, samples in self.samples.items()
        }
        self.optimizer = torch.optim.AdamW(
            self._groups(), lr=options.lr, weight_decay=options.weight_decay
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
        self.mixer = batch_mixer(self.augment, len(self.classes), options.label_smoothing)
        self.epoch = 0
        self.history: list[dict[str, Any]] = []
        self.best: dict[str, Any] = {"value": None, "epoch": None}
        self.probe: dict[str, Any] | None = None
        self.average: WeightAverage | None = None
        self._saved_average: dict[str, Any] | None = None
        self.safeguard: dict[str, Any] = {}
        self.bad_epochs = 0
        self.stopped_phases: list[int] = []
        self.finished = False
        self.model.to(self.device)

    # -- set-up ------------------------------------------------------------------------------

    @property
    def uses_probe(self) -> bool:
        """Whether the run fits the linear probe: to start from it (LP-FT) or to guard against
        it (training from scratch has no pretrained features to probe)."""
        options = self.options
        return options.strategy != "scratch" and (options.head_init == "probe" or options.safeguard)

    def _groups(self) -> list[dict[str, Any]]:
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
        return [head, *groups]

    def _class_weights(self) -> torch.Tensor | None:
        if self.options.class_weight != "balanced":
            return None
        counts = np.bincount(self.targets["train"], minlength=len(self.classes)).astype(np.float64)
        weights = counts.sum() / (len(self.classes) * np.maximum(counts, 1))
        return torch.tensor(weights, dtype=torch.float32, device=self.device)

    def _sample_weights(self) -> np.ndarray | None:
        if self.options.sampler != "balanced":
            return None
        targets = np.array(self.targets["train"])
        counts = np.bincount(targets, minlength=len(self.classes))
        return 1.0 / counts[targets]

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
        self.config = self._config("running")
        write_config(self.run_dir, self.config)

    def _config(self, status: str) -> dict[str, Any]:
        from graft.training.linear import library_versions

        record = self.model.record
        return {
            "strategy": self.options.strategy,
            "status": status,
            "created": self.config.get("created")
            or datetime.now(UTC).isoformat(timespec="seconds"),
            "classes": self.classes,
            "backbone": {
                "name": record.name,
                "architecture": record.architecture,
                "weights_sha256": record.weights.sha256,
                "pretrained": self.options.strategy != "scratch",
                "from_run": self.source,
                "preprocessing": self.preprocessing.to_dict(),
            },
            "head": self.model.head_config.to_dict(),
            "options": self.options.to_dict(),
            "augment": self.augment.to_dict(),
            "precision": self.precision,
            "tta": self.options.tta,
            **{k: self.config[k] for k in ("frozen_precision",) if k in self.config},
            "device": str(self.device),
            "phases": [asdict(phase) for phase in self.phases],
            "data": {
                "source": self.report.images.source,
                "layout": self.report.images.layout,
                "fingerprint": self.report.fingerprint(),
                "counts": self.report.images.counts(),
                "options": self.data_options.to_dict(),
                "skipped": len(self.report.problems),
                **self.report.cleaning(),
                "manifest": MANIFEST,
            },
            "seed": self.seed,
            "distributed": {
                "world_size": self.context.world_size,
                "backend": "nccl" if self.device.type == "cuda" else "gloo",
            }
            if self.context.enabled
            else None,
            "versions": library_versions(),
        }

    # -- resume ------------------------------------------------------------------------------

    def _restore(self) -> None:
        path = self.run_dir / CHECKPOINT_LAST
        if not path.is_file():
            return
        try:
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:
            raise DataError(
                f"{path}: unreadable checkpoint ({err}); delete it to restart the run"
            ) from err
        self.model.load_state_dict(checkpoint["model"])
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        state = checkpoint["state"]
        self.epoch = int(state["epoch"])
        self.history = list(state["history"])
        self.best = dict(state["best"])
        self.bad_epochs = int(state["bad_epochs"])
        self.stopped_phases = list(state["stopped_phases"])
        self.probe = state.get("probe")
        self._saved_average = checkpoint.get("ema")

    def _save(self, path_name: str, model_state: dict[str, torch.Tensor] | None = None) -> None:
        """Write a checkpoint (the model's weights, or ``model_state``) with the loop's state;
        the last checkpoint also holds the optimizer's and the weight average's."""
        if not self.context.is_main:
            return
        state = {
            "epoch": self.epoch,
            "history": self.history,
            "best": self.best,
            "bad_epochs": self.bad_epochs,
            "stopped_phases": self.stopped_phases,
            "probe": self.probe,
        }
        checkpoint = {
            "model": self.model.state_dict() if model_state is None else model_state,
            "optimizer": self.optimizer.state_dict(),
            "state": state,
            "ema": self.average.state_dict()
            if self.average is not None and path_name == CHECKPOINT_LAST
            else None,
        }
        with atomic_path(self.run_dir / path_name) as tmp:
            torch.save(checkpoint, tmp)

    # -- the epochs --------------------------------------------------------------------------

    def fit(self) -> list[dict[str, Any]]:
        """Run (or continue) the phases; return the history."""
        self._restore()
        if self.epoch == 0 and self.uses_probe:
            self._start_from_probe()
        if self.options.ema:
            self.average = WeightAverage(self.model, self.options.ema)  # on the model's device
            if self._saved_average is not None:
                self.average.load_state_dict(self._saved_average)
        shared = {
            "run_dir": self.run_dir,
            "phases": self.phases,
            "epoch": self.epoch,
            "history": self.history,
        }
        for callback in self.callbacks:
            callback.on_train_begin(shared)
        start = 0
        for index, phase in enumerate(self.phases):
            end = start + phase.epochs
            if self.epoch < end and index not in self.stopped_phases:
                self._run_phase(index, phase, start, end)
            start = end
        self.finished = True
        for callback in self.callbacks:
            callback.on_train_end(shared)
        return self.history

    def _start_from_probe(self) -> None:
        """Fit the linear probe on the cached training features; start the head from it (LP-FT,
        unless ``--head-init random``) and make it the checkpoint to beat on validation."""
        import copy

        fitted = self._fit_probe(self.samples["train"])
        probe_head = copy.deepcopy(self.model.head).cpu()
        start_from_probe(probe_head, *probe_layer(fitted))
        probe_head.to(self.device)
        if self.options.head_init == "probe":
            self.model.head.load_state_dict(probe_head.state_dict())
        self.probe = {"C": fitted.params["C"], "selection": fitted.params["selection"]}
        val = self._cached_features(self.samples["val"])
        if val is None or not self.options.safeguard:
            return
        batches = self._val_batches(val)
        assert batches is not None
        self.probe.update(self._scores(probe_head, batches()))
        self.best = {"value": monitored(self.probe, self.settings.monitor), "epoch": 0}
        state = self.model.state_dict()
        state.update({f"head.{k}": v for k, v in probe_head.state_dict().items()})
        self._save(CHECKPOINT_BEST, state)

    def _refit_probe(self) -> None:
        """The kept probe, fitted again on train and the validation split carved from train:
        choosing it needed held-out images, the model it stands for (the linear strategy's)
        learns from all of them."""
        # in the order the linear strategy reads all of train: the same folds, the same probe
        fitted = self._fit_probe(
            sorted(
                self.samples["train"] + self.samples["val"], key=lambda s: (s.label, str(s.path))
            )
        )
        start_from_probe(self.model.head, *probe_layer(fitted))
        if self.probe is not None:
            self.probe["refit_C"] = fitted.params["C"]

    def _fit_probe(self, samples: list[Sample]) -> ClassicHead:
        """The linear strategy's logistic regression on these images' cached features."""
        return fit_head(
            "logreg",
            _present(self._cached_features(samples)).numpy(),
            [sample.label for sample in samples],
            classes=self.classes,
            class_weight=self.options.class_weight,
            seed=self.seed,
        )

    def _scores(self, module: nn.Module, batches: Any) -> dict[str, float]:
        """``val_loss``, ``val_accuracy`` and ``val_macro_f1`` of ``module`` on the batches."""
        from graft.metrics import classification_metrics

        proba, targets, loss = evaluate_batches(module, batches, self.settings)
        metrics = classification_metrics([self.classes[t] for t in targets], proba, self.classes)
        return {
            "val_loss": loss,
            "val_accuracy": metrics["accuracy"],
            "val_macro_f1": metrics["macro_f1"],
        }

    def _total(self) -> int:
        return sum(phase.epochs for phase in self.phases)

    def _run_phase(self, index: int, phase: Phase, start: int, end: int) -> None:
        trainable_stages = set_trainable(self.model.backbone.net, self.stages, phase.top)
        data = self._epoch_data(phase)
        data.trainable = self.context.wrap(data.trainable, self.device)
        for group in self.optimizer.param_groups:
            group["lr"] = 0.0
        try:
            while self.epoch < end:
                self._run_epoch(phase, data, start, trainable_stages)
                self._early_stop(index)
        except StopTraining:
            self.stopped_phases.append(index)
            self.epoch = end
            self._save(CHECKPOINT_LAST)
        self.bad_epochs = 0

    def _run_epoch(
        self, phase: Phase, data: EpochData, start: int, trainable_stages: list[str]
    ) -> None:
        epoch = self.epoch
        seed_epoch(self.seed + 7919 * self.context.rank, epoch)  # per-process dropout draws
        self.model.train()
        data.trainable.train()
        if self.options.strategy != "scratch" and self.options.bn != "train":
            freeze_norm_statistics(self.model, everywhere=self.options.bn == "eval")
        state = {
            "model": self.model,
            "optimizer": self.optimizer,
            "epoch": epoch,
            "phase": phase.name,
            "path": phase.path,
            "total_epochs": self._total(),
            "steps": data.steps_per_epoch,
        }
        for callback in self.callbacks:
            callback.on_epoch_begin(state)
        step = [(epoch - start) * data.steps_per_epoch]
        total_steps = phase.epochs * data.steps_per_epoch

        def set_lr() -> None:
            factor = lr_factor(
                step[0], total_steps, schedule=self.settings.schedule, warmup=self.settings.warmup
            )
            for group in self.optimizer.param_groups:
                group["lr"] = phase.base_lrs.get(group["name"], 0.0) * factor
            step[0] += 1

        def on_batch(batch: dict[str, Any]) -> None:
            if self.average is not None:
                self.average.update(self.model)
            state["batch"] = batch
            for callback in self.callbacks:
                callback.on_batch_end(state)

        clock = time.perf_counter()
        train = train_epoch(
            data.trainable, data.train(epoch), self.optimizer, self.settings, set_lr, on_batch
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
            "lr": {
                group["name"]: group["lr"]
                for group in self.optimizer.param_groups
                if group["lr"] > 0
            },
            "seconds": seconds,
            "images_per_s": train["images"] / seconds,
        }
        if data.val is not None:
            record.update(self._scores(data.trainable, data.val()))
            if self.average is not None:
                with self.average.swapped_in(self.model):
                    record["ema"] = self._scores(data.trainable, data.val())
        record["eval_seconds"] = time.perf_counter() - clock - seconds
        self.history.append(record)
        self.epoch = epoch + 1
        # The best weights first: a kill between the two writes then leaves the previous last
        # checkpoint, and the resumed run repeats this epoch (never a "best" it does not hold).
        if self._improved(record):
            average = self.average if self.best.get("weights") == "ema" else None
            self._save(CHECKPOINT_BEST, None if average is None else average.state)
            fault_point("neural.between-checkpoints")
        self._save(CHECKPOINT_LAST)
        if self.context.is_main:
            write_json_atomic(self.run_dir / HISTORY, self.history)
        state["record"] = record
        for callback in self.callbacks:
            callback.on_epoch_end(state)

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
        margin = self._probe_margin() if self.best.get("epoch") == 0 else 0.0
        if self.best["value"] is None or value > self.best["value"] + margin:
            self.best = {"value": value, "epoch": record["epoch"], "weights": weights}
            self.bad_epochs = 0
            return True
        self.bad_epochs += 1
        return False

    def _probe_margin(self) -> float:
        """One standard error of the probe's validation accuracy (or macro-F1),
        ``sqrt(p (1 - p) / n)``; 0 for the loss."""
        monitor = self.settings.monitor
        if self.probe is None or monitor not in self.probe or monitor == "val_loss":
            return 0.0
        p = float(self.probe[monitor])
        return float(np.sqrt(p * (1 - p) / max(1, len(self.samples["val"]))))

    def _early_stop(self, index: int) -> None:
        patience = self.settings.patience
        if patience is not None and self.bad_epochs >= patience:
            self.history[-1]["early_stop"] = True
            raise StopTraining(f"{self.settings.monitor} did not improve for {patience} epochs")

    # -- what each phase trains on -----------------------------------------------------------

    def _epoch_data(self, phase: Phase) -> EpochData:
        """Choose the phase's pipeline (see :mod:`graft.training.pipelines`) and build it."""
        options = self.options
        train_samples, val_samples = self.samples["train"], self.samples["val"]
        steps = max(1, -(-len(train_samples) // options.batch_size))
        augmented = not self.augment.is_identity
        weights = self._sample_weights()
        train_targets = torch.tensor(self.targets["train"])
        fast = options.fast_paths and options.bn != "train" and self.device.type == "cpu"
        split = (
            split_network(self.model.backbone.net, self.stages, phase.top) if phase.top else None
        )

        def order(epoch: int) -> list[int]:
            everyone = epoch_order(len(train_samples), seed=self.seed, epoch=epoch, weights=weights)
            return self.context.shard(everyone, batch_size=options.batch_size)

        def batches_of(inputs: torch.Tensor, targets: torch.Tensor) -> Callable[[int], Any]:
            return lambda epoch: tensor_batches(inputs, targets, order(epoch), self.local_batch)

        if fast and phase.top == 0 and not augmented:
            phase.path = "cached-features"
            val_x = self._cached_features(val_samples)
            return EpochData(
                train=batches_of(_present(self._cached_features(train_samples)), train_targets),
                val=self._val_batches(val_x),
                trainable=self.model.head,
                steps_per_epoch=steps,
            )
        if fast and (phase.top == 0 or split is not None):
            runner, trainable = self._frozen_part(phase, split)
            val_x = self._precompute(runner, val_samples)
            if not augmented:
                phase.path = "cached-boundary"
                train_x = _present(self._precompute(runner, train_samples))
                return EpochData(
                    batches_of(train_x, train_targets), self._val_batches(val_x), trainable, steps
                )
            phase.path = "frozen-engine" if phase.top == 0 else "frozen-lower"
            dataset = self._dataset(train_samples, train=True)

            def through_frozen(epoch: int) -> Any:
                for pixels, target in self._train_pixels(dataset, order(epoch), epoch):
                    yield runner(pixels), target

            return EpochData(through_frozen, self._val_batches(val_x), trainable, steps)
        phase.path = "full"
        train_set = self._dataset(train_samples, train=True)
        val_set = self._dataset(val_samples, train=False)
        val = (lambda: self._pixels(val_set, list(range(len(val_set))), 0)) if val_samples else None
        return EpochData(
            lambda epoch: self._train_pixels(train_set, order(epoch), epoch), val, self.model, steps
        )

    def _frozen_part(
        self, phase: Phase, split: tuple[nn.Module, nn.Module] | None
    ) -> tuple[Any, nn.Module]:
        """The frozen part on the inference engine, and the trainable module above it."""
        from graft.features.layers import feature_module

        spec = self._feature_spec()
        key = spec.model_key
        if phase.top == 0 or split is None:
            frozen: nn.Module = feature_module(self.model.backbone)
            trainable: nn.Module = self.model.head
        else:
            lower, upper = split
            frozen = NormalizedLower(self.model.backbone.normalize, lower)
            key = f"{key}-below{len(self.stages) - phase.top}"
            trainable = nn.Sequential(upper, self.model.head)
        runner = frozen_runner(
            frozen,
            input_size=self.preprocessing.input_size,
            engine=self.options.engine,
            cache_key=key,
            precision=spec.precision,
        )
        return runner, trainable

    def _val_batches(self, val_x: torch.Tensor | None) -> Callable[[], Any] | None:
        if val_x is None:
            return None
        targets = torch.tensor(self.targets["val"])
        every = list(range(len(val_x)))
        return lambda: tensor_batches(val_x, targets, every, self.options.batch_size)

    def _train_pixels(self, dataset: ImageDataset, order: list[int], epoch: int) -> Any:
        """Augmented (and, with mixup/cutmix, mixed) training pixels: this process's share."""
        return mixed(self._pixels(dataset, order, epoch, self.local_batch), self.mixer)

    def _pixels(
        self, dataset: ImageDataset, order: list[int], epoch: int, batch_size: int | None = None
    ) -> Any:
        return pixel_batches(
            dataset,
            order,
            batch_size=batch_size or self.options.batch_size,
            workers=self._workers(),
            seed=self.seed + 7919 * self.context.rank,
            epoch=epoch,
        )

    def _workers(self) -> int:
        import os

        if self.options.workers is not None:
            return self.options.workers
        return max(0, min(4, os.cpu_count() or 1))

    def _dataset(self, samples: list[Sample], *, train: bool) -> ImageDataset:
        from graft.data.transforms import eval_transform, resize_target

        transform = (
            train_transform(self.preprocessing, self.augment)
            if train
            else eval_transform(self.preprocessing)
        )
        return ImageDataset(
            [s.path for s in samples],
            [self.classes.index(s.label) for s in samples],
            transform,
            resize_target(self.preprocessing),
        )

    def _feature_spec(self) -> Any:
        """The frozen backbone's features, at the precision :meth:`_frozen_precision` chose."""
        from graft.features.extract import FeatureSpec

        spec = FeatureSpec(self.model.record, self.preprocessing, "final", "avg")
        return spec.with_precision(self._frozen_precision(spec))

    def _frozen_precision(self, spec: Any) -> str:
        """The frozen parts' precision: ``--precision auto`` takes bf16 where the engine runs it
        natively and the probe guard passes on this data (int8 is not tried: the frozen lower
        stages would need their own calibration); chosen once per run, kept on resume."""
        from graft.features.precision import select_precision

        stored = self.config.get("frozen_precision")
        if stored:
            return str(stored["precision"])
        requested = "fp32" if self.options.precision == "fp32" else self.options.precision
        samples = self.report.images.samples
        with self.context.main_first():  # rank 0 fills the cache, the others read the same
            _, choice = select_precision(
                spec,
                requested,
                [s.path for s in samples],
                [s.label for s in samples],
                [s.split for s in samples],
                self.report.hashes,
                engine=self.options.engine,
                int8=False,
            )
        self.config["frozen_precision"] = choice.to_dict()
        return choice.precision

    def _cached_features(self, samples: list[Sample]) -> torch.Tensor | None:
        from graft.features.extract import extract_features

        if not samples:
            return None
        with self.context.main_first():  # rank 0 fills the shared cache, the others read it
            result = extract_features(
                [s.path for s in samples], self._feature_spec(), engine=self.options.engine
            )
        if not result.ok.all():
            bad = ", ".join(str(p) for p, _ in result.failures[:3])
            raise DataError(f"images failed to decode during training: {bad}; remove them")
        return torch.from_numpy(result.features)

    def _precompute(
        self, runner: Callable[[torch.Tensor], torch.Tensor], samples: list[Sample]
    ) -> torch.Tensor | None:
        if not samples:
            return None
        dataset = self._dataset(samples, train=False)
        outputs, _ = precompute(runner, self._pixels(dataset, list(range(len(dataset))), 0))
        if len(outputs) != len(samples):
            raise DataError(
                "some images failed to decode during training; run graft train again to list them"
            )
        return outputs

    # -- the end -----------------------------------------------------------------------------

    def finish(self, *, parameters_identical: bool = True) -> dict[str, dict[str, Any]]:
        """Save the best weights as the model, evaluate the splits, mark the run complete.

        Every file exists before ``config.json`` says ``complete``; a kill at any point leaves a
        run that says ``running`` and that ``--resume`` finishes with the same result.
        """
        from safetensors.torch import save_file

        from graft.metrics import classification_metrics
        from graft.predictor import NeuralPredictor
        from graft.runs import predictions_file, write_predictions

        best = self.run_dir / CHECKPOINT_BEST
        if best.is_file():
            self.model.load_state_dict(
                torch.load(best, map_location="cpu", weights_only=True)["model"]
            )
        # a kept probe learns from the carved validation images too, unless the training
        # images were capped (--per-class, --limit): then it keeps the images it was given
        refit = (
            self.best.get("epoch") == 0
            and bool(self.report.carved_val)
            and not self.data_options.capped
        )
        if refit:
            self._refit_probe()
        tensors = {k: v.detach().contiguous().cpu() for k, v in self.model.state_dict().items()}
        with atomic_path(self.run_dir / MODEL) as tmp:
            save_file(tensors, str(tmp))
        fault_point("neural.after-model")
        config = self._config("complete")
        config["best_epoch"] = self.best.get("epoch")
        config["best_weights"] = (
            "probe" if self.best.get("epoch") == 0 else self.best.get("weights")
        )
        config["probe"] = self.probe
        config["safeguard"] = self.safeguard = safeguard_summary(
            self.probe if self.options.strategy != "scratch" and self.options.safeguard else None,
            self.history,
            self.best.get("epoch"),
            self.settings.monitor,
            margin=self._probe_margin(),
        )
        if refit:
            self.safeguard["refit"] = "train+val"
            self.safeguard["message"] += (
                "; refitted on train and the validation split carved from it, as the linear "
                "strategy fits on all of train (its validation figures are no longer held out)"
            )
        if config["distributed"] is not None:
            config["distributed"]["parameters_identical"] = parameters_identical
        config["time_per_epoch_s"] = {
            phase.name: round(
                float(
                    np.mean([h["seconds"] for h in self.history if h["phase"] == phase.name] or [0])
                ),
                2,
            )
            for phase in self.phases
        }
        engine = str(self.options.engine)
        predictor = NeuralPredictor(self.run_dir, config, engine)
        metrics: dict[str, dict[str, Any]] = {}
        for split in ("val", "test"):
            samples = self.samples[split]
            if not samples:
                continue
            proba, ok, _ = predictor.predict_files([s.path for s in samples])
            truth = [s.label for s, flag in zip(samples, ok, strict=True) if flag]
            metrics[split] = classification_metrics(truth, proba[ok], self.classes)
            write_predictions(
                self.run_dir / predictions_file(split),
                [s.path for s, flag in zip(samples, ok, strict=True) if flag],
                truth,
                proba[ok],
                self.classes,
            )
        write_json_atomic(self.run_dir / METRICS, metrics)
        fault_point("neural.before-complete")
        write_config(self.run_dir, config)  # last: "complete" only once every file exists
        best.unlink(missing_ok=True)
        return metrics


def _present(inputs: torch.Tensor | None) -> torch.Tensor:
    """The training inputs (validation guarantees there are training images)."""
    if inputs is None:
        raise DataError("the training split is empty")
    return inputs


def _build_model(options: NeuralOptions, num_classes: int) -> tuple[TransferModel, str | None]:
    """Build the model: pretrained (or random for scratch), or from an earlier run's backbone."""
    if options.backbone.startswith("run:"):
        source = Path(options.backbone.removeprefix("run:"))
        return _from_run(source, options, num_classes), str(source)
    model = build_transfer_model(
        options.backbone,
        num_classes=num_classes,
        hidden=options.hidden,
        dropout=options.dropout,
        pretrained=options.strategy != "scratch",
    )
    return model, None


def _from_run(source: Path, options: NeuralOptions, num_classes: int) -> TransferModel:
    """A new head on the (fine-tuned) backbone of an earlier graft run."""
    from safetensors.torch import load_file

    config = read_config(source)
    if config.get("strategy") == "linear":
        record_name = config["features"][0]["backbone"]
        return build_transfer_model(
            record_name, num_classes=num_classes, hidden=options.hidden, dropout=options.dropout
        )
    if config.get("status") != "complete":
        raise ConfigError(
            f"{source}: the run is not complete; finish it (graft train --resume) first"
        )
    record = record_of_run(config)
    model = build_transfer_model(
        record,
        num_classes=num_classes,
        hidden=options.hidden,
        dropout=options.dropout,
        pretrained=False,
    )
    state = load_file(str(source / MODEL))
    backbone = {
        k.removeprefix("backbone."): v for k, v in state.items() if k.startswith("backbone.")
    }
    model.backbone.load_state_dict(backbone, strict=True)
    return model


