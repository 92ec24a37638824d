"""The state database on PostgreSQL, for many importers on many machines sharing one source.

The same records as the SQLite :class:`~truagents_import.state.StateStore`, in two tables
(``truagents_import_files`` and ``truagents_import_claims``), and the same
:class:`~truagents_import.state.State` protocol. A claim is a *session advisory lock* on the
content (source and sha256), taken with ``pg_try_advisory_lock``: the lock, not the claims
table, decides who imports a file. It is held until :meth:`PostgresStateStore.release`, and the
server drops it by itself when the holder's connection ends, so a crashed or killed worker
never blocks a file. The claims table only says who holds what, for people and error messages.

Select it with ``[state] url = "postgresql://..."``. psycopg is optional:
``pip install 'truagents-import[postgres]'``.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from truagents_import._log import log_claim
from truagents_import._postgres import PostgresError, connect, lock_key, mask_url, psycopg_module, scrub
from truagents_import.errors import ConfigError
from truagents_import.state.base import (
    Claim,
    ClaimRefused,
    new_owner,
    record_values,
    refused_as_imported,
    refused_as_taken,
)

if TYPE_CHECKING:
    import psycopg

    from truagents_import.report import FileResult
    from truagents_import.source import FileState

__all__ = ["PostgresStateStore"]

logger = logging.getLogger(__name__)

_SCHEMA = (
    """
    CREATE TABLE IF NOT EXISTS truagents_import_files (
        id bigserial PRIMARY KEY,
        source text NOT NULL,
        path text NOT NULL,
        size bigint,
        mtime text,
        sha256 text,
        status text NOT NULL,
        reason text,
        rows integer NOT NULL DEFAULT 0,
        imported integer NOT NULL DEFAULT 0,
        rejected integer NOT NULL DEFAULT 0,
        duplicates integer NOT NULL DEFAULT 0,
        header text,
        started_at timestamptz NOT NULL,
        finished_at timestamptz NOT NULL
    )
    """,
    "CREATE INDEX IF NOT EXISTS truagents_import_files_by_sha ON truagents_import_files (source, sha256, status)",
    "CREATE INDEX IF NOT EXISTS truagents_import_files_by_path ON truagents_import_files (source, path, id)",
    """
    CREATE TABLE IF NOT EXISTS truagents_import_claims (
        source text NOT NULL,
        sha256 text NOT NULL,
        path text NOT NULL,
        owner text NOT NULL,
        backend_pid integer NOT NULL,
        claimed_at timestamptz NOT NULL,
        PRIMARY KEY (source, sha256)
    )
    """,
)


class PostgresStateStore:
    """What was imported, per source and file, in a PostgreSQL database shared by many importers.

    :param url: a libpq connection URL or keyword string; its password is masked in every repr
        and message (it may also come from ``PGPASSWORD`` or ``~/.pgpass``).
    :param connect_timeout: seconds to wait for the server when connecting.

    Each store holds one connection; give each importer (each process) its own store.
    """

    def __init__(self, url: str, *, connect_timeout: int = 10) -> None:
        self._psycopg = psycopg_module("the PostgreSQL state database")
        if not isinstance(url, str) or not url:
            raise ConfigError('[state] url must be a PostgreSQL URL like "postgresql://user@host/database"')
        self._url = url
        self.connect_timeout = connect_timeout
        self._held: dict[int, tuple[Claim, str]] = {}
        self._conn: psycopg.Connection[Any] | None = None
        self._connection()

    @property
    def url(self) -> str:
        """The connection URL with its password masked."""
        return mask_url(self._url)

    def __repr__(self) -> str:
        return f"PostgresStateStore({self.url!r})"

    def _connection(self) -> psycopg.Connection[Any]:
        conn = self._conn
        if conn is not None and not conn.closed and not conn.broken:
            return conn
        if self._held:
            self._held.clear()
            msg = (
                f"state database {self.url}: the connection was lost while a file was claimed (the claim is gone "
                "with it); the next run imports that file again"
            )
            raise PostgresError(msg)
        conn = connect(self._url, "the PostgreSQL state database", autocommit=True,
                       connect_timeout=self.connect_timeout)  # fmt: skip
        try:
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (lock_key("state-schema"),))
                for statement in _SCHEMA:
                    conn.execute(statement)
        except self._psycopg.Error as exc:
            conn.close()
            detail = scrub(f"{type(exc).__name__}: {exc}", self._url)
            msg = (
                f"state database {self.url} cannot create its tables: {detail}; grant the user CREATE on the "
                "schema, or create the truagents_import_* tables yourself"
            )
            raise ConfigError(msg) from None
        self._conn = conn
        return conn

    @contextlib.contextmanager
    def _errors(self, what: str) -> Iterator[psycopg.Connection[Any]]:
        conn = self._connection()
        try:
            yield conn
        except self._psycopg.Error as exc:
            detail = scrub(f"{type(exc).__name__}: {exc}", self._url)
            msg = f"state database {self.url}: {what} failed: {detail}; check that the server is up and reachable"
            raise PostgresError(msg) from None

    def _one(self, what: str, query: str, params: tuple[Any, ...]) -> tuple[Any, ...] | None:
        with self._errors(what) as conn:
            row: tuple[Any, ...] | None = conn.execute(query, params).fetchone()
        return row

    def close(self) -> None:
        """Close the connection (which releases every claim still held)."""
        self._held.clear()
        if self._conn is not None:
            with contextlib.suppress(self._psycopg.Error):
                self._conn.close()
            self._conn = None

    def imported_sha(self, source: str, sha256: str) -> str | None:
        """The path under which this content was already imported by this source, if it was."""
        row = self._one(
            "looking up a content",
            "SELECT path FROM truagents_import_files WHERE source = %s AND sha256 = %s AND status = 'imported' "
            "ORDER BY id DESC LIMIT 1",
            (source, sha256),
        )
        return None if row is None else str(row[0])

    def file_state(self, source: str, path: str, size: int, mtime: datetime) -> FileState:
        """``imported`` when the last import (or skip) of this path had this size and time,
        ``changed`` when it had another, ``new`` when the path was never imported."""
        row = self._one(
            "looking up a file",
            "SELECT size, mtime FROM truagents_import_files WHERE source = %s AND path = %s "
            "AND status IN ('imported', 'skipped') ORDER BY id DESC LIMIT 1",
            (source, path),
        )
        if row is None:
            return "new"
        if row[0] == size and row[1] == mtime.isoformat():
            return "imported"
        return "changed"

    def last_header(self, source: str) -> list[str] | None:
        """The header of the last file this source imported."""
        row = self._one(
            "looking up the last header",
            "SELECT header FROM truagents_import_files WHERE source = %s AND status = 'imported' "
            "AND header IS NOT NULL ORDER BY id DESC LIMIT 1",
            (source,),
        )
        return None if row is None else list(json.loads(row[0]))

    def claim(self, source: str, sha256: str, path: str, *, force: bool = False) -> Claim | ClaimRefused:
        """Take the right to import this content, or say why not (already imported, or being
        imported by another importer). The claim is a session advisory lock: it lasts until
        :meth:`release`, or until this store's connection ends, however it ends. ``force``
        claims content that was imported before."""
        key = lock_key("claim", source, sha256)
        if key in self._held:
            claim, held_path = self._held[key]
            return self._conflict(source, path, sha256, refused_as_taken(f"{claim.owner}, as {held_path}"))
        owner = new_owner()
        with self._errors("claiming a file") as conn:
            row = conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()
            if row is None or not row[0]:
                holder = conn.execute(
                    "SELECT owner, path FROM truagents_import_claims WHERE source = %s AND sha256 = %s",
                    (source, sha256),
                ).fetchone()
                who = "its claim is being recorded" if holder is None else f"{holder[0]}, as {holder[1]}"
                return self._conflict(source, path, sha256, refused_as_taken(who))
            try:
                # Checked under the lock: an importer that held it recorded its outcome before releasing.
                done = None if force else self.imported_sha(source, sha256)
                if done is None:
                    conn.execute(
                        "INSERT INTO truagents_import_claims (source, sha256, path, owner, backend_pid, claimed_at) "
                        "VALUES (%s, %s, %s, %s, pg_backend_pid(), now()) ON CONFLICT (source, sha256) DO UPDATE "
                        "SET path = EXCLUDED.path, owner = EXCLUDED.owner, backend_pid = EXCLUDED.backend_pid, "
                        "claimed_at = EXCLUDED.claimed_at",
                        (source, sha256, path, owner),
                    )
            except BaseException:
                with contextlib.suppress(self._psycopg.Error):
                    conn.execute("SELECT pg_advisory_unlock(%s)", (key,))
                raise
            if done is not None:
                conn.execute("SELECT pg_advisory_unlock(%s)", (key,))
                return refused_as_imported(done, path)
        claim = Claim(source, sha256, owner)
        self._held[key] = (claim, path)
        return claim

    @staticmethod
    def _conflict(source: str, path: str, sha256: str, refused: ClaimRefused) -> ClaimRefused:
        log_claim(logger, source, path, sha256, f"not claimed: {refused.message}")
        return refused

    def release(self, claim: Claim) -> None:
        """Give a claim back (after the file's outcome is recorded). A claim whose connection
        was lost is already gone: releasing it does nothing."""
        key = lock_key("claim", claim.source, claim.sha256)
        if self._held.get(key, (None, None))[0] != claim:
            return
        del self._held[key]
        conn = self._conn
        if conn is None or conn.closed or conn.broken:
            return
        with self._errors("releasing a claim"):
            conn.execute(
                "DELETE FROM truagents_import_claims WHERE source = %s AND sha256 = %s AND owner = %s",
                (claim.source, claim.sha256, claim.owner),
            )
            conn.execute("SELECT pg_advisory_unlock(%s)", (key,))

    def record(
        self,
        source: str,
        result: FileResult,
        *,
        mtime: datetime | None,
        header: list[str] | None,
        started_at: datetime,
    ) -> None:
        """Remember the outcome of one file (one row per attempt; the newest wins)."""
        with self._errors("recording a file") as conn:
            conn.execute(
                "INSERT INTO truagents_import_files (source, path, size, mtime, sha256, status, reason, rows, "
                "imported, rejected, duplicates, header, started_at, finished_at) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                (*record_values(source, result, mtime, header), started_at, datetime.now(UTC)),
            )

    def history(self, source: str) -> list[dict[str, object]]:
        """Every recorded attempt of a source, oldest first, shaped as the SQLite store's
        (times as ISO 8601 text in UTC, the header as JSON text)."""
        with self._errors("reading the history") as conn:
            cur = conn.execute("SELECT * FROM truagents_import_files WHERE source = %s ORDER BY id", (source,))
            names = [d.name for d in cur.description or ()]
            rows = cur.fetchall()
        out: list[dict[str, object]] = []
        for row in rows:
            entry = dict(zip(names, row, strict=True))
            for name in ("started_at", "finished_at"):
                value = entry[name]
                if isinstance(value, datetime):
                    entry[name] = value.astimezone(UTC).isoformat()
            out.append(entry)
        return out
