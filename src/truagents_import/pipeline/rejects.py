"""Rejects files: the rows a file could not import, with why, in a CSV people can open safely."""

from __future__ import annotations

import csv
import re
from pathlib import Path

from truagents_import._safety import neutralise_cell
from truagents_import.report import Problem

__all__ = ["Rejects", "rejects_file_name", "unique_rejects_path"]


def rejects_file_name(remote_path: str) -> str:
    """A safe local name for a file's rejects: the remote name can never pick the folder."""
    base = remote_path.rsplit("/", 1)[-1]
    for suffix in (".gz", ".csv", ".txt", ".tsv"):
        if base.lower().endswith(suffix):
            base = base[: -len(suffix)]
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", base).lstrip(".") or "file"
    return safe[:150] + ".rejects.csv"


def unique_rejects_path(path: Path) -> Path:
    """``path``, or ``NAME.2.rejects.csv`` (3, 4, ...) when it exists: never overwrite earlier rejects."""
    candidate, n = path, 1
    while candidate.exists():
        n += 1
        candidate = path.with_name(f"{path.name.removesuffix('.rejects.csv')}.{n}.rejects.csv")
    return candidate


class Rejects:
    """The rejects CSV of one file: original columns plus ``_row, _code, _column, _message``."""

    def __init__(self, path: Path, header: list[str]) -> None:
        self.path = path
        self._file = path.open("w", encoding="utf-8", newline="")
        self._writer = csv.writer(self._file)
        self._header = [neutralise_cell(h) for h in header] + ["_row", "_code", "_column", "_message"]
        self._writer.writerow(self._header)
        self._width = len(header)
        self.count = 0

    def add(self, row: list[str], problem: Problem) -> None:
        # The four columns stay where the header puts them: a short row is padded, and the extra
        # cells of a long (ragged) row follow them, so nothing the file carried is lost.
        cells = [neutralise_cell(v) for v in row]
        head, extra = cells[: self._width], cells[self._width :]
        head += [""] * (self._width - len(head))
        meta = [
            str(problem.row or ""),
            problem.code,
            neutralise_cell(problem.column or ""),
            neutralise_cell(problem.message),
        ]
        self._writer.writerow(head + meta + extra)
        self.count += 1

    def clear(self) -> None:
        """Forget every rejected row written so far (the file is read again from its first row)."""
        self._file.seek(0)
        self._file.truncate()
        self._writer.writerow(self._header)
        self.count = 0

    def close(self) -> None:
        self._file.close()
