"""No network beyond loopback, in the test process and in every process it starts.

Imported by the root ``conftest.py`` (the pytest process) and, through ``sitecustomize.py``
beside it, by every Python process started with this folder on ``PYTHONPATH``, which
``conftest.py`` sets for the whole run: torchrun workers, Ray workers, the NNCF child, the demo
run as a command. A connection to anything but loopback raises ``NetworkBlockedError``, an
``OSError``, so a hidden download fails loudly instead of passing on a connected laptop.
"""

from __future__ import annotations

import ipaddress
import itertools
import socket
from typing import Any

#: Set in a process once the guard is installed (tests check children report it).
INSTALLED = False


class NetworkBlockedError(OSError):
    """Raised when a test tries to reach beyond loopback."""


_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex
_real_getaddrinfo = socket.getaddrinfo


def _own_addresses() -> frozenset[str]:
    """The IPv4 addresses of this machine's own interfaces (Linux: the kernel's LOCAL routes).

    Traffic to them never leaves the machine (Ray's local agents use the interface address)."""
    found = set()
    try:
        with open("/proc/net/fib_trie", encoding="ascii") as table:
            lines = table.read().splitlines()
    except OSError:
        return frozenset()
    for previous, line in itertools.pairwise(lines):
        if line.strip() == "/32 host LOCAL":
            found.add(previous.split("--")[-1].strip())
    return frozenset(found)


_OWN = _own_addresses()


def _is_local(host: Any) -> bool:
    if host in ("localhost", "", None, socket.gethostname()):
        return True
    try:
        address = ipaddress.ip_address(str(host).split("%")[0])
    except ValueError:
        return False
    return address.is_loopback or str(address) in _OWN


def _is_literal(host: Any) -> bool:
    """A numeric address: getaddrinfo answers it without asking any name server."""
    try:
        ipaddress.ip_address(str(host).split("%")[0])
    except ValueError:
        return False
    return True


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
    name = host.decode() if isinstance(host, bytes) else host
    if not (_is_local(name) or _is_literal(name)):
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
