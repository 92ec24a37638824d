"""Generate docs/hooks.md, the hook reference, from src/truagents_import/hookspecs.py.

    python docs/gen_hooks.py           # rewrite docs/hooks.md
    python docs/gen_hooks.py --check   # exit 1 if docs/hooks.md is out of date or a hook is undocumented

The hook specs' signatures and docstrings are the single source: edit them, not the Markdown.
A docstring is a summary line, paragraphs, then ``:param name:``, ``:returns:`` and
``:raises Error:`` fields; RST roles (``:class:`Sink```) and double backticks become Markdown code.
tests/test_plugins.py runs the check.
"""

from __future__ import annotations

import inspect
import re
import sys
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

HOOKS_MD = Path(__file__).resolve().parent / "hooks.md"

_FIELD = re.compile(r"^:(?P<kind>param|returns?|raises)(?:\s+(?P<name>[\w.]+))?:\s*(?P<text>.*)$")
_ROLE = re.compile(r":(?:class|data|func|meth|attr|mod|exc):`~?(?P<target>[^`]+)`")


def _markdown(text: str) -> str:
    """RST inline markup to Markdown: roles and ``literals`` become `code`."""
    text = _ROLE.sub(lambda m: f"`{m.group('target').rsplit('.', 1)[-1]}`", text)
    return re.sub(r"``(.+?)``", r"`\1`", text)


def _cell(text: str) -> str:
    """Markdown for a table cell: a ``|`` would end the cell."""
    return _markdown(text).replace("|", "\\|")


def hookspecs_of(module: types.ModuleType) -> list[Callable[..., Any]]:
    """The hook specifications of a module, in the order they are defined."""
    marker = f"{module.PROJECT}_spec"
    return [obj for obj in vars(module).values() if inspect.isfunction(obj) and hasattr(obj, marker)]


def signature(func: Callable[..., Any]) -> str:
    """``name(param: type, ...) -> type``, annotations exactly as written in the source."""
    sig = inspect.signature(func)
    params = []
    for p in sig.parameters.values():
        if p.name == "self":
            continue
        ann = p.annotation
        params.append(p.name if ann is inspect.Parameter.empty else f"{p.name}: {_annotation(ann)}")
    ret = "" if sig.return_annotation is inspect.Signature.empty else f" -> {_annotation(sig.return_annotation)}"
    return f"{func.__name__}({', '.join(params)}){ret}"


def _annotation(ann: object) -> str:
    return ann if isinstance(ann, str) else inspect.formatannotation(ann)


def parse_docstring(doc: str) -> tuple[list[str], list[tuple[str, str | None, str]]]:
    """Split a docstring into its paragraphs and its ``(kind, name, text)`` fields."""
    paragraphs: list[str] = []
    fields: list[tuple[str, str | None, str]] = []
    current: list[str] = []
    for line in doc.splitlines():
        m = _FIELD.match(line.strip())
        if m:
            if current and not fields:
                paragraphs.append(" ".join(current))
            current = []
            kind = "returns" if m.group("kind").startswith("return") else m.group("kind")
            fields.append((kind, m.group("name"), m.group("text")))
        elif fields and line.startswith((" ", "\t")) and line.strip():
            kind, name, text = fields[-1]
            fields[-1] = (kind, name, f"{text} {line.strip()}")
        elif not line.strip():
            if current and not fields:
                paragraphs.append(" ".join(current))
            current = []
        elif not fields:
            current.append(line.strip())
    if current and not fields:
        paragraphs.append(" ".join(current))
    return paragraphs, fields


def problems(module: types.ModuleType) -> list[str]:
    """What is undocumented: a hook without a docstring, a parameter without ``:param:``, a stale one."""
    found = []
    hooks = hookspecs_of(module)
    if not hooks:
        found.append(f"{module.__name__} defines no hook specifications")
    for func in hooks:
        doc = inspect.getdoc(func)
        if not doc:
            found.append(f"hook {func.__name__} has no docstring")
            continue
        _, fields = parse_docstring(doc)
        documented = {name for kind, name, _ in fields if kind == "param" and name}
        params = set(inspect.signature(func).parameters)
        found += [f"hook {func.__name__}: parameter {p!r} has no :param: line" for p in sorted(params - documented)]
        found += [f"hook {func.__name__}: :param {p}: names no parameter" for p in sorted(documented - params)]
    return found


def _section(func: Callable[..., Any], *, level: str = "##") -> list[str]:
    doc = inspect.getdoc(func) or ""
    paragraphs, fields = parse_docstring(doc)
    out = [f"{level} `{signature(func)}`", ""]
    for paragraph in paragraphs:
        out += [_markdown(paragraph), ""]
    params = [(name, text) for kind, name, text in fields if kind == "param"]
    if params:
        out += ["| parameter | meaning |", "|---|---|"]
        out += [f"| `{name}` | {_cell(text)} |" for name, text in params]
        out.append("")
    for kind, name, text in fields:
        if kind == "returns":
            out += [f"**Returns:** {_markdown(text)}", ""]
        elif kind == "raises":
            out += [f"**Raises** `{name}`: {_markdown(text)}", ""]
    return out


def render(module: types.ModuleType) -> str:
    """The whole of docs/hooks.md for a hookspecs module."""
    project = module.PROJECT
    hooks = hookspecs_of(module)
    lines = [
        "# Hook reference",
        "",
        "<!-- Generated by docs/gen_hooks.py from src/truagents_import/hookspecs.py: do not edit by hand. -->",
        "",
        f"A plugin implements any of these hooks with functions (or methods) decorated by "
        f"`truagents_import.hookimpl`, named exactly as the hook. It may accept only the parameters it "
        f"needs. Installed plugins are found through the `{project}` entry-point group; "
        "[Write a plugin](write-a-plugin.md) walks through a whole one.",
        "",
        "| hook | summary |",
        "|---|---|",
    ]
    for func in hooks:
        summary = parse_docstring(inspect.getdoc(func) or "")[0]
        first = summary[0].split(". ")[0].rstrip(".") if summary else ""
        lines.append(f"| [`{func.__name__}`](#{func.__name__}) | {_cell(first)} |")
    lines.append("")
    for func in hooks:
        lines += [f'<a id="{func.__name__}"></a>', ""]
        lines += _section(func)
    sink = module.Sink
    lines += ['<a id="sink"></a>', "", "## The `Sink` protocol", ""]
    for paragraph in parse_docstring(inspect.getdoc(sink) or "")[0]:
        lines += [_markdown(paragraph), ""]
    for name in ("write", "commit", "close"):
        lines += _section(getattr(sink, name), level="###")
    lines += [
        "### `SinkFactory`",
        "",
        "`Callable[..., Sink]`: the class or function passed to `register(name, factory)`. It receives "
        "the `[sink]` options of the configuration (without `type`) as keyword arguments.",
        "",
    ]
    return "\n".join(lines).rstrip("\n") + "\n"


def main(argv: list[str]) -> int:
    """Write docs/hooks.md, or with ``--check`` report whether it is current."""
    from truagents_import import hookspecs

    found = problems(hookspecs)
    if found:
        print("undocumented hooks:\n  " + "\n  ".join(found), file=sys.stderr)
        return 1
    text = render(hookspecs)
    if "--check" in argv:
        current = HOOKS_MD.read_text(encoding="utf-8") if HOOKS_MD.exists() else ""
        if current != text:
            print(f"{HOOKS_MD} is out of date: run python docs/gen_hooks.py", file=sys.stderr)
            return 1
        return 0
    HOOKS_MD.write_text(text, encoding="utf-8")
    print(f"wrote {HOOKS_MD}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
