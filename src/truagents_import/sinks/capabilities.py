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

__all__ = ["BulkLoad", "FileLedger", "Rollback", "Upserting"]


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


@runtime_checkable
class FileLedger(Protocol):
    """A sink that records which file each commit belongs to (the ``jsonl`` and ``csv`` sinks).

    The importer commits a file to the sink before the state database records it. A run killed
    between the two leaves the contacts in the sink and the file unrecorded, so the next run
    imports it again: an upserting sink just writes the same rows again, but an append-only one
    would hold them twice. Before writing a file, the importer asks :meth:`holds`; when the sink
    holds that content and the state has no import of it, the contacts are already there and are
    not written again. Otherwise it calls :meth:`begin_file`, and the next commit is that file's.
    """

    def holds(self, source: str, sha256: str) -> bool:
        """Whether a commit of this content of ``source`` (named by :meth:`begin_file`) is in the sink."""

    def begin_file(self, source: str, sha256: str, path: str) -> None:
        """Name the file (``source``'s content ``sha256``, delivered as ``path``) that the next commit belongs to."""
