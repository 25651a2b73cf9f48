"""Suite-wide guards: no network, and a private graft cache for every test.

Sockets are blocked for the whole session (doctests included) before any test module is
imported: a connection to anything but this machine's loopback raises ``NetworkBlockedError``,
so a hidden download fails loudly instead of passing on a developer's connected laptop.
"""

from __future__ import annotations

import ipaddress
import socket
from pathlib import Path
from typing import Any

import pytest


class NetworkBlockedError(OSError):
    """Raised when a test tries to reach beyond loopback."""


_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex
_real_getaddrinfo = socket.getaddrinfo


def _is_local(host: Any) -> bool:
    if host in ("localhost", "", None):
        return True
    try:
        return ipaddress.ip_address(str(host).split("%")[0]).is_loopback
    except ValueError:
        return False


def _check(address: Any) -> None:
    if isinstance(address, (str, bytes)):  # AF_UNIX path
        return
    host = address[0] if isinstance(address, tuple) else address
    if not _is_local(host):
        raise NetworkBlockedError(f"network access blocked in tests: {address!r}")


def _guarded_connect(self: socket.socket, address: Any) -> None:
    _check(address)
    _real_connect(self, address)


def _guarded_connect_ex(self: socket.socket, address: Any) -> int:
    _check(address)
    return _real_connect_ex(self, address)


def _guarded_getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
    if not _is_local(host.decode() if isinstance(host, bytes) else host):
        raise NetworkBlockedError(f"name lookup blocked in tests: {host!r}")
    return _real_getaddrinfo(host, *args, **kwargs)


socket.socket.connect = _guarded_connect  # type: ignore[method-assign]
socket.socket.connect_ex = _guarded_connect_ex  # type: ignore[method-assign]
socket.getaddrinfo = _guarded_getaddrinfo


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
