"""``run_check``: the ladder for one source of a loaded configuration (SPEC 6 ``check``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from truagents_import.check.ladder import check_source, skipped_after_config
from truagents_import.check.report import CheckReport, CheckStep
from truagents_import.errors import ConfigError

if TYPE_CHECKING:
    from truagents_import.config import Config

__all__ = ["run_check"]


def run_check(
    config: Config,
    source_name: str | None = None,
    *,
    run_all: bool = False,
    plugins: Sequence[object] = (),
) -> CheckReport:
    """Walk the triage ladder for one source of a configuration and report each step.

    Stops at the first failing step (the later ones are ``skip``) unless ``run_all``, which runs
    every step that can run. Every step that does not pass says what to do next. Nothing is
    imported and the state database is not written; connections opened here are closed here.
    ``plugins`` are registered besides the built-ins and installed entry points, as for an importer.
    """
    try:
        source = config.source(source_name)
    except ConfigError as exc:
        advice = (
            "name one of the configured sources with --source, or add a [[sources]] table with name, path and pattern"
        )
        steps = [CheckStep("config", "fail", str(exc), advice), *skipped_after_config()]
        return CheckReport(source=source_name, steps=steps)
    state = config.state.url or config.state.path
    return check_source(source, sink=config.sink, state=state, run_all=run_all, plugins=plugins)
