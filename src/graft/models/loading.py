"""A neural run's trained network, rebuilt from its ``config.json`` and ``model.safetensors``.

Example:
    >>> from graft.models.loading import load_neural_model
    >>> model = load_neural_model("runs/leaves-finetune")  # doctest: +SKIP
    >>> model(torch.zeros(1, 3, 224, 224, dtype=torch.uint8)).shape  # doctest: +SKIP
    torch.Size([1, 4])
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from safetensors.torch import load_file

from graft.errors import ConfigError, DataError
from graft.models.transfer import TransferModel, build_transfer_model
from graft.runs import MODEL, read_config
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


def load_neural_model(
    run_dir: str | Path, config: dict[str, Any] | None = None
) -> TransferModel:
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
