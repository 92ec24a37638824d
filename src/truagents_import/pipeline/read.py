"""One file's valid contacts in memory, for notebooks and tests (:meth:`DataSource.read`)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from truagents_import.pipeline.fetch import download, open_local_rows
from truagents_import.pipeline.header import header_finder
from truagents_import.pipeline.process import RowPipeline, checked_mapping
from truagents_import.reading import FileRejected
from truagents_import.report import Problem

if TYPE_CHECKING:
    from truagents_import.fields.contact import Contact
    from truagents_import.plugins import Plugins
    from truagents_import.source import DataSource, RemoteFile

__all__ = ["read_contacts"]


def read_contacts(source: DataSource, file: RemoteFile | str, *, plugins: Plugins) -> list[Contact]:
    """Map and validate one file and return its valid contacts in row order, the later duplicate winning.

    Nothing is written anywhere: no sink, no state, and ``after_import`` is not applied. A file
    rejected as a whole gives no contacts (``preview`` says why).
    """
    path = file if isinstance(file, str) else file.path
    if not path.startswith("/"):
        path = f"{source.path.rstrip('/')}/{path}"
    survivors: dict[str, Contact] = {}

    def ignore(_: list[str] | None, __: list[Problem]) -> None:
        """Rejected rows are not contacts."""

    with tempfile.TemporaryDirectory(prefix="truagents-read-") as spool:
        local = Path(spool) / "0.data"
        download(source, path if isinstance(file, str) else file, local)
        try:
            with open_local_rows(source, local, header_finder(plugins, source)) as (layout, rows):
                mapping = checked_mapping(layout.header, plugins, source, path)
                pipeline = RowPipeline(source, layout.header, mapping, plugins=plugins, file=path, on_reject=ignore)
                for batch in pipeline.batches(rows):
                    for contact in batch.contacts:
                        survivors.pop(contact.identity or "", None)
                        survivors[contact.identity or ""] = contact
        except FileRejected:
            return []
    return sorted(survivors.values(), key=lambda c: c.source_row or 0)
