"""A run's network, rebuilt from its directory: :func:`load_run_model` for any run (uint8 pixels
in, logits out), :func:`load_neural_model` for a neural run's trained network.

Example:
    >>> model = load_run_model("runs/leaves-finetune")  # doctest: +SKIP
    >>> model(torch.zeros(1, 3, 224, 224, dtype=torch.uint8)).shape  # doctest: +SKIP
    torch.Size([1, 4])
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from safetensors.torch import load_file
from torch import nn

from graft.errors import ConfigError, DataError
from graft.features.extract import FeatureSpec
from graft.features.layers import feature_module
from graft.heads import ClassicHead, HeadModule
from graft.models.run_model import ProbeNetwork, RunModel
from graft.models.transfer import TransferModel, build_transfer_model
from graft.runs import HEAD, MODEL, read_config
from graft.zoo.model import create_model
from graft.zoo.records import BackboneRecord, Preprocessing
from graft.zoo.registry import architecture_record, get_backbone


def record_of_run(config: dict[str, Any]) -> BackboneRecord:
    """The backbone record a neural run was trained from (its preprocessing as recorded).

    The run's ``model.safetensors`` holds every weight, so a run whose backbone record is not
    on this machine (user weights stored elsewhere) still loads from its timm architecture.
    """
    entry = config["backbone"]
    try:
        record = get_backbone(entry["name"])
    except ConfigError:
        record = replace(architecture_record(entry["architecture"]), name=entry["name"])
    return replace(record, preprocessing=Preprocessing.from_dict(entry["preprocessing"]))


def load_neural_model(run_dir: str | Path, config: dict[str, Any] | None = None) -> TransferModel:
    """Rebuild a neural run's model from its ``model.safetensors``, in inference mode.

    Args:
        run_dir: The run directory.
        config: Its ``config.json`` when already read.

    Raises:
        DataError: The run has no model yet (still running) or the file does not fit.
    """
    run_dir = Path(run_dir)
    config = read_config(run_dir) if config is None else config
    path = run_dir / MODEL
    if not path.is_file():
        raise DataError(
            f"{run_dir}: has no {MODEL} yet (status {config.get('status')}); finish it with "
            f"graft train --resume {run_dir}"
        )
    head = config["head"]
    model = build_transfer_model(
        record_of_run(config),
        num_classes=head["num_classes"],
        hidden=head["hidden"],
        dropout=head["dropout"],
        pretrained=False,
    )
    try:
        model.load_state_dict(load_file(str(path)), strict=True)
    except (RuntimeError, OSError) as err:
        raise DataError(
            f"{path}: does not fit the run's model ({str(err).splitlines()[0]})"
        ) from err
    return model.eval()


def transfer_model_from_run(
    source: str | Path, *, num_classes: int, hidden: int | None, dropout: float
) -> TransferModel:
    """A new head on the (fine-tuned) backbone of an earlier graft run.

    A linear run gives its first backbone with the weights it was trained on; a neural run
    gives its own trained backbone.

    Raises:
        ConfigError: The run is not complete.
    """
    source = Path(source)
    config = read_config(source)
    if config.get("strategy") == "linear":
        record_name = config["features"][0]["backbone"]
        return build_transfer_model(
            record_name, num_classes=num_classes, hidden=hidden, dropout=dropout
        )
    if config.get("status") != "complete":
        raise ConfigError(
            f"{source}: the run is not complete; finish it (graft train --resume) first"
        )
    model = build_transfer_model(
        record_of_run(config),
        num_classes=num_classes,
        hidden=hidden,
        dropout=dropout,
        pretrained=False,
    )
    state = load_file(str(source / MODEL))
    backbone = {
        k.removeprefix("backbone."): v for k, v in state.items() if k.startswith("backbone.")
    }
    model.backbone.load_state_dict(backbone, strict=True)
    return model


def feature_specs(run_dir: str | Path, config: dict[str, Any]) -> list[FeatureSpec]:
    """A linear run's feature specs (backbone, preprocessing, layer, pooling, precision).

    Raises:
        DataError: This machine's weights of a backbone are not the ones the run was trained
            on (their SHA-256 differs).
    """
    specs = []
    for entry in config["features"]:
        record = get_backbone(entry["backbone"])
        if record.weights.sha256 != entry.get("weights_sha256"):
            raise DataError(
                f"{run_dir}: trained on {entry['backbone']} weights with SHA-256 "
                f"{str(entry.get('weights_sha256'))[:16]}..., but this machine's are "
                f"{str(record.weights.sha256)[:16]}...; add the original weights "
                "(graft weights add)"
            )
        specs.append(
            FeatureSpec(
                record=record,
                preprocessing=Preprocessing.from_dict(entry["preprocessing"]),
                layer=entry["layer"],
                pool=entry["pool"],
                precision=entry.get("precision", "fp32"),
                calibration=entry.get("calibration"),
                calibration_files=tuple(Path(f) for f in entry.get("calibration_files", [])),
            )
        )
    return specs


def load_run_model(run_dir: str | Path, config: dict[str, Any] | None = None) -> RunModel:
    """Any complete run as one network (uint8 pixels in, logits out), in inference mode.

    A linear run's network is its backbones' feature extractors (fp32, as PyTorch computes
    them) under its head; a neural run's is its trained network.

    Args:
        run_dir: The run directory.
        config: Its ``config.json`` when already read.

    Raises:
        DataError: A file of the run is missing or does not fit.
        ConfigError: A linear run over backbones with different input sizes (one network takes
            one size), or a strategy this graft cannot load.

    Example:
        >>> model = load_run_model("runs/leaves")  # doctest: +SKIP
        >>> model(torch.zeros(1, 3, 224, 224, dtype=torch.uint8)).softmax(1)  # doctest: +SKIP
        tensor([[0.91, 0.09]])
    """
    run_dir = Path(run_dir)
    config = read_config(run_dir) if config is None else config
    strategy = str(config.get("strategy"))
    if strategy == "linear":
        specs = feature_specs(run_dir, config)
        sizes = sorted({spec.preprocessing.input_size for spec in specs})
        if len(sizes) > 1:
            raise ConfigError(
                f"{run_dir}: concatenates backbones with different input sizes "
                f"({', '.join(map(str, sizes))} px) and one network takes one size; train it "
                "again with --image-size N"
            )
        extractors = [
            feature_module(create_model(spec.record, num_classes=0), spec.layer, spec.pool)
            for spec in specs
        ]
        network: nn.Module = ProbeNetwork(extractors, HeadModule(ClassicHead.load(run_dir / HEAD)))
        preprocessing = specs[0].preprocessing
    elif strategy in ("head", "finetune", "scratch"):
        network = load_neural_model(run_dir, config)
        preprocessing = Preprocessing.from_dict(config["backbone"]["preprocessing"])
    else:
        raise ConfigError(f"{run_dir}: strategy {strategy!r} cannot be loaded by this graft")
    model = RunModel(
        network, classes=config["classes"], preprocessing=preprocessing, strategy=strategy
    )
    return model.eval()
