"""The neural strategies' options and their plan: which stages train, for how long, at which
learning rates.

Example:
    >>> options = NeuralOptions(strategy="finetune", epochs=4, freeze_epochs=1, unfreeze="2")
    >>> [(p.name, p.epochs, p.top) for p in plan_phases(options, stage_count=8)]
    [('head', 1, 0), ('unfrozen', 3, 2)]
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from graft.data.validate import DataReport
from graft.device import native_bf16
from graft.errors import ConfigError, DataError
from graft.runs import RunConfig
from graft.training.loop import Phase
from graft.training.probe import HEAD_INITS
from graft.training.stages import Stage, resolve_unfreeze
from graft.tta import TTA_MODES
from graft.zoo.records import crop_pct_problem, image_size_problem
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
        wise: ``head``: a kept trained head ends at ``(1 - wise) * probe + wise * trained``
            (WiSE-FT, :func:`graft.training.lpft.average_with_the_probe`), when that is no
            worse than the probe on validation; 1: the trained head as it is.
        dropout: Dropout in the head.
        bn: BatchNorm statistics: ``eval`` (every pretrained layer keeps its own), ``unfrozen``
            (the unfrozen stages update theirs) or ``train`` (all update, frozen ones too).
            Frozen layers keep theirs in the first two; training from scratch always updates.
        monitor: ``val_accuracy``, ``val_macro_f1`` or ``val_loss``.
        patience: Early-stopping patience in epochs (``None``: off).
        batch_size: Images per step.
        precision: ``auto`` (bf16 where the hardware has it), ``fp32`` or ``bf16``.
        image_size: Input side in pixels (default: the backbone record's).
        crop_pct: Fraction of the resized image its centre crop keeps, in [0.25, 1] (default:
            the backbone record's, 0.875 for most; 1.0: no centre crop, for data whose
            borders matter).
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
    wise: float = 0.5
    tta: str = "none"
    ema: float = 0.998
    dropout: float = 0.2
    bn: str = "eval"
    monitor: str = "val_accuracy"
    patience: int | None = None
    batch_size: int = 32
    precision: str = "auto"
    image_size: int | None = None
    crop_pct: float | None = None
    engine: str = "auto"
    workers: int | None = None
    device: str | None = None
    fast_paths: bool = True

    def validate(self) -> None:
        """Raise :class:`ConfigError` for any option out of range, naming it and the fix."""
        size_problem = None if self.image_size is None else image_size_problem(self.image_size)
        crop_problem = None if self.crop_pct is None else crop_pct_problem(self.crop_pct)
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
            (size_problem is None, size_problem or ""),
            (crop_problem is None, crop_problem or ""),
            (0 <= self.dropout < 1, f"--dropout {self.dropout} must be in [0, 1)"),
            (0 <= self.ema < 1, f"--ema {self.ema} must be in [0, 1) (0 turns it off)"),
            (
                0 <= self.wise <= 1,
                f"--wise {self.wise} must be in [0, 1] (1 keeps the trained head as it is)",
            ),
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

    @classmethod
    def from_run(cls, run: RunConfig) -> NeuralOptions:
        """The options a neural run was trained with (``config.json``'s ``options``).

        A run written before LP-FT, the safeguard and EMA gets the values it started with
        (``head_init="random"``, no safeguard, no average), and a run written before WiSE-FT
        ``wise=1`` (its trained head as it is), not today's defaults.

        Raises:
            DataError: The run is not a neural run, or its options are not these fields.
        """
        legacy = {"head_init": "random", "safeguard": False, "ema": 0.0, "wise": 1.0}
        return options_from_run(cls, run, legacy)


def options_from_run(kind: Any, run: RunConfig, legacy: dict[str, Any]) -> Any:
    """``kind(**run.options)``, with one-line errors naming the run (shared by
    :meth:`graft.training.LinearOptions.from_run`)."""
    wanted = "linear" if kind.__name__ == "LinearOptions" else "neural"
    if ("linear" if run.strategy == "linear" else "neural") != wanted:
        raise DataError(f"{run.source}: a {run.strategy} run has no {kind.__name__}")
    unknown = sorted(set(run.options) - set(kind.__dataclass_fields__))
    if unknown:
        raise DataError(
            f"{run.source}: unknown options {', '.join(unknown)}; it was written by a newer "
            "graft (upgrade graft to read it)"
        )
    return kind(**{**legacy, **run.options})


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
