"""One file staged through the columnar path (:mod:`.columnar`), or a clear "read it row by row".

Kept apart from :mod:`.columnar` so that importing the importer does not import Arrow: only a file
large enough for the columnar path does (about a tenth of a second, once).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from truagents_import._safety import escape_name
from truagents_import.pipeline.builder import BuildSpec
from truagents_import.report import Problem

if TYPE_CHECKING:
    from truagents_import.fields.mapping import ColumnMapping
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
    reject: Callable[[list[str] | None, list[Problem]], None],
    tick: Callable[[int], None],
) -> int | None:
    """Stage the valid rows of ``file`` (fetched as ``local``) through the columnar path and hand its
    rejected rows to ``reject``, in row order; ``tick(rows)`` after each batch. Returns how many invalid
    values were dropped (``on_invalid = "drop_field"``), or None when the file needs the row path (then
    what was staged and rejected must be discarded: the file is read again from its first row)."""
    from truagents_import.pipeline import columnar  # Arrow: only for files that take this path

    spec = BuildSpec.of(source, shape.header, mapping, file, sql_rows=staging.sql_rows, keep_values=False)

    why = columnar.columnar_refusal(spec, shape, validates=plugins.validates_contacts())
    if why is not None:
        logger.debug("%s: %s is read row by row (%s)", source.name, escape_name(file), why)
        return None
    builder = columnar.ColumnBuilder(spec)
    rows = 0
    # Staging (rows into Python values, then into SQLite, which releases the GIL while it writes) runs
    # in one thread beside the checking of the next batch (Arrow's kernels release it too): batches are
    # staged in file order, one at a time while the next is checked.
    pending: deque[Future[None]] = deque()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="truagents-stage") as stager:
        try:
            for columns in columnar.read_batches(local, shape, source.max_field_size):
                staged, rejected = builder.build(columns, rows + 1)
                for _number, cells, problems in rejected:
                    reject(cells, problems)
                pending.append(stager.submit(_stage, staging, source.name, file, staged))
                while len(pending) > 1:
                    pending.popleft().result()
                rows += len(columns[0]) if columns else 0
                tick(rows)
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
