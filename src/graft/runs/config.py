"""``config.json`` as typed records: what a run was trained from and how, in one shape for
every strategy.

A run's ``config.json`` is written in two shapes (run format 1): a linear run lists its
``features`` (one entry per backbone) with a top-level ``engine``; a neural run has one
``backbone`` and its ``options`` (``engine`` among them). :meth:`RunConfig.from_dict` reads
either into the same :class:`RunConfig`, so no reader branches on the shape; the dict itself
stays available as :attr:`RunConfig.raw`.

Example:
    >>> size = {"input_size": 224, "interpolation": "bicubic", "crop_pct": 0.875,
    ...         "mean": [0.5] * 3, "std": [0.5] * 3}
    >>> config = RunConfig.from_dict({
    ...     "format": 1, "strategy": "linear", "classes": ["cat", "dog"], "engine": "torch",
    ...     "features": [{"backbone": "efficientnet_lite0.in1k", "layer": "final", "pool": "avg",
    ...                   "preprocessing": size}],
    ...     "head": {"kind": "logreg", "params": {"C": 1.0}}})
    >>> config.backbones[0].name, config.backbones[0].preprocessing.input_size, config.engine
    ('efficientnet_lite0.in1k', 224, 'torch')
    >>> config.head.kind, config.neural
    ('logreg', False)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from graft.errors import DataError
from graft.runs.files import CONFIG, MANIFEST, read_config
from graft.zoo.records import Preprocessing

#: The strategies that train a network (their runs hold ``model.safetensors``).
NEURAL = ("head", "finetune", "scratch")


@dataclass(frozen=True)
class BackboneEntry:
    """A backbone a run reads images with.

    Attributes:
        name: The backbone record's name (``efficientnet_lite0.in1k``).
        architecture: Its timm architecture, when recorded.
        weights_sha256: The SHA-256 of the weights the run was trained from.
        preprocessing: How images became its input.
        layer: Linear runs: the feature layer (``final`` or ``stageN``).
        pool: Linear runs: the spatial pooling.
        precision: Linear runs: the features' precision (``fp32``, ``bf16``, ``int8``).
        calibration: Linear int8 runs: the calibration images' digest.
        calibration_files: Linear int8 runs: the calibration images.
        pretrained: Neural runs: whether training started from pretrained weights.
        from_run: Neural runs: the run whose backbone this one started from.
    """

    name: str
    architecture: str | None
    weights_sha256: str | None
    preprocessing: Preprocessing
    layer: str = "final"
    pool: str = "avg"
    precision: str = "fp32"
    calibration: str | None = None
    calibration_files: tuple[Path, ...] = ()
    pretrained: bool = True
    from_run: str | None = None


@dataclass(frozen=True)
class HeadEntry:
    """A run's head.

    Attributes:
        kind: ``logreg``, ``svm``, ``knn`` or ``centroid`` (linear runs), ``neural`` otherwise.
        params: A classic head's chosen hyperparameters and how they were chosen.
        num_classes: A neural head's outputs.
        hidden: A neural head's hidden units, or ``None``.
        dropout: A neural head's dropout.
    """

    kind: str
    params: dict[str, Any] = field(default_factory=dict)
    num_classes: int | None = None
    hidden: int | None = None
    dropout: float = 0.0


@dataclass(frozen=True)
class DataEntry:
    """Where a run's images came from and what was done to them.

    Attributes:
        source: The data folder or table the run was trained on.
        layout: How it was read (``split-folders``, ``class-folders``, ``table``...).
        fingerprint: Digest of the file list and labels.
        counts: Images per split and class.
        options: The data options as given (:class:`graft.data.DataOptions` fields).
        skipped: Files skipped as unreadable or not images.
        manifest: The file that lists every image with its split and label.
        cleaning: What cleaning recorded: dropped near-copies, applied fixes, ...
    """

    source: str | None = None
    layout: str | None = None
    fingerprint: str | None = None
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    skipped: int = 0
    manifest: str = MANIFEST
    cleaning: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DataEntry:
        """Read a run's ``data`` record."""
        known = ("source", "layout", "fingerprint", "counts", "options", "skipped", "manifest")
        return cls(
            source=data.get("source"),
            layout=data.get("layout"),
            fingerprint=data.get("fingerprint"),
            counts={split: dict(per) for split, per in data.get("counts", {}).items()},
            options=dict(data.get("options", {})),
            skipped=int(data.get("skipped", 0)),
            manifest=str(data.get("manifest", MANIFEST)),
            cleaning={key: value for key, value in data.items() if key not in known},
        )


@dataclass(frozen=True)
class PhaseEntry:
    """One phase of a neural run as it ran.

    Attributes:
        name: ``head``, ``unfrozen``, ``full``...
        epochs: Its epochs.
        top: How many of the backbone's top stages it trained (0: the head only).
        base_lrs: Peak learning rate per parameter group (``head``, ``@0`` the top stage...).
        path: How its inputs were computed (``cached-features``, ``pixels``...).
    """

    name: str
    epochs: int
    top: int
    base_lrs: dict[str, float] = field(default_factory=dict)
    path: str | None = None

    @classmethod
    def from_dict(cls, phase: dict[str, Any]) -> PhaseEntry:
        """Read one entry of a run's ``phases``."""
        return cls(
            name=str(phase["name"]),
            epochs=int(phase["epochs"]),
            top=int(phase["top"]),
            base_lrs={k: float(v) for k, v in phase.get("base_lrs", {}).items()},
            path=phase.get("path"),
        )


@dataclass(frozen=True)
class Timings:
    """How long a run took.

    Attributes:
        steps_s: Linear runs: seconds per step (``validate``, ``extract``, ``fit``...).
        epoch_s: Neural runs: seconds per epoch of each phase (``history.json`` has every
            epoch's).
    """

    steps_s: dict[str, float] = field(default_factory=dict)
    epoch_s: dict[str, float] = field(default_factory=dict)

    @property
    def total_s(self) -> float | None:
        """The steps' total, or ``None`` when only per-epoch times were recorded."""
        return float(sum(self.steps_s.values())) if self.steps_s else None


@dataclass(frozen=True)
class RunConfig:
    """A run's ``config.json``, typed (see the module docstring).

    Attributes:
        format: The run format version it was written in.
        strategy: ``linear``, ``head``, ``finetune`` or ``scratch``.
        status: ``running`` or ``complete``.
        classes: Class names, in output order.
        backbones: The backbones, in feature order (one for neural runs).
        head: The head.
        engine: The engine the run was trained with (``auto``, ``torch``, ...).
        tta: The test-time augmentation it predicts with.
        options: The strategy's options as given: the fields of its options dataclass,
            which ``LinearOptions.from_run`` / ``NeuralOptions.from_run``
            (:mod:`graft.training`, a layer above this one) rebuild.
        data: Where the data came from, its counts, options and cleaning.
        phases: Neural runs: the phases as run.
        timings: How long it took.
        raw: The whole ``config.json``.
        source: The file it was read from (for messages).
    """

    format: int
    strategy: str
    status: str
    classes: list[str]
    backbones: list[BackboneEntry]
    head: HeadEntry
    engine: str = "auto"
    tta: str = "none"
    options: dict[str, Any] = field(default_factory=dict)
    data: DataEntry = field(default_factory=DataEntry)
    phases: list[PhaseEntry] = field(default_factory=list)
    timings: Timings = field(default_factory=Timings)
    raw: dict[str, Any] = field(default_factory=dict, repr=False)
    source: str = field(default="config.json", repr=False, compare=False)

    @property
    def neural(self) -> bool:
        """Whether the run trained a network (``model.safetensors``)."""
        return self.strategy in NEURAL

    @property
    def backbone_names(self) -> str:
        """The backbones' names, comma-separated (for people)."""
        return ", ".join(entry.name for entry in self.backbones)

    @classmethod
    def from_dict(cls, config: dict[str, Any], source: str = "config.json") -> RunConfig:
        """Read either shape of run format 1 (``source`` names the file in messages).

        Raises:
            DataError: A field every run has is missing.
        """
        try:
            strategy = str(config["strategy"])
            if strategy in NEURAL:
                entry = config["backbone"]
                backbones = [
                    BackboneEntry(
                        name=entry["name"],
                        architecture=entry.get("architecture"),
                        weights_sha256=entry.get("weights_sha256"),
                        preprocessing=Preprocessing.from_dict(entry["preprocessing"]),
                        pretrained=bool(entry.get("pretrained", True)),
                        from_run=entry.get("from_run"),
                    )
                ]
                head_entry = config["head"]
                head = HeadEntry(
                    "neural",
                    num_classes=int(head_entry["num_classes"]),
                    hidden=head_entry.get("hidden"),
                    dropout=float(head_entry.get("dropout", 0.0)),
                )
                engine = str(config.get("options", {}).get("engine", "auto"))
            else:
                backbones = [_feature_entry(entry) for entry in config["features"]]
                head = HeadEntry(config["head"]["kind"], dict(config["head"].get("params", {})))
                engine = str(config.get("engine", "auto"))
            return cls(
                format=int(config.get("format", 0)),
                strategy=strategy,
                status=str(config.get("status", "complete")),
                classes=list(config["classes"]),
                backbones=backbones,
                head=head,
                engine=engine,
                tta=str(config.get("tta", "none")),
                options=dict(config.get("options", {})),
                data=DataEntry.from_dict(config.get("data", {})),
                phases=[PhaseEntry.from_dict(phase) for phase in config.get("phases") or []],
                timings=Timings(
                    {k: float(v) for k, v in (config.get("timings_s") or {}).items()},
                    {k: float(v) for k, v in (config.get("time_per_epoch_s") or {}).items()},
                ),
                raw=config,
                source=source,
            )
        except (KeyError, TypeError, ValueError) as err:
            raise DataError(
                f"{source}: missing or malformed field {err} (strategy "
                f"{config.get('strategy')!r}); is it a graft run?"
            ) from err


def _feature_entry(entry: dict[str, Any]) -> BackboneEntry:
    return BackboneEntry(
        name=entry["backbone"],
        architecture=entry.get("architecture"),
        weights_sha256=entry.get("weights_sha256"),
        preprocessing=Preprocessing.from_dict(entry["preprocessing"]),
        layer=entry.get("layer", "final"),
        pool=entry.get("pool", "avg"),
        precision=entry.get("precision", "fp32"),
        calibration=entry.get("calibration"),
        calibration_files=tuple(Path(f) for f in entry.get("calibration_files", [])),
    )


def read_run_config(run_dir: str | Path) -> RunConfig:
    """Read a run's ``config.json`` as a :class:`RunConfig`.

    Raises:
        DataError: Not a run directory, a corrupt file, or one from a newer graft.
    """
    return RunConfig.from_dict(read_config(Path(run_dir)), str(Path(run_dir) / CONFIG))
