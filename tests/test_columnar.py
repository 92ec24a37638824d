"""The columnar path gives exactly the row path's outcome (issue 18).

Each case imports the same file twice, row by row and through the columnar path (forced on for
these small files), and compares everything: the file's result (counts, problems in order,
warnings), the rejects file byte for byte, and what the sink holds (SQLite, which takes the staging
file in SQL, and a sink that gets Contact batches). Files the columnar reader cannot take as the row
path does (a ragged row, a huge field, bad UTF-8 part-way) must fall back to the row path whole.
"""

from __future__ import annotations

import gc
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import attrs
import pyarrow as pa
import pytest

from truagents_import import DataSource, Importer, MemorySink, SQLiteSink
from truagents_import.pipeline import columnar
from truagents_import.report import FileResult

SHARED_BENCH = Path(__file__).resolve().parents[2] / "shared" / "bench" / "gen_contacts.py"

HEADER = "External ID,First Name,Last Name,Email,Phone,Timezone,Tags,Company,City,Country,Signup Date\r\n"


class Taken:
    """Counts the batches the columnar path built (so a test knows which path ran)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.batches = 0
        build = columnar.ColumnBuilder.build

        def counting(builder: Any, columns: Any, first: int) -> Any:
            self.batches += 1
            return build(builder, columns, first)

        monkeypatch.setattr(columnar.ColumnBuilder, "build", counting)


def _sqlite_rows(db: Path) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db) as conn:
        return conn.execute(
            "SELECT identity, external_id, email, phone, first_name, last_name, timezone, tags, unsubscribed,"
            " attributes, source, source_file, source_row FROM contacts ORDER BY source_row"
        ).fetchall()


def import_both(
    folder: Path, tmp: Path, monkeypatch: pytest.MonkeyPatch, *, sink: str = "sqlite", **options: Any
) -> tuple[FileResult, Any, int]:
    """Import ``folder``'s one file row by row and through the columnar path; assert both outcomes are
    equal; return the columnar one's result and sink contents, and how many batches it built in columns."""
    taken = Taken(monkeypatch)
    outcomes = []
    for columns in (False, True):
        source = DataSource(name="c", path=str(folder), min_age=0, default_region="US", **options)
        db = tmp / f"{sink}-{columns}.db"
        target = SQLiteSink(db) if sink == "sqlite" else MemorySink()
        rejects_dir = tmp / f"rejects-{columns}"
        with Importer(source, target, entry_points=False, parallel=False, rejects_dir=rejects_dir) as imp:
            imp.columnar_min_bytes = 0 if columns else 1 << 62
            [result] = imp.run().files
        rejects = Path(result.rejects_file).read_bytes() if result.rejects_file else None
        held = _sqlite_rows(db) if sink == "sqlite" else target.contacts  # type: ignore[attr-defined]
        outcomes.append((attrs.evolve(result, rejects_file=None), held, rejects))
    assert outcomes[0][0] == outcomes[1][0]
    assert outcomes[0][2] == outcomes[1][2]
    assert outcomes[0][1] == outcomes[1][1]
    return outcomes[1][0], outcomes[1][1], taken.batches


def bench_file(folder: Path, rows: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / "contacts.csv"
    cmd = [sys.executable, str(SHARED_BENCH), str(rows), "--seed", "20240601", "--out", str(out)]
    subprocess.run(cmd, check=True, capture_output=True)
    return out


@pytest.mark.skipif(not SHARED_BENCH.exists(), reason="the shared benchmark generator is not beside the project")
@pytest.mark.parametrize(("sink", "on_invalid"), [("sqlite", "reject"), ("memory", "reject"), ("sqlite", "drop_field")])
def test_the_benchmark_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sink: str, on_invalid: str) -> None:
    """The benchmark workload (14 countries, national formats, bad emails, phones and zones): the same
    contacts, problems and rejects either way. TRUAGENTS_COLUMNAR_ROWS=1000000 runs the whole file."""
    rows = int(os.environ.get("TRUAGENTS_COLUMNAR_ROWS", "20000"))
    bench_file(tmp_path / "inbox", rows)
    result, held, batches = import_both(
        tmp_path / "inbox", tmp_path, monkeypatch, sink=sink, default_timezone="America/Chicago", on_invalid=on_invalid
    )
    assert batches >= 1
    assert result.rows == rows == result.imported + result.rejected + result.duplicates
    assert result.imported > rows * 0.8 and len(held) == result.imported
    if on_invalid == "reject":
        codes = {p.code for p in result.problems}
        assert {"invalid_email", "invalid_phone", "invalid_timezone"} <= codes


def write(folder: Path, text: str, name: str = "contacts.csv", encoding: str = "utf-8") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(text.encode(encoding))
    return path


ODD_ROWS = [
    # text markers, several values in a cell (the row builder builds these), extensions, junk
    "'CRM-1,Ann,Lee,ann@example.com,'+44 20 7946 0958,,vip,Acme,London,GB,2020-01-01",
    "CRM-2,Bo,Li,bo@example.com ::: bo2@example.com,+1 212 555 0100,,,Acme,NYC,US,",
    "CRM-3,Cy,Ng,cy@example.com,(212) 555-0101 x12,america/new_york,lead;vip,,, United States ,",
    "CRM-4,Di,Ox,DI@Example.COM,n/a,EST,,\"Quote \"\"q\"\" and \\ backslash\",Paris,FR,",
    "CRM-5,Ed,Po,ed@exämple.com,01 42 68 53 00,Europe/Paris,\"\"\"VIP\"\" ::: news\",,Paris,fr,",
    "CRM-6,Fi,Qu,not-an-email,0049 30 1234567,,,,Berlin,DE,",
    ",,,,,,,,,,",
    ",Gu,Ra,,+49 30 1234567,,,,,,",
    "CRM-2,Bo,Li,bo@example.com,+1 212 555 0199,,,Acme,NYC,US,",
    "CRM-7,Ha,Si,ha@example.com,\"030\n1234567\",,,\"line\none\",Berlin,DE,",
    "CRM-8,Io,Tu,io@example.com,1-212-555-0102,,,\"tab\there\",,US,",
    "CRM-9, Jo ,Uv,  jo@example.com\u00a0,\u2003+61 2 9374 4000,,,Ctl\x01char,Sydney,AUS,",
    "CRM-10,Ka,Vw,ka@example.com,0011 44 20 7946 0958,,,,Sydney,AU,",
    "CRM-11,La,Wx,la@example.com,+,,,=HYPERLINK(),,,",
]


@pytest.mark.parametrize("on_invalid", ["reject", "drop_field"])
@pytest.mark.parametrize("sink", ["sqlite", "memory"])
def test_odd_rows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, on_invalid: str, sink: str) -> None:
    """Markers, several values per cell, extensions, junk, non-ASCII spaces, control characters,
    quotes and backslashes in attributes, newlines in cells, duplicates and rows without identity.
    Rows are staged four at a time, so the row builder's rows fall on both sides of chunk boundaries."""
    monkeypatch.setattr(columnar, "STAGE_ROWS", 4)
    write(tmp_path / "inbox", HEADER + "\r\n".join(ODD_ROWS * 3) + "\r\n")
    result, _held, batches = import_both(tmp_path / "inbox", tmp_path, monkeypatch, sink=sink, on_invalid=on_invalid)
    assert batches == 1
    assert result.duplicates > 0 and result.rejected > 0 and result.imported > 0


def test_bom_semicolons_and_blank_lines(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = (
        "\ufeffEmail;Phone;Name;Opt Out\r\n\r\n"
        "a@example.com;+1 212 555 0100;Ann Lee;yes\r\n\r\nb@example.com;;Bo;no\r\n"
    )
    write(tmp_path / "inbox", text)
    result, held, batches = import_both(tmp_path / "inbox", tmp_path, monkeypatch)
    assert batches == 1 and result.imported == 2 and held[0][4:6] == ("Ann", "Lee")


@pytest.mark.parametrize(
    ("rows", "why"),
    [
        (["a@example.com,1", "b@example.com"], "a ragged row"),
        (["a@example.com,1", "b@example.com," + "x" * 3000], "a field over max_field_size"),
    ],
)
def test_files_the_row_path_reads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, rows: list[str], why: str) -> None:
    """A file the columnar reader would read otherwise falls back to the row path, whole: same outcome."""
    write(tmp_path / "inbox", "Email,Note\n" + "\n".join(rows * 50) + "\n")
    result, _held, _batches = import_both(tmp_path / "inbox", tmp_path, monkeypatch, max_field_size=2000)
    assert result.rejected >= 50, why


def test_bad_utf8_part_way(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path / "inbox", "Email,Note\n" + "a@example.com,ok\n" * 100)
    path.write_bytes(path.read_bytes() + b"b@example.com,\xff\xfe\n")
    result, _held, _batches = import_both(tmp_path / "inbox", tmp_path, monkeypatch, encoding="utf-8")
    assert result.status == "rejected"


@pytest.mark.parametrize(
    ("options", "text"),
    [
        ({"infer_timezone": True}, "Email,Phone\na@example.com,+1 212 555 0100\n"),
        ({}, "Email,E-mail 2\na@example.com,b@example.com\n"),
        ({"encoding": "cp1252"}, "Email,Name\na@example.com,Ren\xe9\n"),
    ],
)
def test_shapes_that_stay_on_the_row_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, options: dict[str, Any], text: str
) -> None:
    write(tmp_path / "inbox", text, encoding=options.get("encoding", "utf-8"))
    _result, _held, batches = import_both(tmp_path / "inbox", tmp_path, monkeypatch, **options)
    assert batches == 0


def test_remembered_refusals_keep_no_batch_alive(tmp_path: Path) -> None:
    """Refusals are remembered (per distinct value, per cell the libraries read): they must not keep
    the frames they were raised in, and with them the Arrow arrays of a whole batch, alive."""
    country = ["DE", "XX"]
    rows = [f"R{n},A,B,bad{n}@@example.com,tel {n}?,Mars/Base{n % 50},,,,{country[n % 2]}," for n in range(4000)]
    write(tmp_path / "inbox", HEADER + "\r\n".join(rows) + "\r\n")
    source = DataSource(name="c", path=str(tmp_path / "inbox"), min_age=0, default_region="US")
    before = pa.total_allocated_bytes()
    with Importer(source, MemorySink(), entry_points=False, parallel=False) as imp:
        imp.columnar_min_bytes = 0
        [result] = imp.run().files
    assert result.rejected == 4000
    gc.collect()
    assert pa.total_allocated_bytes() - before < 64 << 10
