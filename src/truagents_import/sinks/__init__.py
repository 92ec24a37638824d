"""The built-in sinks, each an ordinary plugin that registers its sink type."""

from truagents_import.sinks.capabilities import BulkLoad, FileLedger, Rollback, Upserting
from truagents_import.sinks.csv import CSVSink
from truagents_import.sinks.jsonl import JSONLSink
from truagents_import.sinks.memory import MemorySink
from truagents_import.sinks.postgres import PostgresSink
from truagents_import.sinks.sqlite import SQLiteSink

__all__ = [
    "BulkLoad",
    "CSVSink",
    "FileLedger",
    "JSONLSink",
    "MemorySink",
    "PostgresSink",
    "Rollback",
    "SQLiteSink",
    "Upserting",
]
