"""No network beyond loopback, in the test process and in every process it starts.

Imported by the root ``conftest.py`` (the pytest process) and, through ``sitecustomize.py``
beside it, by every Python process started with this folder on ``PYTHONPATH``, which
``conftest.py`` sets for the whole run: torchrun workers, Ray workers, the NNCF child, the demo
run as a command. A connection to anything but loopback raises ``NetworkBlockedError``, an
``OSError``, so a hidden download fails loudly instead of passing on a connected laptop.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

#: Set in a process once the guard is installed (tests check children report it).
INSTALLED = False


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


def install() -> None:
    """Replace ``socket.connect``, ``connect_ex`` and ``getaddrinfo`` with guarded versions."""
    global INSTALLED
    socket.socket.connect = _guarded_connect  # type: ignore[method-assign]
    socket.socket.connect_ex = _guarded_connect_ex  # type: ignore[method-assign]
    socket.getaddrinfo = _guarded_getaddrinfo
    INSTALLED = True


install()
