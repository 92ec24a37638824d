"""What the steps of a check share: the facts found so far, and the resources opened for them.

A step is a function of a context that returns a :class:`CheckStep` or raises :class:`Skip`.
:class:`Rungs` carries what the connection steps need (an integration and the steps run so far);
:class:`CheckContext` adds a data source and what the later steps find: the listing, the newest
file's head, its mapping. Resources opened here (the state database, an SFTP session) are closed
by the check's exit stack.
"""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from truagents_import._safety import quoted
from truagents_import.errors import ConfigError, PluginError
from truagents_import.plugins import Plugins
from truagents_import.reading import Drift, header_drift
from truagents_import.state import PostgresStateStore, State, StateStore

if TYPE_CHECKING:
    from collections.abc import Sequence

    from truagents_import.check.near import NearMiss
    from truagents_import.check.report import CheckStep
    from truagents_import.fields.mapping import ColumnMapping
    from truagents_import.reading import Shape
    from truagents_import.remote.integration import Integration
    from truagents_import.remote.probe import SSHProbe
    from truagents_import.source import DataSource, RemoteFile

__all__ = ["PLUGIN_ADVICE", "CheckContext", "Rungs", "Skip", "is_state_url"]

PLUGIN_ADVICE = (
    "a plugin failed: fix or update it, or block it with TRUAGENTS_IMPORT_BLOCK_PLUGINS=NAME "
    "(`truagents-import plugins` lists them)"
)


class Skip(Exception):
    """A step cannot run because something it needs is missing; the message says what."""


class Rungs:
    """The connection steps' context: an integration (or none) and the steps run so far."""

    def __init__(self, integration: Integration | None) -> None:
        self.integration = integration
        self.results: dict[str, CheckStep] = {}
        #: How far an SSH connection got (``host_key`` finds it, ``auth`` judges it too).
        self.probe: SSHProbe | None = None

    def describe(self) -> str | None:
        """What is being checked, for the ``config`` step (None: only the integration)."""
        return None

    def passed(self, name: str) -> bool:
        """Whether the step ``name`` ran and held (a warning holds)."""
        step = self.results.get(name)
        return step is not None and step.status in ("pass", "warn")

    def need(self, name: str, why: str) -> None:
        """Skip the calling step, saying ``why``, unless the step ``name`` held."""
        if not self.passed(name):
            raise Skip(why)

    def remote(self) -> Integration:
        """The integration, or skip the calling step when there is none."""
        if self.integration is None:
            raise Skip("not needed: no [integration]")
        return self.integration


class CheckContext(Rungs):
    """The context of the whole ladder for one data source."""

    def __init__(
        self,
        source: DataSource,
        *,
        sink: Any,
        state: Path | str | None,
        plugins: Sequence[object],
        spool: Path,
        stack: contextlib.ExitStack,
    ) -> None:
        super().__init__(source.integration)
        self.source = source
        #: The ``[sink]`` settings (``type`` and ``options``), or None to skip the ``sink`` step.
        self.sink = sink
        self.state_url = str(state) if state is not None and is_state_url(state) else None
        self.state_path = Path(state) if state is not None and self.state_url is None else None
        self.plugin_objects = plugins
        self.spool = spool
        self.stack = stack
        self.now = datetime.now(UTC)
        self._plugins: Plugins | None = None
        self._plugin_error: PluginError | None = None
        self._state: State | None = None
        self._state_tried = False
        #: The source as it lists its folder (over this check's own SFTP session when remote).
        self.listed: DataSource | None = None
        self.entries: list[dict[str, Any]] | None = None
        self.files: list[RemoteFile] | None = None
        self.newer_misses: list[NearMiss] = []
        #: The newest complete file, its layout, mapping and first rows (``shape`` finds them).
        self.newest_complete: RemoteFile | None = None
        self.layout: Shape | None = None
        self.mapping: ColumnMapping | None = None
        self.rows: list[list[str] | None] = []
        self.whole_file = False

    def describe(self) -> str:
        """The source's name, folder, pattern and schedule."""
        s = self.source
        what = f"source {s.name!r}: folder {s.path!r}, pattern {quoted(s.pattern)}"
        if s.expect_every is not None:
            what += f", a file expected every {s.expect_every}"
        return what

    def remote(self) -> Integration:
        """The integration, or skip the calling step: the source reads a local folder."""
        if self.integration is None:
            raise Skip(f"not needed: source {self.source.name!r} reads a local folder (no [integration])")
        return self.integration

    def user(self) -> str:
        """Who reads the folder, for advice."""
        return "this machine's user" if self.integration is None else f"user {self.integration.username!r}"

    def plugins(self) -> Plugins:
        """The plugins, built once; a :class:`PluginError` is raised again to every step that asks."""
        if self._plugin_error is not None:
            raise self._plugin_error
        if self._plugins is None:
            try:
                self._plugins = Plugins.build(self.plugin_objects)
            except PluginError as exc:
                self._plugin_error = exc
                raise
        return self._plugins

    def state(self) -> State | None:
        """The state database if it exists and opens (for listing and drift); never created here."""
        if self._state_tried:
            return self._state
        self._state_tried = True
        if self.state_url is not None:
            with contextlib.suppress(Exception):
                self._state = PostgresStateStore(self.state_url)
        elif self.state_path is not None and self.state_path.is_file():
            with contextlib.suppress(ConfigError, OSError):
                self._state = StateStore(self.state_path)
        if self._state is not None:
            self.stack.callback(self._state.close)
        return self._state

    def open_state_file(self, path: Path) -> State:
        """The state database at ``path``, opened again for the reason it did not open quietly."""
        self._state = StateStore(path)
        self.stack.callback(self._state.close)
        return self._state

    def drift(self, header: list[str]) -> Drift | None:
        """How ``header`` differs from the last imported file's (None: no state, or no change)."""
        state = self.state()
        if state is None:
            return None
        try:
            last = state.last_header(self.source.name)
        except Exception:  # a broken state database is the `state` step's business
            return None
        return header_drift(last, header)


def is_state_url(value: Path | str) -> bool:
    """Whether a ``state`` setting names a PostgreSQL database rather than a SQLite file."""
    return isinstance(value, str) and value.startswith(("postgresql://", "postgres://"))
