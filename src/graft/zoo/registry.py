"""Finding backbones by name: embedded weights, the local store, and every timm architecture.

A name resolves in this order:

1. an embedded record (``efficientnet_lite0.in1k``) or a stored one (``resnet50.user``);
2. a bare architecture (``resnet50``, ``efficientnet_lite0``) resolves to the best weights on
   this machine: stored user weights, then embedded weights, else random initialisation;
3. ``arch.tag`` naming one of timm's published weights (``resnet50.a1_in1k``) resolves to a hub
   record, usable only with ``--allow-download``.

Anything else raises :class:`graft.errors.ConfigError` with the closest known names.

Example:
    >>> get_backbone("efficientnet_lite0").name
    'efficientnet_lite0.in1k'
    >>> get_backbone("resnet50").weights.kind
    'random'
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from functools import cache
from typing import Any

from graft.errors import ConfigError
from graft.zoo.architectures import ARCHITECTURES
from graft.zoo.embedded import EMBEDDED, embedded_available
from graft.zoo.records import BackboneRecord, Preprocessing, WeightSource
from graft.zoo.store import stored_records

#: The backbone graft uses when none is named.
DEFAULT_BACKBONE = "efficientnet_lite0.in1k"

#: Bare names that mean an embedded record (its timm architecture, and graft's short name).
_EMBEDDED_ALIASES: dict[str, str] = {
    alias: record.name
    for record in EMBEDDED.values()
    for alias in (record.architecture, record.name.split(".")[0])
}


def get_backbone(name: str) -> BackboneRecord:
    """Return the record a backbone name refers to (see the module docstring for the order).

    Raises:
        ConfigError: The name is unknown; the message lists the closest names.

    Example:
        >>> get_backbone("squeezenet1_1.in1k").preprocessing.channel_order
        'BGR'
    """
    name = name.strip()
    if name in EMBEDDED:
        return EMBEDDED[name]
    stored = {record.name: record for record in stored_records()}
    if name in stored:
        return stored[name]
    if "." not in name:
        user = [record for record in stored.values() if record.architecture == name]
        if user:
            return min(user, key=lambda r: (r.name != f"{name}.user", r.name))
        if name in _EMBEDDED_ALIASES:
            return EMBEDDED[_EMBEDDED_ALIASES[name]]
        return architecture_record(name)
    architecture = name.split(".", 1)[0]
    if _is_timm_architecture(architecture) and name in _timm_pretrained_names():
        base = architecture_record(architecture)
        return BackboneRecord(
            name=name,
            architecture=architecture,
            library="timm",
            weights=WeightSource(kind="hub", loader="state_dict"),
            preprocessing=_timm_preprocessing(name),
            num_classes=base.num_classes,
            labels="imagenet-1k" if base.num_classes == 1000 else None,
            feature_dim=base.feature_dim,
            params=base.params,
            license=base.license,
            description=f"timm/{name} on the Hugging Face Hub (needs --allow-download)",
        )
    raise _unknown(name)


def architecture_record(architecture: str) -> BackboneRecord:
    """Return the random-initialisation record of a timm architecture.

    Raises:
        ConfigError: ``architecture`` is not a timm architecture.

    Example:
        >>> architecture_record("vgg16").feature_dim
        4096
    """
    if not _is_timm_architecture(architecture):
        raise _unknown(architecture)
    info = ARCHITECTURES.get(architecture)
    if info is not None:
        params, feature_dim, family = info.params, info.feature_dim, info.family
    else:
        params, feature_dim = _measure(architecture)
        family = architecture
    import timm

    cfg = timm.models.get_pretrained_cfg(architecture)
    return BackboneRecord(
        name=architecture,
        architecture=architecture,
        library="timm",
        weights=WeightSource(kind="random"),
        preprocessing=_timm_preprocessing(architecture),
        num_classes=1000,
        labels=None,
        feature_dim=feature_dim,
        params=params,
        license=(cfg.license if cfg is not None and cfg.license else "see timm"),
        description=f"{family}, random initialisation",
    )


def list_backbones() -> list[BackboneRecord]:
    """Return the backbones ``graft backbones`` lists: embedded, stored, then architectures.

    An architecture with stored user weights is listed once, by its stored name.

    Example:
        >>> names = [record.name for record in list_backbones()]
        >>> names[:2]
        ['efficientnet_lite0.in1k', 'efficientnet_lite1.in1k']
    """
    stored = stored_records()
    with_user_weights = {record.architecture for record in stored}
    architectures = [
        architecture_record(arch) for arch in ARCHITECTURES if arch not in with_user_weights
    ]
    return [*EMBEDDED.values(), *stored, *architectures]


@dataclass(frozen=True)
class Availability:
    """Whether a backbone can be used on this machine now, and how to change that."""

    available: bool
    pretrained: bool
    hint: str


def availability(record: BackboneRecord) -> Availability:
    """Say whether ``record`` is usable offline, with pretrained weights or random ones.

    Example:
        >>> availability(get_backbone("resnet50")).pretrained
        False
    """
    kind = record.weights.kind
    if kind == "embedded":
        if embedded_available(record.name):
            return Availability(True, True, "embedded in an installed package")
        return Availability(False, True, f"install the weights: {record.weights.install_hint}")
    if kind == "user":
        return Availability(True, True, "in the local weight store")
    if kind == "hub":
        return Availability(False, True, "pass --allow-download to fetch it once")
    return Availability(
        True,
        False,
        f"random weights; for pretrained: graft weights add FILE --backbone {record.architecture}"
        " (or --allow-download)",
    )


def describe(record: BackboneRecord) -> dict[str, Any]:
    """Return the JSON listing of a record (the fields of ``graft backbones --json``)."""
    state = availability(record)
    pre = record.preprocessing
    return {
        "name": record.name,
        "architecture": record.architecture,
        "available": state.available,
        "pretrained": state.pretrained,
        "source": record.weights.kind,
        "hint": state.hint,
        "params": record.params,
        "feature_dim": record.feature_dim,
        "input_size": pre.input_size,
        "num_classes": record.num_classes,
        "top1": record.top1,
        "license": record.license,
        "sha256": record.weights.sha256,
        "preprocessing": pre.to_dict(),
        "description": record.description,
    }


def _timm_preprocessing(name: str) -> Preprocessing:
    import timm
    from timm.data import resolve_data_config

    cfg = timm.models.get_pretrained_cfg(name)
    data = resolve_data_config(pretrained_cfg=cfg.to_dict() if cfg is not None else {})
    mean = tuple(float(v) for v in data["mean"])
    std = tuple(float(v) for v in data["std"])
    return Preprocessing(
        input_size=int(max(data["input_size"][1:])),
        interpolation=str(data["interpolation"]),
        crop_pct=float(data["crop_pct"]),
        mean=(mean[0], mean[1], mean[2]),
        std=(std[0], std[1], std[2]),
    )


def _measure(architecture: str) -> tuple[int, int]:
    """Count parameters and feature width of an unlisted architecture on the meta device."""
    import timm
    import torch

    with torch.device("meta"):
        net = timm.create_model(architecture, pretrained=False)
    width: Any = getattr(net, "head_hidden_size", None) or net.num_features
    feature_dim = int(width)
    return sum(p.numel() for p in net.parameters()), feature_dim


@cache
def _timm_architectures() -> frozenset[str]:
    import timm

    return frozenset(timm.list_models())


@cache
def _timm_pretrained_names() -> frozenset[str]:
    import timm

    return frozenset(timm.list_pretrained())


def _is_timm_architecture(name: str) -> bool:
    return name in _timm_architectures()


def _unknown(name: str) -> ConfigError:
    pool = [*EMBEDDED, *_EMBEDDED_ALIASES, *ARCHITECTURES, *(r.name for r in stored_records())]
    close = difflib.get_close_matches(name, pool, n=3, cutoff=0.6)
    if not close:
        close = difflib.get_close_matches(name, sorted(_timm_architectures()), n=3, cutoff=0.75)
    suggestion = f"did you mean {', '.join(close)}? " if close else ""
    return ConfigError(
        f"unknown backbone {name!r}; {suggestion}list them with `graft backbones` "
        "(any timm architecture name works too)"
    )
