"""Delivery manifests (SPEC 10): what the sender says it delivered, checked against what arrived.

A source with ``manifest = "{name}.manifest.json"`` holds each file back until its manifest is
there. The manifest is JSON with any of ``rows``, ``bytes`` and ``sha256``; a ``sha256sum``-style
file (``{name}.sha256``: ``<hex>  <name>``, or BSD's ``SHA256 (<name>) = <hex>``) is read too.
``bytes`` and ``sha256`` are checked before any row is read, ``rows`` after reading; a mismatch
rejects the whole file (:data:`MISMATCH`) naming the figure, what the manifest said and what
arrived.

Nothing here imports anything of the package above :mod:`truagents_import.errors`.
"""

from __future__ import annotations

import hashlib
import json
import re
import string
from pathlib import Path
from typing import Any

import attrs

from truagents_import._safety import escape_name
from truagents_import.errors import FileRejected

__all__ = [
    "DEFAULT_MANIFEST",
    "INVALID",
    "MISMATCH",
    "Manifest",
    "check_content",
    "check_rows",
    "file_figures",
    "manifest_name",
    "parse_manifest",
    "render_manifest",
    "template_suffix",
    "validate_template",
]

#: The manifest name a source or an upload uses when none is given.
DEFAULT_MANIFEST = "{name}.manifest.json"
#: The problem code of a file whose manifest disagrees with what arrived.
MISMATCH = "manifest_mismatch"
#: The problem code of a file whose manifest cannot be read or says nothing checkable.
INVALID = "manifest_invalid"
#: A manifest larger than this is not a manifest.
MAX_MANIFEST_BYTES = 64 * 1024

_HEX64 = re.compile(r"^[0-9A-Fa-f]{64}$")
_GNU_LINE = re.compile(r"^\\?([0-9A-Fa-f]{64}) [ *](.*)$")
_BSD_LINE = re.compile(r"^\\?SHA256 ?\((.*)\) ?= ?([0-9A-Fa-f]{64})$")
_HASH_BLOCK = 1 << 20


@attrs.frozen
class Manifest:
    """What a manifest says about one file: any of its data rows, its size and its sha256."""

    #: The manifest's own name (shown in messages).
    name: str
    rows: int | None = None
    bytes: int | None = None
    #: Lower-case hex.
    sha256: str | None = None


def validate_template(template: str) -> None:
    """Raise ``ValueError`` unless ``template`` names one file per data file: it must hold
    ``{name}`` or ``{stem}`` (and no other field) and be a plain name without ``/``."""
    try:
        fields = {f for _, f, _, _ in string.Formatter().parse(template) if f is not None}
    except ValueError as exc:
        msg = f"manifest must be a name like '{{name}}.manifest.json' or '{{name}}.sha256': {exc}"
        raise ValueError(msg) from None
    if not fields or not fields <= {"name", "stem"}:
        msg = (
            "manifest must hold {name} or {stem} (and no other field), like '{name}.manifest.json', "
            f"got {template!r}"
        )
        raise ValueError(msg)
    if "/" in template or "\\" in template or template.startswith(".") or not template.isprintable():
        msg = f"manifest must be a plain, visible file name beside the data file, got {template!r}"
        raise ValueError(msg)


def manifest_name(template: str, name: str) -> str:
    """The manifest's name for data file ``name`` (``{stem}`` is the name without its last extension)."""
    return template.format(name=name, stem=name.rsplit(".", 1)[0])


def template_suffix(template: str) -> str | None:
    """What every name made from ``template`` ends with (``.manifest.json``), when it starts with the
    file's name or stem; None when names made from it cannot be told by their ending alone."""
    if not template.startswith(("{name}", "{stem}")):
        return None
    suffix = template.replace("{name}", "").replace("{stem}", "")
    return suffix or None


def _is_sha256sum(template: str) -> bool:
    return template.lower().endswith((".sha256", ".sha256sum"))


# -- reading --------------------------------------------------------------------------------------


def parse_manifest(data: bytes, name: str, file_name: str) -> Manifest:
    """Read manifest ``name`` (its bytes ``data``) for data file ``file_name``.

    JSON with any of ``rows``, ``bytes``, ``sha256``, or ``sha256sum`` lines. Raises
    :class:`FileRejected` (:data:`INVALID`) when it is neither, or says nothing checkable.
    """
    shown = escape_name(name)
    if len(data) > MAX_MANIFEST_BYTES:
        raise FileRejected(INVALID, f"the manifest {shown} is larger than {MAX_MANIFEST_BYTES} bytes")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise FileRejected(INVALID, f"the manifest {shown} is not UTF-8 text") from None
    stripped = text.strip()
    if stripped.startswith("{"):
        return _from_json(stripped, shown)
    return _from_sha256sum(stripped, shown, file_name)


def _from_json(text: str, shown: str) -> Manifest:
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise FileRejected(INVALID, f"the manifest {shown} is not valid JSON: {exc}") from None
    if not isinstance(document, dict) or not {"rows", "bytes", "sha256"} & document.keys():
        msg = f"the manifest {shown} names none of rows, bytes, sha256: it must name at least one"
        raise FileRejected(INVALID, msg)
    rows = _whole_number(document.get("rows"), "rows", shown)
    size = _whole_number(document.get("bytes"), "bytes", shown)
    digest = document.get("sha256")
    if digest is not None and not (isinstance(digest, str) and _HEX64.match(digest.strip())):
        raise FileRejected(INVALID, f"the manifest {shown} gives sha256 = {digest!r}: expected 64 hexadecimal digits")
    return Manifest(shown, rows=rows, bytes=size, sha256=None if digest is None else digest.strip().lower())


def _whole_number(value: Any, figure: str, shown: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    raise FileRejected(INVALID, f"the manifest {shown} gives {figure} = {value!r}: expected a whole number")


def _from_sha256sum(text: str, shown: str, file_name: str) -> Manifest:
    entries: list[tuple[str, str]] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        gnu, bsd = _GNU_LINE.match(line), _BSD_LINE.match(line)
        if gnu is not None:
            entries.append((gnu.group(1), _unescape(line, gnu.group(2))))
        elif bsd is not None:
            entries.append((bsd.group(2), _unescape(line, bsd.group(1))))
        elif _HEX64.match(line):
            entries.append((line, "-"))
        else:
            msg = f"the manifest {shown} is neither JSON nor sha256sum output (a line reads {escape_name(line[:60])!r})"
            raise FileRejected(INVALID, msg)
    if not entries:
        raise FileRejected(INVALID, f"the manifest {shown} is empty")
    if len(entries) == 1:
        # The manifest's own name ties it to the file; the name inside may be a local path or '-'.
        return Manifest(shown, sha256=entries[0][0].lower())
    for digest, listed in entries:
        if listed.replace("\\", "/").rsplit("/", 1)[-1] == file_name:
            return Manifest(shown, sha256=digest.lower())
    raise FileRejected(
        INVALID, f"the manifest {shown} lists {len(entries)} files, none of them {escape_name(file_name)}"
    )


def _unescape(line: str, name: str) -> str:
    """sha256sum writes names holding ``\\`` or a newline escaped, and marks such lines with ``\\``."""
    if not line.startswith("\\"):
        return name
    return name.replace("\\n", "\n").replace("\\r", "\r").replace("\\\\", "\\")


# -- checking ------------------------------------------------------------------------------------


def _mismatch(manifest: Manifest, figure: str, said: object, arrived: object) -> FileRejected:
    msg = (
        f"the manifest {manifest.name} says {figure} = {said}, but {arrived} arrived: the file is not "
        "the one the sender described (cut short, changed, or the wrong manifest); nothing of it was imported"
    )
    return FileRejected(MISMATCH, msg)


def check_content(manifest: Manifest, size: int, sha256: str) -> None:
    """Raise :class:`FileRejected` (:data:`MISMATCH`) when the file's size or sha256 is not the manifest's."""
    if manifest.bytes is not None and manifest.bytes != size:
        raise _mismatch(manifest, "bytes", manifest.bytes, size)
    if manifest.sha256 is not None and manifest.sha256 != sha256.lower():
        raise _mismatch(manifest, "sha256", manifest.sha256, sha256.lower())


def check_rows(manifest: Manifest, rows: int) -> None:
    """Raise :class:`FileRejected` (:data:`MISMATCH`) when the file's data rows are not the manifest's."""
    if manifest.rows is not None and manifest.rows != rows:
        raise _mismatch(manifest, "rows", manifest.rows, rows)


# -- writing (for the sender) ----------------------------------------------------------------------


def file_figures(path: Path) -> tuple[int, str]:
    """A local file's size in bytes and its sha256 (lower-case hex)."""
    digest, size = hashlib.sha256(), 0
    with path.open("rb") as f:
        while block := f.read(_HASH_BLOCK):
            digest.update(block)
            size += len(block)
    return size, digest.hexdigest()


def render_manifest(template: str, name: str, size: int, sha256: str) -> bytes:
    """The manifest of data file ``name``: ``sha256sum`` format when ``template`` ends in ``.sha256``,
    else JSON with ``bytes`` and ``sha256``."""
    if _is_sha256sum(template):
        return f"{sha256}  {name}\n".encode()
    return (json.dumps({"bytes": size, "sha256": sha256}, indent=2) + "\n").encode()
