"""``watch``: every source listed on its own schedule, each file imported as soon as it is complete.

SPEC 11. Each source runs in a thread of its own, with its own SFTP connection, sink and state
connections, so a slow or failing source never delays another, and an endpoint that is down
delays only its own sources. A failing source is retried with exponential backoff (tenacity),
and every retry is logged. :meth:`Watcher.stop` stops the listing; a file in progress goes on to
its end, and :meth:`Watcher.join` says which sources were still busy when the grace ran out (the
command line then exits without waiting: a file abandoned uncommitted is imported again by the
next run, SPEC 4).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import asyncssh
import attrs
import tenacity

from truagents_import._safety import escape_name
from truagents_import.errors import TruagentsImportError
from truagents_import.service.assembly import importer_for

if TYPE_CHECKING:
    from truagents_import.config import Config
    from truagents_import.pipeline.importer import Importer
    from truagents_import.report import ImportReport
    from truagents_import.source import DataSource, RemoteFile

__all__ = ["CONNECTS_PER_ENDPOINT", "DEFAULT_GRACE", "DEFAULT_INTERVAL", "MAX_BACKOFF", "Watched", "Watcher"]

logger = logging.getLogger(__name__)

#: Seconds between two listings of a source without ``poll_every``.
DEFAULT_INTERVAL = 10.0
#: Seconds a file in progress may take to finish after SIGTERM.
DEFAULT_GRACE = 30.0
#: The longest wait (seconds) between two attempts of a failing source.
MAX_BACKOFF = 300.0
#: Connections opened to one endpoint at the same moment, at most: OpenSSH's ``MaxStartups``
#: starts dropping unauthenticated connections past 10.
CONNECTS_PER_ENDPOINT = 4


@attrs.frozen
class Watched:
    """One source as ``watch`` serves it: its endpoint, where its files are, how often it is listed."""

    source: str
    endpoint: str
    where: str
    every: float

    def describe(self) -> str:
        """``crm-drop (acme@sftp.example.com:22/inbox, every 10 s)``."""
        return f"{self.source} ({self.where}, every {self.every:g} s)"


def _where(source: DataSource) -> str:
    integration = source.integration
    if integration is None:
        return source.path
    return f"{integration.username}@{integration.host}:{integration.port}{source.path}"


class Watcher:
    """Runs the sources of a configuration continuously until :meth:`stop` (SPEC 11).

    :param config: the configuration: its sources, endpoints, sink and state.
    :param sources: the names of the sources to watch (all of them when empty).
    :param interval: seconds between two listings of a source without ``poll_every``.
    :param max_backoff: the longest wait between two attempts of a failing source.
    :param plugins: plugins to register besides the built-ins and installed entry points.
    :param rejects_dir: where to write a rejects CSV for each file with rejected rows.

    ``with Watcher(config) as w:`` starts it and, on leaving, stops it and waits for the files in
    progress.
    """

    def __init__(
        self,
        config: Config,
        sources: Sequence[str] = (),
        *,
        interval: float = DEFAULT_INTERVAL,
        max_backoff: float = MAX_BACKOFF,
        plugins: Sequence[object] = (),
        rejects_dir: Path | str | None = None,
    ) -> None:
        chosen = (
            [config.source(name) for name in sources] if sources else [config.source(s.name) for s in config.sources]
        )
        if not chosen:
            config.source()  # the ConfigError that says how to add a source
        self.config = config
        self.plugins = tuple(plugins)
        self.rejects_dir = rejects_dir
        self.max_backoff = max_backoff
        self.plan = [
            Watched(s.name, config.endpoint_name(s.name), _where(s), config.poll_interval(s.name, interval))
            for s in chosen
        ]
        self._stop = threading.Event()
        endpoints = {w.endpoint for w in self.plan}
        self._connecting = {e: threading.BoundedSemaphore(CONNECTS_PER_ENDPOINT) for e in endpoints}
        self._loops = [_SourceLoop(self, s, w) for s, w in zip(chosen, self.plan, strict=True)]

    def describe(self) -> str:
        """The start-up line: what is watched, where, and how often."""
        n = len(self.plan)
        return f"watching {n} source{'s' if n != 1 else ''}: " + "; ".join(w.describe() for w in self.plan)

    def start(self) -> None:
        """Start one thread per source (each lists its source at once, then every interval)."""
        logger.info(
            "%s",
            self.describe(),
            extra={"sources": [attrs.asdict(w) for w in self.plan]},
        )
        for loop in self._loops:
            loop.start()

    def stop(self) -> None:
        """Stop listing: each source finishes the file it is importing, then its thread ends."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        """Whether :meth:`stop` was called."""
        return self._stop.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until :meth:`stop` is called (True) or ``timeout`` seconds pass (False)."""
        return self._stop.wait(timeout)

    def join(self, grace: float = DEFAULT_GRACE) -> list[tuple[str, str | None]]:
        """Wait up to ``grace`` seconds for every source to finish; call after :meth:`stop`.

        Returns the sources still busy then, each with the file it is importing (None when it
        was connecting or listing): the caller abandons them, uncommitted.
        """
        deadline = time.monotonic() + grace
        for loop in self._loops:
            if loop.is_alive():
                loop.join(max(0.0, deadline - time.monotonic()))
        return [(loop.watched.source, loop.current) for loop in self._loops if loop.is_alive()]

    def summary(self) -> dict[str, Any]:
        """What each source did so far: polls, files by status, rows imported, consecutive failures."""
        return {loop.watched.source: loop.summary() for loop in self._loops}

    def __enter__(self) -> Watcher:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
        self.join()


class _SourceLoop(threading.Thread):
    """One source's thread: list, import what is complete, wait; back off while it fails."""

    def __init__(self, watcher: Watcher, source: DataSource, watched: Watched) -> None:
        super().__init__(name=f"truagents-import-watch-{watched.source}", daemon=True)
        self.watcher = watcher
        # A copy with an endpoint of its own: its own connection, opened and dropped by this thread
        # only (the private key is loaded once for the copy, not on every reconnection).
        own = None if source.integration is None else attrs.evolve(source.integration)
        self.source = attrs.evolve(source, integration=own)
        self.watched = watched
        self.stop_event = watcher._stop
        #: The file being imported now (its escaped path), if any.
        self.current: str | None = None
        self.polls = 0
        self.failures = 0
        self.files: Counter[str] = Counter()
        self.rows_imported = 0
        self._importer: Importer | None = None
        self._late: str | None = None

    def summary(self) -> dict[str, Any]:
        return {
            "polls": self.polls,
            "files": dict(self.files),
            "imported": self.rows_imported,
            "failing": self.failures,
        }

    def run(self) -> None:
        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(Exception),
            wait=tenacity.wait_exponential_jitter(initial=1, max=self.watcher.max_backoff),
            stop=lambda _: self.stop_event.is_set(),
            sleep=self._pause,
            before_sleep=self._log_retry,
            reraise=True,
        )
        try:
            while not self.stop_event.is_set():
                started = time.monotonic()
                try:
                    retrying(self._poll)
                except Exception:  # stopped while failing: the last error is logged already
                    break
                self.stop_event.wait(max(0.0, started + self.watched.every - time.monotonic()))
        finally:
            self._close()

    def _pause(self, seconds: float) -> None:
        """tenacity's sleep: cut short by :meth:`Watcher.stop`."""
        self.stop_event.wait(seconds)

    # -- one poll ----------------------------------------------------------------------------

    def _poll(self) -> None:
        if self.stop_event.is_set():
            return
        try:
            importer = self._open()
            listing = self._list(importer)
            self._warn_late(listing)
            for remote in listing:
                if self.stop_event.is_set():
                    break
                if remote.state in ("new", "changed"):
                    self._import(importer, remote)
        except BaseException:
            self._close()  # a fresh connection, sink and state on the next attempt
            raise
        self.polls += 1
        if self.failures:
            logger.info(
                "%s: working again after %d failed attempts",
                self.watched.source,
                self.failures,
                extra={"source": self.watched.source, "attempt": self.failures + 1},
            )
            self.failures = 0

    def _open(self) -> Importer:
        if self._importer is not None:
            return self._importer
        integration = self.source.integration
        importer = importer_for(
            self.watcher.config, self.source, plugins=self.watcher.plugins, rejects_dir=self.watcher.rejects_dir
        )
        self._importer = importer
        if integration is not None:
            with self._connecting():
                integration.fs  # noqa: B018 - connect now, one of a few at a time per endpoint
        return importer

    @contextlib.contextmanager
    def _connecting(self) -> Iterator[None]:
        gate = self.watcher._connecting[self.watched.endpoint]
        with gate:
            yield

    def _list(self, importer: Importer) -> list[RemoteFile]:
        source = importer.source
        try:
            return source.list_files(importer.state)
        except Exception:
            if source.integration is None:
                raise
        # The server may have dropped an idle connection (a dead one is never reused): once more, afresh.
        with self._connecting():
            source.integration.reconnect()
        return source.list_files(importer.state)

    def _import(self, importer: Importer, remote: RemoteFile) -> None:
        self.current = escape_name(remote.path)
        try:
            report = importer.run(files=[remote])
        finally:
            self.current = None
        self._count(report)

    def _count(self, report: ImportReport) -> None:
        for f in report.files:
            self.files[f.status] += 1
            self.rows_imported += f.imported
        for warning in report.warnings:
            logger.warning("%s: %s", self.watched.source, escape_name(warning), extra={"source": self.watched.source})

    def _warn_late(self, listing: list[RemoteFile]) -> None:
        """Log once when the source becomes overdue (``expect_every``), and once when it is not any more."""
        late = self.source.overdue(listing)
        if late is not None and self._late is None:
            logger.warning("%s: %s", self.watched.source, late, extra={"source": self.watched.source})
        elif late is None and self._late is not None:
            logger.info("%s: files arrive again", self.watched.source, extra={"source": self.watched.source})
        self._late = late

    def _log_retry(self, state: tenacity.RetryCallState) -> None:
        self.failures = state.attempt_number
        exc = state.outcome.exception() if state.outcome is not None else None
        wait = state.next_action.sleep if state.next_action is not None else 0.0
        expected = _expected(exc)
        logger.warning(
            "%s: attempt %d failed (%s); next attempt in %.1f s",
            self.watched.source,
            state.attempt_number,
            _describe(exc),
            wait,
            exc_info=None if expected else exc,
            extra={
                "source": self.watched.source,
                "endpoint": self.watched.endpoint,
                "attempt": state.attempt_number,
                "retry_in_s": round(wait, 3),
                "error": type(exc).__name__ if exc is not None else None,
            },
        )

    def _close(self) -> None:
        importer, self._importer = self._importer, None
        if importer is None:
            return
        try:
            importer.close()
            if importer.source.integration is not None:
                importer.source.integration.close()
        except Exception as exc:  # a broken connection may fail to close; it is dropped anyway
            logger.debug("%s: closing after a failure: %s", self.watched.source, _describe(exc))


def _expected(exc: BaseException | None) -> bool:
    """Whether an error is one a service meets in ordinary life (a server down, a refused key):
    logged in one line; anything else is logged with its traceback."""
    return isinstance(exc, TruagentsImportError | OSError | asyncssh.Error)


def _describe(exc: BaseException | None) -> str:
    if exc is None:
        return "no error"
    return f"{type(exc).__name__}: {escape_name(str(exc))}"
