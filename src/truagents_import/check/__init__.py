"""The triage ladder (SPEC 6 ``check``): did the files arrive, and are they the shape we expect?

One module per group of steps, each judging facts that the library's own functions find:
:mod:`~truagents_import.check.connection` (``config``, ``reachable``, ``host_key``, ``auth``),
:mod:`~truagents_import.check.files` (``folder``, ``files_present``, ``freshness``, ``complete``,
with :mod:`~truagents_import.check.near` for near-miss names), :mod:`~truagents_import.check.shape`
(``shape``, ``sample``, reading the file's head through :mod:`~truagents_import.check.head`) and
:mod:`~truagents_import.check.storage` (``state``, ``sink``). :mod:`~truagents_import.check.ladder`
orders and runs them; :mod:`~truagents_import.check.report` holds what they found;
:func:`run_check` takes a whole configuration.
"""

from __future__ import annotations

from truagents_import.check.head import HEAD_BYTES
from truagents_import.check.ladder import check_connection, check_source
from truagents_import.check.near import NearMiss, near_misses
from truagents_import.check.report import MARKS, STEP_NAMES, CheckReport, CheckStep, StepStatus
from truagents_import.check.run import run_check
from truagents_import.check.shape import SAMPLE_ROWS

__all__ = [
    "HEAD_BYTES",
    "MARKS",
    "SAMPLE_ROWS",
    "STEP_NAMES",
    "CheckReport",
    "CheckStep",
    "NearMiss",
    "StepStatus",
    "check_connection",
    "check_source",
    "near_misses",
    "run_check",
]
