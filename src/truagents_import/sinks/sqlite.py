"""The ``sqlite`` sink, the embedded default: table ``contacts``, one row per identity, upserted."""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

from truagents_import._jsontext import dumps_attributes, dumps_tags
from truagents_import._local import is_locked, sqlite_failures
from truagents_import._sqlite import connect_shared
from truagents_import.errors import ConfigError
from truagents_import.fields.contact import Contact
from truagents_import.hookspecs import SinkFactory, hookimpl
from truagents_import.sinks._merge import (
    MERGE_POLICIES,
    MergeOption,
    MergePolicy,
    check_merge_policy,
    merge_attributes,
    union_tags,
)

__all__ = ["LOCK_TIMEOUT", "SQLiteSink"]

#: Seconds to wait for a lock another process holds on the sink's database before the file at hand
#: fails (another importer's transaction holds it for as long as its file takes to load).
LOCK_TIMEOUT = 30.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS contacts (
    identity TEXT PRIMARY KEY,
    external_id TEXT,
    email TEXT,
    phone TEXT,
    first_name TEXT,
    last_name TEXT,
    timezone TEXT,
    tags TEXT NOT NULL DEFAULT '[]',
    unsubscribed INTEGER,
    attributes TEXT NOT NULL DEFAULT '{}',
    source TEXT,
    source_file TEXT,
    source_row INTEGER,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
)
"""

_INSERT = """
INSERT INTO contacts (identity, external_id, email, phone, first_name, last_name, timezone, tags,
                      unsubscribed, attributes, source, source_file, source_row, created_at, updated_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (identity) DO UPDATE SET
"""

#: The importer's staging file into the table, in row order (``WHERE true``: SQLite needs it to
#: tell the upsert clause from a join's ``ON``).
_LOAD = """
INSERT INTO contacts (identity, external_id, email, phone, first_name, last_name, timezone, tags,
                      unsubscribed, attributes, source, source_file, source_row, created_at, updated_at)
SELECT identity, external_id, email, phone, first_name, last_name, timezone, tags,
       unsubscribed, attributes, ?, ?, row, ?, ?
FROM truagents_staging.staged WHERE true ORDER BY row
ON CONFLICT (identity) DO UPDATE SET
"""

_PROVENANCE = """
    source = excluded.source, source_file = excluded.source_file, source_row = excluded.source_row,
    updated_at = excluded.updated_at
"""

_REPLACE = """
    external_id = excluded.external_id, email = excluded.email, phone = excluded.phone,
    first_name = excluded.first_name, last_name = excluded.last_name, timezone = excluded.timezone,
    tags = excluded.tags, unsubscribed = excluded.unsubscribed, attributes = excluded.attributes,
"""

_MERGE = """
    external_id = coalesce(excluded.external_id, contacts.external_id),
    email = coalesce(excluded.email, contacts.email),
    phone = coalesce(excluded.phone, contacts.phone),
    first_name = coalesce(excluded.first_name, contacts.first_name),
    last_name = coalesce(excluded.last_name, contacts.last_name),
    timezone = coalesce(excluded.timezone, contacts.timezone),
    tags = truagents_union_tags(contacts.tags, excluded.tags),
    unsubscribed = coalesce(excluded.unsubscribed, contacts.unsubscribed),
    attributes = truagents_merge_attributes(contacts.attributes, excluded.attributes),
"""


def _sql_union_tags(stored: str, new: str) -> str:
    return dumps_tags(union_tags(json.loads(stored), json.loads(new)))


def _sql_merge_attributes(stored: str, new: str) -> str:
    return dumps_attributes(merge_attributes(json.loads(stored), json.loads(new)))


class SQLiteSink:
    """Upserts contacts by identity into ``contacts`` (WAL; one transaction per file).

    ``tags`` and ``attributes`` are stored as JSON text; ``unsubscribed`` as 1, 0 or NULL.
    ``merge`` is the merge policy for a contact already stored (see
    docs/sinks.md): ``"merge"`` (the default) or ``"replace"``; a source's ``merge`` option is
    passed for that source's files (:meth:`write_merged`, :meth:`load_staging`). It is a
    :class:`~truagents_import.sinks.Rollback`, :class:`~truagents_import.sinks.Upserting` and
    :class:`~truagents_import.sinks.BulkLoad` sink.

    ``lock_timeout`` is how long (seconds) a file waits for a lock another process holds on the
    database; past it, that file fails with a :class:`~truagents_import.errors.LocalResourceError`
    naming the database and the lock. A database locked while the sink is made is opened when the
    first file is written, so that a lock fails files, not the configuration.
    """

    merge = MergeOption("sqlite")

    def __init__(
        self, path: Path | str = "contacts.db", merge: MergePolicy = "merge", lock_timeout: float = LOCK_TIMEOUT
    ) -> None:
        self.path = Path(path)
        self.merge = merge
        self.lock_timeout = float(lock_timeout)
        self._upserts = {p: _INSERT + (_MERGE if p == "merge" else _REPLACE) + _PROVENANCE for p in MERGE_POLICIES}
        self._load_sql = {p: _LOAD + (_MERGE if p == "merge" else _REPLACE) + _PROVENANCE for p in MERGE_POLICIES}
        self._attached = False
        self._in_transaction = False
        self._conn: sqlite3.Connection | None = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = self._open(wait=0.0)  # a lock held now is waited for by the first file, not here
        except sqlite3.Error as exc:
            if not is_locked(exc):
                raise ConfigError(f"sqlite sink {self.path} cannot be opened: {exc}") from None
        except OSError as exc:
            raise ConfigError(f"sqlite sink {self.path} cannot be opened: {exc}") from None

    def _open(self, wait: float) -> sqlite3.Connection:
        db = connect_shared(self.path, _SCHEMA, timeout=wait, synchronous="NORMAL")
        db.execute(f"PRAGMA busy_timeout = {int(self.lock_timeout * 1000)}")
        db.create_function("truagents_union_tags", 2, _sql_union_tags, deterministic=True)
        db.create_function("truagents_merge_attributes", 2, _sql_merge_attributes, deterministic=True)
        return db

    @property
    def _db(self) -> sqlite3.Connection:
        """The connection, opened now if the database was locked when the sink was made."""
        if self._conn is None:
            with self._guard():
                self._conn = self._open(wait=self.lock_timeout)
        return self._conn

    def _guard(self) -> contextlib.AbstractContextManager[None]:
        """A lock held past :attr:`lock_timeout`, or a full disk, as the library's error naming this database."""
        return sqlite_failures("sqlite sink", self.path, self.lock_timeout, "[sink] lock_timeout")

    def __repr__(self) -> str:
        return f"SQLiteSink({str(self.path)!r}, merge={self.merge!r})"

    def write(self, contacts: Sequence[Contact]) -> None:
        """Upsert a batch inside the file's transaction."""
        self.write_merged(contacts, self.merge)

    def write_merged(self, contacts: Sequence[Contact], merge: MergePolicy) -> None:
        """:meth:`write` with ``merge`` as this batch's merge policy (a source's ``merge`` option)."""
        with self._guard():
            self._write_merged(contacts, merge)

    def _write_merged(self, contacts: Sequence[Contact], merge: MergePolicy) -> None:
        if not self._in_transaction:
            self._db.execute("BEGIN IMMEDIATE")  # waits up to lock_timeout for another writer
            self._in_transaction = True
        now = datetime.now(UTC).isoformat()
        tags, attributes = dumps_tags, dumps_attributes
        self._db.executemany(
            self._upserts[check_merge_policy(merge, "sqlite")],
            [
                (
                    c.identity,
                    c.external_id,
                    c.email,
                    c.phone,
                    c.first_name,
                    c.last_name,
                    c.timezone,
                    tags(c.tags),
                    None if c.unsubscribed is None else int(c.unsubscribed),
                    attributes(c.attributes),
                    c.source,
                    c.source_file,
                    c.source_row,
                    now,
                    now,
                )
                for c in contacts
            ],
        )

    def takes_staging(self) -> bool:
        """Whether the importer may hand this sink its staging file (:meth:`load_staging`) instead of
        calling :meth:`write`: not when a subclass changed what ``write`` does."""
        return type(self).write is SQLiteSink.write

    def load_staging(self, staging: Path, source: str, file: str, merge: MergePolicy | None = None) -> None:
        """Upsert every contact of the importer's staging file of ``source``'s ``file``, in row order,
        inside the file's transaction: what :meth:`write` does with the same contacts, in one statement.

        The staging table has this table's columns (tags and attributes as the same JSON text);
        ``source_row`` is its ``row``.
        """
        if self._in_transaction:  # SQLite cannot attach a database inside a transaction
            msg = "the staging file must be the first thing a file writes to the sqlite sink"
            raise RuntimeError(msg)
        policy = self.merge if merge is None else check_merge_policy(merge, "sqlite")
        with self._guard():
            self._db.execute("ATTACH DATABASE ? AS truagents_staging", (str(staging),))
            self._attached = True
            self._db.execute("BEGIN IMMEDIATE")  # waits up to lock_timeout for another writer
            self._in_transaction = True
            now = datetime.now(UTC).isoformat()
            self._db.execute(self._load_sql[policy], (source, file, now, now))

    def _detach(self) -> None:
        if self._attached:
            self._db.execute("DETACH DATABASE truagents_staging")
            self._attached = False

    def commit(self) -> None:
        """Commit the file's transaction (durable once this returns)."""
        with self._guard():
            if self._in_transaction:
                self._db.execute("COMMIT")
                self._in_transaction = False
            self._detach()

    def rollback(self) -> None:
        """Abandon everything written since the last commit."""
        if self._conn is None:
            return
        self._in_transaction = False
        if self._conn.in_transaction:  # SQLite itself ends a transaction on some errors (a full disk)
            self._conn.execute("ROLLBACK")
        self._detach()

    def close(self) -> None:
        """Roll back anything uncommitted and close."""
        if self._conn is None:
            return
        try:
            self.rollback()
        finally:
            self._conn.close()


@hookimpl
def register_sinks(register: Callable[[str, SinkFactory], None]) -> None:
    """Offer the ``sqlite`` sink (options: ``path``, default ``contacts.db``; ``merge``, default ``"merge"``;
    ``lock_timeout``, default 30 seconds)."""
    register("sqlite", SQLiteSink)
