"""Test spies: wrap a function of a module so a test sees how it was called, then call through."""

from __future__ import annotations

from typing import Any

import pytest


def record_precision(monkeypatch: pytest.MonkeyPatch, module: Any, name: str) -> list[str]:
    """Record the ``precision`` keyword of every call to ``module.name`` (which still runs).

    Example:
        >>> import types
        >>> module = types.SimpleNamespace(build=lambda *, precision: precision.upper())
        >>> patch = pytest.MonkeyPatch()
        >>> seen = record_precision(patch, module, "build")
        >>> module.build(precision="bf16"), seen
        ('BF16', ['bf16'])
        >>> patch.undo()
    """
    seen: list[str] = []
    original = getattr(module, name)

    def spy(*args: Any, **kwargs: Any) -> Any:
        seen.append(kwargs["precision"])
        return original(*args, **kwargs)

    monkeypatch.setattr(module, name, spy)
    return seen
