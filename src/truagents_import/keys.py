"""Key pairs: generation, loading with OpenSSH's permission rules, fingerprints, authorized_keys lines."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import asyncssh
import attrs

from truagents_import.errors import KeyFileError

__all__ = [
    "KeyPair",
    "authorized_keys_line",
    "fingerprint",
    "generate_key_pair",
    "load_private_key",
    "write_key_pair",
]


@attrs.frozen
class KeyPair:
    """A key pair written to disk: where the private key is and what the public key says."""

    private_key: Path
    public_key: Path
    public_line: str
    fingerprint: str


def generate_key_pair(comment: str = "truagents-import") -> asyncssh.SSHKey:
    """Make a new ed25519 private key in memory."""
    return asyncssh.generate_private_key("ssh-ed25519", comment=comment)


def fingerprint(key: asyncssh.SSHKey) -> str:
    """The ``SHA256:...`` fingerprint of a key, as ``ssh-keygen -lf`` prints it."""
    return str(key.get_fingerprint("sha256"))


def public_line(key: asyncssh.SSHKey) -> str:
    """The one-line OpenSSH public key (``ssh-ed25519 AAAA... comment``)."""
    return bytes(key.export_public_key("openssh")).decode("ascii").strip()


def authorized_keys_line(key: asyncssh.SSHKey, *, from_: str | None = None) -> str:
    """An ``authorized_keys`` line that lets the key use SFTP and nothing else."""
    options = "restrict"
    if from_:
        if any(c in from_ for c in '"\n\r '):
            msg = f"from= must be a plain host or CIDR list, got {from_!r}"
            raise ValueError(msg)
        options += f',from="{from_}"'
    options += ',command="internal-sftp"'
    return f"{options} {public_line(key)}"


def write_key_pair(
    key: asyncssh.SSHKey, directory: Path, name: str, *, passphrase: str | None = None
) -> KeyPair:
    """Write the private key (0600, in a 0700 folder) and its ``.pub`` beside it."""
    if "/" in name or name in {"", ".", ".."}:
        msg = f"key name must be a plain file name, got {name!r}"
        raise ValueError(msg)
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    private = directory / name
    if private.exists():
        msg = f"{private} already exists; choose another --name or remove it first"
        raise KeyFileError(msg)
    data = key.export_private_key("openssh", passphrase=passphrase)
    fd = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(private, 0o600)
    line = public_line(key)
    public = directory / f"{name}.pub"
    public.write_text(line + "\n", encoding="ascii")
    return KeyPair(private_key=private, public_key=public, public_line=line, fingerprint=fingerprint(key))


def load_private_key(path: Path, passphrase: str | None = None) -> asyncssh.SSHKey:
    """Load a private key, refusing it as OpenSSH does when group or others can read it."""
    try:
        st = path.stat()
    except FileNotFoundError:
        msg = f"private key {path} does not exist; run `truagents-import keygen` or fix `private_key`"
        raise KeyFileError(msg) from None
    except PermissionError:
        msg = f"private key {path} cannot be read by this user"
        raise KeyFileError(msg) from None
    if not stat.S_ISREG(st.st_mode):
        msg = f"private key {path} is not a regular file"
        raise KeyFileError(msg)
    if st.st_mode & 0o077:
        msg = (
            f"private key {path} is readable by others (mode {stat.S_IMODE(st.st_mode):04o}); "
            f"OpenSSH refuses such keys and so do we: run `chmod 600 {path}`"
        )
        raise KeyFileError(msg)
    try:
        data = path.read_bytes()
    except OSError as exc:
        msg = f"private key {path} cannot be read: {exc.strerror}"
        raise KeyFileError(msg) from None
    try:
        return asyncssh.import_private_key(data, passphrase)
    except asyncssh.KeyEncryptionError:
        if passphrase is None:
            msg = (
                f"private key {path} is protected by a passphrase; set the variable named by `passphrase_env`"
            )
        else:
            msg = f"private key {path}: the passphrase is wrong"
        raise KeyFileError(msg) from None
    except asyncssh.KeyImportError as exc:
        if b"ENCRYPTED" in data or b"bcrypt" in data:
            msg = (
                f"private key {path} is protected by a passphrase; set the variable named by `passphrase_env`"
            )
            raise KeyFileError(msg) from None
        msg = f"private key {path} is not a private key asyncssh can read ({exc}); use an OpenSSH ed25519 key"
        raise KeyFileError(msg) from None
