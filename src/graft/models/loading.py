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
from typing import cast

from safetensors.torch import load_file
from torch import nn

from graft.errors import ConfigError, DataError
from graft.features.extract import FeatureSpec
from graft.features.layers import Pooling, feature_module
from graft.heads import ClassicHead, HeadModule
from graft.models.run_model import ProbeNetwork, RunModel
from graft.models.transfer import TransferModel, build_transfer_model
from graft.runs import HEAD, MODEL, RunConfig, read_run_config
from graft.zoo.model import create_model
from graft.zoo.records import BackboneRecord, Preprocessing
from graft.zoo.registry import architecture_record, get_backbone


def record_of_run(run: RunConfig) -> BackboneRecord:
    """The backbone record a neural run was trained from (its preprocessing as recorded).

    The run's ``model.safetensors`` holds every weight, so a run whose backbone record is not
    on this machine (user weights stored elsewhere) still loads from its timm architecture.
    """
    entry = run.backbones[0]
    try:
        record = get_backbone(entry.name)
    except ConfigError:
        if entry.architecture is None:
            raise
        record = replace(architecture_record(entry.architecture), name=entry.name)
    return replace(record, preprocessing=entry.preprocessing)


def load_neural_model(run_dir: str | Path, run: RunConfig | None = None) -> TransferModel:
    """Rebuild a neural run's model from its ``model.safetensors``, in inference mode.

    Args:
        run_dir: The run directory.
        run: Its configuration when already read.

    Raises:
        DataError: The run has no model yet (still running) or the file does not fit.
    """
    run_dir = Path(run_dir)
    run = read_run_config(run_dir) if run is None else run
    path = run_dir / MODEL
    if not path.is_file():
        raise DataError(
            f"{run_dir}: has no {MODEL} yet (status {run.status}); finish it with "
            f"graft train --resume {run_dir}"
        )
    assert run.head.num_classes is not None
    model = build_transfer_model(
        record_of_run(run),
        num_classes=run.head.num_classes,
        hidden=run.head.hidden,
        dropout=run.head.dropout,
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
    run = read_run_config(source)
    if not run.neural:
        return build_transfer_model(
            run.backbones[0].name, num_classes=num_classes, hidden=hidden, dropout=dropout
        )
    if run.status != "complete":
        raise ConfigError(
            f"{source}: the run is not complete; finish it (graft train --resume) first"
        )
    model = build_transfer_model(
        record_of_run(run),
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


def feature_specs(run_dir: str | Path, run: RunConfig) -> list[FeatureSpec]:
    """A linear run's feature specs (backbone, preprocessing, layer, pooling, precision).

    Raises:
        DataError: This machine's weights of a backbone are not the ones the run was trained
            on (their SHA-256 differs).
    """
    specs = []
    for entry in run.backbones:
        record = get_backbone(entry.name)
        if record.weights.sha256 != entry.weights_sha256:
            raise DataError(
                f"{run_dir}: trained on {entry.name} weights with SHA-256 "
                f"{str(entry.weights_sha256)[:16]}..., but this machine's are "
                f"{str(record.weights.sha256)[:16]}...; add the original weights "
                "(graft weights add)"
            )
        specs.append(
            FeatureSpec(
                record=record,
                preprocessing=entry.preprocessing,
                layer=entry.layer,
                pool=cast(Pooling, entry.pool),
                precision=entry.precision,
                calibration=entry.calibration,
                calibration_files=entry.calibration_files,
            )
        )
    return specs


def probe_network(run_dir: str | Path, run: RunConfig) -> ProbeNetwork:
    """A linear run's network: each backbone's feature extractor (fp32, PyTorch) under its head.

    It takes the largest of the backbones' input sizes and resizes the image inside for the
    others (see :class:`graft.models.ProbeNetwork`).
    """
    specs = feature_specs(run_dir, run)
    extractors = [
        feature_module(create_model(spec.record, num_classes=0), spec.layer, spec.pool)
        for spec in specs
    ]
    head = HeadModule(ClassicHead.load(Path(run_dir) / HEAD))
    sizes = [spec.preprocessing.input_size for spec in specs]
    return ProbeNetwork(extractors, head, input_sizes=sizes).eval()


def model_preprocessing(run: RunConfig) -> Preprocessing:
    """How an image becomes the input of the run's one network: the preprocessing of its
    backbone with the largest input size (the first such, for a linear run over several).

    Example:
        >>> model_preprocessing(read_run_config("runs/leaves")).input_size  # doctest: +SKIP
        224
    """
    return max((entry.preprocessing for entry in run.backbones), key=lambda p: p.input_size)


def load_run_model(run_dir: str | Path, run: RunConfig | None = None) -> RunModel:
    """Any complete run as one network (uint8 pixels in, logits out), in inference mode.

    A linear run's network is its backbones' feature extractors (fp32, as PyTorch computes
    them) under its head; a neural run's is its trained network.

    Args:
        run_dir: The run directory.
        run: Its configuration when already read.

    Raises:
        DataError: A file of the run is missing or does not fit.
        ConfigError: A strategy this graft cannot load.

    Example:
        >>> model = load_run_model("runs/leaves")  # doctest: +SKIP
        >>> model(torch.zeros(1, 3, 224, 224, dtype=torch.uint8)).softmax(1)  # doctest: +SKIP
        tensor([[0.91, 0.09]])
    """
    run_dir = Path(run_dir)
    run = read_run_config(run_dir) if run is None else run
    network: nn.Module
    if run.strategy == "linear":
        network = probe_network(run_dir, run)
    elif run.neural:
        network = load_neural_model(run_dir, run)
    else:
        raise ConfigError(f"{run_dir}: strategy {run.strategy!r} cannot be loaded by this graft")
    model = RunModel(
        network,
        classes=run.classes,
        preprocessing=model_preprocessing(run),
        strategy=run.strategy,
    )
    return model.eval()
