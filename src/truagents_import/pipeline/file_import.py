"""One file's import: claim its content, download it, run its rows, deliver the survivors, record.

Each step leaves nothing half-done: contacts reach the sink only after the whole file was read
and judged, in one transaction committed before the state records the file; a failure before
the commit rolls the sink back (when it can, :class:`~truagents_import.sinks.Rollback`).
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Literal, cast

import asyncssh
import attrs

from truagents_import._converter import to_dict
from truagents_import._local import is_disk_full, spool_full
from truagents_import.errors import ConnectError, LocalResourceError, PluginError
from truagents_import.fields.mapping import ColumnMapping
from truagents_import.manifest import Manifest, check_content, check_rows
from truagents_import.pipeline.columnar_run import stage_columns
from truagents_import.pipeline.fetch import download, open_local_rows
from truagents_import.pipeline.header import header_finder
from truagents_import.pipeline.parallel import fewer_collections
from truagents_import.pipeline.process import AcceptedBatch, RejectCallback, RowPipeline, checked_mapping
from truagents_import.pipeline.rejects import Rejects, rejects_file_name, unique_rejects_path
from truagents_import.pipeline.staging import Staging
from truagents_import.reading import FileRejected, Shape, header_drift
from truagents_import.report import FileResult, Problem
from truagents_import.sinks.capabilities import BulkLoad, FileLedger, Rollback, Upserting
from truagents_import.state import Claim, ClaimRefused

if TYPE_CHECKING:
    from truagents_import.pipeline.importer import Importer
    from truagents_import.sinks._merge import MergePolicy
    from truagents_import.source import RemoteFile

__all__ = ["FileImport", "Progress", "ProgressCallback"]


@attrs.frozen
class Progress:
    """Where a run is, for progress bars: the file, its bytes downloaded and rows read so far."""

    file: str
    phase: Literal["download", "rows", "done"]
    bytes_done: int = 0
    bytes_total: int = 0
    rows: int = 0


#: A progress callback: called often, it must return quickly.
ProgressCallback = Callable[[Progress], None]


class FileImport:
    """The import of one remote file by an :class:`~truagents_import.Importer` (its source, sink,
    state, plugins and helper process), in the run's spool folder."""

    def __init__(
        self, importer: Importer, remote: RemoteFile, spool: Path, index: int, progress: ProgressCallback | None
    ) -> None:
        self.importer = importer
        self.source = importer.source
        self.remote = remote
        self.spool = spool
        self.index = index
        self.progress = progress
        self.started = datetime.now(UTC)
        self.result = FileResult(remote.path, "imported", size=remote.size)
        #: The local CSV of the file's rejected rows, once kept (``--rejects`` or feedback).
        self.rejects_path: Path | None = None

    def run(self, *, dry_run: bool, force: bool) -> FileResult:
        """Import the file (``dry_run``: everything but the sink and the state) and say how it went.

        A full spool folder, or a lock held past its timeout, fails this file only (its spool
        files are removed, so that the next file has the room).
        """
        try:
            return self._run(dry_run=dry_run, force=force)
        except (OSError, sqlite3.Error) as exc:
            if not is_disk_full(exc):
                raise
            return self._failed(spool_full(self.spool, exc))
        except LocalResourceError as exc:
            return self._failed(exc)
        finally:
            for leftover in (f"{self.index}.data", f"{self.index}.staging"):
                (self.spool / leftover).unlink(missing_ok=True)

    def _failed(self, exc: LocalResourceError) -> FileResult:
        result = self.result
        result.status, result.reason = "failed", f"not imported: {exc.message}"
        result.imported = result.duplicates = 0
        result.rejected = result.rows
        return result

    def _run(self, *, dry_run: bool, force: bool) -> FileResult:
        result, state, name = self.result, self.importer.state, self.source.name
        local = self.spool / f"{self.index}.data"
        try:
            result.sha256 = self._download(local)
        except (OSError, asyncssh.Error, ConnectError) as exc:
            return self._download_failed(exc)
        try:
            manifest = self._fetch_manifest()
        except (OSError, asyncssh.Error, ConnectError) as exc:
            result.status, result.reason = "failed", f"its manifest could not be read: {exc}"
            return result
        claim: Claim | None = None
        if dry_run:
            earlier = None if force else state.imported_sha(name, result.sha256)
            if earlier is not None:
                result.status = "skipped"
                same = earlier == self.remote.path
                result.reason = "already imported" if same else f"same content already imported as {earlier}"
                return result
        else:
            taken = state.claim(name, result.sha256, self.remote.path, force=force)
            if isinstance(taken, ClaimRefused):
                result.status, result.reason = "skipped", taken.message
                if taken.to_record:
                    state.record(name, result, mtime=self.remote.mtime, header=None, started_at=self.started)
                return result
            claim = taken
        try:
            with fewer_collections():
                return self._process(local, dry_run=dry_run, manifest=manifest)
        finally:
            if claim is not None:
                state.release(claim)

    def _download(self, local: Path) -> str:
        report, remote = self.progress, self.remote
        tick = None if report is None else lambda n: report(Progress(remote.path, "download", n, remote.size))
        return download(self.source, remote, local, tick)

    def _download_failed(self, exc: BaseException) -> FileResult:
        """A full spool fails the file; a file another importer took away meanwhile is skipped."""
        if is_disk_full(exc):
            raise exc
        result = self.result
        if isinstance(exc, FileNotFoundError) and self._taken_by_another():
            result.status = "skipped"
            result.reason = "already imported by another importer (it moved the file away after this run listed it)"
        else:
            result.status, result.reason = "failed", f"download failed: {exc}"
        return result

    def _taken_by_another(self) -> bool:
        """Whether the state, or the archive folder of ``after_import = "move:..."``, holds the vanished file."""
        remote, state = self.remote, self.importer.state
        with contextlib.suppress(LocalResourceError):
            if state.file_state(self.source.name, remote.path, remote.size, remote.mtime) == "imported":
                return True
        archive = self.source.archive_folder()
        if archive is None:
            return False
        with contextlib.suppress(Exception):
            return bool(self.source.filesystem().info(f"{archive}/{remote.name}")["size"] == remote.size)
        return False

    def _process(self, local: Path, *, dry_run: bool, manifest: Manifest | FileRejected | None = None) -> FileResult:
        result, importer = self.result, self.importer
        header: list[str] | None = None
        # A sink that takes the staging file in one step gets it, when this run delivers at all.
        sink = importer.sink
        bulk = not dry_run and isinstance(sink, BulkLoad) and sink.takes_staging()
        staging = Staging(self.spool / f"{self.index}.staging", sql_rows=bulk)
        rejects: Rejects | None = None
        try:
            self._check_manifest(manifest, local)
            with open_local_rows(self.source, local, header_finder(self.importer.plugins, self.source)) as (
                layout,
                rows,
            ):
                header = layout.header
                result.preamble_lines = layout.preamble_lines
                mapping = self._mapping(layout, rows)
                if importer.rejects_dir is not None or self.source.feedback is not None:
                    rejects = Rejects(self.spool / f"{self.index}.rejects.csv", header)
                self._stage(local, rows, layout, mapping, staging, rejects)
            if isinstance(manifest, Manifest):
                check_rows(manifest, result.rows)  # before the sink sees any of it
            result.imported = staging.count()
            result.duplicates = staging.added - result.imported
            if result.rows == 0:
                result.warnings.append("the file has a header but no data rows")
            if not dry_run:
                self._deliver(staging)
        except FileRejected as exc:
            result.status, result.reason = "rejected", exc.message
            result.problems.insert(0, Problem(code=exc.code, message=exc.message))
            result.imported = result.duplicates = 0
            result.rejected = result.rows
        except PluginError as exc:
            result.status, result.reason = "failed", str(exc)
            result.imported = result.duplicates = 0
            result.rejected = result.rows
        finally:
            staging.close()
            if rejects is not None:
                rejects.close()
        assert result.rows == result.imported + result.rejected + result.duplicates
        self._keep_rejects(rejects)
        if not dry_run:
            if result.status == "imported":
                self._after_import()
            self._record(header)
        return result

    def _record(self, header: list[str] | None) -> None:
        """Record the file's outcome; a locked or full state database fails an imported file, saying so."""
        result = self.result
        try:
            self.importer.state.record(
                self.source.name, result, mtime=self.remote.mtime, header=header, started_at=self.started
            )
        except LocalResourceError as exc:
            if result.status == "imported":
                result.status = "failed"
                result.reason = f"its contacts reached the sink, but the import could not be recorded: {exc.message}"
            else:
                result.warnings.append(f"this outcome could not be recorded: {exc.message}")

    def _fetch_manifest(self) -> Manifest | FileRejected | None:
        """The file's manifest (SPEC 10), or why it cannot be used (raised under the file's claim)."""
        try:
            return self.source.read_manifest(self.remote)
        except FileRejected as exc:
            return exc

    def _check_manifest(self, manifest: Manifest | FileRejected | None, local: Path) -> None:
        """Reject the file unless its manifest is usable and its ``bytes`` and ``sha256`` agree: before any row."""
        if isinstance(manifest, FileRejected):
            raise manifest
        if manifest is not None:
            check_content(manifest, local.stat().st_size, self.result.sha256 or "")

    def _mapping(self, layout: Shape, rows: Iterator[list[str] | None]) -> ColumnMapping:
        """The file's mapping after the drift check; a file rejected for its header still counts its rows."""
        result = self.result
        try:
            drift = header_drift(self.importer.state.last_header(self.source.name), layout.header)
            if drift is not None:
                result.drift = to_dict(drift)
                if self.source.on_drift == "reject":
                    raise FileRejected("schema_drift", drift.describe() + "; on_drift = 'reject'")
                result.warnings.append(drift.describe())
            mapping = checked_mapping(layout.header, self.importer.plugins, self.source, self.remote.path)
        except FileRejected:
            # The whole file is rejected for its header: still account for every row.
            with contextlib.suppress(FileRejected):
                result.rows = sum(1 for _ in rows)
            raise
        result.warnings.extend(mapping.warnings)
        result.mapping = dict(mapping.by_column)
        result.layout = None if mapping.layout is None else mapping.layout.name
        return mapping

    def _stage(
        self,
        local: Path,
        rows: Iterator[list[str] | None],
        layout: Shape,
        mapping: ColumnMapping,
        staging: Staging,
        rejects: Rejects | None,
    ) -> None:
        """Run every row through the columnar path when the file allows it, else the row pipeline; stage
        the accepted contacts, record the rejected rows."""
        result, file = self.result, self.remote.path

        def reject(row: list[str] | None, problems: list[Problem]) -> None:
            result.rejected += 1
            for p in problems:
                result.add_problem(p)
            if rejects is not None:
                rejects.add(row or [], problems[0])

        dropped = None
        if local.stat().st_size >= self.importer.columnar_min_bytes:
            dropped = stage_columns(
                self.source, file, local, layout, mapping, staging, self.importer.plugins, reject, self._tick,
                batch_size=self.importer.batch_size,
            )  # fmt: skip
            if dropped is None:  # not for the columnar path after all: nothing it staged or rejected counts
                staging.clear()
                if rejects is not None:
                    rejects.clear()
                result.rows = result.rejected = 0
                result.problems.clear()
        if dropped is None:
            dropped = self._stage_rows(rows, layout, mapping, staging, reject)
        if dropped:
            result.warnings.append(f"{dropped} invalid values dropped (on_invalid = drop_field)")

    def _stage_rows(
        self,
        rows: Iterator[list[str] | None],
        layout: Shape,
        mapping: ColumnMapping,
        staging: Staging,
        reject: RejectCallback,
    ) -> int:
        """The row pipeline over every row; how many invalid values it dropped."""
        file = self.remote.path
        pipeline = RowPipeline(
            self.source,
            layout.header,
            mapping,
            plugins=self.importer.plugins,
            file=file,
            on_reject=reject,
            batch_size=self.importer.batch_size,
            sql_rows=staging.sql_rows,
            helper=self.importer.helper_for(self.remote.size),
            contacts=False,  # staging needs identities and payloads; plugins get contacts regardless
        )
        try:
            for batch in pipeline.batches(rows):
                staging.add(self.source.name, file, _staged_rows(batch))
                self._tick(batch.rows)
        finally:
            self.result.rows = pipeline.rows
        return pipeline.dropped

    def _tick(self, rows: int) -> None:
        self.result.rows = rows
        if self.progress is not None:
            self.progress(Progress(self.remote.path, "rows", rows=rows))

    def _deliver(self, staging: Staging) -> None:
        """Hand the staged contacts to the sink and commit; on failure roll the sink back and blame it."""
        sink, file = self.importer.sink, self.remote.path
        policy = cast("MergePolicy | None", self.source.merge)  # checked when the source was made
        if self._in_sink_already(sink):
            return
        # Sealed before the sink is involved: a spool too full to take the staging's last pages is not the sink's.
        sealed = staging.seal() if staging.sql_rows and isinstance(sink, BulkLoad) else None
        method = "write"
        try:
            if sealed is not None and isinstance(sink, BulkLoad):
                # The sink copies the staged file itself: the same rows, in the same order, through
                # the same upsert, without a Contact per row.
                sink.load_staging(sealed, self.source.name, file, policy)
            else:
                for contacts in staging.contacts(self.importer.batch_size):
                    if policy is not None and isinstance(sink, Upserting):
                        sink.write_merged(contacts, policy)
                    else:
                        sink.write(contacts)
            method = "commit"
            sink.commit()
        except Exception as exc:
            if isinstance(sink, Rollback):
                # The sink is already failing: report the first error, not the rollback's.
                with contextlib.suppress(Exception):
                    sink.rollback()
            if isinstance(exc, LocalResourceError):  # a full disk or a lock: not the sink's fault
                raise
            raise self.importer.plugins.sink_failure(sink, method, file, exc) from exc

    def _in_sink_already(self, sink: object) -> bool:
        """Whether a :class:`FileLedger` sink holds this content's commit from a run that stopped before the
        state recorded it (then it is not written twice); else name the file its next commit belongs to."""
        if not isinstance(sink, FileLedger):
            return False
        name, sha256 = self.source.name, self.result.sha256 or ""
        if sink.holds(name, sha256) and self.importer.state.imported_sha(name, sha256) is None:
            self.result.warnings.append(
                "its contacts were already in the sink, committed by a run that stopped before recording the "
                "file: not written again"
            )
            return True
        sink.begin_file(name, sha256, self.remote.path)
        return False

    def _keep_rejects(self, rejects: Rejects | None) -> None:
        rejects_dir = self.importer.rejects_dir
        if rejects is not None and rejects.count:
            self.rejects_path = rejects.path
        if rejects is not None and rejects.count and rejects_dir is not None:
            rejects_dir.mkdir(parents=True, exist_ok=True)
            target = unique_rejects_path(rejects_dir / rejects_file_name(self.remote.path))
            rejects.path.replace(target)
            self.result.rejects_file = str(target)
            self.rejects_path = target

    def _after_import(self) -> None:
        action = self.source.after_import
        try:
            if action == "delete":
                self.source.remove(self.remote.path)
            elif action.startswith("move:"):
                target = self.source.move(self.remote.path, action.removeprefix("move:"), sha256=self.result.sha256)
                if target.rsplit("/", 1)[-1] != self.remote.name:
                    self.result.warnings.append(
                        f"moved to {target}: the folder already holds an earlier delivery named {self.remote.name}"
                    )
        except (OSError, asyncssh.Error, ConnectError) as exc:
            self.result.warnings.append(f"imported, but after_import {action!r} failed: {exc}")


def _staged_rows(batch: AcceptedBatch) -> list[tuple[object, ...]]:
    """``(row number, identity, *payload)`` for each accepted contact, as :meth:`Staging.add` takes them."""
    return [(n, identity, *p) for n, identity, p in zip(batch.numbers, batch.identities(), batch.payloads, strict=True)]
