"""The ``memory`` sink: contacts kept in a list, for tests and notebooks."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from truagents_import.fields.contact import Contact
from truagents_import.hookspecs import SinkFactory, hookimpl

__all__ = ["MemorySink"]


class MemorySink:
    """Keeps committed contacts in :attr:`contacts`, in the order they were committed."""

    def __init__(self) -> None:
        #: Every committed contact, in commit order (a re-imported contact appears again).
        self.contacts: list[Contact] = []
        self._pending: list[Contact] = []
        #: How many times :meth:`commit` was called.
        self.commits = 0

    def write(self, contacts: Sequence[Contact]) -> None:
        """Take a batch; it becomes visible in :attr:`contacts` on commit."""
        self._pending.extend(contacts)

    def commit(self) -> None:
        """Make the written batches visible."""
        self.contacts.extend(self._pending)
        self._pending.clear()
        self.commits += 1

    def rollback(self) -> None:
        """Forget what was written since the last commit."""
        self._pending.clear()

    def close(self) -> None:
        """Nothing to release."""

    def by_identity(self) -> dict[str, Contact]:
        """The latest committed contact per identity, as an upserting sink would hold them."""
        return {c.identity: c for c in self.contacts if c.identity is not None}


@hookimpl
def register_sinks(register: Callable[[str, SinkFactory], None]) -> None:
    """Offer the ``memory`` sink."""
    register("memory", MemorySink)
