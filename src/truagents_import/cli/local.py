"""Commands that run on this machine alone: ``serve``, ``demo`` and ``plugins``."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from truagents_import._converter import to_dict
from truagents_import.cli._base import command, emit_json, exit_status
from truagents_import.cli.importing import print_report

__all__ = ["demo", "plugins", "serve"]


@click.command("serve")
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
@click.option(
    "--user",
    "username",
    default=None,
    help="The one user name allowed to log in [default: the user running the server].",
)
@command
def serve(
    root: Path, port: int, host: str, authorized_keys: Path, host_key_file: Path, username: str | None, as_json: bool
) -> int:
    """Run a local SFTP server (keys only, one user name, SFTP only, confined to ROOT) until interrupted."""
    import getpass

    from truagents_import.remote.server import SFTPServer

    username = username or getpass.getuser()

    try:
        lines = [ln.strip() for ln in authorized_keys.read_text(encoding="utf-8").splitlines()]
    except OSError as exc:
        raise click.UsageError(f"cannot read {authorized_keys}: {exc.strerror}") from None
    keys = [ln for ln in lines if ln and not ln.startswith("#")]
    from truagents_import.remote.keys import load_or_create_host_key

    root.mkdir(parents=True, exist_ok=True)
    host_key = load_or_create_host_key(host_key_file)
    server = SFTPServer(root, keys, host=host, port=port, host_key=host_key, username=username).start()
    info = {
        "host": server.host,
        "port": server.port,
        "username": username,
        "root": str(server.root),
        "host_key": server.host_key_fingerprint,
        "known_hosts_line": server.known_hosts_line(),
    }
    if as_json:
        emit_json(info)
    else:
        click.echo(f"serving {server.root} on {server.host}:{server.port} to {username} (Ctrl-C to stop)")
        click.echo(f'pin its host key: host_key = "{server.host_key_fingerprint}"')
    sys.stdout.flush()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


@click.command("demo")
@click.option(
    "--dir",
    "directory",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Folder for the demo (default: a new temporary folder).",
)
@command
def demo(directory: Path | None, as_json: bool) -> int:
    """Run the whole path locally: server, key, upload, import into SQLite."""
    from truagents_import.demo import run_demo

    result = run_demo(directory)
    if as_json:
        emit_json(to_dict(result))
    else:
        print_report(result.report)
        click.echo(f"\ncontacts are in {result.database} (table contacts)")
        click.echo(f"try: sqlite3 {result.database} 'select identity, email, phone, timezone from contacts'")
        click.echo(f"configuration used: {result.config}")
    return exit_status(result.report)


@click.command("plugins")
@command
def plugins(as_json: bool) -> int:
    """List installed plugins, their hooks and versions.

    Names listed here can be blocked: TRUAGENTS_IMPORT_BLOCK_PLUGINS=name1,name2.
    """
    from truagents_import.plugins import BLOCK_ENV, Plugins

    found = Plugins.build()
    listing = found.list()
    blocked = sorted(found.blocked)
    if as_json:
        emit_json({"plugins": listing, "sinks": sorted(found.sinks), "blocked": blocked})
        return 0
    for p in listing:
        dist = f"  [{p['distribution']} {p['version']}]" if p["distribution"] else ""
        sinks = f"  (sinks: {', '.join(p['sinks'])})" if p["sinks"] else ""
        click.echo(f"{p['name']}{dist}: {', '.join(p['hooks'])}{sinks}")
    click.echo(f"sink types: {', '.join(sorted(found.sinks))}")
    if blocked:
        click.echo(f"blocked by {BLOCK_ENV}: {', '.join(blocked)}")
    return 0
