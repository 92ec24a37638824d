"""The ``truagents-import`` command line: parsing and printing only; the library does the work.

Every command takes ``--json`` and then prints one JSON document on stdout and nothing else.
Exit status: 0 done; 1 done but a file was rejected or failed; 2 usage or configuration error;
3 could not connect, authenticate, or the host key did not match.
"""

from __future__ import annotations

import functools
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from truagents_import.errors import TruagentsImportError
from truagents_import.report import ImportReport, escape_name

if TYPE_CHECKING:
    from truagents_import.pipeline.importer import Progress

__all__ = ["main"]

F = TypeVar("F", bound=Callable[..., Any])


def _emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False))


def _command(func: F) -> F:
    """Add ``--json`` and turn library errors into their exit status and a clear message."""

    @click.option("--json", "as_json", is_flag=True, help="Print one JSON document on stdout and nothing else.")
    @functools.wraps(func)
    def wrapper(*args: Any, as_json: bool, **kwargs: Any) -> None:
        try:
            status = func(*args, as_json=as_json, **kwargs)
        except TruagentsImportError as exc:
            if as_json:
                _emit_json({"error": str(exc), "exit_status": exc.exit_status})
            click.echo(f"error: {exc}", err=True)
            sys.exit(exc.exit_status)
        sys.exit(status or 0)

    return wrapper  # type: ignore[return-value]


_config_option = click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Configuration file (default: ./truagents-import.toml).",
)
_source_option = click.option("--source", "source_name", default=None, help="Which [[sources]] entry.")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="truagents-import")
def main() -> None:
    """Import contact CSV files from SFTP drop boxes."""


def _print_report(report: ImportReport) -> None:
    label = " (dry run)" if report.dry_run else ""
    click.echo(f"source {report.source}{label}")
    if not report.files:
        click.echo("  no files to import")
    for f in report.files:
        counts = f"rows {f.rows}, imported {f.imported}, rejected {f.rejected}, duplicates {f.duplicates}"
        click.echo(f"  {f.status:<10} {escape_name(f.path)}  {counts}")
        if f.reason:
            click.echo(f"             reason: {escape_name(f.reason)}")
        for w in f.warnings:
            click.echo(f"             warning: {escape_name(w)}")
        for p in f.problems[:5]:
            where = f"row {p.row}" if p.row else "file"
            column = f", {escape_name(p.column)}" if p.column else ""
            click.echo(f"             {where}{column}: {p.code}: {escape_name(p.message)}")
        if len(f.problems) > 5:
            click.echo(f"             ... {f.rejected} rejected rows in all")
        if f.rejects_file:
            click.echo(f"             rejects: {f.rejects_file}")
    for w in report.warnings:
        click.echo(f"  warning: {escape_name(w)}")
    t = report.totals
    click.echo(
        f"total: {t.files} files, {t.rows} rows, {t.imported} imported, {t.rejected} rejected, "
        f"{t.duplicates} duplicates"
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


@main.command("import")
@_config_option
@_source_option
@click.option("--file", "files", multiple=True, help="Import just this file (repeatable).")
@click.option("--dry-run", is_flag=True, help="Map, validate and count; write nothing to the sink or state.")
@click.option(
    "--rejects",
    "rejects_dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Write a CSV of rejected rows per file into this folder.",
)
@click.option("--force", is_flag=True, help="Import the named files again even if already imported.")
@_command
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
        _emit_json(report.to_dict())
    else:
        _print_report(report)
    return 0 if report.ok else 1


@main.command("ls")
@_config_option
@_source_option
@_command
def ls(config_path: Path | None, source_name: str | None, as_json: bool) -> int:
    """List the remote files with size, modification time and state."""
    from truagents_import.config import load_config
    from truagents_import.state import open_state

    config = load_config(config_path)
    source = config.source(source_name)
    state = open_state(config.state)
    try:
        files = source.list_files(state)
    finally:
        state.close()
        if source.integration is not None:
            source.integration.close()
    if as_json:
        _emit_json(
            {
                "source": source.name,
                "path": source.path,
                "overdue": source.overdue(files),
                "files": [
                    {
                        "path": f.path,
                        "size": f.size,
                        "mtime": f.mtime.isoformat(),
                        "state": f.state,
                        "note": f.note,
                    }
                    for f in files
                ],
            }
        )
        return 0
    if not files:
        click.echo(f"no files matching {source.pattern!r} in {source.path}")
    late = source.overdue(files)
    if late:
        click.echo(f"warning: {late}")
    for f in files:
        note = f"  ({f.note})" if f.note else ""
        click.echo(f"{f.state:<10} {f.size:>12}  {f.mtime:%Y-%m-%d %H:%M:%S}  {escape_name(f.path)}{note}")
    return 0


@main.command("serve")
@click.option(
    "--root",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("sftp-root"),
    show_default=True,
    help="Folder the server is confined to.",
)
@click.option("--port", type=int, default=2222, show_default=True, help="Port on 127.0.0.1 (0 picks a free one).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option(
    "--authorized-keys",
    "authorized_keys",
    type=click.Path(path_type=Path, dir_okay=False),
    required=True,
    help="File of public keys (one per line) allowed to log in.",
)
@click.option(
    "--host-key",
    "host_key_file",
    type=click.Path(path_type=Path, dir_okay=False),
    default=Path("sftp-host-key"),
    show_default=True,
    help="The server's private host key: made on first start and reused, so a pinned fingerprint stays valid.",
)
@_command
def serve(root: Path, port: int, host: str, authorized_keys: Path, host_key_file: Path, as_json: bool) -> int:
    """Run a local SFTP server (keys only, confined to ROOT) until interrupted."""
    from truagents_import.remote.server import SFTPServer

    try:
        lines = [ln.strip() for ln in authorized_keys.read_text(encoding="utf-8").splitlines()]
    except OSError as exc:
        raise click.UsageError(f"cannot read {authorized_keys}: {exc.strerror}") from None
    keys = [ln for ln in lines if ln and not ln.startswith("#")]
    from truagents_import.remote.keys import load_or_create_host_key

    root.mkdir(parents=True, exist_ok=True)
    host_key = load_or_create_host_key(host_key_file)
    server = SFTPServer(root, keys, host=host, port=port, host_key=host_key).start()
    info = {
        "host": server.host,
        "port": server.port,
        "root": str(server.root),
        "host_key": server.host_key_fingerprint,
        "known_hosts_line": server.known_hosts_line(),
    }
    if as_json:
        _emit_json(info)
    else:
        click.echo(f"serving {server.root} on {server.host}:{server.port} (Ctrl-C to stop)")
        click.echo(f'pin its host key: host_key = "{server.host_key_fingerprint}"')
    sys.stdout.flush()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


@main.command("demo")
@click.option(
    "--dir",
    "directory",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Folder for the demo (default: a new temporary folder).",
)
@_command
def demo(directory: Path | None, as_json: bool) -> int:
    """Run the whole path locally: server, key, upload, import into SQLite."""
    from truagents_import.demo import run_demo

    result = run_demo(directory)
    if as_json:
        _emit_json(
            {
                "directory": str(result.directory),
                "config": str(result.config),
                "database": str(result.database),
                "report": result.report.to_dict(),
            }
        )
    else:
        _print_report(result.report)
        click.echo(f"\ncontacts are in {result.database} (table contacts)")
        click.echo(f"try: sqlite3 {result.database} 'select identity, email, phone, timezone from contacts'")
        click.echo(f"configuration used: {result.config}")
    return 0 if result.report.ok else 1


@main.command("plugins")
@_command
def plugins(as_json: bool) -> int:
    """List installed plugins, their hooks and versions.

    Names listed here can be blocked: TRUAGENTS_IMPORT_BLOCK_PLUGINS=name1,name2.
    """
    from truagents_import.plugins import BLOCK_ENV, Plugins

    found = Plugins.build()
    listing = found.list()
    blocked = sorted(getattr(found.pm, "blocked", ()))
    if as_json:
        _emit_json({"plugins": listing, "sinks": sorted(found.sinks), "blocked": blocked})
        return 0
    for p in listing:
        dist = f"  [{p['distribution']} {p['version']}]" if p["distribution"] else ""
        sinks = f"  (sinks: {', '.join(p['sinks'])})" if p["sinks"] else ""
        click.echo(f"{p['name']}{dist}: {', '.join(p['hooks'])}{sinks}")
    click.echo(f"sink types: {', '.join(sorted(found.sinks))}")
    if blocked:
        click.echo(f"blocked by {BLOCK_ENV}: {', '.join(blocked)}")
    return 0


@main.command("preview")
@click.argument("file")
@_config_option
@_source_option
@click.option(
    "--rows", "n_rows", type=click.IntRange(0, 1000), default=10, show_default=True, help="How many rows to show."
)
@_command
def preview(config_path: Path | None, source_name: str | None, file: str, n_rows: int, as_json: bool) -> int:
    """Show a remote file's encoding, delimiter, header, mapping, first rows and sample validity."""
    from truagents_import.config import load_config
    from truagents_import.pipeline.importer import Importer

    config = load_config(config_path)
    with Importer.from_config(config, source_name) as importer:
        result = importer.preview(file, rows=n_rows)
    if as_json:
        _emit_json(result.to_dict())
        return 0 if result.rejected_because is None else 1
    click.echo(f"file       {escape_name(result.path)} ({result.size} bytes)")
    if result.encoding:
        compression = f", {result.compression}" if result.compression else ""
        click.echo(f"encoding   {result.encoding}{compression}; delimiter {result.delimiter!r}")
    for column in result.header:
        click.echo(f"  {escape_name(column):<30} -> {result.mapping.get(column, '?')}")
    for row in result.rows:
        click.echo("  | " + " | ".join(escape_name(c) for c in row))
    click.echo(f"sample     {result.sampled} rows: {result.valid} valid, {result.rejected} rejected")
    for code, count in result.problem_codes.items():
        click.echo(f"  {code}: {count}")
    for w in result.warnings:
        click.echo(f"warning: {w}")
    if result.rejected_because:
        click.echo(f"the file would be rejected: {result.rejected_because}")
        return 1
    return 0


def _check_marks() -> dict[str, str]:
    from truagents_import.check.ladder import MARKS

    encoding = getattr(sys.stdout, "encoding", None) or "utf-8"
    try:
        "".join(MARKS.values()).encode(encoding)
    except (UnicodeEncodeError, LookupError):
        return {"pass": "+", "warn": "!", "fail": "x", "skip": "-"}
    return MARKS


@main.command("check")
@_config_option
@_source_option
@click.option("--all", "run_all", is_flag=True, help="Run every step that can run, not only up to the first failure.")
@_command
def check(config_path: Path | None, source_name: str | None, run_all: bool, as_json: bool) -> int:
    """Walk the triage ladder (config, server, folder, files, shape, sample, state, sink), stopping at
    the first failing step with the next thing to do.

    Exit status: 0 when no step failed (warnings allowed), 1 when a step failed, 2 when the
    configuration is unusable (the file, or the `config` step).
    """
    from truagents_import.check.ladder import run_check
    from truagents_import.config import load_config

    report = run_check(load_config(config_path), source_name, run_all=run_all)
    if as_json:
        _emit_json(report.to_dict())
        return report.exit_status
    marks = _check_marks()
    click.echo(f"check of source {escape_name(report.source or '?')}")
    for step in report.steps:
        click.echo(f"  {marks[step.status]} {step.name:<14} {step.detail}")
        if step.advice and step.status in ("fail", "warn"):
            click.echo(f"    {'':<14} next: {step.advice}")
    warnings = sum(1 for s in report.steps if s.status == "warn")
    noted = f", {warnings} warning(s)" if warnings else ""
    if report.failed is None:
        click.echo(f"ok: no step failed{noted} ({report.elapsed:.2f} s)")
    else:
        click.echo(f"failed at {report.failed.name}{noted} ({report.elapsed:.2f} s)")
    return report.exit_status


# -- access setup: keygen, trust, upload-command, upload ----------------------------------------


@main.command("keygen")
@click.option(
    "--dir",
    "directory",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("keys"),
    show_default=True,
    help="Folder for the key pair (created 0700; an existing one must be private already).",
)
@click.option("--name", default=None, help="File name of the private key [default: truagents_ed25519].")
@click.option("--comment", default="truagents-import", show_default=True, help="Comment ending the public key.")
@click.option(
    "--from",
    "from_",
    default=None,
    metavar="CIDR",
    help="Only allow the key from these addresses (comma-separated CIDRs or hosts) in the authorized_keys line.",
)
@click.option(
    "--passphrase-env",
    metavar="VAR",
    default=None,
    help="Encrypt the private key with the passphrase held in environment variable VAR.",
)
@click.option("--passphrase-prompt", is_flag=True, help="Ask for a passphrase (typed twice, never echoed).")
@_command
def keygen(
    directory: Path,
    name: str | None,
    comment: str,
    from_: str | None,
    passphrase_env: str | None,
    passphrase_prompt: bool,
    as_json: bool,
) -> int:
    """Write an ed25519 key pair and print the public key, its fingerprint and an SFTP-only authorized_keys line.

    A passphrase never goes on the command line: it comes from an environment variable
    (--passphrase-env) or a prompt (--passphrase-prompt).
    """
    from truagents_import.remote import keys

    if passphrase_env and passphrase_prompt:
        raise click.UsageError("choose one of --passphrase-env and --passphrase-prompt")
    try:
        if from_ is not None:
            keys.check_from(from_)
        passphrase = None
        if passphrase_env:
            passphrase = keys.passphrase_from_env(passphrase_env)
        elif passphrase_prompt:
            passphrase = click.prompt("Passphrase for the new key", hide_input=True, confirmation_prompt=True, err=True)
        pair = keys.create_key_pair(directory, name or keys.DEFAULT_KEY_NAME, passphrase=passphrase, comment=comment)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    line = pair.authorized_keys_line(from_=from_)
    if as_json:
        _emit_json(
            {
                "private_key": str(pair.private_key),
                "public_key": str(pair.public_key),
                "public_line": pair.public_line,
                "fingerprint": pair.fingerprint,
                "authorized_keys_line": line,
                "passphrase_protected": pair.passphrase_protected,
            }
        )
        return 0
    protected = ", passphrase-protected" if pair.passphrase_protected else ""
    click.echo(f"private key  {pair.private_key}  (mode 0600{protected}: keep it here, never send it)")
    click.echo(f"public key   {pair.public_key}")
    click.echo(f"fingerprint  {pair.fingerprint}")
    click.echo("\npublic key line:")
    click.echo(pair.public_line)
    click.echo("\nauthorized_keys line for the SFTP server (SFTP only: no shell, no forwarding):")
    click.echo(line)
    click.echo("\nin truagents-import.toml, [integration]:")
    click.echo(f'  private_key = "{pair.private_key}"')
    if passphrase_env:
        click.echo(f'  passphrase_env = "{passphrase_env}"')
    elif pair.passphrase_protected:
        click.echo('  passphrase_env = "NAME_OF_A_VARIABLE_HOLDING_THE_PASSPHRASE"')
    return 0


@main.command("trust")
@_config_option
@_source_option
@click.option(
    "--yes", is_flag=True, help="Pin without asking: only after checking the fingerprint with the server's owner."
)
@_command
def trust(config_path: Path | None, source_name: str | None, yes: bool, as_json: bool) -> int:
    """Show the host key fingerprint the server presents and, once confirmed, pin it in the configuration.

    Only the `host_key` line of [integration] is written (or added); comments stay. Exit status 1
    when the key was not pinned (declined).
    """
    from truagents_import.config import load_config
    from truagents_import.remote.integration import configured
    from truagents_import.remote.pinning import check_host_key, pin_host_key

    config = load_config(config_path)
    if source_name is not None:
        config.source(source_name)
    integration = configured(config.integration)
    found = check_host_key(integration)
    where = f"{found.host}:{found.port}"
    if not as_json:
        click.echo(f"{where} presents host key {found.presented} ({found.key_type})")
        if found.status == "unchanged":
            click.echo(f"already pinned in {config.path}: nothing to do")
        elif found.status == "changed":
            click.echo(
                f"WARNING: {config.path} pins {found.pinned}, a different key. A server's key changes when it "
                "is reinstalled or its keys are rotated, and also when someone intercepts the connection: "
                "pin the new key only once the server's owner confirms it."
            )
        else:
            click.echo(
                "nothing is pinned yet. Before pinning, ask the server's owner to confirm this fingerprint "
                "(on the server: ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub)."
            )
    pinned = found.status == "unchanged"
    if not pinned:
        try:
            pinned = yes or click.confirm(f"Pin {found.presented} in {config.path}?", default=False, err=True)
        except click.Abort:
            pinned = False
        if pinned:
            assert config.path is not None  # load_config always records the file it read
            pin_host_key(config.path, found.presented)
    if as_json:
        _emit_json(found.to_dict() | {"config": str(config.path), "pinned_now": pinned})
    elif found.status != "unchanged":
        click.echo(
            f'pinned: host_key = "{found.presented}" in {config.path}'
            if pinned
            else "not pinned: connections stay refused until a host key is pinned"
        )
    return 0 if pinned else 1


@main.command("upload-command")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@_config_option
@_source_option
@click.option(
    "--known-hosts",
    "known_hosts_file",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="known_hosts file to write the pinned host key to [default: known_hosts beside the private key; "
    "the configured known_hosts file when there is one].",
)
@_command
def upload_command(
    file: Path, config_path: Path | None, source_name: str | None, known_hosts_file: Path | None, as_json: bool
) -> int:
    """Print the sftp command that uploads FILE under a temporary name and renames it into place.

    The command pins the host key (StrictHostKeyChecking=yes with a known_hosts file written from
    the pinned key) and never prompts (BatchMode=yes). An scp alternative is shown with its limits.
    """
    import textwrap

    from truagents_import.config import load_config
    from truagents_import.remote.integration import configured

    config = load_config(config_path)
    source = config.source(source_name)
    command = configured(config.integration).upload_command(file, source.path, known_hosts_file=known_hosts_file)
    if as_json:
        _emit_json(command.to_dict())
        return 0
    # Everything but the command itself is a shell comment: the whole output can be pasted.
    click.echo(
        f"# Upload {escape_name(command.local.name)} to {escape_name(command.remote_path)} under a temporary "
        "name, then rename it into place."
    )
    pin = f" (checked against the pinned {command.host_key})" if command.host_key else ""
    click.echo(f"# Host key trusted from {command.known_hosts_file}{pin}.")
    if not command.local.is_file():
        click.echo(f"# Note: {escape_name(str(command.local))} does not exist here; the command expects it there.")
    click.echo(command.command)
    click.echo("#\n# The sftp batch it runs:")
    for line in command.batch.splitlines():
        click.echo(f"#   {line}")
    click.echo("#")
    for line in textwrap.wrap(f"scp alternative: {command.scp_note}", 96):
        click.echo(f"# {line}")
    click.echo(f"# {command.scp_command}")
    return 0


@main.command("upload")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path, dir_okay=False))
@_config_option
@_source_option
@_command
def upload(files: tuple[Path, ...], config_path: Path | None, source_name: str | None, as_json: bool) -> int:
    """Upload FILES into the source's folder, each under a temporary name then renamed into place.

    Exit status 1 when any file failed (the others are still uploaded).
    """
    from truagents_import.config import load_config
    from truagents_import.remote.integration import configured

    config = load_config(config_path)
    source = config.source(source_name)
    with configured(config.integration) as integration:
        results = integration.upload_files(files, source.path)
    failed = sum(1 for r in results if r.status == "failed")
    if as_json:
        _emit_json(
            {
                "source": source.name,
                "path": source.path,
                "files": [r.to_dict() for r in results],
                "uploaded": len(results) - failed,
                "failed": failed,
            }
        )
    else:
        for r in results:
            if r.status == "uploaded":
                remote = escape_name(r.remote_path or "")
                click.echo(f"uploaded  {escape_name(str(r.local))} -> {remote}  ({r.size} bytes)")
            else:
                click.echo(f"failed    {escape_name(str(r.local))}: {escape_name(r.error or '')}")
        click.echo(f"{len(results) - failed} uploaded, {failed} failed")
    return 1 if failed else 0


def run() -> None:
    """The console script: like ``main``, but a usage error under ``--json`` is still one JSON document."""
    try:
        main.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(1)
    except click.UsageError as exc:
        if "--json" in sys.argv[1:]:
            _emit_json({"error": exc.format_message(), "exit_status": 2})
        exc.show()
        sys.exit(2)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
