"""The ``csv`` sink: one row per contact, appended to a CSV file that spreadsheets open safely."""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Callable, Sequence

import attrs

from truagents_import._jsontext import dumps_attributes
from truagents_import._safety import neutralise_cell
from truagents_import.errors import ConfigError
from truagents_import.fields.contact import Contact
from truagents_import.hookspecs import SinkFactory, hookimpl
from truagents_import.sinks._append import AppendLog

__all__ = ["CSV_HEADER", "CSVSink", "neutralise_cell"]

#: The columns of the file, in order: the fields of :class:`Contact`, as :meth:`Contact.to_dict` names them.
CSV_HEADER: tuple[str, ...] = tuple(field.name for field in attrs.fields(Contact))


def _cells(c: Contact) -> list[str]:
    unsubscribed = "" if c.unsubscribed is None else ("true" if c.unsubscribed else "false")
    values = [
        c.external_id or "",
        c.email or "",
        c.phone or "",
        c.first_name or "",
        c.last_name or "",
        c.timezone or "",
        ";".join(c.tags),
        unsubscribed,
        dumps_attributes(c.attributes),
        c.source or "",
        c.source_file or "",
        "" if c.source_row is None else str(c.source_row),
    ]
    return [neutralise_cell(v) for v in values]


def _encode(rows: Sequence[Sequence[str]]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerows(rows)
    return buffer.getvalue().encode("utf-8")


class CSVSink(AppendLog):
    """Appends contacts to a UTF-8 CSV file with a header row; ``commit`` fsyncs, ``rollback``
    truncates back to the last commit.

    Tags are joined with ``;``, attributes are a JSON object, ``unsubscribed`` is ``true``,
    ``false`` or empty. Every cell that starts with ``=``, ``+``, ``-``, ``@``, a tab or a
    carriage return gets a leading apostrophe (so ``+14155550100`` is written
    ``'+14155550100``), as in the rejects files. Like ``jsonl`` it is a log: a file imported
    twice on purpose (``--force``) appears twice.

    A hidden ledger beside the file (``.NAME.committed``) records how far it is committed and
    which file each commit belongs to: reopening after a crash cuts off the rows of the file that
    was being written, and a file committed by a run killed before the state recorded it is not
    written again, so a re-run after a kill anywhere leaves each contact once. One importer
    writes a file at a time (an exclusive ``flock``).
    """

    kind = "csv sink"

    def _start_empty_file(self) -> None:
        self._append(_encode([CSV_HEADER]))

    def _check_existing_file(self) -> None:
        self._file.seek(0)
        first = self._file.readline().decode("utf-8", errors="replace")
        self._file.seek(0, os.SEEK_END)
        found = next(csv.reader([first]), [])
        if tuple(found) != CSV_HEADER:
            msg = (
                f"csv sink {self.path} already holds a file with another header ({', '.join(found[:6])}...); "
                "point path at a new file or move the old one away"
            )
            raise ConfigError(msg)

    def __repr__(self) -> str:
        return f"CSVSink({str(self.path)!r})"

    def write(self, contacts: Sequence[Contact]) -> None:
        """Append a batch (durable on commit)."""
        self._append(_encode([_cells(c) for c in contacts]))


@hookimpl
def register_sinks(register: Callable[[str, SinkFactory], None]) -> None:
    """Offer the ``csv`` sink (option: ``path``)."""
    register("csv", CSVSink)
