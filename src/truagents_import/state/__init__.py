"""What was imported, and who is importing what now: the state database (SQLite or PostgreSQL)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from truagents_import.state.base import CLAIM_LEASE, Claim, ClaimRefused, State, record_values
from truagents_import.state.postgres import PostgresStateStore
from truagents_import.state.sqlite import StateStore

if TYPE_CHECKING:
    from truagents_import.config import StateConfig

__all__ = [
    "CLAIM_LEASE",
    "Claim",
    "ClaimRefused",
    "PostgresStateStore",
    "State",
    "StateStore",
    "open_state",
    "record_values",
]


def open_state(config: StateConfig) -> State:
    """The state database a ``[state]`` table names: PostgreSQL for a ``url``, else SQLite at ``path``."""
    if config.url:
        return PostgresStateStore(config.url)
    return StateStore(config.path, lock_timeout=config.lock_timeout)
