"""The triage ladder (SPEC 6 ``check``): why did no contacts arrive?

:func:`check_source` walks the steps an operator would, in order, and stops at the first one that
fails, saying what to do next: ``config``, ``reachable`` (DNS and TCP), ``host_key``, ``auth``,
``folder``, ``files_present`` (with near-miss names when nothing matches), ``freshness``
(against ``expect_every``), ``complete`` (uploads in progress, markers, ``min_age``), ``shape``
(of the newest complete file), ``sample`` (its first rows through the importer's own mapping and
validation), ``state`` and ``sink``. With ``run_all=True`` every step that can run does.

A check never writes contacts and never records anything in the state database. It opens the
sink (and closes it without writing): for the ``sqlite`` sink that creates the database file
when it does not exist yet, exactly as the first import would.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import asyncssh
import attrs

from truagents_import._safety import escape_name
from truagents_import.check.connection import auth, config, host_key, reachable
from truagents_import.check.context import CheckContext, Rungs, Skip
from truagents_import.check.files import complete, files_present, folder, freshness
from truagents_import.check.report import STEP_NAMES, CheckReport, CheckStep
from truagents_import.check.shape import sample, shape
from truagents_import.check.storage import sink as sink_step
from truagents_import.check.storage import state as state_step

if TYPE_CHECKING:
    from truagents_import.remote.integration import Integration
    from truagents_import.source import DataSource

__all__ = ["CONNECTION_STEPS", "STEPS", "check_connection", "check_source", "skipped_after_config"]

C = TypeVar("C", bound=Rungs)

#: The connection steps, in order: all that :meth:`Integration.check` runs.
CONNECTION_STEPS: tuple[tuple[str, Callable[[Rungs], CheckStep]], ...] = (
    ("config", config),
    ("reachable", reachable),
    ("host_key", host_key),
    ("auth", auth),
)

#: Every step of the ladder, in the order of :data:`STEP_NAMES`.
STEPS: tuple[tuple[str, Callable[[CheckContext], CheckStep]], ...] = (
    *CONNECTION_STEPS,
    ("folder", folder),
    ("files_present", files_present),
    ("freshness", freshness),
    ("complete", complete),
    ("shape", shape),
    ("sample", sample),
    ("state", state_step),
    ("sink", sink_step),
)
assert tuple(name for name, _ in STEPS) == STEP_NAMES

#: The steps about what the upstream delivers: their advice names the source's ``owner``.
DELIVERY_STEPS = frozenset({"files_present", "freshness", "complete", "shape", "sample"})


def check_source(
    source: DataSource,
    *,
    sink: Any = None,
    state: Path | str | None = None,
    run_all: bool = False,
    plugins: Sequence[object] = (),
) -> CheckReport:
    """Run the ladder for one data source.

    ``sink`` is a configuration's ``[sink]`` (its ``type`` and ``options``) and ``state`` its
    ``[state]``: a SQLite file's path or a PostgreSQL URL; without them those steps are skipped.
    Stops at the first failing step (the later ones are ``skip``) unless ``run_all``, which runs
    every step that can run. ``plugins`` are registered besides the built-ins and installed
    entry points, as for an importer. Connections opened here are closed here.
    """
    started = time.monotonic()
    with contextlib.ExitStack() as stack:
        spool = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="truagents-check-")))
        ctx = CheckContext(source, sink=sink, state=state, plugins=plugins, spool=spool, stack=stack)
        steps = _run(ctx, STEPS, run_all=run_all)
    return CheckReport(source=source.name, steps=_name_owner(steps, source.owner), elapsed=time.monotonic() - started)


def check_connection(integration: Integration, *, run_all: bool = False) -> CheckReport:
    """The connection steps only (``config``, ``reachable``, ``host_key``, ``auth``) for an integration."""
    started = time.monotonic()
    steps = _run(Rungs(integration), CONNECTION_STEPS, run_all=run_all)
    name = f"{integration.host}:{integration.port}"
    return CheckReport(source=name, steps=steps, elapsed=time.monotonic() - started)


def _name_owner(steps: list[CheckStep], owner: str | None) -> list[CheckStep]:
    """The steps, the advice of those about the deliveries naming who to ask: the source's ``owner``."""
    if owner is None:
        return steps
    return [
        attrs.evolve(step, advice=f"{step.advice}; who delivers this source: {escape_name(owner)}")
        if step.name in DELIVERY_STEPS and step.status in ("warn", "fail") and step.advice
        else step
        for step in steps
    ]


def skipped_after_config() -> list[CheckStep]:
    """The steps after a failed ``config`` step: none of them can run."""
    return [CheckStep(name, "skip", "not run: config failed") for name in STEP_NAMES[1:]]


def _run(ctx: C, steps: Sequence[tuple[str, Callable[[C], CheckStep]]], *, run_all: bool) -> list[CheckStep]:
    """Run ``steps`` in order; after the first failure the rest are skipped unless ``run_all``
    (but nothing runs after a failed ``config`` step: nothing further can be trusted)."""
    done: list[CheckStep] = []
    failed: str | None = None
    for name, run in steps:
        if failed is not None and not run_all:
            step = CheckStep(name, "skip", f"not run: {failed} failed")
        else:
            step = _one(ctx, name, run)
        ctx.results[name] = step
        done.append(step)
        if step.status == "fail" and failed is None:
            failed = name
            run_all = run_all and name != "config"
    return done


def _one(ctx: C, name: str, run: Callable[[C], CheckStep]) -> CheckStep:
    try:
        return run(ctx)
    except Skip as skip:
        return CheckStep(name, "skip", str(skip))
    except Exception as exc:
        return _unexpected(name, exc)


def _unexpected(name: str, exc: BaseException) -> CheckStep:
    if isinstance(exc, OSError | asyncssh.Error):
        reason = getattr(exc, "strerror", None) or getattr(exc, "reason", None) or str(exc)
        return CheckStep(
            name,
            "fail",
            f"{type(exc).__name__}: {reason}",
            "the server or the network failed during the check: run it again; if this repeats, check the server's log",
        )
    return CheckStep(
        name,
        "fail",
        f"unexpected error: {type(exc).__name__}: {exc}",
        "run check with --all to see the other steps, and report this error with the output",
    )
