"""What graft's package declares: the releases its safety depends on."""

from __future__ import annotations

import tomllib
from pathlib import Path

import torch
from packaging.requirements import Requirement
from packaging.version import Version

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def _requirement(name: str) -> Requirement:
    dependencies = tomllib.loads(PYPROJECT.read_text())["project"]["dependencies"]
    return next(Requirement(d) for d in dependencies if Requirement(d).name == name)


def test_torch_is_at_least_the_release_that_fixed_weights_only() -> None:
    """graft reads user weight files with torch.load(weights_only=True); before 2.6 that could
    be bypassed (CVE-2025-32434), so no older release may satisfy graft's requirement."""
    specifier = _requirement("torch").specifier
    assert not specifier.contains("2.5.1") and specifier.contains("2.6.0")
    assert Version(torch.__version__.split("+")[0]) >= Version("2.6")


def test_the_service_parser_is_declared() -> None:
    assert _requirement("python-multipart").specifier.contains("0.0.18")
