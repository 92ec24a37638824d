"""The exceptions of truagents_import: one base class, one base for data errors, a few specific ones.

Every message says what happened, to which file, row or setting, and what to do next. The
command line decides which exit status each one gets.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "ConnectError",
    "DataError",
    "FieldError",
    "FileRejected",
    "HostKeyError",
    "KeyFileError",
    "PluginError",
    "PostgresError",
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
