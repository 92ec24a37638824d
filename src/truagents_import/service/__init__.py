"""Running continuously (SPEC 11): the ``watch`` loop and the command line's log handler.

:mod:`truagents_import.service.watch` lists every source on its own schedule in a thread of its
own and imports each file as soon as it is complete; :mod:`truagents_import.service.logs` turns
the library's log records into lines for people or JSON for machines. Celery tasks live in
:mod:`truagents_import.celery` (the ``[celery]`` extra).
"""

from __future__ import annotations

from truagents_import.service.assembly import importer_for
from truagents_import.service.logs import JSONFormatter, TextFormatter, stderr_logging
from truagents_import.service.watch import DEFAULT_GRACE, DEFAULT_INTERVAL, Watched, Watcher

__all__ = [
    "DEFAULT_GRACE",
    "DEFAULT_INTERVAL",
    "JSONFormatter",
    "TextFormatter",
    "Watched",
    "Watcher",
    "importer_for",
    "stderr_logging",
]
