"""The library's log records about files (SPEC 11): their ``extra`` fields, written once.

The library logs through ``logging.getLogger(__name__)`` (children of ``truagents_import``) and
never installs a handler. A record about a file carries the fields of :data:`FILE_FIELDS` as
``extra``, so a service's JSON or structlog pipeline gets them as keys. Remote names are
escaped (they are untrusted); nothing secret is ever put in a record.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from truagents_import._safety import escape_name

if TYPE_CHECKING:
    from truagents_import.report import FileResult

__all__ = ["FILE_FIELDS", "file_fields", "log_claim", "log_file_outcome"]

#: The ``extra`` fields of every record about one file's outcome.
FILE_FIELDS = ("source", "file", "status", "rows", "imported", "rejected", "duplicates", "sha256", "duration_s")

#: The level of a file's outcome when this run worked on the file.
_LEVELS = {"imported": logging.INFO, "skipped": logging.INFO, "rejected": logging.WARNING, "failed": logging.ERROR}


def file_fields(source: str, result: FileResult, duration_s: float | None = None) -> dict[str, object]:
    """The ``extra`` of a record about one file: the source, the escaped path, the status and counts."""
    return {
        "source": source,
        "file": escape_name(result.path),
        "status": result.status,
        "rows": result.rows,
        "imported": result.imported,
        "rejected": result.rejected,
        "duplicates": result.duplicates,
        "sha256": result.sha256,
        "duration_s": None if duration_s is None else round(duration_s, 3),
    }


def log_file_outcome(logger: logging.Logger, source: str, result: FileResult, started: datetime | None = None) -> None:
    """One record for one file's outcome.

    Files this run worked on (``started`` given) are logged at INFO (imported, skipped), WARNING
    (rejected) or ERROR (failed); files only looked at in the listing (already imported, still
    incomplete) at DEBUG, since a service lists them again on every poll.
    """
    duration = None if started is None else (datetime.now(UTC) - started).total_seconds()
    level = logging.DEBUG if started is None else _LEVELS.get(result.status, logging.INFO)
    if not logger.isEnabledFor(level):
        return
    name = escape_name(result.path)
    if result.status == "imported":
        what = (
            f"{result.rows} rows: {result.imported} imported, {result.rejected} rejected, "
            f"{result.duplicates} duplicates"
        )
    else:
        what = escape_name(result.reason or "no reason given")
    took = "" if duration is None else f" in {duration:.2f} s"
    fields = file_fields(source, result, duration)
    logger.log(level, "%s: %s %s (%s)%s", source, result.status, name, what, took, extra=fields)


def log_claim(
    logger: logging.Logger,
    source: str,
    path: str,
    sha256: str,
    message: str,
    *,
    status: str = "claim_conflict",
    level: int = logging.INFO,
) -> None:
    """One record about a claim: refused because another importer holds the same content now
    (``claim_conflict``), or taken over from an importer that is gone (``claim_taken_over``)."""
    name = escape_name(path)
    fields = {"source": source, "file": name, "sha256": sha256, "status": status}
    logger.log(level, "%s: %s: %s", source, name, escape_name(message), extra=fields)
