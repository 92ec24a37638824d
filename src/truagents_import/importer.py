"""Importer: runs a data source into a sink through the plugin hooks, remembering what it imported.

For each file: download once to a local spool file (hashing it on the way), skip it if that
content was imported before, read and map it, turn rows into contacts in batches, let the
validators judge each batch, stage the valid contacts by identity (the later row wins), and
only then hand them to the sink and commit. The state is written after the sink's commit, so a
crash at any point leaves either nothing or a file that the next run imports again (upserts
make that idempotent).
"""

from __future__ import annotations

import contextlib
import csv
import json
import re
import sqlite3
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import asyncssh
import attrs

from truagents_import.config import Config
from truagents_import.contact import (
    Contact,
    FieldError,
    infer_timezone,
    normalise_bool,
    normalise_email,
    normalise_phone,
    normalise_region,
    normalise_tags,
    normalise_timezone,
    prepare_phone_parsing,
    split_full_name,
)
from truagents_import.errors import ConnectError, PluginError
from truagents_import.hookspecs import Sink
from truagents_import.mapping import FULL_NAME, ColumnMapping, describe_missing_identity, resolve_mapping
from truagents_import.plugins import Plugins
from truagents_import.preview import Preview
from truagents_import.reading import FileRejected, Layout, header_drift, open_rows
from truagents_import.report import FileResult, ImportReport, Problem
from truagents_import.source import DataSource, RemoteFile
from truagents_import.state import Claim, State, StateStore

__all__ = ["Importer", "Progress", "ProgressCallback", "rejects_file_name"]

_CONNECTION_ERRORS = (
    asyncssh.SFTPNoConnection,
    asyncssh.SFTPConnectionLost,
    asyncssh.ConnectionLost,
    asyncssh.ChannelOpenError,
    asyncssh.DisconnectError,
    ConnectionError,
    BrokenPipeError,
    TimeoutError,
)


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


def rejects_file_name(remote_path: str) -> str:
    """A safe local name for a file's rejects: the remote name can never pick the folder."""
    base = remote_path.rsplit("/", 1)[-1]
    for suffix in (".gz", ".csv", ".txt", ".tsv"):
        if base.lower().endswith(suffix):
            base = base[: -len(suffix)]
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", base).lstrip(".") or "file"
    return safe[:150] + ".rejects.csv"


class _RowBuilder:
    """Turns one raw row into a contact, or into the problems that reject it (SPEC 3).

    Cells are stripped; an empty cell is an absent value. A value its normaliser refuses
    rejects the row (``invalid_<field>``, one problem per bad cell), or, with
    ``on_invalid = "drop_field"``, is dropped as if the cell were empty; a row left with no
    identity because its identity values were dropped is rejected with ``missing_identity``.
    Rows with no identity at all are left to the built-in ``validate_contacts`` plugin.
    """

    def __init__(self, source: DataSource, header: list[str], mapping: ColumnMapping, file: str) -> None:
        self.source = source
        self.header = header
        self.width = len(header)
        self.fields = mapping.fields
        self.attributes = mapping.attributes
        self.file = file
        self.drop_invalid = source.on_invalid == "drop_field"
        self.region = source.default_region
        if self.region:
            with contextlib.suppress(ValueError):  # an unknown region: normalise_phone says so per row
                self.region = normalise_region(self.region)
        self.default_timezone = source.default_timezone
        if self.default_timezone:
            with contextlib.suppress(FieldError):  # "europe/paris" -> "Europe/Paris", as the config does
                self.default_timezone = normalise_timezone(self.default_timezone)
        if "phone" in self.fields:
            prepare_phone_parsing()
        #: Invalid values dropped from rows that were kept (``on_invalid = "drop_field"``).
        self.dropped = 0

    def _cell(self, row: list[str], field: str) -> str:
        index = self.fields.get(field)
        return "" if index is None else row[index].strip()

    def _normalise(
        self, row: list[str], number: int, field: str, func: Callable[..., Any], *args: Any, bad: list[Problem]
    ) -> Any:
        raw = self._cell(row, field)
        if not raw:
            return None
        try:
            return func(raw, *args)
        except FieldError as exc:
            column = self.header[self.fields[field]]
            bad.append(Problem(code=exc.code, message=exc.message, column=column, row=number, value=raw))
            return None

    def build(self, row: list[str], number: int) -> tuple[Contact | None, list[Problem]]:
        """The contact of data row ``number`` (counted from 1), or ``None`` and why not."""
        if len(row) != self.width:
            message = f"{len(row)} fields where the header has {self.width}"
            return None, [Problem(code="ragged_row", message=message, row=number)]
        bad: list[Problem] = []
        external_id = self._cell(row, "external_id") or None
        email = self._normalise(row, number, "email", normalise_email, bad=bad)
        phone = self._normalise(row, number, "phone", normalise_phone, self.region, bad=bad)
        if FULL_NAME in self.fields:
            first, last = split_full_name(self._cell(row, FULL_NAME))
        else:
            first, last = self._cell(row, "first_name") or None, self._cell(row, "last_name") or None
        timezone = self._normalise(row, number, "timezone", normalise_timezone, bad=bad)
        if timezone is None:  # empty, or dropped as invalid: the source's default applies
            if self.source.infer_timezone and phone:
                timezone = infer_timezone(phone)
            if timezone is None:
                timezone = self.default_timezone
        unsubscribed = self._normalise(row, number, "unsubscribed", normalise_bool, bad=bad)
        if bad:
            if not self.drop_invalid:
                return None, bad
            if external_id is None and email is None and phone is None:
                lost = [p for p in bad if p.code in ("invalid_email", "invalid_phone")]
                if lost:
                    what = " and ".join(f"{p.column!r} ({p.message})" for p in lost)
                    message = f"no identity left: {what} dropped as invalid (on_invalid = drop_field)"
                    first_lost = lost[0]
                    problem = Problem(
                        code="missing_identity",
                        message=message,
                        column=first_lost.column,
                        row=number,
                        value=first_lost.value,
                    )
                    return None, [problem]
            self.dropped += len(bad)
        contact = Contact(
            external_id=external_id,
            email=email,
            phone=phone,
            first_name=first,
            last_name=last,
            timezone=timezone,
            tags=normalise_tags(self._cell(row, "tags")),
            unsubscribed=unsubscribed,
            attributes={name: row[index] for name, index in self.attributes},
            source=self.source.name,
            source_file=self.file,
            source_row=number,
        )
        return contact, []


class _Staging:
    """Valid contacts of one file, keyed by identity in a local SQLite file (the later row wins)."""

    def __init__(self, path: Path) -> None:
        self._db = sqlite3.connect(path, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=OFF")
        self._db.execute("PRAGMA synchronous=OFF")
        self._db.execute("CREATE TABLE staged (identity TEXT PRIMARY KEY, row INTEGER NOT NULL, payload TEXT)")
        self._db.execute("BEGIN")
        self.added = 0

    def add(self, contacts: Sequence[Contact]) -> None:
        self._db.executemany(
            "INSERT INTO staged VALUES (?, ?, ?) ON CONFLICT (identity) DO UPDATE SET "
            "row = excluded.row, payload = excluded.payload",
            [(c.identity, c.source_row, _dump(c)) for c in contacts],
        )
        self.added += len(contacts)

    def count(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM staged").fetchone()[0])

    def contacts(self, batch_size: int) -> Iterator[list[Contact]]:
        cur = self._db.execute("SELECT payload FROM staged ORDER BY row")
        while rows := cur.fetchmany(batch_size):
            yield [_load(r[0]) for r in rows]

    def close(self) -> None:
        self._db.close()


def _dump(c: Contact) -> str:
    return json.dumps(
        [
            c.external_id,
            c.email,
            c.phone,
            c.first_name,
            c.last_name,
            c.timezone,
            c.tags,
            c.unsubscribed,
            c.attributes,
            c.source,
            c.source_file,
            c.source_row,
        ],
        ensure_ascii=False,
    )


def _load(payload: str) -> Contact:
    v = json.loads(payload)
    return Contact(
        external_id=v[0],
        email=v[1],
        phone=v[2],
        first_name=v[3],
        last_name=v[4],
        timezone=v[5],
        tags=tuple(v[6]),
        unsubscribed=v[7],
        attributes=v[8],
        source=v[9],
        source_file=v[10],
        source_row=v[11],
    )


class _Rejects:
    """The rejects CSV of one file: original columns plus ``_row, _code, _column, _message``."""

    def __init__(self, path: Path, header: list[str]) -> None:
        self.path = path
        self._file = path.open("w", encoding="utf-8", newline="")
        self._writer = csv.writer(self._file)
        self._writer.writerow([_neutralise(h) for h in header] + ["_row", "_code", "_column", "_message"])
        self.count = 0

    def add(self, row: list[str], problem: Problem) -> None:
        self._writer.writerow(
            [_neutralise(v) for v in row]
            + [
                str(problem.row or ""),
                problem.code,
                _neutralise(problem.column or ""),
                _neutralise(problem.message),
            ]
        )
        self.count += 1

    def close(self) -> None:
        self._file.close()


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _neutralise(value: str) -> str:
    """Cells a spreadsheet would execute get a leading apostrophe (SPEC 8)."""
    return "'" + value if value.startswith(_FORMULA_START) else value


class Importer:
    """Runs a :class:`DataSource` into a :class:`Sink` through the plugin hooks.

    :param source: the data source to import.
    :param sink: where contacts go (any object with ``write``, ``commit`` and ``close``).
    :param state: a :class:`StateStore` or a path to its SQLite file; without one, what was
        imported is remembered only for the life of this importer.
    :param plugins: plugins to register besides the built-ins and installed entry points.
    :param rejects_dir: where to write a rejects CSV for each file with rejected rows.
    :param entry_points: load plugins installed under the ``truagents_import`` entry-point group.
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
    ) -> None:
        self.source = source
        self.sink = sink
        self.state: State = StateStore(state or ":memory:") if state is None or isinstance(state, str | Path) else state
        self.plugins = plugin_set or Plugins.build(plugins, entry_points=entry_points)
        self.rejects_dir = None if rejects_dir is None else Path(rejects_dir)
        self.batch_size = batch_size
        self._progress: ProgressCallback | None = None

    @classmethod
    def from_config(
        cls, config: Config, source: str | None = None, *, rejects_dir: Path | str | None = None
    ) -> Importer:
        """An importer for one source of a configuration, with its sink and state database."""
        plugins = Plugins.build()
        sink = plugins.make_sink(config.sink.type, config.sink.options)
        state: State
        try:
            if config.state.url:
                from truagents_import.state_postgres import PostgresStateStore

                state = PostgresStateStore(config.state.url)
            else:
                state = StateStore(config.state.path)
        except BaseException:
            sink.close()  # do not leave the sink's connection or file open
            raise
        return cls(
            config.source(source),
            sink,
            state=state,
            rejects_dir=rejects_dir,
            plugin_set=plugins,
        )

    def close(self) -> None:
        """Close the sink, the state database and the source's connection."""
        try:
            self.sink.close()
        finally:
            self.state.close()
            if self.source.integration is not None:
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
        self._progress = progress
        report = ImportReport(source=self.source.name, dry_run=dry_run, started_at=datetime.now(UTC))
        listing = self.source.list_files(self.state)
        late = self.source.overdue(listing, report.started_at)
        if late is not None:
            report.warnings.append(late)
        todo: list[RemoteFile] = []
        if files is None:
            for f in listing:
                if f.state in ("new", "changed"):
                    todo.append(f)
                elif f.state == "imported":
                    report.files.append(FileResult(f.path, "skipped", reason="already imported", size=f.size))
                elif f.state == "incomplete":
                    report.files.append(FileResult(f.path, "incomplete", reason=f.note, size=f.size))
        else:
            by_path = {f.path: f for f in listing}
            for wanted in files:
                path = wanted.path if isinstance(wanted, RemoteFile) else wanted
                if not path.startswith("/") and path not in by_path:
                    path = f"{self.source.path.rstrip('/')}/{path}"
                found = by_path.get(path)
                if found is None:
                    reason = f"not found in {self.source.path} (or its name does not match {self.source.pattern!r})"
                    report.files.append(FileResult(path, "failed", reason=reason))
                elif found.state in ("incomplete", "ignored"):
                    report.files.append(FileResult(path, "incomplete", reason=found.note, size=found.size))
                else:
                    todo.append(found)
        with tempfile.TemporaryDirectory(prefix="truagents-import-") as spool:
            for index, remote in enumerate(todo):
                result = self._import_file(remote, Path(spool), index, dry_run=dry_run, force=force)
                report.files.append(result)
                if progress is not None:
                    progress(Progress(remote.path, "done", remote.size, remote.size, result.rows))
        report.finished_at = datetime.now(UTC)
        report.warnings.extend(self.plugins.import_finished(report, self.source))
        return report

    def preview(self, file: RemoteFile | str, *, rows: int = 10, sample: int = 1000) -> Preview:
        """Encoding, delimiter, header, mapping, the first ``rows`` rows and validation counts
        on the first ``sample`` rows of one file, writing nothing anywhere."""
        path = file.path if isinstance(file, RemoteFile) else file
        if not path.startswith("/") and not Path(path).is_absolute():
            path = f"{self.source.path.rstrip('/')}/{path}"
        listing = {f.path: f for f in self.source.list_files(self.state)}
        remote = listing.get(path) or RemoteFile(path, 0, datetime.now(UTC))
        out = Preview(path=path, size=remote.size if path in listing else None)
        with tempfile.TemporaryDirectory(prefix="truagents-preview-") as spool:
            local = Path(spool) / "0.data"
            self._download(remote, local)
            try:
                with open_rows(
                    local,
                    encoding=self.source.encoding,
                    delimiter=self.source.delimiter,
                    max_field_size=self.source.max_field_size,
                    max_decompressed_size=self.source.max_decompressed_size,
                ) as (layout, it):
                    out.compression, out.encoding, out.delimiter = layout.compression, layout.encoding, layout.delimiter
                    out.header = layout.header
                    drift = header_drift(self.state.last_header(self.source.name), layout.header)
                    if drift is not None:
                        out.drift = {k: list(v) for k, v in attrs.asdict(drift).items()}
                        out.warnings.append(drift.describe())
                    mapping = self._mapping(layout, path)
                    out.mapping = dict(mapping.by_column)
                    out.warnings.extend(mapping.warnings)
                    builder = _RowBuilder(self.source, layout.header, mapping, path)
                    codes: Counter[str] = Counter()
                    batch: list[Contact] = []
                    for number, row in enumerate(it, start=1):
                        if number > sample:
                            break
                        out.sampled += 1
                        if row is not None and len(out.rows) < rows:
                            out.rows.append(row)
                        if row is None:
                            codes["field_too_large"] += 1
                            continue
                        contact, problems = builder.build(row, number)
                        if contact is None:
                            codes[problems[0].code] += 1
                        else:
                            batch.append(contact)
                    bad = self.plugins.validate_contacts(batch, self.source, path)
                    for problem in dict(bad).values():
                        codes[problem.code] += 1
                    out.rejected = sum(codes.values())
                    out.valid = out.sampled - out.rejected
                    out.count(codes)
            except FileRejected as exc:
                out.rejected_because = exc.message
            except PluginError as exc:
                out.rejected_because = str(exc)
        return out

    def _download(self, remote: RemoteFile, dest: Path) -> str:
        report = self._progress
        tick = None if report is None else lambda n: report(Progress(remote.path, "download", n, remote.size))
        try:
            return self.source.download(remote, dest, tick)
        except _CONNECTION_ERRORS:
            if self.source.integration is None:
                raise
            self.source.integration.reconnect()
            return self.source.download(remote, dest, tick)

    def _import_file(self, remote: RemoteFile, spool: Path, index: int, *, dry_run: bool, force: bool) -> FileResult:
        started = datetime.now(UTC)
        result = FileResult(remote.path, "imported", size=remote.size)
        local = spool / f"{index}.data"
        try:
            result.sha256 = self._download(remote, local)
        except (OSError, asyncssh.Error, ConnectError) as exc:
            result.status, result.reason = "failed", f"download failed: {exc}"
            return result
        claim: Claim | None = None
        if dry_run:
            earlier = None if force else self.state.imported_sha(self.source.name, result.sha256)
            if earlier is not None:
                result.status = "skipped"
                result.reason = (
                    "already imported" if earlier == remote.path else f"same content already imported as {earlier}"
                )
                return result
        else:
            taken = self.state.claim(self.source.name, result.sha256, remote.path, force=force)
            if isinstance(taken, str):
                result.status, result.reason = "skipped", taken
                if not taken.startswith("being imported"):
                    self.state.record(self.source.name, result, mtime=remote.mtime, header=None, started_at=started)
                return result
            claim = taken
        try:
            return self._process(remote, result, local, spool, index, started, dry_run=dry_run)
        finally:
            if claim is not None:
                self.state.release(claim)

    def _process(
        self,
        remote: RemoteFile,
        result: FileResult,
        local: Path,
        spool: Path,
        index: int,
        started: datetime,
        *,
        dry_run: bool,
    ) -> FileResult:
        header: list[str] | None = None
        staging = _Staging(spool / f"{index}.staging")
        rejects: _Rejects | None = None
        try:
            with open_rows(
                local,
                encoding=self.source.encoding,
                delimiter=self.source.delimiter,
                max_field_size=self.source.max_field_size,
                max_decompressed_size=self.source.max_decompressed_size,
            ) as (layout, rows):
                header = layout.header
                try:
                    drift = header_drift(self.state.last_header(self.source.name), header)
                    if drift is not None:
                        result.drift = {k: list(v) for k, v in attrs.asdict(drift).items()}
                        if self.source.on_drift == "reject":
                            raise FileRejected("schema_drift", drift.describe() + "; on_drift = 'reject'")
                        result.warnings.append(drift.describe())
                    mapping = self._mapping(layout, remote.path)
                except FileRejected:
                    # The whole file is rejected for its header: still account for every row.
                    with contextlib.suppress(FileRejected):
                        result.rows = sum(1 for _ in rows)
                    raise
                result.warnings.extend(mapping.warnings)
                result.mapping = dict(mapping.by_column)
                if self.rejects_dir is not None:
                    rejects = _Rejects(spool / f"{index}.rejects.csv", header)
                self._stage(rows, layout, mapping, remote.path, result, staging, rejects)
            result.imported = staging.count()
            result.duplicates = staging.added - result.imported
            if result.rows == 0:
                result.warnings.append("the file has a header but no data rows")
            if not dry_run:
                self._deliver(staging, remote.path)
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
        if rejects is not None and rejects.count and self.rejects_dir is not None:
            self.rejects_dir.mkdir(parents=True, exist_ok=True)
            target = _unique(self.rejects_dir / rejects_file_name(remote.path))
            rejects.path.replace(target)
            result.rejects_file = str(target)
        if not dry_run:
            if result.status == "imported":
                self._after_import(remote, result)
            self.state.record(self.source.name, result, mtime=remote.mtime, header=header, started_at=started)
        return result

    def _mapping(self, layout: Layout, file: str) -> ColumnMapping:
        header = layout.header
        blank = [i + 1 for i, h in enumerate(header) if not h]
        if blank:
            raise FileRejected("blank_header", f"header column(s) {blank} have no name; every column needs one")
        seen: dict[str, int] = {}
        for h in header:
            seen[h] = seen.get(h, 0) + 1
        dupes = sorted(h for h, n in seen.items() if n > 1)
        if dupes:
            raise FileRejected("duplicate_header", f"header names appear more than once: {', '.join(dupes)}")
        mapping = resolve_mapping(header, self.plugins.map_columns(header, self.source, file), self.source.mapping)
        if not mapping.has_identity:
            raise FileRejected("no_identity_column", describe_missing_identity(header, mapping))
        return mapping

    def _stage(
        self,
        rows: Iterator[list[str] | None],
        layout: Layout,
        mapping: ColumnMapping,
        file: str,
        result: FileResult,
        staging: _Staging,
        rejects: _Rejects | None,
    ) -> None:
        builder = _RowBuilder(self.source, layout.header, mapping, file)
        batch: list[Contact] = []
        raw_batch: list[list[str]] = []

        def reject(row: list[str], problems: list[Problem]) -> None:
            result.rejected += 1
            for p in problems:
                result.add_problem(p)
            if rejects is not None:
                rejects.add(row, problems[0])

        def flush() -> None:
            verdicts = self.plugins.validate_contacts(batch, self.source, file)
            bad: dict[int, list[Problem]] = {}
            for i, found in verdicts:
                problem = found if found.row is not None else attrs.evolve(found, row=batch[i].source_row)
                bad.setdefault(i, []).append(problem)
            staging.add([c for i, c in enumerate(batch) if i not in bad])
            for i in sorted(bad):
                reject(raw_batch[i], bad[i])
            batch.clear()
            raw_batch.clear()
            if self._progress is not None:
                self._progress(Progress(file, "rows", rows=result.rows))

        for number, row in enumerate(rows, start=1):
            result.rows += 1
            if row is None:
                limit = self.source.max_field_size
                problem = Problem(code="field_too_large", message=f"a field is larger than {limit} bytes", row=number)
                reject([], [problem])
                continue
            contact, problems = builder.build(row, number)
            if contact is None:
                reject(row, problems)
                continue
            batch.append(contact)
            raw_batch.append(row)
            if len(batch) >= self.batch_size:
                flush()
        if batch:
            flush()
        if builder.dropped:
            result.warnings.append(f"{builder.dropped} invalid values dropped (on_invalid = drop_field)")

    def _deliver(self, staging: _Staging, file: str) -> None:
        method = "write"
        try:
            for contacts in staging.contacts(self.batch_size):
                self.sink.write(contacts)
            method = "commit"
            self.sink.commit()
        except Exception as exc:
            rollback = getattr(self.sink, "rollback", None)
            if callable(rollback):
                # The sink is already failing: report the first error, not the rollback's.
                with contextlib.suppress(Exception):
                    rollback()
            raise self.plugins.sink_failure(self.sink, method, file, exc) from exc

    def _after_import(self, remote: RemoteFile, result: FileResult) -> None:
        action = self.source.after_import
        try:
            if action == "delete":
                self.source.remove(remote.path)
            elif action.startswith("move:"):
                self.source.move(remote.path, action.removeprefix("move:"))
        except (OSError, asyncssh.Error, ConnectError) as exc:
            result.warnings.append(f"imported, but after_import {action!r} failed: {exc}")


def _unique(path: Path) -> Path:
    candidate, n = path, 1
    while candidate.exists():
        n += 1
        candidate = path.with_name(f"{path.name.removesuffix('.rejects.csv')}.{n}.rejects.csv")
    return candidate
