"""The merge policy of the upserting sinks (``sqlite``, ``postgres``), defined once.

``merge`` (the default), when a contact's identity is already in the sink:

- a field the new row has (not empty) overwrites the stored one;
- an empty field never erases a known value;
- tags are unioned: the stored ones first, then the new ones, without duplicates;
- attributes are merged key by key under the same two rules (an empty value is written only
  for a key the contact did not have yet);
- provenance (``source``, ``source_file``, ``source_row``) and ``updated_at`` always say which
  file wrote the contact last; ``created_at`` never changes.

``replace``: the new row replaces the stored one entirely (``created_at`` is kept).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Literal, overload

from truagents_import.errors import ConfigError

__all__ = ["MERGE_POLICIES", "MergeOption", "MergePolicy", "check_merge_policy", "merge_attributes", "union_tags"]

MergePolicy = Literal["merge", "replace"]
#: The values of a sink's ``merge`` option.
MERGE_POLICIES: tuple[MergePolicy, ...] = ("merge", "replace")


def check_merge_policy(value: object, sink: str) -> MergePolicy:
    """``value`` as a policy, or a :class:`ConfigError` that lists the valid ones."""
    for policy in MERGE_POLICIES:
        if value == policy:
            return policy
    msg = f"[sink] merge = {value!r} is not a merge policy of the {sink} sink; use 'merge' (the default) or 'replace'"
    raise ConfigError(msg)


class MergeOption:
    """A sink's ``merge`` attribute: settable (a source's ``merge`` option is set on it for its files),
    checked on every assignment."""

    _name: str  #: where each instance keeps its policy: set when the class is created

    def __init__(self, sink: str) -> None:
        self._sink = sink

    def __set_name__(self, owner: type, name: str) -> None:
        self._name = f"_{name}"

    @overload
    def __get__(self, obj: None, owner: type | None = None) -> MergeOption: ...
    @overload
    def __get__(self, obj: object, owner: type | None = None) -> MergePolicy: ...
    def __get__(self, obj: object, owner: type | None = None) -> MergeOption | MergePolicy:
        if obj is None:
            return self
        policy: MergePolicy = getattr(obj, self._name)
        return policy

    def __set__(self, obj: Any, value: MergePolicy) -> None:
        setattr(obj, self._name, check_merge_policy(value, self._sink))


def union_tags(stored: Iterable[str], new: Iterable[str]) -> list[str]:
    """The stored tags, then the new ones not already there."""
    return list(dict.fromkeys([*stored, *new]))


def merge_attributes(stored: Mapping[str, str], new: Mapping[str, str]) -> dict[str, str]:
    """The stored attributes updated by the new ones; an empty new value never erases a known one."""
    merged = dict(stored)
    for key, value in new.items():
        if value != "" or key not in merged:
            merged[key] = value
    return merged
