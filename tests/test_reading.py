"""Reading files and checking their shape (SPEC 4 and 8): encodings, dialects, limits, drift, preview."""

from __future__ import annotations

import csv
import gzip
import io
import itertools
import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import Endpoint
from truagents_import import DataSource, Importer, MemorySink, StateStore
from truagents_import.cli import main
from truagents_import.reading import FileRejected, header_drift, open_rows

ENCODINGS = ["utf-8", "utf-8-sig", "utf-16-le-bom", "utf-16-be-bom", "cp1252"]
DELIMITERS = [",", ";", "\t", "|"]

# Text that every supported encoding can carry. Non-ASCII letters come from the Latin-1 letter
# range only: with them, Windows-1252 bytes can never also be valid UTF-8 by accident.
_LETTERS = "abcXYZ019 ._-@'" + "àéèüößñçÅØæÿÀÉ"
cell = st.text(alphabet=st.sampled_from([*_LETTERS, ",", ";", "\t", "|", '"', "\n"]), max_size=12)


def _encode(text: str, encoding: str) -> bytes:
    if encoding == "utf-16-le-bom":
        return b"\xff\xfe" + text.encode("utf-16-le")
    if encoding == "utf-16-be-bom":
        return b"\xfe\xff" + text.encode("utf-16-be")
    return text.encode(encoding)


def _csv_text(rows: list[list[str]], delimiter: str) -> str:
    buf = io.StringIO()
    csv.writer(buf, delimiter=delimiter, lineterminator="\r\n").writerows(rows)
    return buf.getvalue()


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(table=st.lists(st.tuples(cell, cell, cell), min_size=1, max_size=6))
def test_awkward_values_survive_every_encoding_delimiter_and_compression(
    table: list[tuple[str, str, str]], sftp_server_inbox: Endpoint, key_file: Path
) -> None:
    endpoint = sftp_server_inbox
    for old in endpoint.inbox_local.iterdir():
        old.unlink()
    header = ["Email", "Note A", "Note B", "Note C", "Variant"]
    variants = list(itertools.product(ENCODINGS, DELIMITERS, [False, True]))
    for n, (encoding, delimiter, zipped) in enumerate(variants):
        # The variant number makes every file's content unique (the same bytes would be skipped).
        rows = [header] + [[f"user{i}@example.com", *values, str(n)] for i, values in enumerate(table)]
        data = _encode(_csv_text(rows, delimiter), encoding)
        endpoint.put(f"v{n:02d}.csv" + (".gz" if zipped else ""), gzip.compress(data) if zipped else data)
    sink = MemorySink()
    with Importer(endpoint.source(key_file, pattern="v*"), sink, entry_points=False) as importer:
        report = importer.run()
    assert [f.status for f in report.files] == ["imported"] * len(variants), [f.reason for f in report.files]
    by_file: dict[str, list[dict[str, str]]] = {}
    for contact in sink.contacts:
        by_file.setdefault(str(contact.source_file), []).append(dict(contact.attributes))
    assert len(by_file) == len(variants)
    for got in by_file.values():
        n = got[0]["Variant"]
        assert got == [{"Note A": a, "Note B": b, "Note C": c, "Variant": n} for a, b, c in table]


@pytest.fixture
def sftp_server_inbox(endpoint: Endpoint) -> Endpoint:
    return endpoint


BAD_FILES: list[tuple[str, bytes, str, str]] = [
    ("empty.csv", b"", "empty", "the file is empty"),
    ("blank.csv", b"\n\n  \n", "empty", "the file is empty"),
    ("book.csv", b"PK\x03\x04\x14\x00\x06\x00", "not_csv", "ZIP archive (an Excel .xlsx workbook?)"),
    ("bin.csv", b"email\n\x00\x01\x02\x03", "not_csv", "binary data (NUL bytes) found"),
    ("utf32.csv", "email\na@example.com\n".encode("utf-32"), "unsupported_encoding", "UTF-32"),
    ("weird.csv", b"email\n\x81\x8d\x90 \xff\xfe", "undecodable",
     "cannot be decoded as UTF-8, UTF-16 or Windows-1252"),
    ("noid.csv", b"colour,size\nred,1\n", "no_identity_column", "columns seen: colour, size"),
    ("dupe.csv", b"email,note,note\na@example.com,x,y\n", "duplicate_header",
     "header names appear more than once: note"),
    ("blankhead.csv", b"email,,name\na@example.com,x,y\n", "blank_header", "header column(s) [2] have no name"),
    ("badgz.csv.gz", b"\x1f\x8b\x08\x00garbage", "undecodable", "cannot be decompressed"),
]


@pytest.mark.parametrize(("name", "data", "code", "message"), BAD_FILES, ids=[b[0] for b in BAD_FILES])
def test_bad_files_are_rejected_with_a_reason(tmp_path: Path, name: str, data: bytes, code: str,
                                              message: str) -> None:
    inbox = tmp_path / "in"
    inbox.mkdir()
    (inbox / name).write_bytes(data)
    sink = MemorySink()
    with Importer(DataSource(name="s", path=str(inbox), pattern="*", min_age=0), sink) as importer:
        report = importer.run()
    [f] = report.files
    assert f.status == "rejected"
    assert f.problems[0].code == code
    assert message in str(f.reason)
    assert sink.contacts == []


def test_rows_ragged_blank_and_multiline_numbering(tmp_path: Path) -> None:
    inbox = tmp_path / "in"
    inbox.mkdir()
    (inbox / "a.csv").write_text(
        'email,note\na@example.com,"two\nlines"\n\nb@example.com\nc@example.com,x,extra\nd@example.com,ok\n'
    )
    sink = MemorySink()
    with Importer(DataSource(name="s", path=str(inbox), min_age=0), sink) as importer:
        [f] = importer.run().files
    assert (f.rows, f.imported, f.rejected) == (4, 2, 2)
    assert [(p.code, p.row, p.message) for p in f.problems] == [
        ("ragged_row", 2, "1 fields where the header has 2"),
        ("ragged_row", 3, "3 fields where the header has 2"),
    ]
    assert [(c.email, c.source_row, dict(c.attributes)) for c in sink.contacts] == [
        ("a@example.com", 1, {"note": "two\nlines"}),
        ("d@example.com", 4, {"note": "ok"}),
    ]


def test_header_only_file_is_imported_with_a_warning(tmp_path: Path) -> None:
    inbox = tmp_path / "in"
    inbox.mkdir()
    (inbox / "a.csv").write_text("email,name\n")
    with Importer(DataSource(name="s", path=str(inbox), min_age=0), MemorySink()) as importer:
        [f] = importer.run().files
    assert (f.status, f.rows) == ("imported", 0)
    assert f.warnings == ["the file has a header but no data rows"]


def test_huge_fields_and_lines_reject_the_row_only(tmp_path: Path) -> None:
    path = tmp_path / "huge.csv"
    with path.open("w") as f:
        f.write("email,note\na@example.com,ok\n")
        f.write("b@example.com," + "x" * 5000 + "\n")
        f.write('c@example.com,"' + ("y" * 400 + "\n") * 5 + '"\n')
        f.write('d@example.com,"small\nfield"\ne@example.com,end\n')
    with open_rows(path, max_field_size=1000) as (_, it):
        rows = list(it)
    assert rows == [["a@example.com", "ok"], None, None, ["d@example.com", "small\nfield"], ["e@example.com", "end"]]
    inbox = tmp_path / "in"
    inbox.mkdir()
    os.replace(path, inbox / "huge.csv")
    with Importer(DataSource(name="s", path=str(inbox), min_age=0, max_field_size=1000), MemorySink()) as importer:
        [f] = importer.run().files
    assert (f.status, f.rows, f.imported, f.rejected) == ("imported", 5, 3, 2)
    assert [(p.code, p.row) for p in f.problems] == [("field_too_large", 2), ("field_too_large", 3)]


def test_windows_1252_detected_even_after_a_long_ascii_start(tmp_path: Path) -> None:
    path = tmp_path / "late.csv"
    body = "".join(f"u{i}@example.com,plain\n" for i in range(10_000))
    path.write_bytes(("email,note\n" + body + "z@example.com,Zoë Ærø\n").encode("cp1252"))
    with open_rows(path) as (layout, it):
        rows = list(it)
    assert layout.encoding == "cp1252"
    assert rows[-1] == ["z@example.com", "Zoë Ærø"]


def test_overrides_for_encoding_and_delimiter(tmp_path: Path) -> None:
    path = tmp_path / "o.csv"
    path.write_bytes("email:note\na@example.com:é\n".encode("latin-1"))
    with open_rows(path, encoding="latin-1", delimiter=":") as (layout, it):
        assert (layout.encoding, layout.delimiter, list(it)) == ("latin-1", ":", [["a@example.com", "é"]])
    with pytest.raises(ValueError, match="delimiter must be one character"):
        DataSource(name="s", path=".", delimiter="::")
    with pytest.raises(ValueError, match="encoding must be a Python codec name"):
        DataSource(name="s", path=".", encoding="klingon")


def test_malformed_quotes_reject_the_file(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    path.write_text('email,note\na@example.com,"open\n')
    with pytest.raises(FileRejected) as e, open_rows(path) as (_, it):
        list(it)
    assert e.value.code == "malformed_csv"
    assert "a quoted field opened on line 2 never closes" in e.value.message
    stray = tmp_path / "s.csv"
    stray.write_text('email,note\na@example.com,5" pipe\n')
    with open_rows(stray) as (_, it):
        assert list(it) == [["a@example.com", '5" pipe']]


def test_drift_warns_or_rejects(tmp_path: Path) -> None:
    inbox = tmp_path / "in"
    inbox.mkdir()
    state = StateStore(tmp_path / "s.db")
    (inbox / "1.csv").write_text("email,name,plan\na@example.com,A,x\n")
    with Importer(DataSource(name="s", path=str(inbox), min_age=0), MemorySink(), state=state) as importer:
        importer.run()
        (inbox / "2.csv").write_text("plan,email,city\nx,b@example.com,Oslo\n")
        [f] = [f for f in importer.run().files if f.path.endswith("2.csv")]
    assert f.status == "imported"
    assert f.drift == {"appeared": ["city"], "disappeared": ["name"], "moved": ["plan", "email"]}
    assert f.warnings == ["columns changed since the last imported file (appeared: city; disappeared: name; "
                          "moved: plan, email)"]
    (inbox / "3.csv").write_text("email\nc@example.com\n")
    state2 = StateStore(tmp_path / "s.db")
    strict = DataSource(name="s", path=str(inbox), min_age=0, on_drift="reject")
    with Importer(strict, MemorySink(), state=state2) as importer:
        [g] = [g for g in importer.run().files if g.path.endswith("3.csv")]
    assert (g.status, g.problems[0].code) == ("rejected", "schema_drift")
    assert header_drift(["a", "b"], ["a", "b"]) is None


def test_rejects_file_neutralises_formulas_and_ignores_remote_names(tmp_path: Path) -> None:
    inbox = tmp_path / "in"
    inbox.mkdir()
    (inbox / "x..\x1b[31m.csv").write_text("email,note\n=cmd|' /C calc'!A0,+1\n@x,-2\n")
    rejects = tmp_path / "rejects"
    source = DataSource(name="s", path=str(inbox), pattern="*", min_age=0)
    with Importer(source, MemorySink(), rejects_dir=rejects) as importer:
        report = importer.run()
    [f] = report.files
    assert f.rejected == 2 and f.rejects_file is not None
    written = Path(f.rejects_file)
    assert written.parent == rejects
    assert written.name == "x.._31m.rejects.csv"
    with written.open(encoding="utf-8") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["email", "note", "_row", "_code", "_column", "_message"]
    assert rows[1][:4] == ["'=cmd|' /C calc'!A0", "'+1", "1", "invalid_email"]
    assert rows[2][:2] == ["'@x", "'-2"]


def test_preview_library_and_cli(endpoint: Endpoint, key_file: Path, tmp_path: Path) -> None:
    endpoint.put("p.csv", "E-mail;Mobile;Plan\na@example.com;(212) 555-0123;x\nnope;;y\n")
    source = endpoint.source(key_file, default_region="US")
    result = source.preview("p.csv")
    assert (result.encoding, result.delimiter, result.header) == ("utf-8", ";", ["E-mail", "Mobile", "Plan"])
    assert result.mapping == {"E-mail": "email", "Mobile": "phone", "Plan": "attributes.Plan"}
    assert result.rows == [["a@example.com", "(212) 555-0123", "x"], ["nope", "", "y"]]
    assert (result.sampled, result.valid, result.rejected) == (2, 1, 1)
    assert result.problem_codes == {"invalid_email": 1}
    assert "<table>" in result._repr_html_()
    config = tmp_path / "truagents-import.toml"
    config.write_text(
        f'[integration]\nhost = "{endpoint.host}"\nport = {endpoint.port}\nusername = "{endpoint.username}"\n'
        f'private_key = "{key_file}"\nhost_key = "{endpoint.fingerprint}"\n'
        f'[[sources]]\nname = "s"\npath = "{endpoint.inbox_remote}"\ndefault_region = "US"\n'
    )
    out = CliRunner().invoke(main, ["preview", "p.csv", "--config", str(config), "--json"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.stdout)
    assert data["problem_codes"] == {"invalid_email": 1} and data["delimiter"] == ";"
    human = CliRunner().invoke(main, ["preview", "p.csv", "--config", str(config)])
    assert "E-mail" in human.stdout and "-> email" in human.stdout


def test_records_of_overlong_lines_are_one_rejected_row(tmp_path: Path) -> None:
    path = tmp_path / "long.csv"
    with path.open("w") as f:
        f.write("email,note\na@example.com,ok\n")
        f.write('b@example.com,"' + ("y" * 3000 + "\n") * 5 + '"\n')  # every line of the field too long
        f.write('c@example.com,"short\n' + "z" * 3000 + '\nend"\n')  # only a middle line too long
        f.write("d@example.com," + "x" * 5000 + "\n")
        f.write("e@example.com,end\n")
    with open_rows(path, max_field_size=1000) as (_, it):
        rows = list(it)
    assert rows == [["a@example.com", "ok"], None, None, None, ["e@example.com", "end"]]


def test_rejects_file_keeps_columns_aligned_for_ragged_rows(tmp_path: Path) -> None:
    inbox = tmp_path / "in"
    inbox.mkdir()
    (inbox / "r.csv").write_text("email,note\nshort@example.com\nlong@example.com,a,b,c\n")
    rejects = tmp_path / "rejects"
    with Importer(DataSource(name="s", path=str(inbox), min_age=0), MemorySink(), rejects_dir=rejects) as importer:
        [f] = importer.run().files
    assert f.rejects_file is not None
    with open(f.rejects_file, encoding="utf-8") as out:
        rows = list(csv.reader(out))
    assert rows[1][:4] == ["short@example.com", "", "1", "ragged_row"]
    assert rows[2] == ["long@example.com", "a", "2", "ragged_row", "", "4 fields where the header has 2", "b", "c"]
