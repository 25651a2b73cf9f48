"""The suite itself refuses network access, so hidden downloads cannot pass unnoticed."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest


def test_outbound_connection_is_blocked() -> None:
    with pytest.raises(OSError, match=r"blocked"):
        socket.create_connection(("93.184.216.34", 443), timeout=1)


def test_name_lookup_is_blocked() -> None:
    with pytest.raises(OSError, match=r"blocked"):
        socket.getaddrinfo("huggingface.co", 443)


def test_loopback_is_allowed() -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    try:
        with socket.create_connection(server.getsockname(), timeout=1):
            pass
    finally:
        server.close()


def test_child_processes_are_guarded_too() -> None:
    """torchrun, Ray and NNCF children are Python processes started with the suite's
    environment: sitecustomize installs the same guard in them."""
    code = (
        "import socket\n"
        "try:\n"
        "    socket.create_connection(('93.184.216.34', 443), timeout=1)\n"
        "except OSError as err:\n"
        "    print(type(err).__name__, err)\n"
        "else:\n"
        "    print('connected')\n"
    )
    child = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert child.stdout.startswith("NetworkBlockedError"), child.stdout + child.stderr


def test_this_machines_own_names_and_numeric_addresses_resolve() -> None:
    """Resolving a numeric address or this machine's name asks no name server; connecting to
    a public address is still refused."""
    assert socket.getaddrinfo("93.184.216.34", 443)  # a literal: no lookup happens
    with pytest.raises(OSError, match=r"blocked"):
        socket.create_connection(("93.184.216.34", 443), timeout=1)
