"""Delivering files to the drop box the safe way: a temporary dot-name, then an atomic rename.

:meth:`Integration.upload` and :meth:`Integration.upload_files` do it over the integration's own
connection; :meth:`Integration.upload_command` writes the OpenSSH ``sftp`` command (and an ``scp``
alternative) that does the same for someone else, with the host key pinned in a known_hosts file.
"""

from __future__ import annotations

import contextlib
import posixpath
import shlex
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import asyncssh
import attrs
from cattrs.gen import make_dict_unstructure_fn, override

from truagents_import._converter import converter, to_dict
from truagents_import.errors import ConfigError, ConnectError, TruagentsImportError, UploadNameError
from truagents_import.manifest import file_figures, manifest_name, render_manifest, validate_template
from truagents_import.remote import keys
from truagents_import.remote.failures import CONNECTION_LOST
from truagents_import.remote.sftp import posix_rename, put

if TYPE_CHECKING:
    from truagents_import.remote.integration import Integration

__all__ = [
    "SCP_NOTE",
    "UploadCommand",
    "UploadResult",
    "check_upload_name",
    "default_known_hosts",
    "refresh_known_hosts",
    "temporary_name",
    "upload",
    "upload_command",
    "upload_files",
    "write_known_hosts",
]

#: What the scp alternative cannot do, said wherever it is offered.
SCP_NOTE = (
    "scp cannot rename, so the file is written under its final name and is visible there while "
    "incomplete: the importer relies on the source's min_age (or a ready marker) to wait for it. "
    "It also needs OpenSSH 9.0 or later (scp over SFTP): older scp, or scp -O, uses the legacy "
    "protocol, which a key restricted to internal-sftp refuses. Prefer the sftp batch."
)


@attrs.frozen
class UploadCommand:
    """The parts of the upload command for one file (see :meth:`Integration.upload_command`).

    It holds paths and the public pinned fingerprint only: no passphrase, no key material.
    """

    #: The local file, as an absolute path (``file`` in :meth:`to_dict`).
    local: Path
    #: Where the file ends up on the server.
    remote_path: str
    #: The temporary dot-name it is uploaded under before the rename.
    temporary_path: str
    #: The ``sftp -b`` batch: ``-mkdir``, ``put`` under the temporary name, ``rename`` into place.
    batch: str
    #: One POSIX shell line (sh, bash, zsh) that feeds the batch to sftp.
    command: str
    #: ``sftp -b - ...``: run it with :attr:`batch` on its standard input.
    sftp_argv: tuple[str, ...]
    #: The scp alternative as one shell line.
    scp_command: str
    #: The scp alternative (see :attr:`scp_note` for its limits).
    scp_argv: tuple[str, ...]
    #: The limits of the scp alternative.
    scp_note: str = attrs.field(default=SCP_NOTE, kw_only=True)
    #: The known_hosts file both commands trust.
    known_hosts_file: Path
    #: The pinned fingerprint the known_hosts file was checked against, when one is pinned.
    host_key: str | None = None
    #: The delivery manifest written here for the file (``--manifest``), which the batch uploads
    #: after the file is in place; None without one.
    manifest_file: Path | None = None
    #: Where the manifest ends up on the server.
    manifest_remote_path: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every part."""
        return to_dict(self)


@attrs.frozen
class UploadResult:
    """What happened to one file given to :meth:`Integration.upload_files`."""

    #: The local file (``file`` in :meth:`to_dict`).
    local: Path
    status: Literal["uploaded", "failed"]
    #: Where the file is on the server, once uploaded.
    remote_path: str | None = None
    #: Its size in bytes, once uploaded.
    size: int | None = None
    #: Why it failed.
    error: str | None = None
    #: Where its delivery manifest is on the server, when one was written (``manifest=``).
    manifest_path: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return to_dict(self)


for _cls in (UploadCommand, UploadResult):
    converter.register_unstructure_hook(_cls, make_dict_unstructure_fn(_cls, converter, local=override(rename="file")))


def temporary_name(name: str) -> str:
    """The hidden name a file is uploaded under before it is renamed into place."""
    return f".{name}.part"


def check_upload_name(name: str) -> str:
    """Return ``name`` if a file can be delivered under it, else raise :class:`UploadNameError`.

    A remote name is one visible path component: not empty, no ``/`` or ``\\``, no control
    characters, and not starting with ``.`` (hidden names are never imported, and ``.NAME.part``
    is what an upload in progress is called).
    """
    shown = repr(name)
    if name in ("", ".", ".."):
        raise UploadNameError(f"{shown} is not a file name")
    if "/" in name or "\\" in name:
        raise UploadNameError(f"file name {shown} must be a single name, without '/' or '\\'")
    if not name.isprintable():
        raise UploadNameError(f"file name {shown} contains control characters; rename the file before delivering it")
    if name.startswith("."):
        msg = (
            f"file name {shown} starts with '.': hidden files are never imported (uploads in progress are "
            "called .NAME.part); rename the file before delivering it"
        )
        raise UploadNameError(msg)
    return name


# -- uploading over the integration's connection --------------------------------------------------


def upload(integration: Integration, local: Path | str, remote_dir: str, *, manifest: str | None = None) -> str:
    """Upload ``local`` into ``remote_dir`` under a temporary name, then rename it (see :meth:`Integration.upload`).

    With ``manifest`` (a name such as ``"{name}.manifest.json"``), the file's manifest follows it
    once it is in place, under a temporary name then renamed like the file; an earlier delivery's
    manifest is removed first, so that it never vouches for the new file.
    """
    local = Path(local)
    name = check_upload_name(local.name)
    remote_dir = _check_remote_dir(remote_dir)
    if not local.is_file():
        what = "does not exist" if not local.exists() else "is not a regular file"
        raise FileNotFoundError(f"{local} {what}")
    final = posixpath.join(remote_dir, name)
    fs = integration.fs
    if remote_dir:
        fs.makedirs(remote_dir, exist_ok=True)
    figures = None if manifest is None else (manifest, *file_figures(local))
    if manifest is not None:
        # An earlier delivery's manifest must not vouch for this file while it lands.
        with contextlib.suppress(FileNotFoundError):
            fs.rm_file(_manifest_path(remote_dir, name, manifest))
    _put_atomically(fs, str(local), final)
    if figures is not None:
        template, size, digest = figures
        data = render_manifest(template, name, size, digest)
        _put_atomically(fs, data, _manifest_path(remote_dir, name, template))
    return final


def _manifest_path(remote_dir: str, name: str, template: str) -> str:
    try:
        validate_template(template)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    return posixpath.join(remote_dir, check_upload_name(manifest_name(template, name)))


def _put_atomically(fs: Any, what: str | bytes, final: str) -> None:
    """Put a local file (a path) or ``bytes`` under a temporary name beside ``final``, then rename."""
    partial = posixpath.join(posixpath.dirname(final), temporary_name(posixpath.basename(final)))
    try:
        put(fs, what, partial)
        posix_rename(fs, partial, final)
    except Exception:
        with contextlib.suppress(Exception):
            fs.rm_file(partial)
        raise


def upload_files(
    integration: Integration, files: Iterable[Path | str], remote_dir: str, *, manifest: str | None = None
) -> list[UploadResult]:
    """Upload each file, reporting file by file (see :meth:`Integration.upload_files`)."""
    results: list[UploadResult] = []
    for item in files:
        local = Path(item)
        try:
            try:
                remote = integration.upload(local, remote_dir, manifest=manifest)
            except CONNECTION_LOST:
                # The connection died (sshfs never revives it): the upload is idempotent, so
                # reconnect and try this file once more.
                integration.reconnect()
                remote = integration.upload(local, remote_dir, manifest=manifest)
        except (ConnectError, ConfigError):
            raise
        except (TruagentsImportError, OSError, ValueError, asyncssh.Error) as exc:
            results.append(UploadResult(local=local, status="failed", error=_describe(exc)))
        else:
            size = local.stat().st_size
            listed = None if manifest is None else _manifest_path(remote_dir, local.name, manifest)
            results.append(
                UploadResult(local=local, status="uploaded", remote_path=remote, size=size, manifest_path=listed)
            )
    return results


def _check_remote_dir(remote_dir: str) -> str:
    if not remote_dir.isprintable():
        raise UploadNameError(f"remote folder {remote_dir!r} contains control characters")
    return remote_dir


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TruagentsImportError):
        return str(exc)
    if isinstance(exc, OSError) and exc.strerror:
        where = f": {exc.filename}" if exc.filename else ""
        return f"{exc.strerror}{where}"
    text = str(exc) or type(exc).__name__
    return text if not isinstance(exc, asyncssh.Error) else f"{type(exc).__name__}: {text}"


# -- the command for someone else -----------------------------------------------------------------


def upload_command(
    integration: Integration,
    local: Path | str,
    remote_dir: str,
    *,
    known_hosts_file: Path | str | None = None,
    manifest: str | None = None,
) -> UploadCommand:
    """The ``sftp`` command (and an ``scp`` alternative) that uploads ``local`` safely (see
    :meth:`Integration.upload_command`)."""
    local_path = Path(local).absolute()
    name = check_upload_name(local_path.name)
    remote_dir = _check_remote_dir(remote_dir)
    final = posixpath.join(remote_dir, name)
    partial = posixpath.join(remote_dir, temporary_name(name))
    manifest_local = manifest_remote = None
    if manifest is not None:
        manifest_remote = _manifest_path(remote_dir, name, manifest)
        manifest_local = _write_local_manifest(local_path, manifest)
    integration.require_verification()
    pinned: str | None = None
    if integration.known_hosts is not None and known_hosts_file is None:
        known_hosts = Path(integration.known_hosts).absolute()
    else:
        known_hosts = Path(known_hosts_file or default_known_hosts(integration)).absolute()
        integration.write_known_hosts(known_hosts)
        pinned = integration.pinned_host_key()
    options = _ssh_options(integration, known_hosts)
    host = f"[{integration.host}]" if ":" in integration.host else integration.host
    destination = f"{integration.username}@{host}"
    lines = []
    if remote_dir not in ("", "/"):
        lines.append(f"-mkdir {_sftp_quote(remote_dir)}")
    if manifest_remote is not None:
        # An earlier delivery's manifest must not vouch for this file while it lands.
        lines.append(f"-rm {_sftp_quote(manifest_remote)}")
    lines.append(f"put {_sftp_quote(str(local_path))} {_sftp_quote(partial)}")
    lines.append(f"rename {_sftp_quote(partial)} {_sftp_quote(final)}")
    if manifest_local is not None and manifest_remote is not None:
        manifest_partial = posixpath.join(remote_dir, temporary_name(posixpath.basename(manifest_remote)))
        lines.append(f"put {_sftp_quote(str(manifest_local))} {_sftp_quote(manifest_partial)}")
        lines.append(f"rename {_sftp_quote(manifest_partial)} {_sftp_quote(manifest_remote)}")
    sftp_argv = ("sftp", "-b", "-", *options, destination)
    command = f"printf '%s\\n' {' '.join(shlex.quote(ln) for ln in lines)} | {shlex.join(sftp_argv)}"
    scp_argv = ("scp", *options, str(local_path), f"{destination}:{final}")
    return UploadCommand(
        local=local_path,
        remote_path=final,
        temporary_path=partial,
        batch="".join(f"{ln}\n" for ln in lines),
        sftp_argv=sftp_argv,
        command=command,
        scp_argv=scp_argv,
        scp_command=shlex.join(scp_argv),
        known_hosts_file=known_hosts,
        host_key=pinned,
        manifest_file=manifest_local,
        manifest_remote_path=manifest_remote,
    )


def _write_local_manifest(local: Path, template: str) -> Path:
    """Write the manifest of ``local`` beside it (for the upload command to send); its path."""
    if not local.is_file():
        what = "does not exist" if not local.exists() else "is not a regular file"
        msg = f"{local} {what}: a manifest is made from the file as it is now, so the file must be there"
        raise FileNotFoundError(msg)
    size, digest = file_figures(local)
    target = local.with_name(manifest_name(template, local.name))
    try:
        target.write_bytes(render_manifest(template, local.name, size, digest))
    except OSError as exc:
        msg = f"the manifest cannot be written beside the file, at {target}: {exc.strerror or exc}"
        raise ConfigError(msg) from None
    return target


def _ssh_options(integration: Integration, known_hosts: Path) -> list[str]:
    """The options both commands share: port, key, batch mode and the pinned known_hosts file."""
    key = Path(integration.private_key).absolute()
    return [
        "-P", str(integration.port),
        "-i", _identity_path(key),
        "-o", "IdentitiesOnly=yes",
        "-o", "BatchMode=yes",
        "-o", "StrictHostKeyChecking=yes",
        "-o", f"UserKnownHostsFile={_ssh_option_value(_ssh_path(known_hosts, 'known_hosts'))}",
    ]  # fmt: skip


def write_known_hosts(integration: Integration, path: Path | str) -> str:
    """Make ``path`` a known_hosts file that trusts the server's verified host key (see
    :meth:`Integration.write_known_hosts`). Returns the line."""
    path = Path(path)
    token = keys.known_hosts_host(integration.host, integration.port)
    try:
        existing = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        existing = []
    except (OSError, UnicodeDecodeError) as exc:
        msg = f"known_hosts file {path} cannot be read: {getattr(exc, 'strerror', None) or exc}"
        raise ConfigError(msg) from None
    mine = [ln for ln in existing if token in (_known_hosts_hosts(ln) or ())]
    if integration.host_key is not None:
        pin = integration.pinned_host_key()
        for ln in mine:
            if _line_fingerprint(ln) == pin:
                return ln.strip()
    line = integration.known_hosts_entry()
    kept = [ln for ln in existing if ln not in mine]
    keys.replace_file(path, "".join(f"{ln}\n" for ln in [*kept, line]), mode=0o644)
    return line


def default_known_hosts(integration: Integration) -> Path:
    """Where :meth:`Integration.upload_command` writes its known_hosts file unless told otherwise."""
    return Path(integration.private_key).parent / "known_hosts"


def refresh_known_hosts(integration: Integration, pin: str) -> Path | None:
    """After the pinned host key changed to ``pin``: rewrite the known_hosts file that
    :meth:`Integration.upload_command` wrote beside the key, so the printed commands trust the new
    key (the server's key is fetched and checked against ``pin``). Returns the file, or None when
    there is none with a line for this server (or the integration uses its own ``known_hosts``)."""
    if integration.known_hosts is not None:
        return None
    path = default_known_hosts(integration)
    token = keys.known_hosts_host(integration.host, integration.port)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return None
    if not any(token in (_known_hosts_hosts(ln) or ()) for ln in lines):
        return None
    attrs.evolve(integration, host_key=pin).write_known_hosts(path)
    return path


def _sftp_quote(arg: str) -> str:
    """Quote one argument for an OpenSSH sftp batch line.

    Inside double quotes sftp takes glob characters literally; ``\\`` and ``"`` are escaped. A
    leading ``-`` would be read as a flag, so such relative paths get a ``./``.
    """
    if arg.startswith("-"):
        arg = "./" + arg
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _ssh_path(path: Path, setting: str) -> str:
    """A path as ssh reads it in ``-i`` and ``UserKnownHostsFile``: ``%`` doubled, ``${`` refused."""
    text = str(path)
    if "${" in text or not text.isprintable():
        msg = f"{setting} path {text!r} cannot be given to ssh (it expands ${{...}}): move the file"
        raise ConfigError(msg)
    return text.replace("%", "%%")


def _identity_path(path: Path) -> str:
    """The private key path for ``-i``: ssh looks for it as written, then expands ``%`` and ``${}``."""
    text = str(path)
    if "%" in text or "${" in text or not text.isprintable():
        msg = (
            f"private_key path {text!r} cannot be given to ssh's -i (it expands '%' and '${{...}}' in it): "
            "move the key to a path without them"
        )
        raise ConfigError(msg)
    return text


def _ssh_option_value(value: str) -> str:
    """Quote an ``-o`` value for ssh's own word splitting when it holds spaces, quotes or ``#``."""
    if not any(c.isspace() or c in "#\"'\\" for c in value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _known_hosts_hosts(line: str) -> list[str] | None:
    """The host patterns of a known_hosts line, or None for comments, blanks and marker lines."""
    fields = line.split()
    if not fields or fields[0].startswith(("#", "@")):
        return None
    return fields[0].split(",")


def _line_fingerprint(line: str) -> str | None:
    fields = line.split()
    if len(fields) < 3:
        return None
    try:
        return keys.fingerprint(asyncssh.import_public_key(f"{fields[1]} {fields[2]}"))
    except (asyncssh.KeyImportError, ValueError):
        return None
