"""Keep a thread's alternate signal stack as it was across calls into native libraries.

OpenVINO's CPU plugin installs an alternate signal stack (``sigaltstack``) on the thread that
compiles a model, and frees that memory when the compiled model goes, leaving the thread's
registration pointing at unmapped memory. Python installs its signal handlers with
``SA_ONSTACK``, so the next signal handled on that thread (a ``SIGCHLD`` when any child process
ends, once PyTorch's DataLoader has installed its handler; ``SIGINT`` on Ctrl-C) has its frame
written there: a segmentation fault, or silent corruption of whatever was mapped there since.
That is the crash a long-lived process (a notebook, the test suite) hit after building engines,
training with decoding workers and starting a subprocess. :func:`preserved_signal_stack`
restores the registration the thread had before.

Example:
    >>> with preserved_signal_stack():
    ...     pass  # compile an OpenVINO model here
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager


class _StackT(ctypes.Structure):
    """``stack_t`` of Linux's ``<signal.h>`` (other systems order the fields differently and
    are left alone: :func:`_libc` answers only on Linux)."""

    _fields_ = [
        ("ss_sp", ctypes.c_void_p),
        ("ss_flags", ctypes.c_int),
        ("ss_size", ctypes.c_size_t),
    ]


def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
    except OSError:
        return None


_LIBC = _libc()


def current_signal_stack() -> tuple[int, int, int] | None:
    """The calling thread's alternate signal stack: ``(address, size, flags)``; ``None`` where
    graft cannot ask (not Linux)."""
    if _LIBC is None:
        return None
    state = _StackT()
    if _LIBC.sigaltstack(None, ctypes.byref(state)) != 0:
        return None
    return int(state.ss_sp or 0), int(state.ss_size), int(state.ss_flags)


@contextmanager
def preserved_signal_stack() -> Iterator[None]:
    """Run the block, then give the calling thread back the alternate signal stack it had."""
    if _LIBC is None:
        yield
        return
    before = _StackT()
    known = _LIBC.sigaltstack(None, ctypes.byref(before)) == 0
    try:
        yield
    finally:
        if known and _LIBC.sigaltstack(ctypes.byref(before), None) != 0:
            warnings.warn(
                "graft could not restore this thread's signal stack after an OpenVINO call "
                f"(errno {ctypes.get_errno()}); a later signal may crash the process",
                RuntimeWarning,
                stacklevel=3,
            )
