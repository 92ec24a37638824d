"""Short forms the steps show people: ages, sizes, times and lists of (escaped) names."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from truagents_import._safety import escape_name

__all__ = ["MAX_LISTED", "age", "names", "size", "when"]

#: Names listed in a detail before "and N more".
MAX_LISTED = 5


def age(seconds: float) -> str:
    """``42 s``, ``15 min``, ``5 h 3 min`` or ``3 d 2 h``."""
    seconds = max(seconds, 0.0)
    if seconds < 120:
        return f"{seconds:.0f} s"
    minutes = seconds / 60
    if minutes < 120:
        return f"{minutes:.0f} min"
    hours = minutes / 60
    if hours < 48:
        return f"{int(hours)} h {int(minutes % 60)} min"
    return f"{int(hours // 24)} d {int(hours % 24)} h"


def size(n: int) -> str:
    """``512 bytes``, ``1.5 KB``, ``2.0 MB`` or ``1.2 GB`` (powers of 1000)."""
    value = float(n)
    for unit in ("bytes", "KB", "MB"):
        if value < 1000:
            return f"{n} bytes" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} GB"


def when(moment: datetime) -> str:
    """``2026-11-24 09:30 UTC``."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def names(items: Sequence[str], limit: int = MAX_LISTED) -> str:
    """The first ``limit`` names, escaped, and how many more there are."""
    shown = ", ".join(escape_name(i) for i in items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")
