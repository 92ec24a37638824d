"""The hook specifications: what a plugin can implement.

A plugin is any module or object with functions decorated by :data:`hookimpl` whose names
are those below. A plugin implements only the hooks it needs, and may accept only some of a
hook's parameters. Hooks are called once per file or once per batch of rows, never per row.

The reference in ``docs/hooks.md`` is generated from this module by ``docs/gen_hooks.py``:
edit the docstrings here, then run ``python docs/gen_hooks.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Protocol

import pluggy

if TYPE_CHECKING:
    from collections.abc import Sequence

    from truagents_import.fields.contact import Contact
    from truagents_import.fields.layout import Layout
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
        """Take a batch of contacts (not yet durable).

        :param contacts: valid contacts of one file, at most one per identity per file.
        """

    def commit(self) -> None:
        """Make everything written since the last commit durable (called once per file)."""

    def close(self) -> None:
        """Release connections and files; anything written but not committed is dropped."""


#: A sink factory takes the ``[sink]`` options as keyword arguments and returns a :class:`Sink`.
SinkFactory = Callable[..., Sink]


@hookspec
def map_columns(header: list[str], source: DataSource) -> Mapping[str, str] | None:
    """Map a file's header to contact fields: return ``{column: field or "attributes.<name>"}``.

    Called once per file, before any row is read. All results merge; the source's explicit
    mapping wins, then later-registered plugins. A field is one of ``external_id``, ``email``,
    ``phone``, ``first_name``, ``last_name``, ``timezone``, ``tags``, ``unsubscribed``;
    columns no one maps are kept verbatim in ``attributes``. Return ``None`` or ``{}`` when
    the header is not yours.

    :param header: the file's column names, trimmed, in file order (a copy: changing it has no effect).
    :param source: the data source the file belongs to.
    :returns: column name -> field, or ``"attributes.<name>"`` to keep it under another name.
    """


@hookspec
def validate_contacts(contacts: list[Contact], source: DataSource) -> Iterable[tuple[int, Problem]] | None:
    """Check a batch of contacts: yield ``(index_in_batch, Problem)`` for each row to reject.

    Called once per batch of rows (a file is one or more batches). Any problem rejects that
    row; the row is kept in the rejects file with the problem's code. A problem without a
    ``row`` gets the contact's row number. Use a code of your own (``role_address``), not one
    of the built-in ``invalid_<field>`` codes, so operators can tell who rejected the row.

    :param contacts: the batch, already mapped and normalised; each knows its ``source_row``.
    :param source: the data source the file belongs to.
    :returns: ``(index_in_batch, Problem)`` pairs (a list, or yield them); ``None`` when all are fine.
    """


@hookspec
def register_sinks(register: Callable[[str, SinkFactory], None]) -> None:
    """Offer sink types: call ``register(name, factory)`` for each.

    Called once, when the plugin manager is built (when an importer is made, or by
    ``truagents-import plugins``). The factory receives the ``[sink]`` options (without
    ``type``) as keyword arguments and returns a :class:`Sink`. A name registered twice is an
    error that names both plugins.

    :param register: the callback that records a sink type under a name: ``register("vendor-audit", AuditSink)``.
    """


@hookspec
def register_layouts(register: Callable[[Layout], None]) -> None:
    """Offer export layouts (SPEC 9): call ``register(layout)`` for each.

    Called once, when the plugin manager is built. A file whose header has every distinctive
    column of a layout is read in that layout (a source may force one with ``layout = "<name>"``
    or turn recognition off with ``layout = "none"``). A name registered twice is an error that
    names both plugins.

    :param register: the callback that records a :class:`~truagents_import.Layout`: ``register(Layout(name=..., ...))``.
    """


@hookspec
def import_finished(report: ImportReport, source: DataSource) -> None:
    """React to a finished run (alerts, metrics). Called once after each run, dry runs included.

    A plugin that raises here does not change the outcome of any file: its error is added to
    the report's warnings.

    :param report: what happened, file by file (``report.dry_run`` tells a dry run).
    :param source: the data source that was run.
    """
