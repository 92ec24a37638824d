"""The exceptions of truagents_import: one base class, one base for data errors, a few specific ones.

Every message says what happened, to which file, row or setting, and what to do next. The
command line decides which exit status each one gets.
"""

from __future__ import annotations

import errno

__all__ = [
    "ConfigError",
    "ConnectError",
    "DataError",
    "FieldError",
    "FileRejected",
    "HostKeyError",
    "KeyFileError",
    "LocalResourceError",
    "PluginError",
    "PostgresError",
    "RemoteError",
    "RemoteNotFoundError",
    "RemotePermissionError",
    "TruagentsImportError",
    "UploadNameError",
]


class TruagentsImportError(Exception):
    """Base class of every error this library raises on purpose."""


class ConfigError(TruagentsImportError):
    """The configuration is missing, malformed or inconsistent."""


class KeyFileError(ConfigError):
    """A private key cannot be used: missing, unreadable, too open, or wrongly protected."""


class ConnectError(TruagentsImportError):
    """The SFTP server could not be reached or refused us (network or authentication)."""


class HostKeyError(ConnectError):
    """The server presented a host key that is not the pinned one."""

    def __init__(self, message: str, *, presented: str | None = None) -> None:
        super().__init__(message)
        #: The SHA256 fingerprint the server presented, if it presented one.
        self.presented = presented


class RemoteError(TruagentsImportError, OSError):
    """The SFTP server refused or failed one operation on one path (the connection itself is fine).

    Also an :class:`OSError` (``errno``, ``filename``), so code that handles a file's I/O errors
    handles these too. The message says what was being done, to which path, and what to do.
    """

    def __init__(self, message: str, *, path: str, operation: str, code: int = errno.EIO) -> None:
        super().__init__(code, message, path)
        #: What is wrong, for people.
        self.message = message
        #: The remote path, as the server names it.
        self.path = path
        #: What was being done: ``list``, ``read``, ``write``, ``create``, ``rename``, ``remove``, ``look up``.
        self.operation = operation

    def __str__(self) -> str:
        return self.message

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild_remote_error, (type(self), self.message, self.path, self.operation, self.errno))


def _rebuild_remote_error(cls: type[RemoteError], message: str, path: str, operation: str, code: int) -> RemoteError:
    return cls(message, path=path, operation=operation, code=code)


class RemotePermissionError(RemoteError, PermissionError):
    """The server said "permission denied": a permission problem on the server, not on this machine."""


class RemoteNotFoundError(RemoteError, FileNotFoundError):
    """The remote path does not exist on the server (as the user sees it after login)."""


class PluginError(TruagentsImportError):
    """A plugin raised, or a plugin is malformed; the message names the plugin."""

    def __init__(self, message: str, *, plugin: str, hook: str | None = None) -> None:
        super().__init__(message)
        #: The name the plugin is registered under.
        self.plugin = plugin
        #: The hook that was being called, if any.
        self.hook = hook


class PostgresError(TruagentsImportError):
    """A PostgreSQL server refused or dropped a request. The message never holds a password."""


class UploadNameError(TruagentsImportError):
    """A file cannot be delivered under its name (hidden, empty, or with control characters)."""


class DataError(TruagentsImportError):
    """Something in a file's data cannot be imported; ``code`` is the stable problem code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        #: The stable problem code (``empty``, ``invalid_email``, ...).
        self.code = code
        #: What is wrong, for people.
        self.message = message


class FileRejected(DataError):
    """The file as a whole cannot be imported; ``code`` is stable, the message says why."""


class FieldError(DataError, ValueError):
    """A cell's value is not valid for its field; ``code`` is the problem code (``invalid_<field>``)."""

    def kept(self) -> FieldError:
        """This refusal without its traceback and the exception it was raised from: a refusal that is
        remembered (per row of a batch, per distinct value) must not keep their frames alive, and the
        arrays of a whole batch with them."""
        self.__traceback__ = self.__cause__ = self.__context__ = None
        return self


class LocalResourceError(TruagentsImportError):
    """A resource of this machine failed for now: a disk is full, or another process holds a lock on a
    database past the time waited for it. The file it happened to fails (nothing of it is kept
    half-written) and the next run imports it again; the message names the path and what to do."""

    def __init__(self, message: str, *, path: str = "") -> None:
        super().__init__(message)
        #: What is wrong, for people.
        self.message = message
        #: The local file or folder concerned (the spool folder, a database file).
        self.path = path

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.message,), {"path": self.path})
