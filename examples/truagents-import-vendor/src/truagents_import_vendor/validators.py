"""Reject role addresses: a mailbox shared by a team is not a contact."""

from __future__ import annotations

from collections.abc import Iterator

from truagents_import import Contact, DataSource, Problem, hookimpl

__all__ = ["ROLE_ADDRESSES", "validate_contacts"]

#: Local parts (before ``@``, ignoring ``+tags``) that name a role, not a person.
ROLE_ADDRESSES: frozenset[str] = frozenset(
    {
        "abuse", "admin", "billing", "contact", "enquiries", "hello", "help", "info", "marketing",
        "no-reply", "noreply", "office", "postmaster", "sales", "support", "team", "webmaster",
    }
)  # fmt: skip


def is_role_address(email: str) -> bool:
    """Whether a (normalised, lower-case) address belongs to a role: ``info@``, ``sales+eu@``..."""
    local = email.partition("@")[0]
    return local.partition("+")[0] in ROLE_ADDRESSES


@hookimpl
def validate_contacts(contacts: list[Contact], source: DataSource) -> Iterator[tuple[int, Problem]]:
    """Reject every contact whose email is a role address, with the problem code ``role_address``."""
    for index, contact in enumerate(contacts):
        if contact.email and is_role_address(contact.email):
            message = f"{contact.email} is a role address, not a person; import the person's own address"
            yield index, Problem(code="role_address", message=message)
