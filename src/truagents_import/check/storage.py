"""The storage rungs: ``state`` (the state database opens, or can be created) and ``sink`` (it opens).

A check writes nothing: the state database is opened only when it exists, and the sink is opened
and closed without a write (for the ``sqlite`` sink that creates the database file, as the first
import would).
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING, Any

from truagents_import._safety import escape_name
from truagents_import._text import mask_url, mask_values, secret_values
from truagents_import.check.context import PLUGIN_ADVICE, CheckContext, Skip
from truagents_import.check.report import CheckStep
from truagents_import.errors import ConfigError, PluginError
from truagents_import.sinks.capabilities import Upserting
from truagents_import.state import PostgresStateStore

if TYPE_CHECKING:
    from truagents_import.state import State

__all__ = ["sink", "state"]

_STATE_ADVICE = (
    "set [state] path to a file in a folder this user can create and write, or fix the permissions; "
    "a damaged state file can be moved aside (files are then imported again, and upserts keep that harmless)"
)


def state(ctx: CheckContext) -> CheckStep:
    """The state database opens and can be written, or can be created where it is configured."""
    if ctx.state_url is not None:
        return _postgres_state(ctx, ctx.state_url)
    path = ctx.state_path
    if path is None:
        raise Skip("not run: no state database is configured for this check")
    if path.exists():
        return _existing_state(ctx, path)
    ancestor = path.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        return CheckStep(
            "state", "fail", f"{path} cannot be created: {ancestor} is a file, not a folder", _STATE_ADVICE
        )
    if not _writable(ancestor):
        return CheckStep(
            "state", "fail", f"{path} cannot be created: {ancestor} is not writable by this user", _STATE_ADVICE
        )
    return CheckStep("state", "pass", f"{path} does not exist yet; the first import creates it")


def _postgres_state(ctx: CheckContext, url: str) -> CheckStep:
    store = ctx.state()
    if store is None:
        try:
            PostgresStateStore(url).close()
        except Exception as exc:
            detail = f"the PostgreSQL state database cannot be opened: {exc}"
            return CheckStep("state", "fail", detail, _STATE_ADVICE)
        return CheckStep("state", "fail", "the PostgreSQL state database cannot be opened", _STATE_ADVICE)
    recorded = len(store.history(ctx.source.name))
    return CheckStep("state", "pass", f"PostgreSQL state database reachable; {recorded} attempts recorded")


def _existing_state(ctx: CheckContext, path: Path) -> CheckStep:
    store: State | None = ctx.state()
    try:
        if store is None:  # it did not open quietly: open it again for the reason
            store = ctx.open_state_file(path)
        history = store.history(ctx.source.name)
    except (ConfigError, OSError, sqlite3.Error) as exc:
        reason = str(exc) if isinstance(exc, ConfigError) else f"{path} cannot be read: {exc}"
        return CheckStep("state", "fail", reason, _STATE_ADVICE)
    for target in (path, path.parent):
        if not _writable(target):
            return CheckStep("state", "fail", f"{target} is not writable by this user", _STATE_ADVICE)
    done = [h for h in history if h.get("status") == "imported"]
    last = (
        f"; last import: {escape_name(str(done[-1]['path']))} at {done[-1]['finished_at']}"
        if done
        else "; nothing imported from this source yet"
    )
    return CheckStep("state", "pass", f"{path} opens: {len(history)} file attempt(s) recorded{last}")


def _writable(path: Path) -> bool:
    return os.access(path, os.W_OK | (os.X_OK if path.is_dir() else 0))


def sink(ctx: CheckContext) -> CheckStep:
    """The sink opens and closes, and upserts when the source sets a merge policy."""
    settings = ctx.sink
    if settings is None:
        raise Skip("not run: no sink is configured for this check")
    kind = settings.type
    try:
        plugins = ctx.plugins()
    except PluginError as exc:
        return CheckStep("sink", "fail", str(exc), PLUGIN_ADVICE)
    advice = (
        f"fix [sink] in the configuration: the {kind!r} sink must open from this machine (a folder that "
        "exists or can be created and is writable, or a database server that is up and accepts the "
        "credentials)"
    )
    secrets = secret_values(settings.options)
    try:
        opened = plugins.make_sink(kind, settings.options)
    except ConfigError as exc:
        return CheckStep("sink", "fail", mask_values(str(exc), secrets), advice)
    except Exception as exc:
        reason = mask_values(f"{type(exc).__name__}: {exc}", secrets)
        return CheckStep("sink", "fail", f"the {kind!r} sink cannot be opened: {reason}", advice)
    try:
        opened.close()
    except Exception as exc:
        detail = mask_values(f"the {kind!r} sink opened but failed to close: {exc}", secrets)
        return CheckStep("sink", "fail", detail, advice)
    return _judge_sink(ctx, kind, settings.options, upserts=isinstance(opened, Upserting))


def _judge_sink(ctx: CheckContext, kind: str, options: dict[str, Any], *, upserts: bool) -> CheckStep:
    policy = ctx.source.merge
    if policy is not None and not upserts:
        detail = f"the source sets merge = {policy!r}, but the {kind!r} sink does not upsert (no merge policy)"
        fix = "remove merge from the source, or use an upserting sink (sqlite, postgres); imports stop with exit 2"
        return CheckStep("sink", "fail", detail, fix)
    where = next((mask_url(str(options[k])) for k in ("path", "url") if k in options), None)
    return CheckStep("sink", "pass", f"the {kind!r} sink opens and closes" + (f" ({where})" if where else ""))
