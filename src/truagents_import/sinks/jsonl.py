"""The ``jsonl`` sink: one JSON object per contact, appended to a file."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence

from truagents_import.fields.contact import Contact
from truagents_import.hookspecs import SinkFactory, hookimpl
from truagents_import.sinks._append import AppendLog

__all__ = ["JSONLSink"]


class JSONLSink(AppendLog):
    """Appends contacts as JSON lines; ``commit`` fsyncs, ``rollback`` truncates back to the last commit.

    Like ``csv``, it is a log (a file imported twice on purpose, with ``--force``, appears twice),
    it has one writer at a time, and reopening after a crash cuts off the lines of the file that
    was being written. Its ledger (``.NAME.committed``) records which file each commit belongs to,
    so that a file committed by a run killed before the state recorded it is not written again
    (:class:`~truagents_import.sinks.FileLedger`).
    """

    kind = "jsonl sink"

    def __repr__(self) -> str:
        return f"JSONLSink({str(self.path)!r})"

    def write(self, contacts: Sequence[Contact]) -> None:
        """Append a batch (durable on commit)."""
        self._append(b"".join(json.dumps(c.to_dict(), ensure_ascii=False).encode() + b"\n" for c in contacts))


@hookimpl
def register_sinks(register: Callable[[str, SinkFactory], None]) -> None:
    """Offer the ``jsonl`` sink (option: ``path``)."""
    register("jsonl", JSONLSink)
