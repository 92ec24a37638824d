"""The ``truagents-import`` command line: parsing and printing only; the library does the work.

Every command takes ``--json`` and then prints one JSON document on stdout and nothing else.
Exit status: 0 done; 1 done but a file was rejected or failed; 2 usage or configuration error;
3 could not connect, authenticate, or the host key did not match (see :func:`exit_status`).

The commands live in one module per group: :mod:`~truagents_import.cli.importing` (a source's
files), :mod:`~truagents_import.cli.access` (keys, host keys, uploads) and
:mod:`~truagents_import.cli.local` (the local server, the demo, the plugins) and
:mod:`~truagents_import.cli.service` (``watch``). ``--log-level`` and ``--log-format`` (on the
group or on any command) send the library's log records to stderr.
"""

from __future__ import annotations

import os
import sys

import click

from truagents_import.cli import access, importing, local, service
from truagents_import.cli._base import LOG_META, emit_json, exit_status, log_options

__all__ = ["exit_status", "main", "run"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="truagents-import")
@log_options
@click.pass_context
def main(ctx: click.Context, log_level: str | None, log_format: str | None) -> None:
    """Import contact CSV files from SFTP drop boxes."""
    ctx.meta[LOG_META] = (log_level, log_format)


for _command in (
    importing.import_,
    importing.ls,
    importing.preview,
    importing.check,
    local.serve,
    local.demo,
    local.plugins,
    access.keygen,
    access.trust,
    access.upload_command,
    access.upload,
    service.watch,
):
    main.add_command(_command)


def run() -> None:
    """The console script: like ``main``, but a usage error under ``--json`` is still one JSON document."""
    # The command is an application, so it may choose Arrow's allocator (the library never does): the
    # system's gives freed memory back, where Arrow's default keeps about 50 MB more of a large import's
    # columns (docs/performance.md). An operator's own choice in the environment wins.
    os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")
    try:
        main.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(1)
    except click.UsageError as exc:
        if "--json" in sys.argv[1:]:
            emit_json({"error": exc.format_message(), "exit_status": 2})
        exc.show()
        sys.exit(2)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
