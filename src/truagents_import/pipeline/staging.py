"""Staging: one file's valid contacts, keyed by identity in a local SQLite file, before delivery.

The later row with an identity replaces the earlier one (SPEC 3), and the sink gets the
survivors in row order only once the whole file has been read and judged.
"""

from __future__ import annotations

import marshal
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from truagents_import.fields.contact import Contact

__all__ = ["STAGED_COLUMNS", "Staging"]

#: The table of a staging file in the ``sql_rows`` layout, as a :class:`~truagents_import.sinks.BulkLoad`
#: sink reads it: ``staged(row, identity, external_id, email, phone, first_name, last_name, timezone,
#: tags, unsubscribed, attributes)``, tags and attributes as JSON text, unsubscribed 1, 0 or NULL.
STAGED_COLUMNS = (
    "row", "identity", "external_id", "email", "phone", "first_name", "last_name", "timezone", "tags",
    "unsubscribed", "attributes",
)  # fmt: skip


class Staging:
    """Valid contacts of one file, keyed by identity in a local SQLite file (the later row wins).

    Rows are keyed by their row number (so reading them back in row order needs no sort), with
    a unique index on identity: a later row with the same identity replaces the earlier one.
    A contact's source and file are the same for the whole file and are not stored per row.

    Two layouts, chosen for the sink: for the built-in ``sqlite`` sink (``sql_rows``) the columns of
    its table, tags and attributes as its JSON text, so that it takes the whole file in one
    ``INSERT ... SELECT`` (:meth:`seal`); for any other sink a ``marshal``-ed payload per row, which
    :meth:`contacts` turns back into :class:`Contact` batches (marshal is several times cheaper
    than JSON both ways; this file is written and read by this process only).
    """

    def __init__(self, path: Path, *, sql_rows: bool = False) -> None:
        self.path = path
        self.sql_rows = sql_rows
        # The columnar path stages from one thread of its own (never two threads at once).
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=OFF")
        self._db.execute("PRAGMA synchronous=OFF")
        columns = (
            "external_id TEXT, email TEXT, phone TEXT, first_name TEXT, last_name TEXT, timezone TEXT,"
            " tags TEXT NOT NULL, unsubscribed INTEGER, attributes TEXT NOT NULL"
            if sql_rows
            else "payload BLOB NOT NULL"
        )
        self._db.execute(f"CREATE TABLE staged (row INTEGER PRIMARY KEY, identity TEXT UNIQUE, {columns})")
        width = 11 if sql_rows else 3
        self._insert = f"INSERT OR REPLACE INTO staged VALUES ({', '.join('?' * width)})"
        self._db.execute("BEGIN")
        self.added = 0
        self._source: str | None = None
        self._file: str | None = None

    def add(self, source: str, file: str, rows: list[tuple[Any, ...]]) -> None:
        """Stage ``(row number, identity, *payload)`` rows of contacts of ``source``'s ``file``
        (payloads as ``build_chunk`` makes them)."""
        self._source, self._file = source, file
        self._db.executemany(self._insert, rows)
        self.added += len(rows)

    def clear(self) -> None:
        """Forget every staged row (the file is staged again from its first row)."""
        self._db.execute("DELETE FROM staged")
        self.added = 0

    def count(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM staged").fetchone()[0])

    def seal(self) -> Path:
        """Commit what was staged, so that another connection (the sink's) can read it; its path."""
        if self._db.in_transaction:
            self._db.execute("COMMIT")
        return self.path

    def contacts(self, batch_size: int) -> Iterator[list[Contact]]:
        """The staged contacts in row order, in batches (marshal layout only)."""
        assert not self.sql_rows, "sql_rows staging is for the sqlite sink's INSERT ... SELECT"
        source, file, loads = self._source, self._file, marshal.loads
        make: Callable[..., Contact] = Contact  # positional: the payload holds the first nine fields in order
        cur = self._db.execute("SELECT row, payload FROM staged ORDER BY row")
        while rows := cur.fetchmany(batch_size):
            yield [make(*loads(payload), source, file, row) for row, payload in rows]

    def close(self) -> None:
        self._db.close()
