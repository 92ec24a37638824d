"""Key pairs: generation, loading with OpenSSH's permission rules, fingerprints, authorized_keys lines.

Nothing here ever puts a passphrase or private-key material into a message, a repr or a return
value other than the key object itself (whose repr shows no key data).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import os
import re
import shlex
import stat
import tempfile
from pathlib import Path

import asyncssh
import attrs

from truagents_import.errors import KeyFileError

__all__ = [
    "DEFAULT_KEY_NAME",
    "KeyPair",
    "authorized_keys_line",
    "check_from",
    "check_private_key_permissions",
    "create_key_pair",
    "fingerprint",
    "generate_key_pair",
    "known_hosts_host",
    "known_hosts_line",
    "load_private_key",
    "passphrase_from_env",
    "public_line",
    "replace_file",
    "write_key_pair",
]

#: The file name ``truagents-import keygen`` gives a new private key unless told otherwise.
DEFAULT_KEY_NAME = "truagents_ed25519"

# from="..." holds a comma-separated list of address or host patterns: CIDRs, wildcards, "!" negation.
_FROM_ENTRY = re.compile(r"^!?[A-Za-z0-9.:*?/_-]+$")
_OPENSSH_MAGIC = b"openssh-key-v1\x00"


@attrs.frozen
class KeyPair:
    """A key pair written to disk: where the private key is and what the public key says.

    It holds no private-key material: only paths, the public line and the fingerprint.
    """

    private_key: Path
    public_key: Path
    public_line: str
    fingerprint: str
    #: Whether the private key file is encrypted with a passphrase.
    passphrase_protected: bool = False

    def authorized_keys_line(self, *, from_: str | None = None) -> str:
        """The ``authorized_keys`` line for this public key, restricted to SFTP (see :func:`authorized_keys_line`)."""
        return authorized_keys_line(self.public_line, from_=from_)


def generate_key_pair(comment: str = "truagents-import") -> asyncssh.SSHKey:
    """Make a new ed25519 private key in memory."""
    return asyncssh.generate_private_key("ssh-ed25519", comment=comment)


def fingerprint(key: asyncssh.SSHKey) -> str:
    """The ``SHA256:...`` fingerprint of a key, as ``ssh-keygen -lf`` prints it."""
    return str(key.get_fingerprint("sha256"))


def public_line(key: asyncssh.SSHKey) -> str:
    """The one-line OpenSSH public key (``ssh-ed25519 AAAA... comment``)."""
    return bytes(key.export_public_key("openssh")).decode("ascii").strip()


def check_from(from_: str) -> str:
    """Return ``from_`` if it is a valid ``from=`` list for an authorized_keys line, else raise ValueError."""
    entries = from_.split(",")
    if not from_ or not all(_FROM_ENTRY.match(e) for e in entries):
        msg = (
            f"from= must be a comma-separated list of addresses, CIDRs or host patterns "
            f"(e.g. 203.0.113.0/24,198.51.100.7), got {from_!r}"
        )
        raise ValueError(msg)
    return from_


def authorized_keys_line(key: asyncssh.SSHKey | str, *, from_: str | None = None) -> str:
    """An ``authorized_keys`` line that lets the key use SFTP and nothing else.

    ``restrict`` turns off forwarding, agent, X11 and pty; ``command="internal-sftp"`` makes
    every session the server's SFTP service, whatever command the client asks for. ``from_``
    (a comma-separated list of addresses, CIDRs or host patterns) limits where the key may
    connect from. ``key`` is a key object or an OpenSSH public-key line.
    """
    options = "restrict"
    if from_:
        options += f',from="{check_from(from_)}"'
    options += ',command="internal-sftp"'
    line = key.strip() if isinstance(key, str) else public_line(key)
    try:
        asyncssh.import_public_key(line)
    except (asyncssh.KeyImportError, ValueError):
        msg = f"not an OpenSSH public key line: {line[:40]!r}"
        raise ValueError(msg) from None
    return f"{options} {line}"


def known_hosts_host(host: str, port: int) -> str:
    """The host field of a known_hosts line: ``host`` for port 22, else ``[host]:port``."""
    return host if port == 22 else f"[{host}]:{port}"


def known_hosts_line(host: str, port: int, key: asyncssh.SSHKey) -> str:
    """A known_hosts line that trusts ``key`` for ``host`` on ``port`` (no comment)."""
    keytype, blob = public_line(key).split()[:2]
    return f"{known_hosts_host(host, port)} {keytype} {blob}"


def write_key_pair(key: asyncssh.SSHKey, directory: Path, name: str, *, passphrase: str | None = None) -> KeyPair:
    """Write the private key (0600, in a 0700 folder) and its ``.pub`` beside it.

    A folder that does not exist is created 0700. An existing folder that group or others can
    enter is refused (it is not changed: it may be shared, like ``/tmp``). Existing key files
    are never overwritten.
    """
    if "/" in name or "\\" in name or name in {"", ".", ".."} or not name.isprintable():
        msg = f"key name must be a plain file name, got {name!r}"
        raise ValueError(msg)
    if passphrase == "":
        msg = "the passphrase is empty; give a non-empty passphrase or none at all"
        raise ValueError(msg)
    directory = Path(directory)
    _private_directory(directory)
    private = directory / name
    public = directory / f"{name}.pub"
    for path in (private, public):
        if path.exists() or path.is_symlink():
            msg = f"{path} already exists; choose another --name or move the old key away first"
            raise KeyFileError(msg)
    data = bytes(key.export_private_key("openssh", passphrase=passphrase))
    fd = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(private, 0o600)
    line = public_line(key)
    fd = os.open(public, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(line + "\n")
    return KeyPair(
        private_key=private,
        public_key=public,
        public_line=line,
        fingerprint=fingerprint(key),
        passphrase_protected=passphrase is not None,
    )


def _private_directory(directory: Path) -> None:
    if not directory.exists():
        directory.parent.mkdir(parents=True, exist_ok=True)
        directory.mkdir(mode=0o700)
        directory.chmod(0o700)
        return
    if not directory.is_dir():
        raise KeyFileError(f"{directory} exists and is not a folder; choose another --dir")
    mode = stat.S_IMODE(directory.stat().st_mode)
    if mode & 0o077:
        msg = (
            f"folder {directory} can be entered by group or others (mode {mode:04o}); keep keys in a "
            f"private folder: choose a new --dir, or run `chmod 700 {shlex.quote(str(directory))}` "
            "if the folder is yours alone"
        )
        raise KeyFileError(msg)


def create_key_pair(
    directory: Path | str,
    name: str = DEFAULT_KEY_NAME,
    *,
    passphrase: str | None = None,
    comment: str = "truagents-import",
) -> KeyPair:
    """Generate a new ed25519 key pair and write it (see :func:`write_key_pair`)."""
    if not comment.isprintable():
        msg = f"the key comment must be printable text, got {comment!r}"
        raise ValueError(msg)
    return write_key_pair(generate_key_pair(comment), Path(directory), name, passphrase=passphrase)


def passphrase_from_env(variable: str) -> str:
    """The passphrase held in environment variable ``variable``; refuses an unset or empty one."""
    value = os.environ.get(variable)
    if not value:
        state = "is empty" if value == "" else "is not set"
        msg = f"the environment variable {variable} {state}: export the passphrase in it first"
        raise KeyFileError(msg)
    return value


def check_private_key_permissions(path: Path) -> os.stat_result:
    """Refuse a private key file that group or others can access, as OpenSSH does.

    Returns the file's ``stat``; raises :class:`KeyFileError` saying which ``chmod`` to run.
    """
    try:
        st = path.stat()
    except FileNotFoundError:
        msg = f"private key {path} does not exist; run `truagents-import keygen` or fix `private_key`"
        raise KeyFileError(msg) from None
    except PermissionError:
        msg = f"private key {path} cannot be reached by this user; check the folders' permissions"
        raise KeyFileError(msg) from None
    if not stat.S_ISREG(st.st_mode):
        msg = f"private key {path} is not a regular file"
        raise KeyFileError(msg)
    mode = stat.S_IMODE(st.st_mode)
    if os.name == "posix" and mode & 0o077:
        owner = "" if st.st_uid == os.getuid() else " as the file's owner"
        msg = (
            f"private key {path} can be read by group or others (mode {mode:04o}); OpenSSH refuses "
            f"such keys and so do we. Run `chmod 600 {shlex.quote(str(path))}`{owner}, and if "
            "anyone else may have copied it, make a new key pair"
        )
        raise KeyFileError(msg)
    return st


def _encrypted(data: bytes) -> bool:
    """Whether key file data looks passphrase-protected (OpenSSH, PKCS#8 or legacy PEM)."""
    if b"ENCRYPTED" in data:
        return True
    begin, end = b"-----BEGIN OPENSSH PRIVATE KEY-----", b"-----END OPENSSH PRIVATE KEY-----"
    if begin not in data or end not in data:
        return False
    body = data.split(begin, 1)[1].split(end, 1)[0]
    try:
        raw = base64.b64decode(b"".join(body.split()), validate=True)
    except (binascii.Error, ValueError):
        return False
    if not raw.startswith(_OPENSSH_MAGIC) or len(raw) < len(_OPENSSH_MAGIC) + 4:
        return False
    at = len(_OPENSSH_MAGIC)
    size = int.from_bytes(raw[at : at + 4], "big")
    return raw[at + 4 : at + 4 + size] != b"none"


def _format_hint(data: bytes) -> str:
    head = data.lstrip()[:64]
    if head.startswith((b"ssh-", b"ecdsa-", b"sk-")) or b"PUBLIC KEY" in head:
        return "it is a public key: point `private_key` at the private key (the file without .pub)"
    if head.startswith(b"PuTTY-User-Key-File"):
        return "it is a PuTTY key: convert it with `puttygen KEY -O private-openssh -o KEY.openssh`"
    return "use an OpenSSH private key, e.g. one made by `truagents-import keygen`"


def load_private_key(
    path: Path, passphrase: str | None = None, *, passphrase_env: str | None = None
) -> asyncssh.SSHKey:
    """Load a private key, refusing it as OpenSSH does when group or others can read it.

    ``passphrase_env`` names the environment variable the passphrase came from; it is used
    only in messages. Every failure is a :class:`KeyFileError` that says what to do; none
    contains the passphrase or any of the key's bytes.
    """
    path = Path(path)
    check_private_key_permissions(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        msg = f"private key {path} cannot be read: {exc.strerror}"
        raise KeyFileError(msg) from None
    where = f"the environment variable {passphrase_env}" if passphrase_env else "the passphrase"
    encrypted = _encrypted(data)
    if encrypted and not passphrase:
        if passphrase_env and passphrase == "":
            msg = f"private key {path} is protected by a passphrase, but {passphrase_env} is empty"
        elif passphrase_env:
            msg = (
                f"private key {path} is protected by a passphrase, but the environment variable "
                f"{passphrase_env} (named by `passphrase_env`) is not set: export it before running"
            )
        else:
            msg = (
                f"private key {path} is protected by a passphrase: set `passphrase_env` to the name of "
                "an environment variable that holds it"
            )
        raise KeyFileError(msg)
    try:
        return asyncssh.import_private_key(data, passphrase or None)
    except ValueError:  # asyncssh's KeyImportError and KeyEncryptionError are ValueErrors
        pass
    if encrypted:
        msg = f"private key {path}: {where} holds the wrong passphrase for it (the key could not be decrypted)"
    else:
        msg = f"private key {path} is not a private key in a format we can read: {_format_hint(data)}"
    raise KeyFileError(msg)


def replace_file(path: Path, text: str, *, mode: int) -> None:
    """Replace a small text file (known_hosts, configuration) in one rename, keeping an existing file's mode.

    Readers see the old content or the new, never a half-written file. ``mode`` applies to a new file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        mode = stat.S_IMODE(path.stat().st_mode)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def load_or_create_host_key(path: Path) -> asyncssh.SSHKey:
    """A server host key kept in ``path`` (0600): loaded when it exists, made and written otherwise.

    Keeping the key is what lets clients pin the server's fingerprint across restarts.
    """
    path = Path(path)
    if path.exists():
        return load_private_key(path)
    key = generate_key_pair("truagents-import serve")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.export_private_key("openssh"))
    return key
