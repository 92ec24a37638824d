"""Feedback to the people who upload (SPEC 10): each file's result, written back beside their files.

With ``feedback = "results"`` a source writes, after each file is imported, rejected or failed,
``<file name>.result.json`` (:func:`result_document`) and, when rows were rejected from an imported
file, ``<file name>.rejects.csv`` (the rejects format of ``--rejects``, cells neutralised) into the
feedback folder on the server. Each goes under a hidden temporary name first and is renamed into
place (``posix-rename`` over SFTP, never sshfs's copy-then-delete ``mv``).

Rules:

- A feedback file is only ever written inside the feedback folder: names made from remote names
  lose control characters, separators and leading dots (:func:`feedback_name`).
- A write that fails is a warning on the file's result and in the log, never a failure of the
  import: the contacts are already committed.
- One result per content: a result already written for the same content (sha256) is kept when
  the import ends the same way again (a re-run), and when it said ``imported`` (the contacts are
  in); a later, different ending (a failure that went through when retried, a rejection the
  operator fixed) replaces it. A file delivered again with other content gets a fresh result.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import posixpath
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from truagents_import._safety import escape_name
from truagents_import.pipeline.fetch import CONNECTION_ERRORS
from truagents_import.remote.sftp import posix_rename

if TYPE_CHECKING:
    from truagents_import.report import FileResult
    from truagents_import.source import DataSource

__all__ = [
    "FAILED_REASON",
    "MAX_PROBLEMS_SHOWN",
    "REJECTS_SUFFIX",
    "RESULT_SUFFIX",
    "feedback_name",
    "result_document",
    "write_feedback",
]

logger = logging.getLogger(__name__)

RESULT_SUFFIX = ".result.json"
REJECTS_SUFFIX = ".rejects.csv"
#: Problems listed in a result file (its counts are never capped).
MAX_PROBLEMS_SHOWN = 20
#: What a result says of a failed import: the cause is on the receiving side, and its details
#: (hosts, databases, plugins) are the operator's, not the sender's.
FAILED_REASON = (
    "the import failed on the receiving side, not because of this file; it is tried again "
    "automatically, and a new result replaces this one"
)
#: The start of warnings that concern the operator only (not written to result files).
_OPERATOR_WARNINGS = ("imported, but after_import", "the result could not be written back")
#: Longest name (in UTF-8 bytes) a feedback file is built on: with ``.``, ``.result.json`` and
#: ``.part`` around it, it stays far below the 255 bytes most servers allow.
_MAX_NAME_BYTES = 200
_FINAL = ("imported", "rejected")


def feedback_name(name: str) -> str:
    """The name feedback files for remote file ``name`` are built on: one plain component.

    Control characters and separators become ``_``, leading dots go, and long names are cut; a
    name changed in any way gets ``~`` and a short hash of the original, so two names never share
    one result.
    """
    cleaned = "".join(c if c.isprintable() and c not in "/\\" else "_" for c in name).lstrip(".")
    if cleaned == name and len(name.encode("utf-8", "surrogateescape")) <= _MAX_NAME_BYTES:
        return name
    digest = hashlib.sha256(name.encode("utf-8", "surrogateescape")).hexdigest()[:12]
    room = _MAX_NAME_BYTES - len(digest) - 1
    head = cleaned.encode("utf-8", "surrogateescape")[:room].decode("utf-8", "ignore")
    return f"{head or 'file'}~{digest}"


def result_document(
    source: DataSource, result: FileResult, *, started: datetime, finished: datetime, rejects_file: str | None
) -> dict[str, Any]:
    """The result file's document: the file, its status, counts, reason, layout, mapping, first
    problems, sha256, times, and who owns the source."""
    failed = result.status == "failed"
    problems = [] if failed else result.problems[:MAX_PROBLEMS_SHOWN]
    return {
        "format": 1,
        "file": posixpath.basename(result.path),
        "source": source.name,
        "owner": source.owner,
        "status": result.status,
        "reason": FAILED_REASON if failed else result.reason,
        "rows": result.rows,
        "imported": result.imported,
        "rejected": result.rejected,
        "duplicates": result.duplicates,
        "bytes": result.size,
        "sha256": result.sha256,
        "layout": result.layout,
        "mapping": result.mapping,
        "drift": result.drift,
        "problems": [{"row": p.row, "column": p.column, "code": p.code, "message": p.message} for p in problems],
        "more_problems": max(len(result.problems) - len(problems), 0) if not failed else 0,
        "rejects_file": rejects_file,
        "warnings": [w for w in result.warnings if not w.startswith(_OPERATOR_WARNINGS)],
        "started_at": started.isoformat(),
        "finished_at": finished.isoformat(),
    }


def write_feedback(source: DataSource, result: FileResult, *, started: datetime, rejects: Path | None) -> None:
    """Write a file's result (and its rejected rows) into the source's feedback folder.

    ``rejects`` is the local rejects CSV of the file, if one was kept. Does nothing without
    ``feedback`` or for statuses other than imported, rejected and failed. A failure to write
    becomes a warning on ``result`` and a log record; it never raises.
    """
    folder = source.feedback_folder()
    if folder is None or result.status not in ("imported", "rejected", "failed"):
        return
    try:
        try:
            _write(source, folder, result, started, rejects)
        except CONNECTION_ERRORS:
            if source.integration is None:
                raise
            source.integration.reconnect()  # a dead sshfs instance stays dead: one more try on a new one
            _write(source, folder, result, started, rejects)
    except Exception as exc:  # the contacts are committed: nothing here may fail the import
        reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        warning = f"the result could not be written back to {escape_name(folder)}: {escape_name(reason)}"
        result.warnings.append(warning)
        logger.warning(
            "%s: %s",
            escape_name(result.path),
            warning,
            extra={"source": source.name, "file": escape_name(result.path), "status": result.status},
        )


def _write(source: DataSource, folder: str, result: FileResult, started: datetime, rejects: Path | None) -> None:
    fs = source.filesystem()
    base = feedback_name(posixpath.basename(result.path))
    result_path = _inside(folder, base + RESULT_SUFFIX)
    rejects_path = _inside(folder, base + REJECTS_SUFFIX)
    if _already_reported(fs, result_path, result):
        return
    fs.makedirs(folder, exist_ok=True)
    keep_rejects = rejects is not None and result.status == "imported" and result.rejected > 0
    if keep_rejects:
        assert rejects is not None
        _put_atomically(source, fs, rejects_path, local=rejects)
    else:
        with contextlib.suppress(FileNotFoundError):
            fs.rm_file(rejects_path)  # the rejects of earlier content would be taken for these
    document = result_document(
        source,
        result,
        started=started,
        finished=datetime.now(UTC),
        rejects_file=posixpath.basename(rejects_path) if keep_rejects else None,
    )
    data = (json.dumps(document, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
    _put_atomically(source, fs, result_path, data=data)
    logger.info(
        "%s: result written to %s",
        escape_name(result.path),
        escape_name(result_path),
        extra={"source": source.name, "file": escape_name(result.path), "status": result.status},
    )


def _inside(folder: str, name: str) -> str:
    """``folder/name``, refusing anything that would land elsewhere."""
    path = posixpath.join(folder, name)
    if "/" in name or name in ("", ".", "..") or posixpath.dirname(path) != folder:
        msg = f"refusing to write feedback outside {escape_name(folder)}: {escape_name(name)}"
        raise ValueError(msg)
    return path


def _already_reported(fs: Any, result_path: str, result: FileResult) -> bool:
    """Whether the result there already says what this one would, for this content (see module doc)."""
    try:
        with fs.open(result_path, "rb") as f:
            earlier = json.loads(f.read(1 << 20))
    except (FileNotFoundError, ValueError):
        return False
    if not isinstance(earlier, dict) or earlier.get("sha256") != result.sha256:
        return False
    said = earlier.get("status")
    if said == "imported" or (result.status == "failed" and said in _FINAL):
        return True
    reason = FAILED_REASON if result.status == "failed" else result.reason
    now = (result.status, reason, result.rows, result.imported, result.rejected, result.duplicates)
    before = tuple(earlier.get(k) for k in ("status", "reason", "rows", "imported", "rejected", "duplicates"))
    return now == before


def _put_atomically(
    source: DataSource, fs: Any, target: str, *, data: bytes | None = None, local: Path | None = None
) -> None:
    """Write ``data`` (or copy ``local``) to a hidden temporary name beside ``target``, then rename it
    into place; the temporary file is removed when anything fails."""
    partial = posixpath.join(posixpath.dirname(target), f".{posixpath.basename(target)}.part")
    try:
        if local is not None:
            fs.put_file(str(local), partial)
        else:
            fs.pipe_file(partial, data or b"")
        if _is_sftp(source, fs):
            posix_rename(fs, partial, target)
        else:
            fs.mv(partial, target)
    except BaseException:
        with contextlib.suppress(Exception):
            fs.rm_file(partial)
        raise


def _is_sftp(source: DataSource, fs: Any) -> bool:
    """Whether ``fs`` is an sshfs filesystem (whose own ``mv`` must never be used)."""
    return source.integration is not None or type(fs).__module__.split(".", 1)[0] == "sshfs"
