"""The ``jsonl`` sink: one JSON object per contact, appended to a file."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path

from truagents_import.contact import Contact
from truagents_import.hookspecs import SinkFactory, hookimpl

__all__ = ["JSONLSink"]


class JSONLSink:
    """Appends contacts as JSON lines; ``commit`` fsyncs, ``rollback`` truncates back to the last commit."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("ab")
        self._committed = self._file.tell()

    def write(self, contacts: Sequence[Contact]) -> None:
        """Append a batch (durable on commit)."""
        self._file.write(
            b"".join(json.dumps(c.to_dict(), ensure_ascii=False).encode() + b"\n" for c in contacts)
        )

    def commit(self) -> None:
        """Flush and fsync: after this the lines survive a crash."""
        self._file.flush()
        os.fsync(self._file.fileno())
        self._committed = self._file.tell()

    def rollback(self) -> None:
        """Drop every line written since the last commit."""
        self._file.flush()
        self._file.truncate(self._committed)
        self._file.seek(self._committed)

    def close(self) -> None:
        """Close the file (lines not committed are dropped)."""
        if not self._file.closed:
            self.rollback()
            self._file.close()


@hookimpl
def register_sinks(register: Callable[[str, SinkFactory], None]) -> None:
    """Offer the ``jsonl`` sink (option: ``path``)."""
    register("jsonl", JSONLSink)
