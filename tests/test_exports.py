"""Exports from other systems (SPEC 9): each imports with no configuration, as its owner expects.

Each sample in tests/data/exports is written as its system writes it (encoding, delimiter, line
endings, quoting, value formats; see docs/exports.md for where each header comes from), and
tests/data/exports/EXPECTED.json says what importing it must give, row by row.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest

from conftest import Endpoint
from truagents_import import (
    ConfigError,
    DataSource,
    Importer,
    Layout,
    MemorySink,
    PluginError,
    hookimpl,
)
from truagents_import.fields.layouts_builtin import BUILTIN_LAYOUTS
from truagents_import.plugins import Plugins
from truagents_import.testing import write_export

EXPORTS = Path(__file__).parent / "data" / "exports"
EXPECTED: dict[str, Any] = json.loads((EXPORTS / "EXPECTED.json").read_text(encoding="utf-8"))["files"]
FIELDS = ("external_id", "email", "phone", "first_name", "last_name", "unsubscribed")


def _raw_rows(name: str, preamble: int) -> tuple[list[str], list[list[str]]]:
    """The sample's header and data rows, read independently of the library (its known encoding)."""
    layout = next(layout for layout in BUILTIN_LAYOUTS if f"{layout.name}.csv" == name)
    data = (EXPORTS / name).read_bytes()
    encoding = {"utf-8": "utf-8-sig", "utf-16": "utf-16"}.get((layout.encoding or "utf-8").lower(), layout.encoding)
    text = data.decode(encoding or "utf-8")
    records = [r for r in csv.reader(io.StringIO(text, newline=""), delimiter=layout.delimiter) if r]
    if preamble:
        # The preamble is the lines before the header; its records are the ones before it.
        header_at = next(i for i, r in enumerate(records) if r and r[0] == (layout.header_line or r[0]) and len(r) > 3)
        records = records[header_at:]
    return records[0], records[1:]


@pytest.mark.sshd
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_export_imports_with_no_configuration(
    name: str, openssh: Endpoint, key_file: Path, tmp_path: Path
) -> None:
    want = EXPECTED[name]
    openssh.put(name, (EXPORTS / name).read_bytes())
    source = openssh.source(key_file, default_region="US")
    sink = MemorySink()
    with Importer(source, sink, entry_points=False, rejects_dir=tmp_path / "rejects") as importer:
        [result] = importer.run().files

    assert result.layout == want["layout"]
    assert result.preamble_lines == want["preamble_lines"]
    assert result.rows == len(want["rows"]) == result.imported + result.rejected + result.duplicates
    got = {c.source_row: c for c in sink.contacts}
    codes = {}
    for problem in result.problems:
        codes.setdefault(problem.row, problem.code)
    header, raw = _raw_rows(name, want["preamble_lines"])
    for expected in want["rows"]:
        n = expected["row"]
        if expected["status"] == "rejected":
            assert n not in got and codes.get(n) == expected["code"], (n, codes.get(n))
            continue
        contact = got[n]
        assert {f: getattr(contact, f) for f in FIELDS} == {f: expected[f] for f in FIELDS}, n
        assert list(contact.tags) == expected["tags"], n
        if "timezone" in expected:
            assert contact.timezone == expected["timezone"], n
        _assert_nothing_lost(header, raw[n - 1], contact.attributes, result.mapping or {}, contact)
    if result.rejected:
        assert result.rejects_file is not None
        with Path(result.rejects_file).open(encoding="utf-8", newline="") as f:
            assert len(list(csv.reader(f))) - 1 == result.rejected


def _assert_nothing_lost(
    header: list[str], row: list[str], attributes: Any, mapping: dict[str, str], contact: Any
) -> None:
    """Every non-empty cell is a field's column (and that field has a value) or is kept in attributes."""
    for column, cell in zip(header, row, strict=True):
        if not cell.strip():
            continue
        target = mapping.get(column, "")
        if column in attributes:
            kept = attributes[column]
            assert kept == cell or set(kept.split(" ::: ")) <= set(cell.split(" ::: ")), (column, cell, kept)
            continue
        assert not target.startswith("attributes."), (column, cell)
        field = {"full_name": "first_name", "subscribed": "unsubscribed"}.get(target, target)
        assert getattr(contact, field) not in (None, (), ""), (column, cell, target)


def test_generic_rules_apply_without_a_layout(tmp_path: Path) -> None:
    """Numbered and labelled columns, an entity prefix, ' ::: ' cells, the row's country, text
    markers, quoted tags, consent: in a file that is no known system's export."""
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "people.csv").write_text(
        "Customer ID,Email,Email 2,Person - Work Phone,Country,Categories,Accepts Email Marketing,Note\n"
        '\'000123,not-an-email,ana@example.com,020 7946 0958,United Kingdom,"""VIP"",Customer",yes,a\n'
        "'000124,b@example.com ::: c@example.com,,011 84 28 3823 4567,VN,Customer ::: Friends,no,b\n"
        "000125,bad,worse,,US,,,c\n",
        encoding="utf-8",
    )
    source = DataSource(name="g", path=str(tmp_path / "in"), min_age=0, default_region="US")
    sink = MemorySink()
    with Importer(source, sink, entry_points=False) as importer:
        [result] = importer.run().files
    assert result.layout is None
    assert result.mapping == {
        "Customer ID": "external_id",
        "Email": "email",
        "Email 2": "email",
        "Person - Work Phone": "phone",
        "Country": "country",
        "Categories": "tags",
        "Accepts Email Marketing": "subscribed",
        "Note": "attributes.Note",
    }
    first, second = sink.contacts
    assert (first.external_id, first.email, first.phone, first.tags, first.unsubscribed) == (
        "000123", "ana@example.com", "+442079460958", ("VIP", "Customer"), False,
    )  # fmt: skip
    assert first.attributes == {"Email": "not-an-email", "Country": "United Kingdom", "Note": "a"}
    assert (second.email, second.phone, second.tags, second.unsubscribed) == (
        "b@example.com", "+842838234567", ("Customer", "Friends"), True,
    )  # fmt: skip
    assert second.attributes == {"Email": "c@example.com", "Country": "VN", "Note": "b"}
    [problem] = result.problems
    assert (problem.row, problem.code, problem.column, problem.value) == (3, "invalid_email", "Email", "bad")


def test_the_row_country_can_be_turned_off(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.csv").write_text("email,phone,country\na@example.com,020 7946 0958,GB\n", encoding="utf-8")
    for setting, phone, code in ((True, "+442079460958", None), (False, None, "invalid_phone")):
        source = DataSource(name="r", path=str(tmp_path / "in"), min_age=0, default_region="US",
                            phone_region_from_country=setting)  # fmt: skip
        sink = MemorySink()
        with Importer(source, sink, entry_points=False) as importer:
            [result] = importer.run().files
        assert [c.phone for c in sink.contacts] == ([phone] if phone else [])
        assert [p.code for p in result.problems] == ([code] if code else [])


def test_layout_none_forced_and_the_explicit_mapping(tmp_path: Path) -> None:
    inbox = tmp_path / "in"
    inbox.mkdir()
    (inbox / "google_contacts.csv").write_bytes((EXPORTS / "google_contacts.csv").read_bytes())
    results = {}
    for setting in ("auto", "none", "google_contacts"):
        source = DataSource(name="l", path=str(inbox), min_age=0, default_region="US", layout=setting)
        with Importer(source, MemorySink(), entry_points=False) as importer:
            [results[setting]] = importer.run().files
    assert results["auto"].layout == results["google_contacts"].layout == "google_contacts"
    assert results["none"].layout is None
    # Without the layout the generic rules still find the numbered e-mail and phone columns.
    assert results["none"].mapping is not None and results["none"].mapping["E-mail 1 - Value"] == "email"
    # A forced layout applies to a header it would not recognise; the explicit mapping wins over it.
    (inbox / "google_contacts.csv").unlink()
    (inbox / "plain.csv").write_text("E-mail 1 - Value,Labels,Nick\na@example.com,x ::: y,A\n", encoding="utf-8")
    source = DataSource(
        name="l", path=str(inbox), min_age=0, layout="google_contacts", mapping={"Labels": "attributes.L"}
    )
    sink = MemorySink()
    with Importer(source, sink, entry_points=False) as importer:
        [result] = importer.run().files
    assert result.layout == "google_contacts"
    assert [(c.email, c.tags, c.attributes) for c in sink.contacts] == [
        ("a@example.com", (), {"L": "x ::: y", "Nick": "A"})
    ]
    bogus = DataSource(name="l", path=str(inbox), min_age=0, layout="no_such_layout")
    with Importer(bogus, MemorySink(), entry_points=False) as importer, pytest.raises(ConfigError) as err:
        importer.run()
    assert "no_such_layout" in str(err.value) and "google_contacts" in str(err.value)


def test_a_near_miss_names_the_column_that_differs(tmp_path: Path) -> None:
    header, rows = _raw_rows("google_contacts.csv", 0)
    at = header.index("File As")
    header[at] = "Filed As"
    inbox = tmp_path / "in"
    inbox.mkdir()
    with (inbox / "almost.csv").open("w", encoding="utf-8", newline="") as f:
        csv.writer(f).writerows([header, *rows])
    source = DataSource(name="n", path=str(inbox), min_age=0, default_region="US")
    with Importer(source, MemorySink(), entry_points=False) as importer:
        [result] = importer.run().files
    assert result.layout is None
    [warning] = [w for w in result.warnings if w.startswith("looks like")]
    assert "Google Contacts export" in warning and "'File As' is missing" in warning and "'Filed As'" in warning
    preview = source.preview("almost.csv")
    assert any(w.startswith("looks like a Google Contacts export") for w in preview.warnings)


class _Twice:
    @hookimpl
    def register_layouts(self, register: Any) -> None:
        register(Layout(name="google_contacts", title="Mine", source="mine", columns=(("Mail", "email"),)))


def test_a_layout_name_registered_twice_names_both_plugins() -> None:
    with pytest.raises(PluginError) as err:
        Plugins.build([_Twice()], entry_points=False)
    message = str(err.value)
    assert "'google_contacts'" in message and "layouts_builtin" in message and "_Twice" in message


def test_a_plugin_layout_and_the_test_kit(tmp_path: Path) -> None:
    """A plugin's own layout, tested with write_export the way a plugin author would."""
    crm = Layout(
        name="acme_crm",
        title="ACME CRM export",
        source="https://example.com/acme/export-format",
        columns=(
            ("Kontakt-Nr", "external_id"),
            ("Mail 1", "email"),
            ("Mail 2", "email"),
            ("Funk", "phone"),
            ("Land", "country"),
            ("Werbung", "subscribed"),
        ),
        distinctive=("Kontakt-Nr", "Werbung"),
        encoding="cp1252",
        delimiter=";",
        line_ending="\r\n",
        header_line="Kontakt-Nr",
    )

    class AcmePlugin:
        @hookimpl
        def register_layouts(self, register: Any) -> None:
            register(crm)

    write_export(
        tmp_path / "in",
        "acme.csv",
        crm,
        [
            {
                "external_id": "K-1",
                "email": "müller@",
                "Mail 2": "mueller@example.de",
                "phone": "030 901820",
                "country": "DE",
                "subscribed": "yes",
            },
            {"external_id": "K-2", "email": "b@example.de", "subscribed": "no"},
        ],
        preamble=["ACME CRM Export", "Stand: 2026-12-01"],
    )
    data = (tmp_path / "in" / "acme.csv").read_bytes()
    assert data.startswith(b"ACME CRM Export\r\n") and "müller".encode("cp1252") in data
    source = DataSource(name="acme", path=str(tmp_path / "in"), min_age=0, default_region="US")
    sink = MemorySink()
    with Importer(source, sink, plugins=[AcmePlugin()], entry_points=False) as importer:
        [result] = importer.run().files
    assert (result.layout, result.preamble_lines, result.rows, result.imported) == ("acme_crm", 2, 2, 2)
    first, second = sink.contacts
    assert (first.external_id, first.email, first.phone, first.unsubscribed) == (
        "K-1", "mueller@example.de", "+4930901820", False,
    )  # fmt: skip
    assert first.attributes["Mail 1"] == "müller@"  # the value not taken stays
    assert (second.external_id, second.email, second.unsubscribed) == ("K-2", "b@example.de", True)
    with pytest.raises(ValueError, match="neither columns"):
        write_export(tmp_path, "x.csv", crm, [{"nope": "1"}])


def test_preview_check_and_the_command_line_name_the_layout(tmp_path: Path, write_config: Any) -> None:
    from click.testing import CliRunner

    from truagents_import.cli import main

    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "connections.csv").write_bytes((EXPORTS / "linkedin_connections.csv").read_bytes())
    source = DataSource(name="li", path=str(inbox), min_age=0, default_region="US", pattern="*.csv")
    preview = source.preview("connections.csv")
    assert (preview.layout, preview.layout_title, preview.preamble_lines) == (
        "linkedin_connections", "LinkedIn Connections export", 3,
    )  # fmt: skip
    assert preview.header[:3] == ["First Name", "Last Name", "URL"]
    shape = source.check(run_all=True).step("shape")
    assert "read as a LinkedIn Connections export (linkedin_connections)" in shape.detail
    assert "3 preamble lines" in shape.detail and "Email Address -> email" in shape.detail

    config = write_config(
        f'[[sources]]\nname = "li"\npath = "{inbox}"\npattern = "*.csv"\nmin_age = 0\ndefault_region = "US"\n'
        f'[sink]\ntype = "memory"\n[state]\npath = "{tmp_path / "state.db"}"\n'
    )
    out = CliRunner().invoke(main, ["preview", "connections.csv", "--config", str(config)])
    assert "layout     LinkedIn Connections export (linkedin_connections)" in out.output
    assert "preamble   3 lines before the header" in out.output
    result = CliRunner().invoke(main, ["import", "--json", "--config", str(config)])
    [file] = json.loads(result.output)["files"]
    assert (file["layout"], file["preamble_lines"]) == ("linkedin_connections", 3)


#: Exports whose every field the generic rules find without their layout (a variant of the export
#: that lacks a distinctive column still imports as its owner expects). Brevo's bare ``SMS`` column,
#: Mailchimp's ``CC`` country column and LinkedIn's ``URL`` as the identifier are too ambiguous for a
#: rule that applies to every file.
WITHOUT_LAYOUT = sorted(set(EXPECTED) - {"brevo.csv", "mailchimp.csv", "linkedin_connections.csv"})


@pytest.mark.parametrize("name", WITHOUT_LAYOUT)
def test_the_generic_rules_alone_find_each_export_s_fields(name: str, tmp_path: Path) -> None:
    inbox = tmp_path / "in"
    inbox.mkdir()
    (inbox / name).write_bytes((EXPORTS / name).read_bytes())
    found = {}
    for setting in ("auto", "none"):
        sink = MemorySink()
        source = DataSource(name="g", path=str(inbox), min_age=0, default_region="US", layout=setting)
        with Importer(source, sink, entry_points=False) as importer:
            [result] = importer.run().files
        found[setting] = (
            result.imported,
            result.rejected,
            sorted((c.source_row, c.external_id, c.email, bool(c.phone), c.unsubscribed, c.tags)
                   for c in sink.contacts),
        )
    assert found["none"] == found["auto"]
