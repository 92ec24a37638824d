"""Importer: runs a data source into a sink through the plugin hooks, remembering what it imported.

The run loop: list the source, pick the new and changed complete files (or the ones asked for),
and import each one (:mod:`truagents_import.pipeline.file_import`: claim, download, process,
deliver, record). The state is written after the sink's commit, so a crash at any point leaves
either nothing or a file that the next run imports again (upserts make that idempotent).

Speed: for a large file on a machine with two CPUs or more, a helper process builds most chunks
of rows while this process reads the file, runs the plugins' validators and stages
(:mod:`truagents_import.pipeline.parallel`); the outcome is the same either way.
"""

from __future__ import annotations

import logging
import sys
import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from truagents_import._log import log_file_outcome
from truagents_import._safety import quoted
from truagents_import.errors import ConfigError
from truagents_import.hookspecs import Sink
from truagents_import.pipeline.columnar_run import COLUMNAR_MIN_BYTES
from truagents_import.pipeline.feedback import write_feedback
from truagents_import.pipeline.file_import import FileImport, Progress, ProgressCallback
from truagents_import.pipeline.parallel import PARALLEL_MIN_BYTES, Worker, usable_cpus
from truagents_import.pipeline.preview import Preview, preview_file
from truagents_import.pipeline.rejects import rejects_file_name
from truagents_import.plugins import Plugins
from truagents_import.report import FileResult, ImportReport
from truagents_import.sinks.capabilities import Upserting
from truagents_import.source import DataSource, RemoteFile
from truagents_import.state import State, StateStore, open_state

if TYPE_CHECKING:
    from truagents_import.config import Config

__all__ = ["Importer", "Progress", "ProgressCallback", "rejects_file_name"]

logger = logging.getLogger(__name__)


class Importer:
    """Runs a :class:`DataSource` into a :class:`Sink` through the plugin hooks.

    :param source: the data source to import.
    :param sink: where contacts go (any object with ``write``, ``commit`` and ``close``).
    :param state: a :class:`StateStore` or a path to its SQLite file; without one, what was
        imported is remembered only for the life of this importer.
    :param plugins: plugins to register besides the built-ins and installed entry points.
    :param rejects_dir: where to write a rejects CSV for each file with rejected rows.
    :param entry_points: load plugins installed under the ``truagents_import`` entry-point group.
    :param parallel: build the rows of large files (16 MiB or more) with the help of one helper
        process when two CPUs or more are usable; ``False`` does all the work in this process
        (slower, with exactly the same outcome).
    """

    def __init__(
        self,
        source: DataSource,
        sink: Sink,
        *,
        state: State | Path | str | None = None,
        plugins: Sequence[object] = (),
        rejects_dir: Path | str | None = None,
        batch_size: int = 5000,
        entry_points: bool = True,
        plugin_set: Plugins | None = None,
        parallel: bool = True,
    ) -> None:
        self.source = source
        self.sink = sink
        self.state: State = StateStore(state or ":memory:") if state is None or isinstance(state, str | Path) else state
        self.plugins = plugin_set or Plugins.build(plugins, entry_points=entry_points)
        self.rejects_dir = None if rejects_dir is None else Path(rejects_dir)
        self.batch_size = batch_size
        self.parallel = parallel
        #: Whether the source's connection was closed when this importer was made (it closes it then).
        self._opens_connection = source.integration is not None and not source.integration.connected
        #: The helper process of the current run, if a file in it is large enough for one.
        self._worker: Worker | None = None
        #: Files at least this large (bytes) are built with the helper's help (tests lower it).
        self._parallel_min_bytes = PARALLEL_MIN_BYTES
        #: Files at least this large (bytes) take the columnar path when their shape allows (tests lower it).
        self.columnar_min_bytes = COLUMNAR_MIN_BYTES

    @classmethod
    def from_config(
        cls, config: Config, source: str | None = None, *, rejects_dir: Path | str | None = None
    ) -> Importer:
        """An importer for one source of a configuration, with its sink and state database."""
        plugins = Plugins.build()
        sink = plugins.make_sink(config.sink.type, config.sink.options)
        try:
            state = open_state(config.state)
        except BaseException:
            sink.close()  # do not leave the sink's connection or file open
            raise
        return cls(config.source(source), sink, state=state, rejects_dir=rejects_dir, plugin_set=plugins)

    def close(self) -> None:
        """Close the sink, the state database and the source's connection if this importer opened it.

        An :class:`Integration` shared by several sources (a configuration gives one to all of
        them) stays open when it was already open as this importer was made: its owner closes it.
        """
        try:
            self._stop_worker()
            self.sink.close()
        finally:
            self.state.close()
            if self.source.integration is not None and self._opens_connection:
                self.source.integration.close()

    def __enter__(self) -> Importer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def run(
        self,
        files: Sequence[RemoteFile | str] | None = None,
        *,
        dry_run: bool = False,
        force: bool = False,
        progress: ProgressCallback | None = None,
    ) -> ImportReport:
        """Import every new or changed complete file (or just ``files``) and report on each.

        ``dry_run`` maps, validates and counts without writing to the sink or the state.
        ``force`` imports the named files again even when their content was imported before.
        ``progress`` is called with a :class:`Progress` as each file downloads and its rows are read.
        """
        if not dry_run:
            self._check_merge_policy()
        if self.source.layout not in ("auto", "none"):
            self.plugins.layout(self.source.layout)  # a ConfigError naming the layouts there are
        report = ImportReport(source=self.source.name, dry_run=dry_run, started_at=datetime.now(UTC))
        listing = self.source.list_files(self.state)
        late = self.source.overdue(listing, report.started_at)
        if late is not None:
            report.warnings.append(late)
        todo = self._select(listing, files, report)
        for looked_at in report.files:  # already imported, incomplete, not found: one DEBUG record each
            log_file_outcome(logger, self.source.name, looked_at)
        if any(self._parallel_min_bytes <= f.size < self.columnar_min_bytes for f in todo):
            self._start_worker()  # now, so that it starts up while the first file downloads
        try:
            with tempfile.TemporaryDirectory(prefix="truagents-import-") as spool:
                for index, remote in enumerate(todo):
                    one = FileImport(self, remote, Path(spool), index, progress)
                    result = one.run(dry_run=dry_run, force=force)
                    if not dry_run:  # the result back to the uploader, when the source asks for it
                        write_feedback(self.source, result, started=one.started, rejects=one.rejects_path)
                    report.files.append(result)
                    log_file_outcome(logger, self.source.name, result, one.started)
                    if progress is not None:
                        progress(Progress(remote.path, "done", remote.size, remote.size, result.rows))
        finally:
            self._stop_worker()
        report.finished_at = datetime.now(UTC)
        report.warnings.extend(self.plugins.import_finished(report, self.source))
        return report

    def _select(
        self, listing: list[RemoteFile], files: Sequence[RemoteFile | str] | None, report: ImportReport
    ) -> list[RemoteFile]:
        """The files to import; the others are reported (skipped, incomplete, not found)."""
        todo: list[RemoteFile] = []
        if files is None:
            for f in listing:
                if f.state in ("new", "changed"):
                    todo.append(f)
                elif f.state == "imported":
                    report.files.append(FileResult(f.path, "skipped", reason="already imported", size=f.size))
                elif f.state == "incomplete":
                    report.files.append(FileResult(f.path, "incomplete", reason=f.note, size=f.size))
            return todo
        by_path = {f.path: f for f in listing}
        for wanted in files:
            path = wanted.path if isinstance(wanted, RemoteFile) else wanted
            if not path.startswith("/") and path not in by_path:
                path = f"{self.source.path.rstrip('/')}/{path}"
            found = by_path.get(path)
            if found is None:
                reason = f"not found in {self.source.path} (or its name does not match {quoted(self.source.pattern)})"
                report.files.append(FileResult(path, "failed", reason=reason))
            elif found.state in ("incomplete", "ignored"):
                report.files.append(FileResult(path, "incomplete", reason=found.note, size=found.size))
            else:
                todo.append(found)
        return todo

    def preview(self, file: RemoteFile | str, *, rows: int = 10, sample: int = 1000) -> Preview:
        """Encoding, delimiter, header, mapping, the first ``rows`` rows and validation counts
        on the first ``sample`` rows of one file, writing nothing anywhere."""
        return preview_file(self.source, file, plugins=self.plugins, state=self.state, rows=rows, sample=sample)

    def helper_for(self, size: int) -> Worker | None:
        """The helper process for a file of ``size`` bytes: None for small files and where there is none."""
        return self._start_worker() if size >= self._parallel_min_bytes else None

    def _start_worker(self) -> Worker | None:
        """The run's helper process, started (again, after a failure) when needed; None when there is none.

        None on one CPU, with ``parallel=False``, and where ``sys.executable`` cannot start a Python
        (an application frozen into one binary).
        """
        if self._worker is not None and not self._worker.broken:
            return self._worker
        self._stop_worker()
        if not self.parallel or usable_cpus() < 2 or not sys.executable or getattr(sys, "frozen", False):
            return None
        try:
            self._worker = Worker()
        except OSError:  # no helper: the rows are built here, as on one CPU
            return None
        return self._worker

    def _stop_worker(self) -> None:
        worker, self._worker = self._worker, None
        if worker is not None:
            worker.close()

    def _check_merge_policy(self) -> None:
        """A source's ``merge`` option needs a sink with a merge policy (an upserting one)."""
        if self.source.merge is not None and not isinstance(self.sink, Upserting):
            msg = (
                f"source {self.source.name!r} sets merge = {self.source.merge!r}, but its sink "
                f"({type(self.sink).__name__}) does not upsert and has no merge policy: remove merge from the "
                "source, or use an upserting sink (sqlite, postgres)"
            )
            raise ConfigError(msg)
