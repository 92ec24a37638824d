"""What a sink can do besides ``write``, ``commit`` and ``close``: optional, runtime-checkable protocols.

The importer asks ``isinstance(sink, Rollback)`` (and so on) and never names a concrete sink. A
plugin's sink opts into a capability by having its methods; see docs/sinks.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from truagents_import.sinks._merge import MergePolicy

if TYPE_CHECKING:
    from truagents_import.fields.contact import Contact

__all__ = ["BulkLoad", "Rollback", "Upserting"]


@runtime_checkable
class Rollback(Protocol):
    """A sink that can abandon what was written since its last commit (called when a file fails)."""

    def rollback(self) -> None:
        """Forget everything written since the last :meth:`commit`."""


@runtime_checkable
class Upserting(Protocol):
    """A sink that keeps one contact per identity and merges a new one into the stored one.

    ``merge`` is the sink's own policy (``"merge"`` or ``"replace"``, see docs/sinks.md); a
    source's ``merge`` option is passed per file through :meth:`write_merged`, for the contacts
    written until the next commit or rollback.
    """

    merge: MergePolicy

    def write_merged(self, contacts: Sequence[Contact], merge: MergePolicy) -> None:
        """:meth:`write` with ``merge`` as the policy of this file's contacts instead of the sink's own."""


@runtime_checkable
class BulkLoad(Protocol):
    """A sink that takes a file's whole staging file in one step instead of batches of contacts.

    The staging file is a SQLite database with one table, ``staged``, whose columns are listed in
    :data:`truagents_import.pipeline.staging.STAGED_COLUMNS` (tags and attributes as JSON text,
    unsubscribed as 1, 0 or NULL, ``row`` the contact's row number), the survivors of the file in
    row order. ``load_staging`` writes them as :meth:`write` would, inside the file's transaction;
    the importer then calls ``commit``.
    """

    def takes_staging(self) -> bool:
        """Whether this sink, as it is now, may be given a staging file (not when a subclass changed ``write``)."""

    def load_staging(self, staging: Path, source: str, file: str, merge: MergePolicy | None = None) -> None:
        """Upsert every contact of ``staging`` (``source``'s ``file``) in row order, by ``merge`` or the sink's own."""
