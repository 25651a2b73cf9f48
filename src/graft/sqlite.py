"""The SQLite settings graft's caches share: WAL, a long busy timeout, explicit transactions.

WAL lets readers run while one writer commits; ``BEGIN IMMEDIATE`` takes the write lock up
front, so two processes queue (for up to ``busy_timeout``) instead of failing half-way; and a
commit is atomic, so a process killed at any moment loses at most its open transaction.

Example:
    >>> import tempfile, pathlib
    >>> db = connect(pathlib.Path(tempfile.mkdtemp()) / "x.sqlite", "CREATE TABLE t (v INTEGER);")
    >>> with Transaction(db):
    ...     _ = db.execute("INSERT INTO t VALUES (1)")
    >>> db.execute("SELECT COUNT(*) FROM t").fetchone()
    (1,)
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any


def connect(path: Path, schema: str) -> sqlite3.Connection:
    """Open (creating if needed) a database in autocommit mode with WAL and ``schema`` applied."""
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(str(path), timeout=60.0, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA busy_timeout=60000")
    # Switching to WAL needs a moment of exclusive access, and SQLite does not wait for it
    # through the busy timeout: processes opening a new database together retry here.
    deadline = time.monotonic() + 60.0
    while True:
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(schema)
            break
        except sqlite3.OperationalError as err:
            if "locked" not in str(err) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    db.execute("PRAGMA synchronous=NORMAL")
    return db


#: Values per ``IN (...)`` query; SQLite builds before 3.32 allow at most 999 parameters.
_IN_CHUNK = 500


def select_in(
    db: sqlite3.Connection, query: str, values: Sequence[Any], *, before: tuple[Any, ...] = ()
) -> Iterator[tuple[Any, ...]]:
    """Run ``query`` (which ends in ``IN ({marks})``) over ``values`` in chunks; yield the rows.

    ``before`` holds the parameters that precede the ``IN`` list.
    """
    for start in range(0, len(values), _IN_CHUNK):
        chunk = list(values[start : start + _IN_CHUNK])
        yield from db.execute(query.format(marks=",".join("?" * len(chunk))), (*before, *chunk))


class Transaction:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` (or ``ROLLBACK`` on an exception)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, *rest: object) -> None:
        self._db.execute("ROLLBACK" if exc_type is not None else "COMMIT")
