"""Tests of the vendor plugin, written the way a plugin author writes them.

The ``truagents_*`` fixtures come from truagents-import's pytest plugin (``truagents_import.testing``),
which pytest loads by itself once truagents-import is installed: an SFTP server on 127.0.0.1 with
a pinned host key, a data source on its ``/inbox``, and a generator of messy contact files.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import truagents_import_vendor
from truagents_import_vendor.validators import is_role_address

from truagents_import import DataSource, Importer, MemorySink
from truagents_import.plugins import Plugins
from truagents_import.testing import MessyCSV

VENDOR_NAMES = {"email": "EMAIL_ADDR_1", "phone": "MOB_NO", "external_id": "CUST_REF"}


def test_vendor_columns_are_mapped(
    truagents_source: DataSource, truagents_inbox: Path, truagents_messy_csv: Callable[..., MessyCSV]
) -> None:
    messy = truagents_messy_csv(rows=120, seed=11, columns=VENDOR_NAMES)
    messy.write(truagents_inbox, "export.csv")
    sink = MemorySink()
    with Importer(truagents_source, sink, plugins=[truagents_import_vendor], entry_points=False) as importer:
        [result] = importer.run().files
    assert result.status == "imported", result.reason
    assert (result.rows, result.imported, result.rejected, result.duplicates) == (
        messy.rows,
        messy.imported,
        messy.rejected,
        messy.duplicates,
    )
    assert set(sink.by_identity()) == messy.identities


def test_role_addresses_are_rejected(truagents_source: DataSource, truagents_inbox: Path) -> None:
    (truagents_inbox / "roles.csv").write_text(
        "CUST_REF,EMAIL_ADDR_1,EMAIL_ADDR_2\nR1,info@acme.example,\nR2,ann@acme.example,ann@home.example\n"
        "R3,Sales+EU@acme.example,\n",
        encoding="utf-8",
    )
    sink = MemorySink()
    with Importer(truagents_source, sink, plugins=[truagents_import_vendor], entry_points=False) as importer:
        [result] = importer.run().files
    assert (result.imported, result.rejected) == (1, 2)
    assert [(p.code, p.row) for p in result.problems] == [("role_address", 1), ("role_address", 3)]
    [ann] = sink.contacts
    assert ann.attributes == {"secondary_email": "ann@home.example"}


def test_is_role_address() -> None:
    assert is_role_address("info@acme.example")
    assert is_role_address("sales+eu@acme.example")
    assert not is_role_address("information@acme.example")


def test_audit_sink_writes_one_file_per_commit(
    truagents_source: DataSource, truagents_inbox: Path, tmp_path: Path, truagents_messy_csv: Callable[..., MessyCSV]
) -> None:
    first = truagents_messy_csv(rows=30, seed=1, mess=False)
    second = truagents_messy_csv(rows=40, seed=2)
    first.write(truagents_inbox, "a.csv")
    second.write(truagents_inbox, "b.csv")
    plugins = Plugins.build([truagents_import_vendor], entry_points=False)
    sink = plugins.make_sink("vendor-audit", {"path": tmp_path / "audit"})
    with Importer(truagents_source, sink, plugin_set=plugins) as importer:
        report = importer.run()
    assert [f.status for f in report.files] == ["imported", "imported"]
    documents = [json.loads(p.read_text(encoding="utf-8")) for p in sink.files()]  # type: ignore[attr-defined]
    assert [d["count"] for d in documents] == [first.imported, second.imported]
