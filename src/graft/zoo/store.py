"""The local weight store: weights a user brings (or downloaded once), kept for offline use.

Each entry is ``ARCH.TAG.safetensors`` beside ``ARCH.TAG.json`` (the record: SHA-256, head
size, labels, preprocessing, provenance). The JSON is written last, atomically, so an
interrupted ``add`` never leaves a half-entry that would be listed. Checking and adding a
user's file is :func:`graft.zoo.user_weights.add_weights`.

Example:
    >>> import tempfile, pathlib
    >>> stored_records(pathlib.Path(tempfile.mkdtemp()))
    []
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from graft.config import weights_dir
from graft.errors import ConfigError, WeightsError
from graft.fileio import atomic_path, write_json_atomic
from graft.hashing import sha256_file, verify_sha256
from graft.zoo.records import BackboneRecord, Preprocessing, WeightSource

if TYPE_CHECKING:
    import torch


def _store_dir(store: Path | None) -> Path:
    return weights_dir() if store is None else store


def stored_records(store: Path | None = None) -> list[BackboneRecord]:
    """Return the records of every complete entry in the store, sorted by name.

    Entries whose JSON is unreadable are skipped (the store is never a reason to crash a
    listing); ``graft weights list`` reports them.

    Example:
        >>> import tempfile, pathlib
        >>> stored_records(pathlib.Path(tempfile.mkdtemp()))
        []
    """
    root = _store_dir(store)
    if not root.is_dir():
        return []
    records = []
    for meta in sorted(root.glob("*.json")):
        record = _read_entry(meta)
        if record is not None:
            records.append(record)
    return records


def _read_entry(meta: Path) -> BackboneRecord | None:
    try:
        data = json.loads(meta.read_text())
        weights_file = meta.with_suffix(".safetensors")
        if not weights_file.is_file():
            return None
        labels = data.get("labels")
        return BackboneRecord(
            name=data["name"],
            architecture=data["architecture"],
            library="timm",
            weights=WeightSource(
                kind="user",
                file=str(weights_file),
                sha256=data["sha256"],
                loader="state_dict",
            ),
            preprocessing=Preprocessing.from_dict(data["preprocessing"]),
            num_classes=int(data["num_classes"]),
            labels=tuple(labels) if isinstance(labels, list) else labels,
            feature_dim=int(data["feature_dim"]),
            params=int(data["params"]),
            license=data.get("license", "unknown (user-supplied)"),
            description=data.get("description", "user-supplied weights"),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def save_entry(
    state: dict[str, torch.Tensor],
    *,
    name: str,
    architecture: str,
    preprocessing: Preprocessing,
    num_classes: int,
    labels: str | list[str] | None,
    feature_dim: int,
    provenance: dict[str, Any],
    description: str,
    license: str,
    store: Path | None = None,
) -> BackboneRecord:
    """Write a verified state dict and its record into the store, atomically."""
    from safetensors.torch import save_file

    root = _store_dir(store)
    root.mkdir(parents=True, exist_ok=True)
    target = root / f"{name}.safetensors"
    tensors = {key: value.detach().contiguous().cpu() for key, value in state.items()}
    with atomic_path(target) as tmp:
        save_file(tensors, str(tmp))
    meta = {
        "name": name,
        "architecture": architecture,
        "sha256": sha256_file(target),
        "num_classes": num_classes,
        "labels": labels,
        "feature_dim": feature_dim,
        "params": sum(t.numel() for k, t in tensors.items() if not _is_buffer_key(k)),
        "preprocessing": preprocessing.to_dict(),
        "license": license,
        "description": description,
        "added": datetime.now(UTC).isoformat(timespec="seconds"),
        **provenance,
    }
    write_json_atomic(root / f"{name}.json", meta)
    record = _read_entry(root / f"{name}.json")
    if record is None:  # pragma: no cover - we just wrote it
        raise WeightsError(f"{root / name}: entry could not be read back")
    return record


def _is_buffer_key(key: str) -> bool:
    return key.endswith(("running_mean", "running_var", "num_batches_tracked"))


def remove_weights(name: str, store: Path | None = None) -> None:
    """Delete a stored entry (record first, so a crash never leaves a listed entry without weights).

    Raises:
        ConfigError: No entry of that name.
    """
    root = _store_dir(store)
    meta = root / f"{name}.json"
    if not meta.is_file():
        known = ", ".join(r.name for r in stored_records(store)) or "none"
        raise ConfigError(f"no stored weights named {name!r} in {root} (stored: {known})")
    meta.unlink()
    (root / f"{name}.safetensors").unlink(missing_ok=True)


def load_stored(record: BackboneRecord, net: torch.nn.Module) -> None:
    """Verify the stored file's hash and load it strictly into ``net``."""
    from safetensors.torch import load_file

    from graft.zoo.loaders import fit_state_dict

    path = Path(record.weights.file or "")
    if not path.is_file():
        raise WeightsError(
            f"{record.name}: {path} is missing from the weight store; add it again with "
            f"`graft weights add FILE --backbone {record.architecture}`"
        )
    verify_sha256(path, record.weights.sha256, hint="add the weights again")
    fit_state_dict(net, load_file(str(path)), source_name=str(path), target_name=record.name)
