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
from graft.runs.files import CONFIG, read_config
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
        options: The strategy's options as given.
        data: Where the data came from, its counts, options and cleaning.
        phases: Neural runs: the phases as run.
        raw: The whole ``config.json``.
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
    data: dict[str, Any] = field(default_factory=dict)
    phases: list[dict[str, Any]] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

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
                data=dict(config.get("data", {})),
                phases=list(config.get("phases", [])),
                raw=config,
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
