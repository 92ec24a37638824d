"""Preview: a quick look at one file's shape, mapping, first rows and sample validity."""

from __future__ import annotations

import html
from collections import Counter
from typing import Any

import attrs

from truagents_import.report import escape_name

__all__ = ["Preview"]


@attrs.define
class Preview:
    """What ``DataSource.preview(file)`` and ``truagents-import preview`` show."""

    path: str
    size: int | None
    compression: str | None = None
    encoding: str | None = None
    delimiter: str | None = None
    header: list[str] = attrs.field(factory=list)
    #: column -> field (or ``attributes.<name>``)
    mapping: dict[str, str] = attrs.field(factory=dict)
    rows: list[list[str]] = attrs.field(factory=list)
    #: Rows read for the validation sample, and how they fared.
    sampled: int = 0
    valid: int = 0
    rejected: int = 0
    problem_codes: dict[str, int] = attrs.field(factory=dict)
    warnings: list[str] = attrs.field(factory=list)
    #: Why the whole file would be rejected, if it would be.
    rejected_because: str | None = None
    drift: dict[str, list[str]] | None = None

    def count(self, codes: Counter[str]) -> None:
        """Record the problem codes of the sample, most common first."""
        self.problem_codes = dict(codes.most_common())

    def to_dict(self) -> dict[str, Any]:
        """The preview as plain data (what ``--json`` prints)."""
        return attrs.asdict(self)

    def to_pandas(self) -> Any:
        """The first rows as a pandas DataFrame (needs the ``pandas`` extra)."""
        try:
            import pandas as pd
        except ImportError:  # pragma: no cover - depends on the environment
            msg = "to_pandas() needs pandas: pip install 'truagents-import[pandas]'"
            raise ImportError(msg) from None
        return pd.DataFrame(self.rows, columns=self.header)

    def _repr_html_(self) -> str:
        esc = html.escape
        head = "".join(
            f"<th>{esc(escape_name(h))}<br><small>{esc(self.mapping.get(h, ''))}</small></th>" for h in self.header
        )
        body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in r) + "</tr>" for r in self.rows)
        facts = (
            f"{esc(escape_name(self.path))}: {self.encoding}, delimiter {self.delimiter!r}"
            + (f", {self.compression}" if self.compression else "")
            + f"; sample of {self.sampled} rows: {self.valid} valid, {self.rejected} rejected"
        )
        codes = ", ".join(f"{esc(k)}: {v}" for k, v in self.problem_codes.items())
        extra = f"<p>problems: {codes}</p>" if codes else ""
        if self.rejected_because:
            extra += f"<p><b>file would be rejected:</b> {esc(self.rejected_because)}</p>"
        return f"<p>{facts}</p>{extra}<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
