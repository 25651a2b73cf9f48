"""``graft weights add``: check that a user's weights file loads strictly into its timm
architecture, convert it to safetensors, and keep it in the weight store
(:mod:`graft.zoo.store`) for offline use.

Example:
    >>> import tempfile, pathlib, torch, timm
    >>> store = pathlib.Path(tempfile.mkdtemp())
    >>> weights = store / "r18.pth"
    >>> torch.save(timm.create_model("resnet18").state_dict(), weights)
    >>> add_weights(weights, architecture="resnet18", store=store).name
    'resnet18.user'
"""

from __future__ import annotations

import re
from pathlib import Path

import timm
import torch

from graft.errors import ConfigError
from graft.hashing import sha256_file
from graft.zoo.loaders import fit_state_dict, read_state_dict
from graft.zoo.model import build_network
from graft.zoo.records import BackboneRecord
from graft.zoo.registry import architecture_record
from graft.zoo.store import save_entry

_TAG_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-]*$")


def add_weights(
    file: Path,
    *,
    architecture: str,
    tag: str = "user",
    labels: list[str] | None = None,
    store: Path | None = None,
    description: str | None = None,
    license: str = "unknown (user-supplied)",
) -> BackboneRecord:
    """Check that ``file`` fits ``architecture`` strictly, then store it for offline use.

    Args:
        file: A state dict (``.pth``/``.pt``/``.bin`` saved with ``torch.save``, or
            ``.safetensors``); nested checkpoints and ``module.`` prefixes are handled.
        architecture: The timm architecture the weights were saved from (``resnet50``).
        tag: The part after the dot in the stored name (``resnet50.user``).
        labels: Class names of the head, if it is not ImageNet-1k.
        store: The store folder; default :func:`graft.config.weights_dir`.
        description: One line for listings.
        license: Licence of the weights, for listings.

    Returns:
        The record of the stored weights.

    Raises:
        ConfigError: Unknown architecture, bad tag, or labels that do not match the head.
        WeightsError: The file is unreadable or does not fit (missing/unexpected keys listed).
    """
    if not _TAG_PATTERN.match(tag):
        raise ConfigError(
            f"tag {tag!r} must be letters, digits, '_' or '-' (it becomes part of a file name)"
        )
    base = architecture_record(architecture)
    state = read_state_dict(file)
    num_classes = _head_size(base, state)
    net = build_network(base, num_classes=num_classes)
    name = f"{architecture}.{tag}"
    fit_state_dict(net, state, source_name=str(file), target_name=architecture)
    head_labels: str | list[str] | None
    if labels is not None:
        if len(labels) != num_classes:
            raise ConfigError(
                f"{len(labels)} labels given but the head of {file} has {num_classes} outputs; "
                "give one label per output"
            )
        head_labels = labels
    else:
        head_labels = "imagenet-1k" if num_classes == 1000 else None
    return save_entry(
        net.state_dict(),
        name=name,
        architecture=architecture,
        preprocessing=base.preprocessing,
        num_classes=num_classes,
        labels=head_labels,
        feature_dim=base.feature_dim,
        provenance={"source_file": str(file.resolve()), "source_sha256": sha256_file(file)},
        description=description or f"user-supplied weights from {file.name}",
        license=license,
        store=store,
    )


def _head_size(base: BackboneRecord, state: dict[str, torch.Tensor]) -> int:
    """Infer the number of head outputs from the classifier weight in ``state`` (0 if absent)."""
    cfg = timm.models.get_pretrained_cfg(base.architecture)
    names = cfg.classifier if cfg is not None and cfg.classifier else "classifier"
    for name in [names] if isinstance(names, str) else list(names):
        weight = state.get(f"{name}.weight")
        if weight is not None and weight.ndim >= 2:
            return int(weight.shape[0])
    return 0
