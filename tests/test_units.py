"""Fast unit tests: normalisers, mapping, reading, configuration, sinks, plugins (no network)."""

from __future__ import annotations

import codecs
import gzip
import json
from pathlib import Path

import pytest

from truagents_import import (
    ConfigError,
    Contact,
    DataSource,
    Importer,
    JSONLSink,
    MemorySink,
    PluginError,
    Problem,
    SQLiteSink,
    hookimpl,
)
from truagents_import.config import parse_config
from truagents_import.fields.contact import (
    FieldError,
    normalise_bool,
    normalise_email,
    normalise_phone,
    normalise_tags,
    normalise_timezone,
    split_full_name,
)
from truagents_import.fields.mapping import ALIASES, BuiltinAliases, fold_header, resolve_mapping
from truagents_import.pipeline.importer import rejects_file_name
from truagents_import.reading import FileRejected, open_rows


def test_email() -> None:
    assert normalise_email("  Ann@Example.COM ") == "ann@example.com"
    with pytest.raises(FieldError) as e:
        normalise_email("ann@")
    assert e.value.code == "invalid_email"


@pytest.mark.parametrize(
    ("raw", "region", "expected"),
    [("(212) 555-0123", "US", "+12125550123"), ("+44 20 7946 0958", None, "+442079460958"),
     ("030 901820", "DE", "+4930901820")],
)
def test_phone(raw: str, region: str | None, expected: str) -> None:
    assert normalise_phone(raw, region) == expected


@pytest.mark.parametrize(("raw", "region"), [("12345", "US"), ("212 555 0123", None), ("call me", "US")])
def test_phone_invalid(raw: str, region: str | None) -> None:
    with pytest.raises(FieldError) as e:
        normalise_phone(raw, region)
    assert e.value.code == "invalid_phone"


def test_timezone_tags_bool_names() -> None:
    assert normalise_timezone("america/new_york") == "America/New_York"
    with pytest.raises(FieldError):
        normalise_timezone("Mars/Olympus")
    assert normalise_tags(" a; b,|a | c ,") == ("a", "b", "c")
    assert [normalise_bool(v) for v in ("YES", "n", "1", "False", "")] == [True, False, True, False, None]
    with pytest.raises(FieldError) as e:
        normalise_bool("maybe")
    assert e.value.code == "invalid_unsubscribed"
    assert split_full_name(" Mary  Ann Smith ") == ("Mary Ann", "Smith")
    assert split_full_name("Cher") == ("Cher", None)


def test_every_alias_maps_to_its_field() -> None:
    header = [a for aliases in ALIASES.values() for a in aliases]
    found = BuiltinAliases().map_columns(header, DataSource(name="s", path="."))
    for field, aliases in ALIASES.items():
        for alias in aliases:
            assert found[alias] == field
    assert fold_header("E-Mail_Address") == fold_header("email address")


def test_resolve_mapping_explicit_wins_and_attributes_keep_the_rest() -> None:
    header = ["Mail", "E-mail Addr", "Phone", "Plan", "Full Name", "First"]
    explicit = {"E-mail Addr": "email", "Plan": "attributes.plan"}
    m = resolve_mapping(header, [{"Mail": "email", "Phone": "phone"}], explicit)
    assert m.fields["email"] == 1
    assert m.by_column["Mail"] == "attributes.Mail"
    m3 = resolve_mapping(["Mail", "Email"], [{"Mail": "email", "Email": "email"}], {})
    assert m3.fields["email"] == 0
    assert m3.warnings == ("columns 'Mail' and 'Email' both map to email; 'Email' kept in attributes",)
    assert ("plan", 3) in m.attributes
    m2 = resolve_mapping(header, [{"Full Name": "full_name", "First": "first_name"}], {})
    assert "full_name" not in m2.fields and ("Full Name", 4) in m2.attributes


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "utf-16", "cp1252"])
@pytest.mark.parametrize("delimiter", [",", ";", "\t", "|"])
def test_reading_detects_encoding_and_delimiter(tmp_path: Path, encoding: str, delimiter: str) -> None:
    rows = [["Email", "Name", "Note"], ["a@example.com", "Zoë", f'has {delimiter} and "quotes"\nand a newline']]
    text = "".join(delimiter.join('"' + c.replace('"', '""') + '"' for c in r) + "\r\n" for r in rows)
    path = tmp_path / "f.csv"
    path.write_bytes(text.encode(encoding))
    with open_rows(path) as (layout, it):
        assert layout.delimiter == delimiter
        assert layout.header == rows[0]
        assert list(it) == rows[1:]


def test_reading_rejects(tmp_path: Path) -> None:
    cases = {
        b"": "empty",
        b"PK\x03\x04rest": "not_csv",
        b"\x00\x01\x02\x03email": "not_csv",
        b"email\n\x81\x8d\x8f\n": "undecodable",
    }
    for data, code in cases.items():
        path = tmp_path / "bad.csv"
        path.write_bytes(data)
        with pytest.raises(FileRejected) as e, open_rows(path) as (_, it):
            list(it)
        assert e.value.code == code, data


def test_gzip_bomb_guard(tmp_path: Path) -> None:
    path = tmp_path / "big.csv.gz"
    path.write_bytes(gzip.compress(b"email\n" + b"a@example.com\n" * 200_000))
    with pytest.raises(FileRejected) as e, open_rows(path, max_decompressed_size=1 << 20) as (_, it):
        list(it)
    assert e.value.code == "too_large"


def test_rejects_file_name_cannot_escape() -> None:
    for name in ("../../etc/passwd", "a/b\x1b[31m.csv", "..", ".hidden.csv"):
        safe = rejects_file_name(name)
        assert "/" not in safe and not safe.startswith(".") and safe.endswith(".rejects.csv")
        assert all(c.isprintable() for c in safe)


def _local_source(tmp_path: Path, **kw: object) -> DataSource:
    inbox = tmp_path / "inbox"
    inbox.mkdir(exist_ok=True)
    return DataSource(name="local", path=str(inbox), min_age=0, **kw)  # type: ignore[arg-type]


def test_local_folder_source_and_sinks(tmp_path: Path) -> None:
    source = _local_source(tmp_path, default_region="US")
    Path(source.path, "a.csv").write_text("id,email,tags\n1,a@example.com,x\n2,b@example.com,\n1,a2@example.com,y\n")
    jsonl = tmp_path / "out.jsonl"
    with Importer(source, JSONLSink(jsonl)) as importer:
        report = importer.run()
    assert report.totals.imported == 2 and report.totals.duplicates == 1
    lines = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert [(d["external_id"], d["email"], d["tags"], d["source_row"]) for d in lines] == [
        ("2", "b@example.com", [], 2),
        ("1", "a2@example.com", ["y"], 3),
    ]


def test_sqlite_sink_upsert_keeps_created_at(tmp_path: Path) -> None:
    sink = SQLiteSink(tmp_path / "c.db")
    sink.write([Contact(external_id="1", email="a@example.com")])
    sink.commit()
    sink.write([Contact(external_id="1", email="b@example.com", tags=("t",))])
    sink.rollback()
    sink.write([Contact(external_id="1", email="c@example.com", tags=("t",))])
    sink.commit()
    row = sink._db.execute("select email, tags, created_at <= updated_at from contacts").fetchall()
    assert row == [("c@example.com", '["t"]', 1)]
    sink.close()


def test_config_paths_and_errors(tmp_path: Path) -> None:
    data = {
        "integration": {"host": "h", "username": "u", "private_key": "keys/k", "host_key": "SHA256:" + "x" * 43},
        "sources": [{"name": "s", "path": "/in", "default_timezone": "europe/paris", "mapping": {"Mail": "email"}}],
        "sink": {"type": "jsonl", "path": "out.jsonl"},
    }
    cfg = parse_config(data, tmp_path)
    assert cfg.integration is not None and cfg.integration.private_key == tmp_path / "keys/k"
    assert cfg.sources[0].default_timezone == "Europe/Paris"
    assert cfg.sources[0].integration is cfg.integration
    assert cfg.sink.options == {"path": tmp_path / "out.jsonl"}
    assert cfg.state.path == tmp_path / ".truagents-import/state.db"
    bad = {"sources": [{"name": "s", "path": "/in", "after_import": "shred"}]}
    with pytest.raises(ConfigError, match=r"sources\[0\]\.after_import: after_import must be"):
        parse_config(bad, tmp_path)
    with pytest.raises(ConfigError, match=r"sources\[0\]\.mapping"):
        parse_config({"sources": [{"name": "s", "path": "/in", "mapping": {"A": "colour"}}]}, tmp_path)
    with pytest.raises(ConfigError, match=r"integration: unknown key\(s\) password"):
        parse_config({"integration": {"host": "h", "username": "u", "private_key": "k", "password": "p"}}, tmp_path)


class VendorPlugin:
    """A plugin as a plugin author writes one."""

    @hookimpl
    def map_columns(self, header: list[str], source: DataSource) -> dict[str, str]:
        return {"EMAIL_ADDR_1": "email"} if "EMAIL_ADDR_1" in header else {}

    @hookimpl
    def validate_contacts(self, contacts: list[Contact], source: DataSource) -> list[tuple[int, Problem]]:
        return [(i, Problem(code="role_address", message="role address", column="email"))
                for i, c in enumerate(contacts) if c.email and c.email.startswith("info@")]


def test_plugins_map_and_validate(tmp_path: Path) -> None:
    source = _local_source(tmp_path)
    Path(source.path, "v.csv").write_text("EMAIL_ADDR_1\ninfo@example.com\nann@example.com\n")
    sink = MemorySink()
    with Importer(source, sink, plugins=[VendorPlugin()], entry_points=False) as importer:
        report = importer.run()
    [f] = report.files
    assert (f.imported, f.rejected) == (1, 1)
    assert [(p.code, p.row) for p in f.problems] == [("role_address", 1)]
    assert [c.email for c in sink.contacts] == ["ann@example.com"]


class Exploding:
    @hookimpl
    def validate_contacts(self, contacts: list[Contact], source: DataSource) -> list[tuple[int, Problem]]:
        raise RuntimeError("boom")


def test_plugin_failure_is_attributed_and_nothing_written(tmp_path: Path) -> None:
    source = _local_source(tmp_path)
    Path(source.path, "v.csv").write_text("email\nann@example.com\n")
    sink = MemorySink()
    with Importer(source, sink, plugins=[Exploding()], entry_points=False) as importer:
        report = importer.run()
        [f] = report.files
        assert f.status == "failed"
        assert "Exploding" in str(f.reason) and "validate_contacts" in str(f.reason) and "v.csv" in str(f.reason)
        assert sink.contacts == []
        assert importer.state.history("local")[-1]["status"] == "failed"


def test_duplicate_sink_name_is_refused() -> None:
    class Dup:
        @hookimpl
        def register_sinks(self, register: object) -> None:
            register("memory", MemorySink)  # type: ignore[operator]

    with pytest.raises(PluginError, match="registered by both"):
        Importer(DataSource(name="s", path="."), MemorySink(), plugins=[Dup()], entry_points=False)


def test_misspelled_hook_fails_loudly() -> None:
    class Typo:
        @hookimpl
        def validate_contact(self, contacts: list[Contact]) -> None:
            return None

    with pytest.raises(PluginError, match="validate_contact"):
        Importer(DataSource(name="s", path="."), MemorySink(), plugins=[Typo()], entry_points=False)


def test_bom_never_leaks_into_header(tmp_path: Path) -> None:
    path = tmp_path / "b.csv"
    path.write_bytes(codecs.BOM_UTF8 + b"Email,Name\na@example.com,A\n")
    with open_rows(path) as (layout, _):
        assert layout.header == ["Email", "Name"]


def test_data_errors_share_one_base_and_keep_their_old_homes() -> None:
    import truagents_import
    from truagents_import import errors, fields, reading

    for cls in (FieldError, FileRejected):
        assert issubclass(cls, errors.DataError) and issubclass(cls, truagents_import.TruagentsImportError)
        error = cls("invalid_email", "not an address")
        assert (error.code, error.message, str(error)) == ("invalid_email", "not an address", "not an address")
    assert issubclass(FieldError, ValueError)
    assert fields.contact.FieldError is errors.FieldError and reading.FileRejected is errors.FileRejected
    public = {name for name in dir(errors) if isinstance(getattr(errors, name), type)}
    assert public <= set(truagents_import.__all__)
