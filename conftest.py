"""Suite-wide guards: no network, in this process and its children, and a private graft cache.

Sockets are blocked for the whole session (doctests included) before any test module is
imported (``tests/netguard/netguard.py``), and ``tests/netguard`` goes on ``PYTHONPATH`` so its
``sitecustomize.py`` installs the same guard in every Python process the tests start:
torchrun and Ray workers, the NNCF child, commands run as users run them.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

_GUARD = Path(__file__).resolve().parent / "tests" / "netguard"
sys.path.insert(0, str(_GUARD))
os.environ["PYTHONPATH"] = os.pathsep.join(
    [str(_GUARD), *filter(None, [os.environ.get("PYTHONPATH")])]
)

import netguard  # noqa: E402  (the guard, installed on import)

NetworkBlockedError = netguard.NetworkBlockedError


@pytest.fixture(autouse=True)
def _private_graft_cache(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """Point graft's cache and weight store at a fresh folder for each test."""
    root = tmp_path_factory.mktemp("graft-cache")
    monkeypatch.setenv("GRAFT_CACHE_DIR", str(root))
    monkeypatch.delenv("GRAFT_WEIGHTS_DIR", raising=False)
    monkeypatch.delenv("GRAFT_MAX_PIXELS", raising=False)
    return root


#: Doctests that train a run or extract features (seconds each): ``make check`` leaves them to
#: ``make test``, like the tests marked ``slow``.
SLOW_DOCTESTS = {
    "graft.api",
    "graft.classification",
    "graft.features.extract",
    "graft.features.extract.stream_features",
    "graft.training.api",
    "graft.training.linear",
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the slow doctests ``slow`` (the test functions carry the marker themselves)."""
    for item in items:
        if isinstance(item, pytest.DoctestItem) and item.name in SLOW_DOCTESTS:
            item.add_marker(pytest.mark.slow)
