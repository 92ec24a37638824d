"""Opening a SQLite database that several processes may open at the same moment.

The state database and the ``sqlite`` sink are shared by importers running side by side. SQLite's
busy timeout covers ordinary writes, but not every lock taken while a new database file is
switched to WAL and given its schema: two processes doing that at once can get "database is
locked" at once. Those first steps are retried here until the timeout.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

__all__ = ["CREATION_WAIT", "connect_shared"]

#: Seconds the first steps (WAL, schema) are retried at least, whatever the caller's timeout.
CREATION_WAIT = 2.0


def connect_shared(
    path: Path | str, schema: str, *, timeout: float = 30.0, synchronous: str | None = None
) -> sqlite3.Connection:
    """A connection to ``path`` in WAL mode (autocommit) with ``schema`` (a SQL script) applied.

    Raises :class:`sqlite3.Error` (the connection closed) when it cannot be done within ``timeout``
    (at least :data:`CREATION_WAIT` seconds).
    """
    db = sqlite3.connect(path, timeout=timeout, isolation_level=None)
    # The locks of these first steps last moments (another process creating the same file): they are
    # waited for a little even when the caller will not wait for the database's ordinary locks.
    deadline = time.monotonic() + max(timeout, CREATION_WAIT)
    pause = 0.01
    while True:
        try:
            db.execute("PRAGMA journal_mode=WAL")
            if synchronous is not None:
                db.execute(f"PRAGMA synchronous={synchronous}")
            db.executescript(schema)
            # A new, empty file records WAL only when first written: another process that wrote its
            # schema first, in the default mode, wins that race. Asked again now that the file is
            # written; switching then needs the others' locks gone: retried as a lock.
            mode = str(db.execute("PRAGMA journal_mode").fetchone()[0]).lower()
            if mode not in ("wal", "memory"):
                msg = f"database is locked: its journal mode is still {mode!r}"
                raise sqlite3.OperationalError(msg)
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() + pause > deadline:
                db.close()
                raise
            time.sleep(pause)
            pause = min(pause * 2, 0.25)
            continue
        except BaseException:
            db.close()
            raise
        return db
