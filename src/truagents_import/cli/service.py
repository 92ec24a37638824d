"""``watch``: import continuously until SIGTERM or SIGINT (SPEC 11)."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import click

from truagents_import.cli._base import config_option, emit_json, rejects_option, service_command
from truagents_import.service.watch import DEFAULT_GRACE, DEFAULT_INTERVAL

if TYPE_CHECKING:
    from truagents_import.service.watch import Watcher

__all__ = ["watch"]

logger = logging.getLogger("truagents_import.service.watch")


@click.command("watch")
@config_option
@click.option(
    "--source", "source_names", multiple=True, help="Watch only this source (repeatable; default: every source)."
)
@click.option(
    "--interval",
    type=click.FloatRange(min=0.1),
    default=DEFAULT_INTERVAL,
    show_default=True,
    help="Seconds between two listings of a source (a source's poll_every overrides it).",
)
@click.option(
    "--grace",
    type=click.FloatRange(min=0),
    default=DEFAULT_GRACE,
    show_default=True,
    help="Seconds a file in progress may take to finish after SIGTERM; then it is abandoned uncommitted.",
)
@rejects_option
@service_command
def watch(
    config_path: Path | None,
    source_names: tuple[str, ...],
    interval: float,
    grace: float,
    rejects_dir: Path | None,
    as_json: bool,
) -> int:
    """Import continuously: list each source every interval and import each file once it is complete.

    A failing source (server down, key refused) is retried with exponential backoff while the
    others go on. SIGTERM or SIGINT stops the listing, lets the file in progress finish within
    --grace seconds (else abandons it uncommitted: the next run imports it) and exits 0; a second
    signal abandons at once. Log records go to stderr (INFO unless --log-level says otherwise).
    """
    from truagents_import.config import load_config
    from truagents_import.service.watch import Watcher

    config = load_config(config_path)
    watcher = Watcher(config, source_names, interval=interval, rejects_dir=rejects_dir)
    received: list[str] = []
    with _stop_on_signals(watcher, received):
        watcher.start()
        while not watcher.wait(1.0):
            pass
    why = received[0] if received else "stop"
    logger.info("%s: stopping; files in progress have %g s to finish", why, grace, extra={"signal": why})
    abandoned = watcher.join(grace)
    for source, file in abandoned:
        what = f"file {file}" if file else "its connection or listing"
        logger.warning(
            "%s: abandoning %s uncommitted after %g s; the next run imports it again",
            source,
            what,
            grace,
            extra={"source": source, "file": file, "status": "abandoned"},
        )
    _print_summary(watcher, why, abandoned, as_json=as_json)
    if abandoned:
        _exit_now()  # the busy threads are not waited for: nothing they did is committed
    return 0


@contextlib.contextmanager
def _stop_on_signals(watcher: Watcher, received: list[str]) -> Iterator[None]:
    """SIGTERM and SIGINT stop the watcher; a second one exits at once (safe: nothing half-committed)."""

    def handler(signum: int, frame: FrameType | None) -> None:
        if watcher.stopping:
            _exit_now()
        received.append(signal.Signals(signum).name)
        watcher.stop()

    previous = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for s, old in previous.items():
            signal.signal(s, old)


def _print_summary(watcher: Watcher, why: str, abandoned: list[tuple[str, str | None]], *, as_json: bool) -> None:
    summary: dict[str, Any] = watcher.summary()
    if as_json:
        emit_json(
            {
                "stopped_by": why,
                "sources": summary,
                "abandoned": [{"source": s, "file": f} for s, f in abandoned],
            }
        )
        return
    files: dict[str, int] = {}
    for counts in summary.values():
        for status, n in counts["files"].items():
            files[status] = files.get(status, 0) + n
    done = ", ".join(f"{n} {status}" for status, n in sorted(files.items())) or "no files"
    rows = sum(counts["imported"] for counts in summary.values())
    n = len(summary)
    click.echo(f"stopped ({why}): {n} source{'s' if n != 1 else ''} watched; {done}; {rows} contacts imported")


def _exit_now() -> None:
    """Leave without waiting for the threads (os._exit): flush what was said first."""
    for handler in logging.getLogger("truagents_import").handlers:
        handler.flush()
    with contextlib.suppress(Exception):
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(0)
