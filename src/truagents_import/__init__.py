"""truagents_import: import contact CSV files from SFTP drop boxes into the sink of your choice."""

import importlib
import logging
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

from truagents_import.hookspecs import Sink, hookimpl

if TYPE_CHECKING:
    from truagents_import.check import CheckReport, CheckStep, run_check
    from truagents_import.config import Config, load_config
    from truagents_import.errors import (
        ConfigError,
        ConnectError,
        DataError,
        FieldError,
        FileRejected,
        HostKeyError,
        KeyFileError,
        LocalResourceError,
        PluginError,
        PostgresError,
        RemoteError,
        RemoteNotFoundError,
        RemotePermissionError,
        TruagentsImportError,
        UploadNameError,
    )
    from truagents_import.fields.contact import Contact
    from truagents_import.fields.layout import Layout
    from truagents_import.pipeline.importer import Importer, Progress
    from truagents_import.pipeline.preview import Preview
    from truagents_import.remote import keys
    from truagents_import.remote.integration import Integration
    from truagents_import.report import FileResult, ImportReport, Problem
    from truagents_import.sinks import JSONLSink, MemorySink, SQLiteSink
    from truagents_import.source import DataSource, RemoteFile
    from truagents_import.state import StateStore

#: Where each public name lives: imported on first use, so that importing one module of the package
#: (the helper process imports the row builder alone) does not load the whole library.
_EXPORTS: dict[str, str] = {
    "CheckReport": "truagents_import.check",
    "CheckStep": "truagents_import.check",
    "Config": "truagents_import.config",
    "ConfigError": "truagents_import.errors",
    "ConnectError": "truagents_import.errors",
    "Contact": "truagents_import.fields.contact",
    "DataError": "truagents_import.errors",
    "DataSource": "truagents_import.source",
    "FieldError": "truagents_import.errors",
    "FileRejected": "truagents_import.errors",
    "FileResult": "truagents_import.report",
    "HostKeyError": "truagents_import.errors",
    "ImportReport": "truagents_import.report",
    "Importer": "truagents_import.pipeline.importer",
    "Integration": "truagents_import.remote.integration",
    "JSONLSink": "truagents_import.sinks",
    "KeyFileError": "truagents_import.errors",
    "Layout": "truagents_import.fields.layout",
    "LocalResourceError": "truagents_import.errors",
    "MemorySink": "truagents_import.sinks",
    "PluginError": "truagents_import.errors",
    "PostgresError": "truagents_import.errors",
    "Preview": "truagents_import.pipeline.preview",
    "Problem": "truagents_import.report",
    "Progress": "truagents_import.pipeline.importer",
    "RemoteError": "truagents_import.errors",
    "RemoteFile": "truagents_import.source",
    "RemoteNotFoundError": "truagents_import.errors",
    "RemotePermissionError": "truagents_import.errors",
    "SQLiteSink": "truagents_import.sinks",
    "StateStore": "truagents_import.state",
    "TruagentsImportError": "truagents_import.errors",
    "UploadNameError": "truagents_import.errors",
    "keys": "truagents_import.remote.keys",
    "load_config": "truagents_import.config",
    "run_check": "truagents_import.check",
}

# The library's records go wherever the application routes them; without that, nowhere (not to
# Python's last-resort stderr handler): a library never configures logging itself.
logging.getLogger(__name__).addHandler(logging.NullHandler())

try:
    __version__ = version("truagents-import")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without metadata
    __version__ = "0.0.0"

__all__ = [
    "CheckReport",
    "CheckStep",
    "Config",
    "ConfigError",
    "ConnectError",
    "Contact",
    "DataError",
    "DataSource",
    "FieldError",
    "FileRejected",
    "FileResult",
    "HostKeyError",
    "ImportReport",
    "Importer",
    "Integration",
    "JSONLSink",
    "KeyFileError",
    "Layout",
    "LocalResourceError",
    "MemorySink",
    "PluginError",
    "PostgresError",
    "Preview",
    "Problem",
    "Progress",
    "RemoteError",
    "RemoteFile",
    "RemoteNotFoundError",
    "RemotePermissionError",
    "SQLiteSink",
    "Sink",
    "StateStore",
    "TruagentsImportError",
    "UploadNameError",
    "__version__",
    "hookimpl",
    "keys",
    "load_config",
    "run_check",
]


def __getattr__(name: str) -> Any:
    """A public name, imported from its module on first use (PEP 562)."""
    module = _EXPORTS.get(name)
    if module is None:
        msg = f"module 'truagents_import' has no attribute {name!r}"
        raise AttributeError(msg)
    value = importlib.import_module(module) if name == "keys" else getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
