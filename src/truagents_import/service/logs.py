"""The library's log records as lines on stderr: text for people, one JSON object per line for machines.

The library itself never installs a handler (SPEC 11). The command line does, for
``--log-level`` and ``--log-format text|json``, on the ``truagents_import`` logger only, and takes
it away again when the command ends. A service routes the records into its own logging instead
(docs/service.md); :class:`JSONFormatter` is there for it to use too.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, Literal

__all__ = ["LOGGER_NAME", "JSONFormatter", "LogFormat", "TextFormatter", "record_fields", "stderr_logging"]

#: The logger every record of the library goes through (its modules log to its children).
LOGGER_NAME = "truagents_import"

#: The formats of ``--log-format``.
LogFormat = Literal["text", "json"]

#: The attributes every LogRecord has; the others are the ``extra`` fields a call gave.
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime", "taskName"}


def record_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The ``extra`` fields of a record (``source``, ``file``, ``status``, counts...)."""
    return {k: v for k, v in record.__dict__.items() if k not in _STANDARD and not k.startswith("_")}


class JSONFormatter(logging.Formatter):
    """One JSON object per record: ``time`` (UTC, ISO 8601), ``level``, ``logger``, ``message``,
    the record's ``extra`` fields, and ``exception`` (the traceback) when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON."""
        doc: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record_fields(record).items():
            doc.setdefault(key, value)
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """``2026-11-24 10:00:00,123 INFO    truagents_import.pipeline.importer: crm-drop: imported ...``"""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")


class _StderrHandler(logging.Handler):
    """Writes to whatever ``sys.stderr`` is when a record comes (a test runner may swap it)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            stream = sys.stderr
            stream.write(self.format(record) + "\n")
            stream.flush()
        except Exception:  # logging must never break the program
            self.handleError(record)


@contextmanager
def stderr_logging(level: int | str = logging.INFO, fmt: LogFormat = "text") -> Iterator[logging.Handler]:
    """Send the library's records at ``level`` and above to stderr while the block runs.

    The handler sits on the ``truagents_import`` logger only (other libraries' records are left
    to the application) and is removed, with the logger's level restored, when the block ends.
    """
    logger = logging.getLogger(LOGGER_NAME)
    handler = _StderrHandler()
    handler.setFormatter(JSONFormatter() if fmt == "json" else TextFormatter())
    previous = logger.level
    logger.addHandler(handler)
    logger.setLevel(level.upper() if isinstance(level, str) else level)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)
