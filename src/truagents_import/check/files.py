"""The folder rungs: ``folder``, ``files_present``, ``freshness`` and ``complete``.

The files and their states are the source's own listing (:meth:`DataSource.list_files`); these
steps judge them against the schedule and say where a delivery went instead.
"""

from __future__ import annotations

import contextlib
import difflib
import posixpath
from collections import Counter
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import asyncssh
import attrs

from truagents_import._safety import escape_name, quoted
from truagents_import._text import is_temporary, listed_time, parse_duration, plural
from truagents_import.check.context import CheckContext, Skip
from truagents_import.check.near import near_misses
from truagents_import.check.report import CheckStep
from truagents_import.check.wording import MAX_LISTED, age, names, size, when
from truagents_import.errors import ConnectError
from truagents_import.remote.sftp import close_filesystem

if TYPE_CHECKING:
    from truagents_import.source import RemoteFile

__all__ = ["STUCK_AFTER", "complete", "files_present", "folder", "freshness"]

#: A temporary upload name older than this is reported as stuck.
STUCK_AFTER = timedelta(hours=1)
#: Folders searched for files that match the pattern when none in the source's folder does.
_MAX_FOLDERS = 20


def folder(ctx: CheckContext) -> CheckStep:
    """The source's folder exists, is a folder, and can be listed."""
    failed = _open_listing(ctx)
    if failed is not None:
        return failed
    assert ctx.listed is not None
    fs, path = ctx.listed.filesystem(), ctx.source.path
    try:
        info = fs.info(path)
    except FileNotFoundError:
        return CheckStep("folder", "fail", f"folder {path!r} does not exist", _missing_folder_advice(fs, path))
    except PermissionError:
        advice = f"ask the server's owner to let {ctx.user()} list and read {path!r}"
        return CheckStep("folder", "fail", f"folder {path!r} cannot be read by this user", advice)
    if info.get("type") != "directory":
        return CheckStep(
            "folder",
            "fail",
            f"{path!r} is a {info.get('type') or 'file'}, not a folder",
            "set `path` in [[sources]] to the folder that holds the files; `pattern` picks the files",
        )
    try:
        entries: list[dict[str, Any]] = fs.ls(path, detail=True)
    except (PermissionError, FileNotFoundError):
        advice = f"ask the server's owner to give {ctx.user()} permission to list {path!r}"
        return CheckStep("folder", "fail", f"folder {path!r} exists but cannot be listed", advice)
    ctx.entries = entries
    n_files = sum(1 for e in entries if e.get("type") == "file")
    n_dirs = sum(1 for e in entries if e.get("type") == "directory")
    return CheckStep("folder", "pass", f"{path} can be listed: {plural(n_files, 'file')}, {plural(n_dirs, 'folder')}")


def _open_listing(ctx: CheckContext) -> CheckStep | None:
    """Set :attr:`CheckContext.listed`: the source over this check's own SFTP session (closed by the
    check), or the source itself for a local folder. A failing step when the session cannot open."""
    if ctx.integration is None:
        ctx.listed = ctx.source
        return None
    ctx.need("auth", "not run: not logged in")
    try:
        fs = ctx.integration.connect()
    except ConnectError as exc:
        return CheckStep(
            "folder",
            "fail",
            f"the SFTP session could not be opened: {exc}",
            "the key was accepted but SFTP was not: ask the server's owner to enable the SFTP subsystem for this user",
        )
    ctx.stack.callback(close_filesystem, fs)
    ctx.listed = attrs.evolve(ctx.source, integration=None, fs=fs)
    return None


def _missing_folder_advice(fs: Any, path: str) -> str:
    parent = posixpath.dirname(path.rstrip("/")) or "/"
    advice = "set `path` in [[sources]] to the folder the upstream writes to"
    with contextlib.suppress(OSError, asyncssh.Error):
        folders = [
            posixpath.basename(e["name"].rstrip("/"))
            for e in fs.ls(parent, detail=True)
            if e.get("type") == "directory"
        ]
        close = difflib.get_close_matches(posixpath.basename(path.rstrip("/")), folders, n=3, cutoff=0.6)
        if close:
            advice += f"; {parent} has {names([posixpath.join(parent, c) for c in close])}: is it one of those?"
        elif folders:
            advice += f"; the folders in {parent} are {names(sorted(folders))}"
        else:
            advice += f"; {parent} holds no folders"
    return advice + " (paths are as the server shows them after login)"


def files_present(ctx: CheckContext) -> CheckStep:
    """Some file matches the pattern; newer files under other names are pointed out."""
    ctx.need("folder", "not run: the folder cannot be listed")
    assert ctx.listed is not None
    files = ctx.files = ctx.listed.list_files(ctx.state(), now=ctx.now)
    final = [f for f in files if f.state != "ignored"]
    if final:
        return _files_found(ctx, final)
    temporary = [f for f in files if f.state == "ignored"]
    if temporary:
        return CheckStep(
            "files_present",
            "warn",
            f"no finished file matches {quoted(ctx.source.pattern)} yet; upload(s) in progress: "
            f"{names([f.name for f in temporary])}",
            "see the `complete` step",
        )
    return _nothing_matches(ctx)


def _files_found(ctx: CheckContext, final: list[RemoteFile]) -> CheckStep:
    assert ctx.entries is not None
    pattern = ctx.source.pattern
    counts = Counter(f.state for f in final)
    summary = ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))
    newest = max(final, key=lambda f: f.mtime)
    detail = (
        f"{len(final)} file(s) match {quoted(pattern)} ({summary}); newest {escape_name(newest.name)}, "
        f"{size(newest.size)}, {when(newest.mtime)}"
    )
    newer = [
        posixpath.basename(e["name"]) for e in ctx.entries if e.get("type") == "file" and listed_time(e) > newest.mtime
    ]
    newer = _data_names(ctx, newer)
    misses = ctx.newer_misses = near_misses(newer, pattern)
    if not misses:
        return CheckStep("files_present", "pass", detail)
    shown = "; ".join(f"{escape_name(m.name)}: {m.reason}" for m in misses[:MAX_LISTED])
    return CheckStep(
        "files_present",
        "warn",
        f"{detail}; but newer files arrived under names that do not match: {shown}",
        "the upstream may have changed how it names files: ask it to use the agreed name, or fix "
        "`pattern` in [[sources]]",
    )


def _nothing_matches(ctx: CheckContext) -> CheckStep:
    assert ctx.entries is not None
    source = ctx.source
    all_names = _data_names(ctx, sorted(posixpath.basename(e["name"]) for e in ctx.entries if e.get("type") == "file"))
    visible = [n for n in all_names if not is_temporary(n)]
    misses = near_misses(all_names, source.pattern)
    elsewhere = _matches_elsewhere(ctx)
    if not visible:
        detail = f"folder {source.path} is empty" if not all_names else f"folder {source.path} holds only hidden files"
    else:
        detail = f"no file in {source.path} matches {quoted(source.pattern)}"
    advice: list[str] = []
    if misses:
        shown = "; ".join(f"{escape_name(m.name)}: {m.reason}" for m in misses[:MAX_LISTED])
        detail += f"; near misses: {shown}"
        advice.append(
            f"fix `pattern` in [[sources]] or ask the upstream to name its files to match {quoted(source.pattern)}"
        )
    elif visible:
        detail += f"; it holds {names(visible)}"
    if elsewhere:
        where = "; ".join(f"{found} ({n} matching)" for found, n in elsewhere)
        detail += f"; matching files are in {where}"
        advice.append("check `path` in [[sources]]: the upstream delivers to another folder")
    if not advice:
        advice.append(_nothing_delivered_advice(ctx))
    return CheckStep("files_present", "fail", detail, "; ".join(advice))


def _data_names(ctx: CheckContext, listed: list[str]) -> list[str]:
    """``listed`` without the files that travel beside the data: ready markers, manifests and
    feedback files, under their final or their temporary names (never near misses)."""
    assert ctx.entries is not None
    present = {posixpath.basename(e["name"]) for e in ctx.entries if e.get("type") == "file"}
    source = ctx.source
    return [n for n in listed if not source.is_sidecar(n, present)]


def _nothing_delivered_advice(ctx: CheckContext) -> str:
    last = _last_import(ctx)
    advice = (
        "nothing has been delivered: ask the upstream whether its scheduled export ran and where "
        "it wrote (a batch job can fail before any file reaches the server)"
        + (f"; the last file imported was {last}" if last else "")
    )
    if ctx.source.after_import != "leave":
        advice += f"; files are removed after import (after_import = {ctx.source.after_import!r})"
    return advice


def _matches_elsewhere(ctx: CheckContext) -> list[tuple[str, int]]:
    """Folders beside and below the source's folder that hold files matching the pattern."""
    assert ctx.entries is not None
    assert ctx.listed is not None
    fs = ctx.listed.filesystem()
    path = ctx.source.path.rstrip("/") or "/"
    folders = [e["name"].rstrip("/") for e in ctx.entries if e.get("type") == "directory"]
    parent = posixpath.dirname(path)
    if path not in ("/", parent):
        with contextlib.suppress(OSError, asyncssh.Error):
            folders += [
                e["name"].rstrip("/")
                for e in fs.ls(parent, detail=True)
                if e.get("type") == "directory" and e["name"].rstrip("/") != path
            ]
    # The source's own archive (after_import = "move:<dir>") and feedback folders hold matching
    # names on purpose: they are not where deliveries went astray.
    own = {f for f in (ctx.source.archive_folder(), ctx.source.feedback_folder()) if f is not None}
    folders = [f for f in folders if posixpath.normpath(f) not in own]
    found = []
    for other in folders[:_MAX_FOLDERS]:
        with contextlib.suppress(OSError, asyncssh.Error):
            listed = [posixpath.basename(n) for n in fs.ls(other, detail=False)]
            hits = [n for n in listed if not is_temporary(n) and ctx.source.matches(n)]
            if hits:
                found.append((escape_name(other), len(hits)))
    return found


def _last_import(ctx: CheckContext) -> str | None:
    state = ctx.state()
    if state is None:
        return None
    with contextlib.suppress(Exception):
        done = [h for h in state.history(ctx.source.name) if h.get("status") == "imported"]
        if done:
            return f"{escape_name(str(done[-1]['path']))} at {done[-1]['finished_at']}"
    return None


def freshness(ctx: CheckContext) -> CheckStep:
    """The newest file is no older than ``expect_every`` (and not dated in the future)."""
    if not ctx.files:
        raise Skip("not run: no file matches the pattern")
    newest = max(ctx.files, key=lambda f: f.mtime)
    seconds = (ctx.now - newest.mtime).total_seconds()
    name = escape_name(newest.name)
    what = f"the newest file, {name}, was modified {age(seconds)} ago ({when(newest.mtime)})"
    expect = ctx.source.expect_every
    if seconds < -60:
        return CheckStep(
            "freshness",
            "warn",
            f"the newest file, {name}, is dated {when(newest.mtime)}, in the future",
            "the server's clock is ahead of this machine's: ages and min_age are off until it is fixed",
        )
    if expect is None:
        return CheckStep("freshness", "pass", f"{what}; set `expect_every` to have lateness judged")
    if seconds <= parse_duration(expect).total_seconds():
        return CheckStep("freshness", "pass", f"{what}; expected every {expect}")
    advice = (
        "the upstream has not delivered on schedule: ask its owner whether the scheduled export "
        "ran (it can fail before any file reaches the server); this step passes once a new file arrives"
    )
    if ctx.newer_misses:
        arrived = names([m.name for m in ctx.newer_misses])
        advice = (
            f"newer files did arrive, under names the pattern does not match ({arrived}, see "
            "files_present): have the upstream use the agreed name, or fix `pattern` in [[sources]]"
        )
    return CheckStep("freshness", "fail", f"{what}; a new file is expected every {expect}", advice)


def complete(ctx: CheckContext) -> CheckStep:
    """The newest file is complete: not still uploading, old enough, and its ready marker is there."""
    if not ctx.files:
        raise Skip("not run: no file matches the pattern")
    files = ctx.files
    newest = max(files, key=lambda f: f.mtime)
    stuck = [f for f in files if f.state == "ignored" and ctx.now - f.mtime > STUCK_AFTER]
    if newest.state == "ignored":
        return _still_uploading(ctx, newest, stuck=newest in stuck)
    if newest.state == "incomplete":
        return _not_ready(ctx, newest)
    name = escape_name(newest.name)
    notes = []
    if stuck:
        notes.append(f"stuck upload(s) with temporary names: {names([f.name for f in stuck])}")
    older_waiting = [f for f in files if f.state == "incomplete" and f is not newest]
    if older_waiting:
        notes.append(f"older file(s) still incomplete: {names([f.name for f in older_waiting])}")
    if notes:
        return CheckStep(
            "complete",
            "warn",
            f"the newest file, {name}, is complete, but " + "; ".join(notes),
            "ask the upstream to send the stuck files again; temporary files that will never finish can be deleted",
        )
    in_progress = [f for f in files if f.state == "ignored" and f not in stuck]
    extra = f"; {len(in_progress)} upload(s) in progress" if in_progress else ""
    return CheckStep("complete", "pass", f"the newest file, {name}, is complete{extra}")


def _seconds_since(ctx: CheckContext, file: RemoteFile) -> float:
    return (ctx.now - file.mtime).total_seconds()


def _still_uploading(ctx: CheckContext, newest: RemoteFile, *, stuck: bool) -> CheckStep:
    name, took = escape_name(newest.name), age(_seconds_since(ctx, newest))
    if stuck:
        return CheckStep(
            "complete",
            "fail",
            f"the newest delivery, {name}, has kept its temporary name for {took}: the upload "
            "stopped before it was renamed into place",
            "ask the upstream to send the file again (upload under a temporary name, then rename); "
            "the stuck temporary file can then be deleted",
        )
    return CheckStep(
        "complete",
        "fail",
        f"the newest delivery, {name}, is still being uploaded (temporary name, modified {took} ago)",
        "wait for the upload to finish (the file is renamed when it is complete) and run check again; "
        "if the name stays, the upload was interrupted: ask the upstream to send it again",
    )


def _not_ready(ctx: CheckContext, newest: RemoteFile) -> CheckStep:
    source, name = ctx.source, escape_name(newest.name)
    seconds = _seconds_since(ctx, newest)
    if seconds < source.min_age:
        return CheckStep(
            "complete",
            "fail",
            f"the newest file, {name}, was modified {age(seconds)} ago; files younger than min_age "
            f"({source.min_age:g} s) are left for the next run",
            f"wait until it is {source.min_age:g} s old (the upstream may still be writing it) and run "
            "check again; if the upstream renames files into place when complete, min_age can be lowered",
        )
    present = {posixpath.basename(e["name"]) for e in ctx.entries or () if e.get("type") == "file"}
    marker = source.ready_marker_for(newest.name)
    manifest = source.manifest_for(newest.name)
    if manifest is not None and (marker is None or marker in present):
        return CheckStep(
            "complete",
            "fail",
            f"the newest file, {name}, is waiting for its manifest {escape_name(manifest)}",
            f"the upstream sends {escape_name(manifest)} after the file (`upload --manifest` does): ask whether "
            "its delivery finished; if it never sends manifests, remove `manifest` from the source",
        )
    marker = escape_name(marker or "")
    return CheckStep(
        "complete",
        "fail",
        f"the newest file, {name}, is waiting for its ready marker {marker}",
        f"the upstream writes {marker} once the file is complete: ask whether its job "
        "finished; if it never writes markers, remove `ready_marker` from the source",
    )
