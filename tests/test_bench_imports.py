"""The benchmarks under ``bench/`` still import what they use from graft.

They are run by hand, so a rename in graft breaks them silently until the next measurement
(``bench/engines.py`` had imported ``extract_dataset`` from its old module and a private
function that had been replaced). Only ``from graft... import name`` lines are checked, not
attributes reached through ``import graft`` (``graft.train``).
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


def _graft_imports(script: Path) -> list[tuple[str, str]]:
    tree = ast.parse(script.read_text(encoding="utf-8"))
    return [
        (node.module, alias.name)
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "graft"
        for alias in node.names
    ]


def _resolves(module: str, name: str) -> bool:
    if hasattr(importlib.import_module(module), name):
        return True
    try:
        importlib.import_module(f"{module}.{name}")
    except ImportError:
        return False
    return True


@pytest.mark.parametrize("script", sorted(BENCH.glob("*.py")), ids=lambda path: path.name)
def test_every_name_a_benchmark_imports_from_graft_exists(script: Path) -> None:
    missing = [f"{m}.{n}" for m, n in _graft_imports(script) if not _resolves(m, n)]
    assert not missing, f"{script.name} imports names graft no longer has: {missing}"
