"""Small Arrow helpers shared by the columnar readers (:mod:`.fields.phone_columns`, :mod:`.pipeline.columnar`)."""

from __future__ import annotations

import functools
from collections.abc import Sequence

import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["falses", "mask_at"]


def falses(size: int) -> pa.BooleanArray:
    """``size`` false values."""
    return pa.repeat(False, size)


def mask_at(size: int, rows: pa.Array | Sequence[int]) -> pa.BooleanArray:
    """A mask of ``size`` rows, true at the positions ``rows``."""
    return pc.is_in(_positions(size), value_set=pa.array(rows, pa.uint64()))


@functools.lru_cache(maxsize=64)
def _positions(size: int) -> pa.Array:
    return pa.array(range(size), pa.uint64())
