"""The documentation is tested: every Python example in docs/*.md runs, and the links hold.

Convention for code blocks in docs/*.md:

- A fenced block whose info string is exactly ``python`` is an example that runs. Each one is
  executed on its own, in a fresh namespace, with a new temporary folder as the working folder
  (and as ``tempfile``'s default folder), with plugins installed through entry points blocked
  (the examples show the library alone), so it must be self-contained: make its own files, use a
  local folder or the embedded ``truagents_import.remote.server.SFTPServer`` on 127.0.0.1, never the
  network. It checks its outcome with ``assert``. One pytest test per block, named
  ``page.md:N`` (N counts the runnable blocks of that page from 1).
- A block that must not run (it needs a real remote host, a real key, a plugin package...) gets
  any other info string: ``python title="..."`` (still highlighted on GitHub and in
  mkdocs-material, which shows the title) or ``py-norun``.
- ``toml``, ``sh``, ``console``, ``text``, ``json`` and ``mermaid`` blocks are shown, never run.
"""

from __future__ import annotations

import importlib.metadata
import re
import tempfile
from pathlib import Path
from typing import Any

import pytest

DOCS = Path(__file__).resolve().parent.parent / "docs"

# An opening fence: three or more backticks (or tildes) and the info string; the block ends at the
# first line with the same fence (or a longer one) and nothing else.
_FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})(?P<info>.*)$")
_LINK = re.compile(r"(?<!!)\[[^\]]*\]\((?P<target>[^)\s]+)(?:\s+\"[^\"]*\")?\)")


def _blocks(page: Path) -> list[tuple[str, int, str]]:
    """Every fenced block of a page: (info string, line number of its first code line, code)."""
    lines = page.read_text(encoding="utf-8").splitlines()
    out: list[tuple[str, int, str]] = []
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if m is None:
            i += 1
            continue
        fence, info, indent = m.group("fence"), m.group("info").strip(), len(m.group("indent"))
        start = i + 1
        j = start
        while j < len(lines) and not re.fullmatch(rf" {{0,3}}{re.escape(fence[0])}{{{len(fence)},}}\s*", lines[j]):
            j += 1
        body = "\n".join(line[indent:] if line[:indent].isspace() else line for line in lines[start:j])
        out.append((info, start + 1, body + "\n"))
        i = j + 1
    return out


def _examples() -> list[Any]:
    params = []
    for page in sorted(DOCS.glob("*.md")):
        n = 0
        for info, line, code in _blocks(page):
            if info != "python":
                continue
            n += 1
            params.append(pytest.param(page, line, code, id=f"{page.name}:{n}"))
    return params


EXAMPLES = _examples()


def test_there_are_examples() -> None:
    assert len(EXAMPLES) >= 10, "docs/*.md should hold runnable ```python examples"


@pytest.mark.parametrize(("page", "line", "code"), EXAMPLES)
def test_example_runs(page: Path, line: int, code: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    # tempfile.mkdtemp() and friends land inside tmp_path, which pytest cleans up.
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    monkeypatch.delenv("TRUAGENTS_KEY_PASSPHRASE", raising=False)
    # The examples show the library alone: plugins installed in this environment (the test
    # session installs examples/truagents-import-vendor) would change their outcome.
    installed = sorted({ep.name for ep in importlib.metadata.entry_points(group="truagents_import")})
    monkeypatch.setenv("TRUAGENTS_IMPORT_BLOCK_PLUGINS", ",".join(installed))
    # Pad with blank lines so that a traceback points at the line in the Markdown file.
    source = "\n" * (line - 1) + code
    compiled = compile(source, str(page), "exec", dont_inherit=True)
    namespace: dict[str, object] = {"__name__": f"docs_{page.stem}_{line}"}
    exec(compiled, namespace)


def _strip_code(text: str) -> str:
    text = re.sub(r"^ {0,3}(`{3,}|~{3,}).*?^ {0,3}\1\s*$", "", text, flags=re.M | re.S)
    return re.sub(r"`[^`\n]*`", "", text)


def _links(page: Path, *, anchors: bool = False) -> list[str]:
    """Relative link targets of a page, outside code blocks (without their #anchors unless asked)."""
    targets = []
    for m in _LINK.finditer(_strip_code(page.read_text(encoding="utf-8"))):
        target = m.group("target")
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):
            continue
        if not anchors:
            if target.startswith("#"):
                continue
            target = target.split("#", 1)[0]
        targets.append(target)
    return targets


def _slug(heading: str) -> str:
    """A heading's anchor as GitHub and mkdocs make it: lower case, punctuation dropped, spaces to -."""
    text = re.sub(r"<[^>]+>", "", heading).replace("`", "").strip().lower()
    return re.sub(r"\s", "-", re.sub(r"[^\w\- ]", "", text))


def _anchors(page: Path) -> set[str]:
    text = page.read_text(encoding="utf-8")
    found = set(re.findall(r"""<a\s+(?:id|name)=["']([^"']+)["']""", text))
    for line in re.sub(r"^ {0,3}(`{3,}|~{3,}).*?^ {0,3}\1\s*$", "", text, flags=re.M | re.S).splitlines():
        m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if m:
            found.add(_slug(m.group(1)))
    return found


def test_index_links_exist() -> None:
    index = DOCS / "index.md"
    assert index.is_file()
    linked = [t for t in _links(index) if t.endswith(".md")]
    assert linked, "docs/index.md links no pages"
    missing = [t for t in linked if not (DOCS / t).is_file()]
    assert not missing, f"docs/index.md links pages that do not exist: {missing}"


def test_every_page_is_linked_from_index() -> None:
    linked = {(DOCS / t).resolve() for t in _links(DOCS / "index.md")}
    orphans = [p.name for p in sorted(DOCS.glob("*.md")) if p.name != "index.md" and p.resolve() not in linked]
    assert not orphans, f"pages not linked from docs/index.md: {orphans}"


@pytest.mark.parametrize("page", sorted(DOCS.glob("*.md")), ids=lambda p: p.name)
def test_relative_links_resolve(page: Path) -> None:
    broken = []
    for target in _links(page, anchors=True):
        path, _, anchor = target.partition("#")
        linked = page if not path else (page.parent / path)
        missing_heading = bool(anchor) and linked.suffix == ".md" and anchor not in _anchors(linked)
        if not linked.exists() or missing_heading:
            broken.append(target)
    assert not broken, f"{page.name} links to missing files or headings: {broken}"


def test_every_hook_is_documented() -> None:
    from truagents_import import hookspecs

    text = (DOCS / "plugins.md").read_text(encoding="utf-8")
    hooks = [name for name in dir(hookspecs) if hasattr(getattr(hookspecs, name), "truagents_import_spec")]
    assert hooks
    undocumented = [h for h in hooks if f"`{h}(" not in text]
    assert not undocumented, f"hooks missing from docs/plugins.md: {undocumented}"


def test_every_command_is_documented() -> None:
    from truagents_import.cli import main

    text = (DOCS / "cli.md").read_text(encoding="utf-8")
    undocumented = [name for name in main.commands if f"## `{name}" not in text]
    assert not undocumented, f"commands missing from docs/cli.md: {undocumented}"
