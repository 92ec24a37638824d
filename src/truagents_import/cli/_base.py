"""What every command shares: ``--json``, the common options, exit statuses and glyphs.

Exit status (SPEC 6): 0 done; 1 done but a file was rejected or failed (or a check step failed);
2 usage or configuration error; 3 could not connect, authenticate, or the host key did not match.
The library's errors and reports do not know these numbers: :func:`exit_status` maps them here.
"""

from __future__ import annotations

import contextlib
import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import asyncssh
import click

from truagents_import._safety import json_safe
from truagents_import.errors import ConfigError, ConnectError, TruagentsImportError, UploadNameError
from truagents_import.remote.failures import describe
from truagents_import.report import ImportReport

if TYPE_CHECKING:
    from truagents_import.check.report import CheckReport

__all__ = [
    "EXIT_STATUSES",
    "LOG_META",
    "command",
    "config_option",
    "emit_json",
    "exit_status",
    "log_options",
    "marks",
    "service_command",
    "source_option",
]

F = TypeVar("F", bound=Callable[..., Any])

#: The exit status of each kind of error; an error takes the status of its nearest listed class.
EXIT_STATUSES: dict[type[TruagentsImportError], int] = {
    TruagentsImportError: 1,
    ConfigError: 2,
    UploadNameError: 2,
    ConnectError: 3,
}

#: One glyph per check step status, and the plain ones for a terminal that cannot show them.
_MARKS = {"pass": "✓", "warn": "!", "fail": "✗", "skip": "-"}
_ASCII_MARKS = {"pass": "+", "warn": "!", "fail": "x", "skip": "-"}


def exit_status(outcome: TruagentsImportError | ImportReport | CheckReport) -> int:
    """The command line's exit status for an error, an import report or a check report."""
    if isinstance(outcome, TruagentsImportError):
        return next(EXIT_STATUSES[cls] for cls in type(outcome).__mro__ if cls in EXIT_STATUSES)
    if isinstance(outcome, ImportReport):
        return 0 if outcome.ok else 1
    failed = outcome.failed
    if failed is None:
        return 0
    return 2 if failed.name == "config" else 1


def marks() -> dict[str, str]:
    """The check step glyphs, or plain ASCII ones when standard output cannot encode them."""
    encoding = getattr(sys.stdout, "encoding", None) or "utf-8"
    try:
        "".join(_MARKS.values()).encode(encoding)
    except (UnicodeEncodeError, LookupError):
        return _ASCII_MARKS
    return _MARKS


def emit_json(data: Any) -> None:
    """Print one JSON document on standard output."""
    click.echo(json_safe(json.dumps(data, indent=2, ensure_ascii=False)))


def command(func: F) -> F:
    """Add ``--json`` and turn library errors into their exit status and a clear message."""
    return _command(func, default_log_level=None)


def service_command(func: F) -> F:
    """:func:`command` for a long-running command: its log records go to stderr at INFO by default."""
    return _command(func, default_log_level="INFO")


#: Where the group's ``--log-level`` and ``--log-format`` wait for the command (in ``ctx.meta``).
LOG_META = "truagents_import.log"
_LOG_LEVELS = click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False)


def log_options(func: F) -> F:
    """``--log-level`` and ``--log-format``: a stderr handler for the library's log records (SPEC 11)."""
    func = click.option(
        "--log-format",
        type=click.Choice(["text", "json"]),
        default=None,
        help="Log records as text lines or one JSON object per line (default: text).",
    )(func)
    return click.option(
        "--log-level",
        type=_LOG_LEVELS,
        default=None,
        help="Send the library's log records at this level and above to stderr (default: none; watch: INFO).",
    )(func)


def _logging(log_level: str | None, log_format: str | None, default_level: str | None) -> Any:
    """The stderr handler a command runs under: its own options, else the group's, else its default."""
    from truagents_import.service.logs import stderr_logging

    ctx = click.get_current_context(silent=True)
    group_level, group_format = ctx.meta.get(LOG_META, (None, None)) if ctx is not None else (None, None)
    fmt = log_format or group_format
    level = log_level or group_level or default_level or ("INFO" if fmt else None)
    if level is None:
        return contextlib.nullcontext()
    return stderr_logging(level.upper(), "json" if fmt == "json" else "text")


#: Failures of the connection that no library call turned into its own error (one that was lost
#: while listing, say): exit status 3 with the library's words, never a traceback.
_CONNECTION_FAILURES = (asyncssh.Error, ConnectionError)


def _failure(exc: BaseException) -> tuple[int, str]:
    """The exit status and the message for an error that ends a command."""
    if isinstance(exc, TruagentsImportError):
        return exit_status(exc), str(exc)
    return 3, describe(exc)


def _command(func: F, *, default_log_level: str | None) -> F:
    @click.option("--json", "as_json", is_flag=True, help="Print one JSON document on stdout and nothing else.")
    @log_options
    @functools.wraps(func)
    def wrapper(*args: Any, as_json: bool, log_level: str | None, log_format: str | None, **kwargs: Any) -> None:
        with _logging(log_level, log_format, default_log_level):
            try:
                status = func(*args, as_json=as_json, **kwargs)
            except (TruagentsImportError, *_CONNECTION_FAILURES) as exc:
                code, message = _failure(exc)
                if as_json:
                    emit_json({"error": message, "exit_status": code})
                click.echo(f"error: {message}", err=True)
                sys.exit(code)
        sys.exit(status or 0)

    return wrapper  # type: ignore[return-value]


config_option = click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Configuration file (default: ./truagents-import.toml).",
)
source_option = click.option("--source", "source_name", default=None, help="Which [[sources]] entry.")
rejects_option = click.option(
    "--rejects",
    "rejects_dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Write a CSV of rejected rows per file into this folder.",
)
