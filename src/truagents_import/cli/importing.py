"""Commands about a source's files: ``import``, ``ls``, ``preview`` and ``check``."""

from __future__ import annotations

import posixpath
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import click

from truagents_import._converter import to_dict
from truagents_import._safety import quoted
from truagents_import._text import plural
from truagents_import.cli._base import (
    command,
    config_option,
    emit_json,
    exit_status,
    marks,
    rejects_option,
    source_option,
)
from truagents_import.report import ImportReport, escape_name

if TYPE_CHECKING:
    from truagents_import.check.near import NearMiss
    from truagents_import.pipeline.importer import Progress
    from truagents_import.source import DataSource, RemoteFile

__all__ = ["check", "import_", "ls", "plural", "preview", "print_report"]


def print_report(report: ImportReport) -> None:
    """The report as lines for people: each file, its counts and first problems, then the totals.

    In a dry run a file that would be imported is labelled ``would import``: nothing was written.
    """
    label = " (dry run)" if report.dry_run else ""
    click.echo(f"source {escape_name(report.source)}{label}")
    if not report.files:
        click.echo("  no files to import")
    for f in report.files:
        status = "would import" if report.dry_run and f.status == "imported" else f.status
        counts = f"rows {f.rows}, imported {f.imported}, rejected {f.rejected}, duplicates {f.duplicates}"
        click.echo(f"  {status:<10} {escape_name(f.path)}  {counts}")
        if f.reason:
            click.echo(f"             reason: {escape_name(f.reason)}")
        for w in f.warnings:
            click.echo(f"             warning: {escape_name(w)}")
        # A file-wide problem whose message is the reason was just printed: once is enough.
        problems = [p for p in f.problems if p.row or p.column or p.message != f.reason]
        for p in problems[:5]:
            where = f"row {p.row}" if p.row else "file"
            column = f", {escape_name(p.column)}" if p.column else ""
            click.echo(f"             {where}{column}: {p.code}: {escape_name(p.message)}")
        if len(problems) > 5:
            click.echo(f"             ... {plural(f.rejected, 'rejected row')} in all")
        if f.rejects_file:
            click.echo(f"             rejects: {escape_name(f.rejects_file)}")
    for w in report.warnings:
        click.echo(f"  warning: {escape_name(w)}")
    t = report.totals
    click.echo(
        f"total: {plural(t.files, 'file')}, {plural(t.rows, 'row')}, {t.imported} imported, {t.rejected} rejected, "
        f"{plural(t.duplicates, 'duplicate')}"
    )


class _ProgressBar:
    """One self-rewriting line on stderr per file: bytes while downloading, then rows."""

    def __init__(self) -> None:
        self._last = 0.0
        self._width = 0

    def __call__(self, p: Progress) -> None:
        now = time.monotonic()
        if p.phase != "done" and now - self._last < 0.1:
            return
        self._last = now
        name = escape_name(p.file.rsplit("/", 1)[-1])[:40]
        if p.phase == "download":
            share = f" {100 * p.bytes_done // p.bytes_total:3d}%" if p.bytes_total else ""
            text = f"{name}: downloading {p.bytes_done / 1e6:,.1f} MB{share}"
        else:
            text = f"{name}: {p.rows:,} rows" + (" done" if p.phase == "done" else "")
        click.echo("\r" + text.ljust(self._width), nl=p.phase == "done", err=True)
        self._width = 0 if p.phase == "done" else len(text)

    def finish(self) -> None:
        """Leave the terminal on a fresh line."""
        if self._width:
            click.echo("", err=True)


@click.command("import")
@config_option
@source_option
@click.option("--file", "files", multiple=True, help="Import just this file (repeatable).")
@click.option("--dry-run", is_flag=True, help="Map, validate and count; write nothing to the sink or state.")
@rejects_option
@click.option("--force", is_flag=True, help="Import the named files again even if already imported.")
@command
def import_(
    config_path: Path | None,
    source_name: str | None,
    files: tuple[str, ...],
    dry_run: bool,
    rejects_dir: Path | None,
    force: bool,
    as_json: bool,
) -> int:
    """Import every new or changed complete file and print the report."""
    from truagents_import.config import load_config
    from truagents_import.pipeline.importer import Importer

    if force and not files:
        raise click.UsageError("--force needs the files to re-import, named with --file")
    config = load_config(config_path)
    bar = _ProgressBar() if not as_json and sys.stdout.isatty() else None
    with Importer.from_config(config, source_name, rejects_dir=rejects_dir) as importer:
        report = importer.run(files=list(files) or None, dry_run=dry_run, force=force, progress=bar)
    if bar is not None:
        bar.finish()
    if as_json:
        emit_json(report.to_dict())
    else:
        print_report(report)
    return exit_status(report)


@click.command("ls")
@config_option
@source_option
@command
def ls(config_path: Path | None, source_name: str | None, as_json: bool) -> int:
    """List the remote files with size, modification time and state."""
    from truagents_import.config import load_config
    from truagents_import.state import open_state

    config = load_config(config_path)
    source = config.source(source_name)
    state = open_state(config.state)
    try:
        files = source.list_files(state)
        misses = [] if any(f.state != "ignored" for f in files) else _near_misses(source, files)
    finally:
        state.close()
        if source.integration is not None:
            source.integration.close()
    if as_json:
        emit_json(
            {
                "source": source.name,
                "path": source.path,
                "owner": source.owner,
                "overdue": source.overdue(files),
                "files": [to_dict(f) for f in files],
                "near_misses": [{"name": m.name, "reason": m.reason} for m in misses],
            }
        )
        return 0
    if source.owner:
        click.echo(f"source {source.name}: files delivered by {escape_name(source.owner)}")
    if not any(f.state != "ignored" for f in files):
        click.echo(f"no files matching {quoted(source.pattern)} in {escape_name(source.path)}")
        for miss in misses:
            click.echo(f"near miss: {escape_name(miss.name)} ({escape_name(miss.reason)}): not imported")
    late = source.overdue(files)
    if late:
        click.echo(f"warning: {late}")
    for f in files:
        note = f"  ({f.note})" if f.note else ""
        click.echo(
            f"{f.state:<10} {f.size:>12}  {f.mtime:%Y-%m-%d %H:%M:%S %Z}  {escape_name(f.path)}{escape_name(note)}"
        )
    return 0


def _near_misses(source: DataSource, files: list[RemoteFile]) -> list[NearMiss]:
    """Files in the source's folder whose names nearly match its pattern (when none matches)."""
    from truagents_import.check.near import near_misses

    listed = {posixpath.basename(str(n)) for n in source.filesystem().ls(source.path, detail=False)}
    listed -= {f.name for f in files}
    return near_misses(sorted(n for n in listed if not source.is_sidecar(n, listed)), source.pattern)


@click.command("preview")
@click.argument("file")
@config_option
@source_option
@click.option(
    "--rows", "n_rows", type=click.IntRange(0, 1000), default=10, show_default=True, help="How many rows to show."
)
@command
def preview(config_path: Path | None, source_name: str | None, file: str, n_rows: int, as_json: bool) -> int:
    """Show a remote file's encoding, delimiter, header, mapping, first rows and sample validity."""
    from truagents_import.config import load_config
    from truagents_import.pipeline.importer import Importer

    config = load_config(config_path)
    with Importer.from_config(config, source_name) as importer:
        result = importer.preview(file, rows=n_rows)
    if as_json:
        emit_json(result.to_dict())
        return 0 if result.rejected_because is None else 1
    click.echo(f"file       {escape_name(result.path)} ({result.size} bytes)")
    if result.encoding:
        compression = f", {result.compression}" if result.compression else ""
        click.echo(f"encoding   {result.encoding}{compression}; delimiter {result.delimiter!r}")
    if result.layout:
        click.echo(f"layout     {result.layout_title} ({result.layout})")
    if result.preamble_lines:
        click.echo(f"preamble   {result.preamble_lines} lines before the header (not rows)")
    for column in result.header:
        click.echo(f"  {escape_name(column):<30} -> {result.mapping.get(column, '?')}")
    for row in result.rows:
        click.echo("  | " + " | ".join(escape_name(c) for c in row))
    click.echo(f"sample     {result.sampled} rows: {result.valid} valid, {result.rejected} rejected")
    for code, count in result.problem_codes.items():
        click.echo(f"  {code}: {count}")
    for w in result.warnings:
        click.echo(f"warning: {escape_name(w)}")
    if result.rejected_because:
        click.echo(f"the file would be rejected: {escape_name(result.rejected_because)}")
        return 1
    return 0


@click.command("check")
@config_option
@source_option
@click.option("--all", "run_all", is_flag=True, help="Run every step that can run, not only up to the first failure.")
@command
def check(config_path: Path | None, source_name: str | None, run_all: bool, as_json: bool) -> int:
    """Walk the triage ladder (config, server, folder, files, shape, sample, state, sink), stopping at
    the first failing step with the next thing to do.

    Exit status: 0 when no step failed (warnings allowed), 1 when a step failed, 2 when the
    configuration is unusable (the file, or the `config` step).
    """
    from truagents_import.check.run import run_check
    from truagents_import.config import load_config

    report = run_check(load_config(config_path), source_name, run_all=run_all)
    if as_json:
        emit_json(report.to_dict())
        return exit_status(report)
    glyphs = marks()
    click.echo(f"check of source {escape_name(report.source or '?')}")
    for step in report.steps:
        click.echo(f"  {glyphs[step.status]} {step.name:<14} {escape_name(step.detail)}")
        if step.advice and step.status in ("fail", "warn"):
            click.echo(f"    {'':<14} next: {escape_name(step.advice)}")
    warnings = sum(1 for s in report.steps if s.status == "warn")
    noted = f", {warnings} warning(s)" if warnings else ""
    if report.failed is None:
        click.echo(f"ok: no step failed{noted} ({report.elapsed:.2f} s)")
    else:
        click.echo(f"failed at {report.failed.name}{noted} ({report.elapsed:.2f} s)")
    return exit_status(report)
