"""Sample outputs shown in the docs are the program's own: the demo's report, the import's JSON."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent.parent / "docs"
CLI = [sys.executable, "-c", "from truagents_import.cli import run; run()"]


def _block_after(page: str, marker: str, info: str) -> str:
    text = (DOCS / page).read_text(encoding="utf-8")
    start = text.index(marker)
    match = re.search(rf"^```{info}\n(.*?)^```", text[start:], flags=re.M | re.S)
    assert match is not None, f"no ```{info} block after {marker!r} in {page}"
    return match.group(1)


def _normalise(text: str) -> str:
    text = re.sub(r"/tmp/truagents-demo-\w+", "/tmp/truagents-demo-X", text)
    return "\n".join(line.rstrip() for line in text.strip().splitlines())


def test_the_quick_start_shows_what_the_demo_prints(tmp_path: Path) -> None:
    shown = _block_after("quickstart.md", "It prints (paths and port differ):", "text")
    run = subprocess.run(
        [*CLI, "demo"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert "Traceback" not in run.stderr
    assert _normalise(run.stdout) == _normalise(shown)


def test_the_import_json_example_has_the_keys_import_prints(tmp_path: Path) -> None:
    shown = json.loads(_block_after("cli.md", "## `import`", "json"))
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "contacts_2026-11-24.csv").write_text("email,name\nann@example.com,Ann Lee\nbad,Bob\n", encoding="utf-8")
    (tmp_path / "truagents-import.toml").write_text(
        f'[[sources]]\nname = "crm-drop"\npath = "{inbox}"\npattern = "contacts_*.csv"\nmin_age = 0\n'
        '[sink]\ntype = "sqlite"\npath = "contacts.db"\n[state]\npath = "state.db"\n',
        encoding="utf-8",
    )
    run = subprocess.run(
        [*CLI, "import", "--json", "--rejects", "rejects"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    printed = json.loads(run.stdout)
    assert set(shown) == set(printed)
    assert set(shown["files"][0]) == set(printed["files"][0])
    assert set(shown["files"][0]["problems"][0]) == set(printed["files"][0]["problems"][0])
    assert set(shown["totals"]) == set(printed["totals"])
    file = printed["files"][0]
    assert {k: file[k] for k in ("rows", "imported", "rejected", "mapping")} == {
        k: shown["files"][0][k] for k in ("rows", "imported", "rejected", "mapping")
    }
