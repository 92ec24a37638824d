"""What a run did, file by file and row by row: ImportReport, FileResult and Problem."""

from __future__ import annotations

import html
import json
from datetime import datetime
from typing import Any, Literal

import attrs
from cattrs.gen import make_dict_unstructure_fn

from truagents_import._converter import converter, to_dict
from truagents_import._safety import escape_name

__all__ = ["FileResult", "FileStatus", "ImportReport", "Problem", "Totals", "escape_name"]

#: The status of one file in a report (SPEC 6).
FileStatus = Literal["imported", "skipped", "incomplete", "rejected", "failed"]

#: Problems kept per file in a report; the counts are never capped.
MAX_PROBLEMS = 100

_VALUE_LIMIT = 80


def _truncate(value: str | None) -> str | None:
    if value is None or len(value) <= _VALUE_LIMIT:
        return value
    return value[: _VALUE_LIMIT - 1] + "…"


@attrs.frozen
class Problem:
    """One thing wrong with a row or a file: a stable ``code``, a message for people, where it is."""

    code: str
    message: str
    column: str | None = None
    row: int | None = None
    value: str | None = attrs.field(default=None, converter=_truncate)


@attrs.define
class FileResult:
    """The outcome of one file: its status, why, and how its rows were accounted for.

    ``rows == imported + rejected + duplicates`` always holds.
    """

    path: str
    status: FileStatus
    reason: str | None = None
    rows: int = 0
    imported: int = 0
    rejected: int = 0
    duplicates: int = 0
    rejects_file: str | None = None
    problems: list[Problem] = attrs.field(factory=list)
    warnings: list[str] = attrs.field(factory=list)
    sha256: str | None = None
    size: int | None = None
    #: Columns that appeared, disappeared or moved since the last imported file, when any did.
    drift: dict[str, list[str]] | None = None
    #: How the file's columns were mapped: column -> field or ``attributes.<name>``.
    mapping: dict[str, str] | None = None
    #: The export layout the file was read in (SPEC 9: ``"google_contacts"``), if one was recognised.
    layout: str | None = None
    #: Lines before the header (a preamble such as LinkedIn's ``Notes:``); they are not rows.
    preamble_lines: int = 0

    def add_problem(self, problem: Problem) -> None:
        """Keep a problem, up to :data:`MAX_PROBLEMS` per file (counts are kept elsewhere)."""
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(problem)


@attrs.frozen
class Totals:
    """Sums over the files of a report."""

    files: int
    rows: int
    imported: int
    rejected: int
    duplicates: int


@attrs.define
class ImportReport:
    """What one run of an importer did."""

    source: str
    dry_run: bool
    started_at: datetime
    finished_at: datetime | None = None
    files: list[FileResult] = attrs.field(factory=list)
    #: Run-level warnings, for example an ``import_finished`` plugin that failed.
    warnings: list[str] = attrs.field(factory=list)

    @property
    def totals(self) -> Totals:
        """Files and row counts summed over the run."""
        return Totals(
            files=len(self.files),
            rows=sum(f.rows for f in self.files),
            imported=sum(f.imported for f in self.files),
            rejected=sum(f.rejected for f in self.files),
            duplicates=sum(f.duplicates for f in self.files),
        )

    @property
    def ok(self) -> bool:
        """False when a file was rejected or failed (the command line then exits 1)."""
        return not any(f.status in ("rejected", "failed") for f in self.files)

    def to_dict(self) -> dict[str, Any]:
        """The report as the JSON document of SPEC 6."""
        return to_dict(self)

    def to_json(self, indent: int | None = None) -> str:
        """The report as JSON text."""
        return json.dumps(self.to_dict(), indent=indent, ensure_ascii=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ImportReport:
        """Read a report back from :meth:`to_dict`'s output."""
        data = {k: v for k, v in data.items() if k != "totals"}
        return converter.structure(data, cls)

    def _repr_html_(self) -> str:
        rows = []
        for f in self.files:
            rows.append(
                "<tr>"
                + "".join(
                    f"<td>{html.escape(str(v))}</td>"
                    for v in (
                        escape_name(f.path),
                        f.status,
                        f.rows,
                        f.imported,
                        f.rejected,
                        f.duplicates,
                        f.reason or "",
                    )
                )
                + "</tr>"
            )
        t = self.totals
        head = "".join(
            f"<th>{h}</th>" for h in ("file", "status", "rows", "imported", "rejected", "duplicates", "reason")
        )
        return (
            f"<p><b>{html.escape(self.source)}</b>{' (dry run)' if self.dry_run else ''}: "
            f"{t.files} files, {t.rows} rows, {t.imported} imported, {t.rejected} rejected, "
            f"{t.duplicates} duplicates</p><table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
        )


_unstructure_report = make_dict_unstructure_fn(ImportReport, converter)


def _report_document(report: ImportReport) -> dict[str, Any]:
    """The report's fields, then its ``totals`` (SPEC 6)."""
    data: dict[str, Any] = _unstructure_report(report)
    data["totals"] = converter.unstructure(report.totals)
    return data


converter.register_unstructure_hook(ImportReport, _report_document)
