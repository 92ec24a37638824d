"""What every state database shares: claims, the refusal of a claim, the State protocol, record values."""

from __future__ import annotations

import json
import os
import socket
import uuid
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Literal, Protocol

import attrs

if TYPE_CHECKING:
    from truagents_import.report import FileResult
    from truagents_import.source import FileState

__all__ = [
    "CLAIM_LEASE",
    "Claim",
    "ClaimRefused",
    "RefusedBecause",
    "State",
    "new_owner",
    "owner_alive",
    "record_values",
    "refused_as_imported",
    "refused_as_taken",
]

#: A claim older than this is taken over even when its owner cannot be checked (another host).
CLAIM_LEASE = timedelta(hours=6)


def new_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def owner_alive(owner: str) -> bool | None:
    """True/False for an owner on this host (is its process alive?), None for another host."""
    host, _, rest = owner.partition(":")
    if host != socket.gethostname():
        return None
    try:
        os.kill(int(rest.split(":", 1)[0]), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError):
        return True
    return True


def record_values(
    source: str, result: FileResult, mtime: datetime | None, header: list[str] | None
) -> tuple[object, ...]:
    """The columns every state database records for one file, in the order of its ``files`` table
    (source, path, size, mtime, sha256, status, reason, rows, imported, rejected, duplicates, header)."""
    return (
        source,
        result.path,
        result.size,
        None if mtime is None else mtime.isoformat(),
        result.sha256,
        result.status,
        result.reason,
        result.rows,
        result.imported,
        result.rejected,
        result.duplicates,
        None if header is None else json.dumps(header),
    )


@attrs.frozen
class Claim:
    """The right to import one content of one source, held until released."""

    source: str
    sha256: str
    owner: str


#: Why a claim was refused: the content was imported under this path, under another path, or
#: another live importer holds it now.
RefusedBecause = Literal["already_imported", "same_content", "being_imported"]


@attrs.frozen
class ClaimRefused:
    """A claim that was not granted, and why (:attr:`because`); :attr:`message` says it for people."""

    because: RefusedBecause
    message: str

    @property
    def to_record(self) -> bool:
        """Whether the refusal is recorded as a skip (content already imported), not a conflict of the moment."""
        return self.because != "being_imported"


def refused_as_imported(done: str, path: str) -> ClaimRefused:
    """The refusal of content already imported, as ``done`` (the same path, or another one)."""
    if done == path:
        return ClaimRefused("already_imported", "already imported")
    return ClaimRefused("same_content", f"same content already imported as {done}")


def refused_as_taken(holder: str) -> ClaimRefused:
    """The refusal of content another importer (``holder``) is importing now."""
    return ClaimRefused("being_imported", f"being imported by another importer ({holder})")


class State(Protocol):
    """What the importer needs of a state database (SQLite here; PostgreSQL for many workers)."""

    def imported_sha(self, source: str, sha256: str) -> str | None: ...
    def file_state(self, source: str, path: str, size: int, mtime: datetime) -> FileState: ...
    def last_header(self, source: str) -> list[str] | None: ...
    def claim(self, source: str, sha256: str, path: str, *, force: bool = False) -> Claim | ClaimRefused: ...
    def release(self, claim: Claim) -> None: ...
    def record(
        self,
        source: str,
        result: FileResult,
        *,
        mtime: datetime | None,
        header: list[str] | None,
        started_at: datetime,
    ) -> None: ...
    def history(self, source: str) -> list[dict[str, object]]: ...
    def close(self) -> None: ...
