"""truagents_import: import contact CSV files from SFTP drop boxes into the sink of your choice."""

import logging
from importlib.metadata import PackageNotFoundError, version

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
from truagents_import.hookspecs import Sink, hookimpl
from truagents_import.pipeline.importer import Importer, Progress
from truagents_import.pipeline.preview import Preview
from truagents_import.remote import keys
from truagents_import.remote.integration import Integration
from truagents_import.report import FileResult, ImportReport, Problem
from truagents_import.sinks import JSONLSink, MemorySink, SQLiteSink
from truagents_import.source import DataSource, RemoteFile
from truagents_import.state import StateStore

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
