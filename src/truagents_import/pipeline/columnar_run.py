"""One file staged through the columnar path (:mod:`.columnar`), or a clear "read it row by row".

Kept apart from :mod:`.columnar` so that importing the importer does not import Arrow: only a file
large enough for the columnar path does (about a tenth of a second, once).
"""

from __future__ import annotations

import heapq
import json
import logging
import marshal
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from truagents_import._safety import escape_name
from truagents_import.fields.contact import Contact
from truagents_import.pipeline.builder import BuildSpec
from truagents_import.report import Problem

if TYPE_CHECKING:
    from truagents_import.fields.mapping import ColumnMapping
    from truagents_import.pipeline.columnar import Rejected
    from truagents_import.pipeline.process import RejectCallback
    from truagents_import.pipeline.staging import Staging
    from truagents_import.plugins import Plugins
    from truagents_import.reading import Shape
    from truagents_import.source import DataSource

__all__ = ["COLUMNAR_MIN_BYTES", "stage_columns"]

logger = logging.getLogger(__name__)

#: Files at least this large (bytes) take the columnar path when their shape allows; smaller ones are
#: read row by row (for a few thousand rows the columnar path's fixed costs are not worth it).
COLUMNAR_MIN_BYTES = 4 << 20


def stage_columns(
    source: DataSource,
    file: str,
    local: Path,
    shape: Shape,
    mapping: ColumnMapping,
    staging: Staging,
    plugins: Plugins,
    reject: RejectCallback,
    tick: Callable[[int], None],
    *,
    batch_size: int,
) -> int | None:
    """Stage the valid rows of ``file`` (fetched as ``local``) through the columnar path and hand its
    rejected rows to ``reject``, in row order; ``tick(rows)`` after each batch. Returns how many invalid
    values were dropped (``on_invalid = "drop_field"``), or None when the file needs the row path (then
    what was staged and rejected must be discarded: the file is read again from its first row). With a
    ``validate_contacts`` plugin, its batches of ``batch_size`` contacts are those of the row path."""
    from truagents_import.pipeline import columnar  # Arrow: only for files that take this path

    spec = BuildSpec.of(source, shape.header, mapping, file, sql_rows=staging.sql_rows, keep_values=False)

    why = columnar.columnar_refusal(spec, shape, validates=plugins.validates_contacts())
    if why is not None:
        logger.debug("%s: %s is read row by row (%s)", source.name, escape_name(file), why)
        return None
    builder = columnar.ColumnBuilder(spec)
    judge = _Judge(plugins, source, file, batch_size, reject, tick) if plugins.validates_contacts() else None
    rows = 0
    # Staging (rows into Python values, then into SQLite, which releases the GIL while it writes) runs
    # in one thread beside the checking of the next batch (Arrow's kernels release it too): batches are
    # staged in file order, one at a time while the next is checked.
    pending: deque[Future[None]] = deque()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="truagents-stage") as stager:
        try:
            batches = columnar.read_batches(local, shape, source.max_field_size, source.max_decompressed_size)
            for columns in batches:
                staged, rejected = builder.build(columns, rows + 1)
                if judge is not None:
                    every = columnar.raw_rows(columns, list(range(len(columns[0]))))
                    staged = iter([judge.feed(rows + 1, staged, rejected, every)])
                else:
                    for _number, cells, problems in rejected:
                        reject(cells, problems)
                pending.append(stager.submit(_stage, staging, source.name, file, staged))
                while len(pending) > 1:
                    pending.popleft().result()
                rows += len(columns[0]) if columns else 0
                tick(rows)
            if judge is not None:
                pending.append(stager.submit(_stage, staging, source.name, file, iter([judge.finish()])))
        except columnar.NotColumnar as exc:
            logger.debug("%s: reading %s again row by row: %s", source.name, escape_name(file), exc)
            return None
        finally:
            _drain(pending)
    return builder.dropped


def _stage(staging: Staging, source: str, file: str, chunks: Iterator[list[tuple[Any, ...]]]) -> None:
    for chunk in chunks:
        staging.add(source, file, chunk)


def _drain(pending: deque[Future[None]]) -> None:
    """Wait for every batch still being staged; the first failure is raised once all have ended."""
    failure: BaseException | None = None
    while pending:
        error = pending.popleft().exception()
        failure = failure or error
    if failure is not None:
        raise failure


@attrs.define
class _Judge:
    """``validate_contacts`` plugins on the columnar path, as the row path calls them: batches of
    ``batch_size`` accepted contacts in row order (across the columnar batches), a field's refusal
    reported when its row is reached, a plugin's when the batch holding its row is judged."""

    plugins: Plugins
    source: DataSource
    file: str
    batch_size: int
    reject: RejectCallback
    tick: Callable[[int], None]
    #: Accepted rows not judged yet: (staged row, its cells).
    _held: list[tuple[tuple[Any, ...], list[str]]] = attrs.field(factory=list)

    def feed(
        self, first: int, staged: Iterator[list[tuple[Any, ...]]], rejected: list[Rejected], cells: list[list[str]]
    ) -> list[tuple[Any, ...]]:
        """A columnar batch whose first row is data row ``first`` (``cells``: every row's cells): the
        judged rows to stage."""
        accepted = (row for chunk in staged for row in chunk)
        out: list[tuple[Any, ...]] = []
        events = heapq.merge(((r[0], 0, r) for r in accepted), ((r[0], 1, r) for r in rejected))
        for number, kind, item in events:
            if kind:
                self.reject(item[1], item[2])
                continue
            self._held.append((item, cells[number - first]))
            if len(self._held) >= self.batch_size:
                self.tick(number)  # the rows read when the row path judges this batch (if a plugin fails)
                out += self.finish()
        return out

    def finish(self) -> list[tuple[Any, ...]]:
        """Judge the rows held; the ones to stage."""
        held, self._held = self._held, []
        if not held:
            return []
        contacts = [_contact(row, self.source.name, self.file) for row, _ in held]
        bad: dict[int, list[Problem]] = {}
        for i, found in self.plugins.validate_contacts(contacts, self.source, self.file):
            problem = found if found.row is not None else attrs.evolve(found, row=held[i][0][0])
            bad.setdefault(i, []).append(problem)
        for i in sorted(bad):
            self.reject(held[i][1], bad[i])
        return [row for i, (row, _) in enumerate(held) if i not in bad]


def _contact(row: tuple[Any, ...], source: str, file: str) -> Contact:
    """The contact of a staged row, in either staging layout."""
    make: Callable[..., Contact] = Contact  # positional: the first nine fields in order
    if len(row) == 3:  # (number, identity, marshal payload), made by this process
        return make(*marshal.loads(row[2]), source, file, row[0])  # noqa: S302
    number, _identity, external_id, email, phone, first_name, last_name, timezone, tags, unsub, attributes = row
    return Contact(
        external_id, email, phone, first_name, last_name, timezone, tuple(json.loads(tags)),
        None if unsub is None else bool(unsub), json.loads(attributes), source, file, number,
    )  # fmt: skip
