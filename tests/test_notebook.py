"""The example notebook runs from top to bottom, and its rich outputs render as HTML."""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

import pytest

NOTEBOOK = Path(__file__).parent.parent / "examples" / "notebooks" / "explore.ipynb"


def _run_cell(code: str, namespace: dict[str, Any]) -> Any:
    tree = ast.parse(code)
    last = tree.body[-1] if tree.body and isinstance(tree.body[-1], ast.Expr) else None
    if last is not None:
        tree.body.pop()
    exec(compile(tree, str(NOTEBOOK), "exec"), namespace)
    if last is None:
        return None
    return eval(compile(ast.Expression(last.value), str(NOTEBOOK), "eval"), namespace)


def test_notebook_runs_and_renders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    cells = [c for c in json.loads(NOTEBOOK.read_text())["cells"] if c["cell_type"] == "code"]
    namespace: dict[str, Any] = {}
    outputs = [_run_cell("".join(c["source"]), namespace) for c in cells]
    try:
        listing, preview, codes, report, contacts, problems = outputs[1:7]
        assert [name for name, _, state in listing] == ["contacts_2026-11-22.csv", "contacts_2026-11-23.csv"]
        assert {state for _, _, state in listing} == {"new"}
        html = preview._repr_html_()
        assert "<table>" in html and "E-mail" in html
        assert codes == {"missing_identity": 1}
        assert "<table>" in report._repr_html_() and report.totals.imported == 6
        assert ("jose@example.com", "jose@example.com", "+33142685300", "America/New_York") in contacts
        assert problems["/inbox/contacts_2026-11-22.csv"] == [
            (3, "invalid_email", "Email"),
            (6, "invalid_phone", "Phone"),
        ]
    finally:
        if "server" in namespace:
            namespace["server"].stop()


def test_the_docs_page_shows_the_notebooks_cells() -> None:
    """docs/notebook.md lists the notebook's cells ("1. ...", "2. ..."): the same code, in order."""
    import re

    page = (NOTEBOOK.parent.parent.parent / "docs" / "notebook.md").read_text(encoding="utf-8")
    shown = re.findall(r'^```python title="\d+\. [^"]*"\n(.*?)^```', page, re.M | re.S)
    cells = ["".join(c["source"]).rstrip("\n") + "\n" for c in json.loads(NOTEBOOK.read_text())["cells"]
             if c["cell_type"] == "code"]  # fmt: skip
    assert shown == cells
