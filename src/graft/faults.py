"""Named points where the test suite injects a crash, to prove nothing is lost at any of them.

Code that writes several files calls :func:`fault_point` between the writes. Normally it does
nothing. With ``GRAFT_FAULT=NAME`` set, reaching point ``NAME`` raises :class:`InjectedCrash`
(a ``BaseException``, so no ``except Exception`` handler can swallow it, like a kill);
``GRAFT_FAULT=NAME#K`` crashes the K-th time the point is reached in this process (1 is the
first); a ``:exit`` suffix ends the process at once with ``os._exit`` instead (no cleanup runs
at all, exactly like ``kill -9``).

Example:
    >>> fault_point("anywhere")  # no GRAFT_FAULT: nothing happens
"""

from __future__ import annotations

import os
from collections import Counter

#: The exit code of a process ended at a fault point with ``NAME:exit``.
FAULT_EXIT_CODE = 86


_reached: Counter[str] = Counter()


class InjectedCrash(BaseException):
    """Raised at the fault point named by ``GRAFT_FAULT`` (tests only)."""


def fault_point(name: str) -> None:
    """Crash here if ``GRAFT_FAULT`` names this point (see the module docstring)."""
    wanted = os.environ.get("GRAFT_FAULT")
    if not wanted:
        return
    target, _, mode = wanted.partition(":")
    point, _, nth = target.partition("#")
    if point != name:
        return
    _reached[name] += 1
    if _reached[name] != int(nth or 1):
        return
    _reached[name] = 0  # a later run in the same process counts afresh
    if mode == "exit":
        os._exit(FAULT_EXIT_CODE)
    raise InjectedCrash(f"{name}#{nth or 1}")


def reset_counts() -> None:
    """Forget how often each point was reached (tests call it before each injected run)."""
    _reached.clear()
