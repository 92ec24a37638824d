"""The exceptions of truagents_import: one base class and a few specific ones.

Every message says what happened, to which file or setting, and what to do next.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "ConnectError",
    "HostKeyError",
    "KeyFileError",
    "PluginError",
    "TruagentsImportError",
]


class TruagentsImportError(Exception):
    """Base class of every error this library raises on purpose."""

    #: The command line's exit status for this error (SPEC 6).
    exit_status: int = 1


class ConfigError(TruagentsImportError):
    """The configuration is missing, malformed or inconsistent."""

    exit_status = 2


class KeyFileError(ConfigError):
    """A private key cannot be used: missing, unreadable, too open, or wrongly protected."""


class ConnectError(TruagentsImportError):
    """The SFTP server could not be reached or refused us (network or authentication)."""

    exit_status = 3


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
