"""Loading a record's weights from wherever they live: package, local store, or (if asked) hub.

The hub is the only source that needs a network, and graft goes there only when the caller
passes ``allow_download=True`` (``--allow-download``). The download is checked for reachability
first, with a short timeout, so an air-gapped machine gets a clear error within seconds rather
than a hang; what it downloads is put into the local weight store, so it is offline from then on.

Example:
    >>> from graft.zoo import get_backbone
    >>> from graft.zoo.model import build_network
    >>> record = get_backbone("efficientnet_lite0.in1k")
    >>> load_weights(record, build_network(record)).name
    'efficientnet_lite0.in1k'
"""

from __future__ import annotations

import os
import socket
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from graft.errors import NetworkError, WeightsError
from graft.zoo.embedded import load_embedded
from graft.zoo.records import BackboneRecord
from graft.zoo.store import load_stored, save_entry

if TYPE_CHECKING:
    from torch import nn

#: Seconds to wait for the hub before declaring the network unreachable.
HUB_TIMEOUT_S = 5.0


def load_weights(
    record: BackboneRecord, net: nn.Module, *, allow_download: bool = False
) -> BackboneRecord:
    """Load ``record``'s weights into ``net`` (built by :func:`graft.zoo.model.build_network`).

    Returns:
        The record the weights were loaded from: ``record`` itself, or for a hub download the
        new local-store record.

    Raises:
        WeightsError: No pretrained weights are available offline (the message says how to get
            them), or they are corrupt or do not fit.
        NetworkError: ``allow_download`` was given but the hub cannot be reached.
    """
    kind = record.weights.kind
    if kind == "embedded":
        load_embedded(record, net)
        return record
    if kind == "user":
        load_stored(record, net)
        return record
    if kind == "hub":
        if not allow_download:
            raise WeightsError(
                f"{record.name}: these weights are not on this machine and graft does not "
                f"download unless asked; pass --allow-download (allow_download=True) to fetch "
                f"them once, or bring the file: graft weights add FILE --backbone "
                f"{record.architecture}"
            )
        stored = download_to_store(record)
        load_stored(stored, net)
        return stored
    raise WeightsError(
        f"{record.name} has no pretrained weights on this machine (random initialisation only); "
        f"bring a weight file: graft weights add FILE --backbone {record.architecture}, or pass "
        f"--allow-download to fetch timm's default weights, or pick an embedded backbone "
        f"(graft backbones)"
    )


def hub_host() -> tuple[str, int]:
    """Return the (host, port) of the Hugging Face endpoint (``HF_ENDPOINT`` moves it)."""
    endpoint = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
    return endpoint.hostname or "huggingface.co", port


def ensure_hub_reachable(timeout: float = HUB_TIMEOUT_S) -> None:
    """Raise :class:`NetworkError` unless the hub accepts a TCP connection within ``timeout``."""
    host, port = hub_host()
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as err:
        raise NetworkError(
            f"--allow-download: cannot reach {host}:{port} ({err or type(err).__name__}); this "
            "machine looks offline: copy the weight file from a machine with network access and "
            "add it with `graft weights add FILE --backbone ARCH`"
        ) from err


def download_to_store(record: BackboneRecord) -> BackboneRecord:
    """Download a hub record's weights through timm and keep them in the local weight store."""
    import timm

    ensure_hub_reachable()
    os.environ.setdefault("HF_HUB_ETAG_TIMEOUT", str(int(HUB_TIMEOUT_S)))
    os.environ.setdefault("HF_HUB_DOWNLOAD_TIMEOUT", "60")
    try:
        net = timm.create_model(record.name, pretrained=True)
    except Exception as err:
        raise NetworkError(f"{record.name}: download failed ({err}); try again later") from err
    num_classes = int(getattr(net, "num_classes", 0))
    return save_entry(
        net.state_dict(),
        name=record.name,
        architecture=record.architecture,
        preprocessing=record.preprocessing,
        num_classes=num_classes,
        labels="imagenet-1k" if num_classes == 1000 else None,
        feature_dim=record.feature_dim,
        provenance={"source": f"hub:timm/{record.name}"},
        description=f"timm/{record.name}, downloaded with --allow-download",
        license=record.license,
    )
