"""The seams of the redesign: sink capabilities as protocols, typed claim refusals, connection ownership."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from truagents_import import Contact, DataSource, Importer, Integration, MemorySink, SQLiteSink, StateStore
from truagents_import.remote.server import SFTPServer
from truagents_import.sinks import BulkLoad, CSVSink, JSONLSink, PostgresSink, Rollback, Upserting
from truagents_import.state import ClaimRefused


def test_the_built_in_sinks_declare_their_capabilities(tmp_path: Path) -> None:
    sqlite = SQLiteSink(tmp_path / "c.db")
    try:
        assert isinstance(sqlite, Rollback | Upserting | BulkLoad)
        assert isinstance(sqlite, Upserting) and isinstance(sqlite, BulkLoad) and isinstance(sqlite, Rollback)
    finally:
        sqlite.close()
    assert isinstance(MemorySink(), Rollback) and not isinstance(MemorySink(), Upserting)
    assert not isinstance(MemorySink(), BulkLoad)
    assert all(hasattr(PostgresSink, m) for m in ("write_merged", "rollback"))
    assert issubclass(PostgresSink, BulkLoad)  # it takes the staging file through COPY
    for log_sink in (JSONLSink(tmp_path / "c.jsonl"), CSVSink(tmp_path / "c.csv")):
        try:
            assert isinstance(log_sink, Rollback)
        finally:
            log_sink.close()
    assert not any(hasattr(kind, "write_merged") for kind in (JSONLSink, CSVSink))


class _PluginSink:
    """A plugin's sink that opts into Rollback and Upserting by having their methods."""

    merge = "merge"

    def __init__(self) -> None:
        self.calls: list[tuple[str, object]] = []

    def write(self, contacts: Sequence[Contact]) -> None:
        self.calls.append(("write", len(contacts)))

    def write_merged(self, contacts: Sequence[Contact], merge: str) -> None:
        self.calls.append(("write_merged", merge))

    def commit(self) -> None:
        self.calls.append(("commit", None))
        raise OSError("disk gone")

    def rollback(self) -> None:
        self.calls.append(("rollback", None))

    def close(self) -> None:
        self.calls.append(("close", None))


def test_a_plugin_sink_gets_the_source_merge_policy_and_is_rolled_back(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.csv").write_text("email\na@example.com\n", encoding="utf-8")
    sink = _PluginSink()
    source = DataSource(name="s", path=str(tmp_path / "in"), min_age=0, merge="replace")
    with Importer(source, sink, entry_points=False) as importer:
        [result] = importer.run().files
    assert result.status == "failed" and "disk gone" in (result.reason or "")
    assert sink.calls[:3] == [("write_merged", "replace"), ("commit", None), ("rollback", None)]
    assert sink.merge == "merge"  # the sink's own policy is never overwritten


def test_a_refused_claim_says_why_as_a_value(tmp_path: Path) -> None:
    state = StateStore(tmp_path / "state.db")
    try:
        claim = state.claim("s", "f" * 64, "/in/a.csv")
        assert not isinstance(claim, ClaimRefused)
        busy = state.claim("s", "f" * 64, "/in/b.csv")
        assert isinstance(busy, ClaimRefused) and busy.because == "being_imported" and not busy.to_record
        state.release(claim)
    finally:
        state.close()


def test_an_importer_closes_only_the_connection_it_opened(sftp_server: SFTPServer, key_file: Path) -> None:
    import getpass

    (sftp_server.root / "inbox").mkdir()
    integration = Integration(host=sftp_server.host, port=sftp_server.port, username=getpass.getuser(),
                              private_key=key_file, host_key=sftp_server.host_key_fingerprint)  # fmt: skip
    one = DataSource(name="one", path="/inbox", min_age=0, integration=integration)
    two = DataSource(name="two", path="/inbox", min_age=0, integration=integration)
    try:
        assert integration.fs is not None  # the owner (a configuration, a service) opened it: importers leave it open
        for source in (one, two):
            with Importer(source, MemorySink(), entry_points=False) as importer:
                importer.run()
            assert integration.connected
    finally:
        integration.close()
    with Importer(one, MemorySink(), entry_points=False) as importer:
        importer.run()
        assert integration.connected
    assert not integration.connected  # opened by this importer, so closed by it


@pytest.mark.parametrize("module", ["truagents_import.source", "truagents_import.remote.integration"])
def test_the_convenience_methods_import_nothing_above_them(module: str) -> None:
    """DataSource.read/preview/check and Integration.check compose lower rooms; none imports the importer."""
    import ast
    import importlib

    path = Path(importlib.import_module(module).__file__ or "")
    tree = ast.parse(path.read_text(encoding="utf-8"))
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert not {m for m in imported if m.startswith(("truagents_import.pipeline.importer", "truagents_import.config"))}


def test_wide_files_are_cut_into_bounded_chunks_and_batches(tmp_path: Path) -> None:
    """Memory stays bounded whatever the file's shape: chunks and plugin batches are cut by
    characters as well as rows when a file has many columns (issue: 100,000 columns took GBs)."""
    from truagents_import import hookimpl
    from truagents_import.pipeline import process

    columns = 2000
    cell = "x" * 40
    (tmp_path / "in").mkdir()
    with (tmp_path / "in" / "wide.csv").open("w", encoding="utf-8") as f:
        f.write("email," + ",".join(f"c{i}" for i in range(columns)) + "\n")
        for n in range(300):
            f.write(f"u{n}@example.com," + ",".join([cell] * columns) + "\n")
    seen: list[int] = []

    class Sizes:
        @hookimpl
        def validate_contacts(self, contacts: list[Contact], source: DataSource) -> list[object]:
            seen.append(len(contacts))
            return []

    built: list[int] = []
    original = process.build_chunk

    def counting(builder: object, first: int, rows: list[object]) -> object:
        built.append(len(rows))
        return original(builder, first, rows)  # type: ignore[arg-type]

    source = DataSource(name="w", path=str(tmp_path / "in"), min_age=0, max_columns=5000)
    sink = MemorySink()
    process.build_chunk = counting  # type: ignore[assignment]
    try:
        with Importer(source, sink, plugins=[Sizes()], entry_points=False, parallel=False) as importer:
            [result] = importer.run().files
    finally:
        process.build_chunk = original
    assert (result.status, result.rows, result.imported) == ("imported", 300, 300)
    chars_per_row = columns * len(cell)
    assert max(built) * chars_per_row <= process.CHUNK_CHARS + chars_per_row
    assert sum(built) == 300 and len(built) > 1
    assert max(seen) * chars_per_row <= process.BATCH_CHARS + chars_per_row and sum(seen) == 300
