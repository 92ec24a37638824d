"""What a check found: one :class:`CheckStep` per rung of the ladder, in a :class:`CheckReport`.

The JSON document of SPEC 6 (:meth:`CheckReport.to_dict`) and a table for notebooks
(``_repr_html_``). How a report is printed on a terminal, and which exit status it gives, is the
command line's business (:mod:`truagents_import.cli`).
"""

from __future__ import annotations

import html
from typing import Any, Literal

import attrs

from truagents_import._converter import converter

__all__ = ["MARKS", "STEP_NAMES", "CheckReport", "CheckStep", "StepStatus"]

#: The status of one step: ``skip`` means it did not run (an earlier step failed, or it does
#: not apply, e.g. the connection steps of a source that reads a local folder).
StepStatus = Literal["pass", "warn", "fail", "skip"]

#: The steps, in the order they run (SPEC 6).
STEP_NAMES: tuple[str, ...] = (
    "config",
    "reachable",
    "host_key",
    "auth",
    "folder",
    "files_present",
    "freshness",
    "complete",
    "shape",
    "sample",
    "state",
    "sink",
)

#: One mark per status, as the notebook table shows them (a terminal that cannot show them gets
#: plain ones from the command line).
MARKS: dict[str, str] = {"pass": "✓", "warn": "!", "fail": "✗", "skip": "-"}


@attrs.frozen
class CheckStep:
    """One rung of the ladder: what was found (``detail``) and, when it is not a pass, what to do."""

    name: str
    status: StepStatus
    detail: str
    advice: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """``{"name", "status", "detail", "advice"}`` as in SPEC 6."""
        data: dict[str, Any] = converter.unstructure(self)
        return data


@attrs.define
class CheckReport:
    """The outcome of a check: the steps in order and whether they all held."""

    source: str | None
    steps: list[CheckStep] = attrs.field(factory=list)
    #: Seconds the check took (not part of the JSON document).
    elapsed: float = attrs.field(default=0.0, eq=False)

    @property
    def ok(self) -> bool:
        """True when no step failed (warnings allowed)."""
        return not any(s.status == "fail" for s in self.steps)

    @property
    def failed(self) -> CheckStep | None:
        """The first failing step, if any: the one to fix first."""
        return next((s for s in self.steps if s.status == "fail"), None)

    def step(self, name: str) -> CheckStep:
        """The step called ``name``."""
        for s in self.steps:
            if s.name == name:
                return s
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        """The JSON document of SPEC 6: ``{"source", "ok", "steps": [...]}``."""
        return {"source": self.source, "ok": self.ok, "steps": [s.to_dict() for s in self.steps]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CheckReport:
        """Read a report back from :meth:`to_dict`'s output."""
        return cls(source=data["source"], steps=[converter.structure(s, CheckStep) for s in data["steps"]])

    def _repr_html_(self) -> str:
        rows = "".join(
            "<tr>"
            + "".join(
                f"<td>{html.escape(v)}</td>" for v in (MARKS[s.status], s.name, s.status, s.detail, s.advice or "")
            )
            + "</tr>"
            for s in self.steps
        )
        head = "".join(f"<th>{h}</th>" for h in ("", "step", "status", "detail", "next"))
        verdict = "ok" if self.ok else f"failed at {self.failed.name if self.failed else '?'}"
        return (
            f"<p><b>check {html.escape(self.source or '')}</b>: {verdict}</p>"
            f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"
        )
