"""The state database: which files were imported, with what content and what result.

SQLite by default. A file's content is identified by its sha256, so the same content under
another name is recognised, and a changed file is imported again. Importers sharing a state
database claim each content before importing it, so two of them never import the same file.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from truagents_import._local import sqlite_failures
from truagents_import._log import log_claim
from truagents_import._sqlite import connect_shared
from truagents_import.errors import ConfigError, LocalResourceError
from truagents_import.state.base import (
    CLAIM_LEASE,
    Claim,
    ClaimRefused,
    new_owner,
    owner_alive,
    record_values,
    refused_as_imported,
    refused_as_taken,
)

if TYPE_CHECKING:
    from truagents_import.report import FileResult
    from truagents_import.source import FileState

__all__ = ["LOCK_TIMEOUT", "StateStore"]

#: Seconds to wait for a lock another process holds on the state database before the file at hand
#: fails (the state's own transactions take milliseconds: a longer hold is something else).
LOCK_TIMEOUT = 10.0

logger = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    id INTEGER PRIMARY KEY,
    source TEXT NOT NULL,
    path TEXT NOT NULL,
    size INTEGER,
    mtime TEXT,
    sha256 TEXT,
    status TEXT NOT NULL,
    reason TEXT,
    rows INTEGER NOT NULL DEFAULT 0,
    imported INTEGER NOT NULL DEFAULT 0,
    rejected INTEGER NOT NULL DEFAULT 0,
    duplicates INTEGER NOT NULL DEFAULT 0,
    header TEXT,
    started_at TEXT NOT NULL,
    finished_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS files_by_sha ON files (source, sha256, status);
CREATE INDEX IF NOT EXISTS files_by_path ON files (source, path, id);
CREATE TABLE IF NOT EXISTS claims (
    source TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    path TEXT NOT NULL,
    owner TEXT NOT NULL,
    claimed_at TEXT NOT NULL,
    PRIMARY KEY (source, sha256)
);
"""


class StateStore:
    """What was imported, per source and file. ``StateStore(":memory:")`` remembers for one process only.

    ``lock_timeout`` is how long (seconds) to wait for a lock another process holds on the database;
    past it, the operation raises :class:`~truagents_import.errors.LocalResourceError` naming the
    database and the lock (the importer fails that file and goes on), as it does when the disk is full.
    """

    def __init__(self, path: Path | str = ":memory:", *, lock_timeout: float = LOCK_TIMEOUT) -> None:
        self.path = str(path)
        self.lock_timeout = lock_timeout
        #: Claims given back while the database was locked: released again at the next chance.
        self._unreleased: list[Claim] = []
        try:
            if self.path != ":memory:":
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            with self._guard():
                self._db = connect_shared(self.path, _SCHEMA, timeout=lock_timeout)
        except (OSError, sqlite3.Error) as exc:
            msg = f"state database {self.path} cannot be opened: {exc}"
            raise ConfigError(msg) from None

    def _guard(self) -> contextlib.AbstractContextManager[None]:
        """A lock held past :attr:`lock_timeout`, or a full disk, as the library's error naming this database."""
        return sqlite_failures("state database", self.path, self.lock_timeout, "[state] lock_timeout")

    def close(self) -> None:
        """Close the database connection (claims still unreleased are given back if the lock allows)."""
        with contextlib.suppress(Exception):
            self._release_pending()
        self._db.close()

    def __repr__(self) -> str:
        return f"StateStore({self.path!r})"

    def imported_sha(self, source: str, sha256: str) -> str | None:
        """The path under which this content was already imported by this source, if it was."""
        with self._guard():
            row = self._db.execute(
                "SELECT path FROM files WHERE source = ? AND sha256 = ? AND status = 'imported' "
                "ORDER BY id DESC LIMIT 1",
                (source, sha256),
            ).fetchone()
        return None if row is None else str(row[0])

    def file_state(self, source: str, path: str, size: int, mtime: datetime) -> FileState:
        """``imported`` when the last import (or skip) of this path had this size and time,
        ``changed`` when it had another, ``new`` when the path was never imported."""
        with self._guard():
            row = self._db.execute(
                "SELECT size, mtime FROM files WHERE source = ? AND path = ? AND status IN ('imported', 'skipped') "
                "ORDER BY id DESC LIMIT 1",
                (source, path),
            ).fetchone()
        if row is None:
            return "new"
        if row[0] == size and row[1] == mtime.isoformat():
            return "imported"
        return "changed"

    def last_header(self, source: str) -> list[str] | None:
        """The header of the last file this source imported."""
        with self._guard():
            row = self._db.execute(
                "SELECT header FROM files WHERE source = ? AND status = 'imported' AND header IS NOT NULL "
                "ORDER BY id DESC LIMIT 1",
                (source,),
            ).fetchone()
        return None if row is None else list(json.loads(row[0]))

    def claim(self, source: str, sha256: str, path: str, *, force: bool = False) -> Claim | ClaimRefused:
        """Take the right to import this content, or say why not (already imported, or being
        imported by a live importer). A claim whose owner died is taken over; ``force`` claims
        content that was imported before."""
        owner = new_owner()
        now = datetime.now(UTC)
        self._release_pending()
        with self._guard():
            self._db.execute("BEGIN IMMEDIATE")  # waits up to lock_timeout for another writer
            try:
                outcome = self._claim_locked(source, sha256, path, owner, now, force=force)
                self._db.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    self._db.execute("ROLLBACK")
                raise
        if isinstance(outcome, ClaimRefused) and not outcome.to_record:
            log_claim(logger, source, path, sha256, f"not claimed: {outcome.message}")
        return outcome

    def _claim_locked(
        self, source: str, sha256: str, path: str, owner: str, now: datetime, *, force: bool
    ) -> Claim | ClaimRefused:
        done = None if force else self.imported_sha(source, sha256)
        if done is not None:
            return refused_as_imported(done, path)
        row = self._db.execute(
            "SELECT owner, claimed_at, path FROM claims WHERE source = ? AND sha256 = ?", (source, sha256)
        ).fetchone()
        if row is not None:
            alive = owner_alive(row[0])
            fresh = now - datetime.fromisoformat(row[1]) < CLAIM_LEASE
            if alive or (alive is None and fresh):
                return refused_as_taken(f"{row[0]}, as {row[2]}")
            why = "its process is gone" if alive is False else "its lease ran out"
            taken = f"claim of {row[0]} taken over ({why})"
            log_claim(logger, source, path, sha256, taken, status="claim_taken_over", level=logging.WARNING)
        self._db.execute(
            "INSERT OR REPLACE INTO claims (source, sha256, path, owner, claimed_at) VALUES (?, ?, ?, ?, ?)",
            (source, sha256, path, owner, now.isoformat()),
        )
        return Claim(source, sha256, owner)

    def release(self, claim: Claim) -> None:
        """Give a claim back (after the file's outcome is recorded).

        Never raises for a locked database: the claim is given back at the next chance (the next
        claim or record, or :meth:`close`); until then, other importers see it as this live process's.
        """
        self._unreleased.append(claim)
        try:
            self._release_pending()
        except LocalResourceError as exc:
            logger.warning("claim of %s kept until the state database is free: %s", claim.sha256[:12], exc)

    def _release_pending(self) -> None:
        while self._unreleased:
            claim = self._unreleased[0]
            with self._guard():
                self._db.execute(
                    "DELETE FROM claims WHERE source = ? AND sha256 = ? AND owner = ?",
                    (claim.source, claim.sha256, claim.owner),
                )
            self._unreleased.pop(0)

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
        with self._guard():
            self._db.execute(
                "INSERT INTO files (source, path, size, mtime, sha256, status, reason, rows, imported, rejected,"
                " duplicates, header, started_at, finished_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (*record_values(source, result, mtime, header), started_at.isoformat(), datetime.now(UTC).isoformat()),
            )
        with contextlib.suppress(LocalResourceError):
            self._release_pending()

    def history(self, source: str) -> list[dict[str, object]]:
        """Every recorded attempt of a source, oldest first (for reports and debugging)."""
        with self._guard():
            cur = self._db.execute("SELECT * FROM files WHERE source = ? ORDER BY id", (source,))
            names = [d[0] for d in cur.description]
            return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
