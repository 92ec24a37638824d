"""The hook specifications: what a plugin can implement.

A plugin is any module or object with functions decorated by :data:`hookimpl` whose names
are those below. Hooks are called once per file or once per batch of rows, never per row.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Protocol

import pluggy

if TYPE_CHECKING:
    from collections.abc import Sequence

    from truagents_import.contact import Contact
    from truagents_import.report import ImportReport, Problem
    from truagents_import.source import DataSource

__all__ = ["PROJECT", "Sink", "SinkFactory", "hookimpl", "hookspec"]

#: The pluggy project name and the entry-point group plugins are found under.
PROJECT = "truagents_import"

hookspec = pluggy.HookspecMarker(PROJECT)
#: Decorate a plugin's functions with this to implement a hook.
hookimpl = pluggy.HookimplMarker(PROJECT)


class Sink(Protocol):
    """Where contacts go. The importer calls ``write`` for batches, then ``commit`` once per file.

    After ``commit`` returns, every contact written since the last commit must be durable.
    A sink may also offer ``rollback()``: the importer calls it when a file fails after some of
    its contacts were written, so that nothing of that file is committed.
    """

    def write(self, contacts: Sequence[Contact]) -> None:
        """Take a batch of contacts (not yet durable)."""

    def commit(self) -> None:
        """Make everything written since the last commit durable."""

    def close(self) -> None:
        """Release connections and files."""


#: A sink factory takes the ``[sink]`` options as keyword arguments and returns a :class:`Sink`.
SinkFactory = Callable[..., Sink]


@hookspec
def map_columns(header: list[str], source: DataSource) -> Mapping[str, str] | None:
    """Map a file's header to contact fields: return ``{column: field or "attributes.<name>"}``.

    Called once per file, before any row is read. All results merge; the source's explicit
    mapping wins, then later-registered plugins.

    :param header: the file's column names, trimmed, in file order.
    :param source: the data source the file belongs to.
    """


@hookspec
def validate_contacts(
    contacts: list[Contact], source: DataSource
) -> Iterable[tuple[int, Problem]] | None:
    """Check a batch of contacts: yield ``(index_in_batch, Problem)`` for each row to reject.

    Called once per batch of rows. Any problem rejects that row; the row is kept in the
    rejects file with the problem's code.

    :param contacts: the batch, already mapped and normalised.
    :param source: the data source the file belongs to.
    """


@hookspec
def register_sinks(register: Callable[[str, SinkFactory], None]) -> None:
    """Offer sink types: call ``register(name, factory)`` for each.

    Called once, when the plugin manager is built. The factory receives the ``[sink]``
    options (without ``type``) as keyword arguments. A name registered twice is an error.

    :param register: the callback that records a sink type under a name.
    """


@hookspec
def import_finished(report: ImportReport, source: DataSource) -> None:
    """React to a finished run (alerts, metrics). Called once after each run, dry runs included.

    :param report: what happened, file by file.
    :param source: the data source that was run.
    """
