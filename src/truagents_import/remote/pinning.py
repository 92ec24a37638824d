"""Pinning a server's host key in the configuration file (``truagents-import trust``).

The file is edited as text, not re-serialised: only the ``host_key`` line of ``[integration]``
changes (or is added), so comments, order and formatting stay as the operator wrote them. The
result is parsed again and must equal the original plus the new ``host_key``; otherwise nothing
is written and the error says which line to add by hand.
"""

from __future__ import annotations

import copy
import re
import secrets
import tomllib
from pathlib import Path
from typing import Any, Literal

import attrs

from truagents_import._converter import to_dict
from truagents_import.errors import ConfigError
from truagents_import.remote.integration import Integration
from truagents_import.remote.keys import fingerprint, replace_file

__all__ = ["HostKeyCheck", "check_host_key", "pin_host_key", "set_host_key"]

_FINGERPRINT = re.compile(r"^SHA256:[A-Za-z0-9+/]{43}$")
_INTEGRATION_HEADER = re.compile(r"^\s*\[\s*integration\s*\]\s*(#.*)?$")
_ANY_HEADER = re.compile(r"^\s*\[")
_HOST_KEY_LINE = re.compile(r"""^(?P<indent>\s*)host_key\s*=\s*(?P<value>"[^"\\]*"|'[^']*')(?P<rest>\s*(#.*)?)$""")
_HOST_KEY_ANY = re.compile(r"^\s*host_key\s*=")


@attrs.frozen
class HostKeyCheck:
    """What a server presents compared with what the configuration pins."""

    host: str
    port: int
    #: The fingerprint the server presented.
    presented: str
    #: Its key type (``ssh-ed25519``, ...).
    key_type: str
    #: The fingerprint pinned before, if any.
    pinned: str | None
    #: ``new`` (nothing pinned yet), ``unchanged`` (already pinned) or ``changed`` (a different key is pinned).
    status: Literal["new", "unchanged", "changed"]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return to_dict(self)


def check_host_key(integration: Integration) -> HostKeyCheck:
    """Ask the server for its host key and compare its fingerprint with the pinned one."""
    key = integration.host_public_key()
    presented = fingerprint(key)
    pinned = integration.host_key.strip().rstrip("=") if integration.host_key else None
    if pinned is None:
        status: Literal["new", "unchanged", "changed"] = "new"
    elif secrets.compare_digest(pinned, presented):
        status = "unchanged"
    else:
        status = "changed"
    return HostKeyCheck(
        host=integration.host,
        port=integration.port,
        presented=presented,
        key_type=str(key.get_algorithm()),
        pinned=pinned,
        status=status,
    )


def _check_fingerprint(fingerprint: str) -> str:
    if not _FINGERPRINT.match(fingerprint):
        msg = f"not a SHA256 host key fingerprint: {fingerprint!r} (expected 'SHA256:' and 43 base64 characters)"
        raise ConfigError(msg)
    return fingerprint


def set_host_key(text: str, fingerprint: str) -> str:
    """Return the configuration ``text`` with ``host_key = "<fingerprint>"`` in ``[integration]``.

    Only that line is replaced (keeping its indentation and trailing comment) or, when absent,
    added after the table's last key. Raises :class:`ConfigError` when the text has no
    ``[integration]`` table or cannot be edited safely.
    """
    _check_fingerprint(fingerprint)
    try:
        before = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"the configuration is not valid TOML: {exc}") from None
    by_hand = f'add host_key = "{fingerprint}" under [integration] by hand'
    if not isinstance(before.get("integration"), dict):
        raise ConfigError(f"the configuration has no [integration] table; {by_hand}")

    lines = text.splitlines(keepends=True)
    newline = "\r\n" if "\r\n" in text else "\n"
    headers = [i for i, ln in enumerate(lines) if _INTEGRATION_HEADER.match(ln.rstrip("\r\n"))]
    if len(headers) != 1:
        raise ConfigError(f"cannot find a single [integration] header line to edit; {by_hand}")
    start = headers[0] + 1
    end = next((i for i in range(start, len(lines)) if _ANY_HEADER.match(lines[i])), len(lines))
    new_value = f'"{fingerprint}"'
    found = [i for i in range(start, end) if _HOST_KEY_ANY.match(lines[i])]
    if found:
        i = found[0]
        body = lines[i].rstrip("\r\n")
        ending = lines[i][len(body) :]
        m = _HOST_KEY_LINE.match(body)
        if m:
            lines[i] = f"{m['indent']}host_key = {new_value}{m['rest']}{ending}"
        else:
            indent = body[: len(body) - len(body.lstrip())]
            lines[i] = f"{indent}host_key = {new_value}{ending or newline}"
    else:
        # After the table's last line of content (a multi-line array's closing bracket included).
        content = [i for i in range(start, end) if lines[i].strip() and not lines[i].lstrip().startswith("#")]
        at = max(content, default=start - 1) + 1
        if at > 0 and not lines[at - 1].endswith(("\n", "\r")):
            lines[at - 1] += newline
        lines.insert(at, f"host_key = {new_value}  # pinned with `truagents-import trust`{newline}")
    result = "".join(lines)

    expected = copy.deepcopy(before)
    expected["integration"]["host_key"] = fingerprint
    try:
        after = tomllib.loads(result)
    except tomllib.TOMLDecodeError:
        after = None
    if after != expected:
        raise ConfigError(f"cannot edit the configuration safely (unusual layout); {by_hand}")
    return result


def pin_host_key(path: Path | str, fingerprint: str) -> Path:
    """Write ``fingerprint`` as ``host_key`` into the configuration file at ``path``, in one rename.

    Returns the file written (a symbolic link is followed, so the link stays a link).
    """
    file = Path(path).resolve()
    try:
        with file.open(encoding="utf-8", newline="") as f:
            text = f.read()
    except OSError as exc:
        raise ConfigError(f"cannot read {file}: {exc.strerror}") from None
    updated = set_host_key(text, fingerprint)
    if updated == text:
        return file
    try:
        replace_file(file, updated, mode=0o600)
    except OSError as exc:
        raise ConfigError(f"cannot write {file}: {exc.strerror}") from None
    return file
