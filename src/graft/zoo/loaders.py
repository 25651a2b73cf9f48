"""Reading weight files and fitting them onto architectures, strictly.

Two ways to fit a file onto a model:

* by name (:func:`fit_state_dict`), for files saved from the same architecture: every key must
  match, and a mismatch is reported key by key;
* by position (:func:`fit_by_position`), for the embedded files whose key names come from another
  implementation of the same network: the tensors must match one for one, in order and shape.

Files are read without executing code: safetensors, or ``torch.load(weights_only=True)``.

Example:
    >>> import torch
    >>> source = torch.nn.Linear(2, 3)
    >>> target = torch.nn.Linear(2, 3)
    >>> fit_by_position(target, list(source.state_dict().values()), source_name="demo")
    >>> torch.equal(target.weight, source.weight)
    True
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch import nn

from graft.errors import WeightsError

#: Container keys under which training scripts commonly nest the state dict.
_NESTED_KEYS = ("state_dict", "model_state_dict", "model", "module", "net", "weights")
#: Prefixes that wrappers (DataParallel, Lightning, EMA) put in front of every key.
_PREFIXES = ("module.", "model.", "net.", "_orig_mod.")
_MAX_KEYS_SHOWN = 5


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Read a weight file (safetensors or a PyTorch pickle of tensors) into a flat state dict.

    Checkpoints that nest the weights (``{"state_dict": ...}``, ``{"model": ...}``) are unwrapped,
    and wrapper prefixes such as ``module.`` are stripped when every key has them.

    Raises:
        WeightsError: The file is missing, unreadable, holds Python objects besides tensors, or
            holds no tensors.

    Example:
        >>> import tempfile, pathlib, torch
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "w.pt"
        >>> torch.save({"state_dict": {"module.fc.weight": torch.ones(2, 2)}}, p)
        >>> list(read_state_dict(p))
        ['fc.weight']
    """
    if not path.is_file():
        raise WeightsError(f"{path}: no such weight file; check the path")
    raw: object
    if path.suffix == ".safetensors" or _looks_like_safetensors(path):
        from safetensors.torch import load_file

        try:
            raw = load_file(str(path))
        except Exception as err:
            raise WeightsError(f"{path}: not a readable safetensors file ({err})") from err
    else:
        try:
            raw = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:
            raise WeightsError(
                f"{path}: not a plain PyTorch state dict ({_first_line(err)}); graft reads only "
                "tensors (weights_only=True): re-save it with torch.save(model.state_dict(), PATH) "
                "or as .safetensors"
            ) from err
    state = _unwrap(raw)
    if not state:
        raise WeightsError(
            f"{path}: holds no tensors; expected a state dict (name -> tensor) of the model"
        )
    return state


def _looks_like_safetensors(path: Path) -> bool:
    # A safetensors file starts with an 8-byte little-endian header length, then a JSON '{'.
    with open(path, "rb") as handle:
        head = handle.read(9)
    return len(head) == 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < (1 << 30)


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


def _unwrap(raw: object) -> dict[str, torch.Tensor]:
    current = raw
    for _ in range(3):
        if isinstance(current, Mapping) and not _is_tensor_map(current):
            nested = next((current[k] for k in _NESTED_KEYS if k in current), None)
            if nested is None:
                break
            current = nested
    if not isinstance(current, Mapping):
        return {}
    state = {str(k): v for k, v in current.items() if isinstance(v, torch.Tensor)}
    for prefix in _PREFIXES:
        if state and all(key.startswith(prefix) for key in state):
            state = {key[len(prefix) :]: value for key, value in state.items()}
    return state


def _is_tensor_map(value: Mapping[object, object]) -> bool:
    return bool(value) and all(isinstance(v, torch.Tensor) for v in value.values())


def fit_state_dict(
    model: nn.Module, state: Mapping[str, torch.Tensor], *, source_name: str, target_name: str
) -> None:
    """Load ``state`` into ``model`` strictly, or explain every key that does not fit.

    Raises:
        WeightsError: Listing missing keys, unexpected keys and shape mismatches (a few of
            each, with the counts), and the fix.
    """
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    mismatched = [
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    if missing or unexpected or mismatched:
        parts = [
            _describe(label, items)
            for label, items in (
                ("missing keys", missing),
                ("unexpected keys", unexpected),
                ("shape mismatches", mismatched),
            )
            if items
        ]
        raise WeightsError(
            f"{source_name} does not fit {target_name}: {'; '.join(parts)}; pass the "
            "architecture the file was saved from (--backbone), or re-save the weights from it"
        )
    model.load_state_dict(dict(state), strict=True)


def fit_by_position(model: nn.Module, tensors: Sequence[torch.Tensor], *, source_name: str) -> None:
    """Load tensors into ``model``'s state dict by position, checking count and every shape.

    Raises:
        WeightsError: The counts differ or any shape differs (the first few are named).
    """
    names = list(model.state_dict())
    shapes = [tuple(t.shape) for t in model.state_dict().values()]
    if len(names) != len(tensors):
        raise WeightsError(
            f"{source_name}: has {len(tensors)} tensors, the architecture expects {len(names)}; "
            "the weight package does not match this graft version (reinstall it)"
        )
    mismatched = [
        f"#{i} {name}: file {tuple(t.shape)} vs model {shape}"
        for i, (name, shape, t) in enumerate(zip(names, shapes, tensors, strict=True))
        if tuple(t.shape) != shape
    ]
    if mismatched:
        raise WeightsError(
            f"{source_name}: {_describe('shape mismatches', mismatched)}; the weight package does "
            "not match this architecture (reinstall it)"
        )
    model.load_state_dict(dict(zip(names, tensors, strict=True)), strict=True)


def _describe(label: str, items: Sequence[str]) -> str:
    shown = ", ".join(items[:_MAX_KEYS_SHOWN])
    more = f", ... ({len(items) - _MAX_KEYS_SHOWN} more)" if len(items) > _MAX_KEYS_SHOWN else ""
    return f"{len(items)} {label} ({shown}{more})"
