"""Celery tasks for many machines (SPEC 11; ``pip install 'truagents-import[celery]'``).

- :func:`import_source`: one task imports one source's new and changed complete files. It is
  idempotent: the state's claims make a task delivered twice, or re-delivered after its worker
  died mid-file, harmless. Connection errors (the SFTP server, the network, PostgreSQL) are
  retried with Celery's exponential backoff; a host key that does not match is not.
- :func:`beat_schedule`: a ``beat_schedule`` with one entry per source, every ``poll_every``.
- :func:`create_app` / :func:`configure`: an app (or your own) set up for these tasks: the
  configuration file the workers read, late acknowledgement, and an optional factory for sources
  that live in your own database (one per tenant), see :data:`SourceFactory`.

Workers on many machines share ``[state]`` and ``[sink]`` on PostgreSQL (docs/many-machines.md).
Celery is imported here only: the rest of the library never needs it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import asyncssh
from celery import Celery, Task, shared_task
from celery.utils.time import get_exponential_backoff_interval

from truagents_import._safety import escape_name
from truagents_import._text import parse_duration
from truagents_import.config import CONFIG_NAME, Config, load_config
from truagents_import.errors import ConfigError, ConnectError, HostKeyError, PostgresError
from truagents_import.report import ImportReport
from truagents_import.service.assembly import importer_for
from truagents_import.service.watch import DEFAULT_INTERVAL
from truagents_import.source import DataSource

__all__ = [
    "CONFIG_ENV",
    "RETRY_ON",
    "TASK_NAME",
    "SourceFactory",
    "beat_schedule",
    "configure",
    "create_app",
    "import_source",
    "resolve_source",
]

logger = logging.getLogger(__name__)

#: The name the task is registered under (what ``beat_schedule`` and ``send_task`` use).
TASK_NAME = "truagents_import.import_source"
#: The environment variable naming the configuration file when the app does not.
CONFIG_ENV = "TRUAGENTS_IMPORT_CONFIG"
#: Errors that may heal by themselves: the task is retried later, with backoff.
RETRY_ON: tuple[type[BaseException], ...] = (ConnectError, PostgresError, OSError, asyncssh.Error)
#: A task is retried this many times at most (beat sends the next one anyway).
MAX_RETRIES = 8
#: Backoff: about 2, 4, 8... seconds (Celery's full jitter: a random wait up to that), 5 minutes at most.
BACKOFF_FACTOR = 2
BACKOFF_MAX = 300

#: A source the configuration does not list, by name: a :class:`DataSource` (with its own
#: :class:`~truagents_import.Integration`), or None when there is no such source. Called in the
#: worker for every task, with the loaded configuration (whose sink and state the task uses).
SourceFactory = Callable[[str, Config], DataSource | None]

_CONFIG_SETTING = "truagents_import_config"
_FACTORY_SETTING = "truagents_import_source_factory"
_PLUGINS_SETTING = "truagents_import_plugins"


def create_app(
    broker: str,
    config: Path | str,
    *,
    source_factory: SourceFactory | None = None,
    plugins: Sequence[object] = (),
    name: str = "truagents_import",
    beat: bool = True,
    **settings: Any,
) -> Celery:
    """A Celery app for the import tasks, with ``broker`` (Redis: ``redis://host:6379/0``).

    ``config`` is the ``truagents-import.toml`` every worker reads (the same file, or the same
    contents, on every machine); ``settings`` are more Celery settings. ``celery -A yourmodule
    worker`` and ``celery -A yourmodule beat`` then run it. See :func:`configure`.
    """
    app = Celery(name, broker=broker)
    app.conf.update(
        # One task at a time per process: a long file does not hold queued sources hostage.
        worker_prefetch_multiplier=1,
        broker_connection_retry_on_startup=True,
        task_ignore_result=True,
    )
    app.conf.update(settings)
    configure(app, config, source_factory=source_factory, plugins=plugins, beat=beat)
    return app


def configure(
    app: Celery,
    config: Path | str,
    *,
    source_factory: SourceFactory | None = None,
    plugins: Sequence[object] = (),
    beat: bool = True,
) -> None:
    """Set up an existing app for :func:`import_source`: the configuration file its workers read,
    a factory for sources that live in your database, plugins to register, and (``beat``) one
    beat entry per source of the configuration, added to the app's ``beat_schedule``."""
    path = Path(config).resolve()
    app.conf.update({_CONFIG_SETTING: str(path), _FACTORY_SETTING: source_factory, _PLUGINS_SETTING: tuple(plugins)})
    if beat:
        app.conf.beat_schedule = {**(app.conf.beat_schedule or {}), **beat_schedule(load_config(path))}


def beat_schedule(
    config: Config,
    *,
    default_every: float | str = DEFAULT_INTERVAL,
    more: Mapping[str, float | str] | None = None,
) -> dict[str, dict[str, Any]]:
    """Celery beat entries: one :func:`import_source` per source, every ``poll_every`` seconds.

    A source without ``poll_every`` is imported every ``default_every`` (10 s, like ``watch``).
    ``more`` adds sources the factory serves (``{"tenant-42": "5m"}``). Each task expires after
    its interval: when workers fall behind, the next one replaces it rather than queueing up.
    """
    every = dict.fromkeys((s.name for s in config.sources), _seconds(default_every))
    every.update(config.poll_every)
    for name, value in (more or {}).items():
        every[name] = _seconds(value)
    return {
        f"truagents-import:{name}": {
            "task": TASK_NAME,
            "schedule": seconds,
            "args": (name,),
            "options": {"expires": seconds},
        }
        for name, seconds in every.items()
    }


def _seconds(value: float | str) -> float:
    seconds = parse_duration(value).total_seconds() if isinstance(value, str) else float(value)
    if seconds <= 0:
        raise ConfigError(f"a poll interval must be positive, got {value!r}")
    return seconds


def resolve_source(config: Config, name: str, factory: SourceFactory | None = None) -> DataSource:
    """The source called ``name``: the configuration's, else the factory's.

    :raises ConfigError: neither knows it.
    """
    if any(s.name == name for s in config.sources):
        return config.source(name)
    made = factory(name, config) if factory is not None else None
    if made is None:
        known = ", ".join(s.name for s in config.sources) or "none"
        also = " and the registered source factory does not know it either" if factory is not None else ""
        raise ConfigError(f"no source named {name!r} in the configuration (it has: {known}){also}")
    return made


@shared_task(  # type: ignore[untyped-decorator]  # celery ships no type hints
    bind=True, name=TASK_NAME, acks_late=True, reject_on_worker_lost=True, max_retries=MAX_RETRIES
)
def import_source(self: Task, source: str, config: str | None = None) -> dict[str, Any]:
    """Import one source's new and changed complete files; return what happened to each file.

    ``config`` is the configuration file (default: the app's, then ``$TRUAGENTS_IMPORT_CONFIG``,
    then ``truagents-import.toml`` in the worker's folder). Acknowledged late, and re-queued
    when the worker process dies: a re-delivered task imports nothing twice (the state's claims).
    """
    path = config or self.app.conf.get(_CONFIG_SETTING) or os.environ.get(CONFIG_ENV) or CONFIG_NAME
    try:
        report = _run(self.app, source, Path(path))
    except HostKeyError:
        raise  # a changed host key needs a person, not another try
    except RETRY_ON as exc:
        countdown = get_exponential_backoff_interval(
            factor=BACKOFF_FACTOR, retries=self.request.retries, maximum=BACKOFF_MAX, full_jitter=True
        )
        logger.warning(
            "%s: attempt %d failed (%s: %s); retry in %d s",
            source,
            self.request.retries + 1,
            type(exc).__name__,
            escape_name(str(exc)),
            countdown,
            extra={"source": source, "attempt": self.request.retries + 1, "retry_in_s": countdown},
        )
        raise self.retry(exc=exc, countdown=countdown) from exc
    return _summary(report)


def _run(app: Celery, name: str, path: Path) -> ImportReport:
    config = load_config(path)
    source = resolve_source(config, name, app.conf.get(_FACTORY_SETTING))
    plugins = app.conf.get(_PLUGINS_SETTING) or ()
    with importer_for(config, source, plugins=plugins) as importer:
        return importer.run()


def _summary(report: ImportReport) -> dict[str, Any]:
    """The task's result: each file's status and counts, without rows' values (no contact data in the broker)."""
    keys = ("status", "reason", "rows", "imported", "rejected", "duplicates", "sha256")
    return {
        "source": report.source,
        "files": [{"path": f.path, **{k: getattr(f, k) for k in keys}} for f in report.files],
        "warnings": list(report.warnings),
    }
