"""The ``vendor-audit`` sink: the contacts of every commit, as one JSON file in a folder."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

from truagents_import import Contact, hookimpl
from truagents_import.hookspecs import SinkFactory

__all__ = ["AuditSink", "register_sinks"]

_NAME = re.compile(r"^audit-(\d{6})\.json$")


class AuditSink:
    """Writes ``audit-000001.json``, ``audit-000002.json``... into ``path``: one file per commit.

    Contacts are held in memory until :meth:`commit`, which writes them to a temporary file,
    fsyncs it and renames it into place: a file is either complete or absent. A commit with no
    contacts writes nothing.

    :param path: the folder to write into (created if missing).
    """

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self._pending: list[Contact] = []

    def write(self, contacts: Sequence[Contact]) -> None:
        """Hold a batch until the commit."""
        self._pending.extend(contacts)

    def commit(self) -> None:
        """Write the held contacts to the next ``audit-NNNNNN.json``, durably."""
        if not self._pending:
            return
        numbers = [int(m.group(1)) for p in self.path.iterdir() if (m := _NAME.match(p.name))]
        target = self.path / f"audit-{max(numbers, default=0) + 1:06d}.json"
        document = {
            "committed_at": datetime.now(UTC).isoformat(),
            "count": len(self._pending),
            "contacts": [c.to_dict() for c in self._pending],
        }
        partial = target.with_name(f".{target.name}.part")
        with partial.open("w", encoding="utf-8") as f:
            json.dump(document, f, ensure_ascii=False, indent=1)
            f.flush()
            os.fsync(f.fileno())
        os.replace(partial, target)
        folder = os.open(self.path, os.O_RDONLY)  # make the rename itself durable
        try:
            os.fsync(folder)
        finally:
            os.close(folder)
        self._pending.clear()

    def rollback(self) -> None:
        """Forget the contacts written since the last commit."""
        self._pending.clear()

    def close(self) -> None:
        """Drop anything not committed."""
        self._pending.clear()

    def files(self) -> list[Path]:
        """The audit files written so far, oldest first."""
        return sorted(p for p in self.path.iterdir() if _NAME.match(p.name))


@hookimpl
def register_sinks(register: Callable[[str, SinkFactory], None]) -> None:
    """Offer the ``vendor-audit`` sink (option: ``path``, the folder to write into)."""
    register("vendor-audit", AuditSink)
