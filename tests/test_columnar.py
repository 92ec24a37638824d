"""The columnar path gives exactly the row path's outcome (issue 18).

Each case imports the same file twice, row by row and through the columnar path (forced on for
these small files), and compares everything: the file's result (counts, problems in order,
warnings), the rejects file byte for byte, and what the sink holds (SQLite, which takes the staging
file in SQL, and a sink that gets Contact batches). Files the columnar reader cannot take as the row
path does (a ragged row, a huge field, bad UTF-8 part-way) must fall back to the row path whole.
"""

from __future__ import annotations

import csv
import gc
import gzip
import os
import sqlite3
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pyarrow as pa
import pytest

from truagents_import import Contact, DataSource, Importer, MemorySink, Problem, SQLiteSink, hookimpl
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
    folder: Path,
    tmp: Path,
    monkeypatch: pytest.MonkeyPatch,
    *,
    sink: str = "sqlite",
    make_plugins: Any = list,
    batch_size: int = 5000,
    **options: Any,
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
        importer = Importer(
            source, target, entry_points=False, parallel=False, rejects_dir=rejects_dir, plugins=make_plugins(),
            batch_size=batch_size,
        )  # fmt: skip
        with importer as imp:
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


class RejectSome:
    """A validate_contacts plugin: rejects every contact whose row is a multiple of ``n``, and every
    contact without a phone (two problems for a row that is both), by position in its batch."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.batches: list[int] = []

    @hookimpl
    def validate_contacts(self, contacts: list[Contact], source: DataSource) -> Iterator[tuple[int, Problem]]:
        self.batches.append(len(contacts))
        for index, c in enumerate(contacts):
            if c.source_row is not None and c.source_row % self.n == 0:
                yield index, Problem(code="every_nth", message=f"{c.identity} {c.tags} {c.attributes}")
            if c.phone is None:
                yield index, Problem(code="no_phone", message="no phone", column="Phone", row=c.source_row)


def mixed_rows(n: int) -> str:
    """``n`` rows in the benchmark's columns: valid and invalid emails, phones and zones, missing
    phones, tags, text markers, non-ASCII names, duplicates of earlier IDs."""
    phones = ["+1 212 555 {:04d}", "(617) 555-{:04d}", "020 7946 {:04d}", "", "12{:04d}", "'+49 30 123{:04d}"]
    zones = ["", "Mars/Base", "America/New_York", "europe/london"]
    emails = ["p{}@example.com", "P{}@Example.CO.UK", "bad{}@@example", ""]
    countries = ["US", "GB", "DE", "", "fr"]
    out = []
    for i in range(n):
        ident = f"CRM-{i % (n - 40)}"  # the last 40 rows repeat earlier IDs
        phone = phones[i % len(phones)].format(i % 10_000)
        email = emails[i % len(emails)].format(i)
        first = "Zoë" if i % 5 == 0 else f"F{i}"
        out.append(f"{ident},{first},L{i},{email},{phone},{zones[i % 4]},a;b|{i % 3},Co,City,{countries[i % 5]},")
    return HEADER + "\r\n".join(out) + "\r\n"


@pytest.mark.parametrize("sink", ["sqlite", "memory"])
def test_plugins_see_the_row_paths_batches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sink: str) -> None:
    """A validate_contacts plugin makes the columnar path build contacts for it: the same batches of
    contacts (across the columnar batches, which are small here), the same problems, the same rejects
    file in the same order, the same sink."""
    monkeypatch.setattr(columnar, "BLOCK_BYTES", 16 << 10)
    monkeypatch.setattr(columnar, "BATCH_BYTES", 64 << 10)
    write(tmp_path / "inbox", mixed_rows(6000))
    made: list[RejectSome] = []

    def plugins() -> list[RejectSome]:
        made.append(RejectSome(7))
        return made[-1:]

    result, held, batches = import_both(
        tmp_path / "inbox", tmp_path, monkeypatch, sink=sink, make_plugins=plugins, batch_size=250,
        default_timezone="America/Chicago",
    )  # fmt: skip
    assert batches > 5
    assert made[0].batches == made[1].batches and len(made[0].batches) > 5
    [rejects] = (tmp_path / "rejects-True").iterdir()
    with rejects.open(newline="", encoding="utf-8") as f:
        codes = Counter(row["_code"] for row in csv.DictReader(f))
    assert {"every_nth", "no_phone", "invalid_email", "invalid_phone", "invalid_timezone"} <= set(codes)
    assert result.duplicates > 0
    assert result.rows == 6000 == result.imported + result.rejected + result.duplicates and len(held) == result.imported


class FailOnBatch:
    """A validate_contacts plugin that raises on its third batch."""

    def __init__(self) -> None:
        self.batches = 0

    @hookimpl
    def validate_contacts(self, contacts: list[Contact], source: DataSource) -> None:
        self.batches += 1
        if self.batches == 3:
            raise RuntimeError("plugin broke")


def test_a_failing_plugin_fails_the_file_as_on_the_row_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rows = [f"R{n},A,B,a{n}@example.com,,,,,,," for n in range(50)]
    write(tmp_path / "inbox", HEADER + "\r\n".join(rows) + "\r\n")
    result, held, _ = import_both(
        tmp_path / "inbox", tmp_path, monkeypatch, make_plugins=lambda: [FailOnBatch()], batch_size=10
    )
    assert result.status == "failed" and "plugin broke" in (result.reason or "")
    assert held == []


@pytest.mark.parametrize("limit", [1 << 30, 6_000_000])
def test_gzip_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, limit: int) -> None:
    """A .gz file takes the columnar path too (decompressed by Python under max_decompressed_size):
    the same outcome; past the limit, the file is rejected as on the row path."""
    monkeypatch.setattr(columnar, "BLOCK_BYTES", 16 << 10)
    monkeypatch.setattr(columnar, "BATCH_BYTES", 64 << 10)
    (tmp_path / "inbox").mkdir()
    packed = gzip.compress(mixed_rows(20_000 if limit == 1 << 30 else 100_000).encode())
    if limit != 1 << 30:  # a trailer that understates the size, as a gzip bomb's may: found only by reading
        packed = packed[:-4] + (1000).to_bytes(4, "little")
    (tmp_path / "inbox" / "contacts.csv.gz").write_bytes(packed)
    result, held, batches = import_both(
        tmp_path / "inbox", tmp_path, monkeypatch, max_decompressed_size=limit, pattern="*.csv.gz"
    )
    if limit == 1 << 30:
        assert batches > 3 and result.status == "imported" and result.imported == len(held) > 0
    else:  # read part-way, then refused: both paths reject the whole file
        assert batches >= 1 and result.status == "rejected" and held == []
        assert "max_decompressed_size" in (result.reason or "")
