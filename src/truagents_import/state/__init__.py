"""What was imported, and who is importing what now: the state database (SQLite or PostgreSQL)."""

from truagents_import.state.store import CLAIM_LEASE, Claim, State, StateStore, open_state, record_values

__all__ = ["CLAIM_LEASE", "Claim", "State", "StateStore", "open_state", "record_values"]
