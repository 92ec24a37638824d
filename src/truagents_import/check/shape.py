"""The newest file's rungs: ``shape`` (its layout, header and mapping) and ``sample`` (its first rows).

The head of the file is read as any fetched file is (:func:`~truagents_import.pipeline.fetch.open_local_rows`),
its header is judged by the importer's own rule (:func:`~truagents_import.pipeline.process.checked_mapping`),
and the sample runs through the one row pipeline (:class:`~truagents_import.pipeline.process.RowPipeline`).
"""

from __future__ import annotations

import re
from collections import Counter
from typing import TYPE_CHECKING

import attrs

from truagents_import._safety import escape_name
from truagents_import.check.context import PLUGIN_ADVICE, CheckContext, Skip
from truagents_import.check.head import download_head
from truagents_import.check.report import CheckStep
from truagents_import.check.wording import names
from truagents_import.errors import FileRejected, PluginError
from truagents_import.fields.layout import near_misses
from truagents_import.pipeline.fetch import open_local_rows
from truagents_import.pipeline.header import header_finder
from truagents_import.pipeline.process import RowPipeline, checked_mapping

if TYPE_CHECKING:
    from truagents_import.fields.mapping import ColumnMapping
    from truagents_import.reading import Shape
    from truagents_import.report import Problem
    from truagents_import.source import RemoteFile

__all__ = ["FAIL_SHARE", "SAMPLE_ROWS", "WARN_SHARE", "Sampled", "sample", "sample_rows", "shape"]

#: How many rows of the newest file the ``sample`` step reads.
SAMPLE_ROWS = 1000
#: Above this share of rejected sample rows the ``sample`` step warns; above FAIL_SHARE it fails.
WARN_SHARE = 0.10
FAIL_SHARE = 0.50

_SHAPE_DEFAULT = "ask the upstream to send a CSV file with a header row"
_SHAPE_ADVICE = {
    "undecodable": "the file is not UTF-8, UTF-16 with a BOM or Windows-1252 text: ask the upstream to export "
    "CSV as UTF-8, or set `encoding` for the source if you know it",
    "not_csv": "the upstream sends something other than CSV text (a workbook, an archive): ask it to export CSV",
    "empty": "the upstream's export wrote an empty file: ask it whether the export job failed",
    "no_header": "the first line must be the header row: ask the upstream to include it",
    "malformed_csv": "the quoting of the export is broken: ask the upstream to fix it",
    "too_large": "the file decompresses to more than max_decompressed_size: raise it for the source if the "
    "file is genuine",
    "blank_header": "ask the upstream to name every column in the header row",
    "duplicate_header": "ask the upstream to give every column its own name",
}


def shape(ctx: CheckContext) -> CheckStep:
    """The newest complete file reads as CSV with a header whose columns map to an identity."""
    newest = _newest_complete(ctx)
    name = escape_name(newest.name)
    try:
        inflated = _read_head(ctx, newest)
    except PluginError as exc:  # the plugins tell the header from preamble lines
        return CheckStep("shape", "fail", str(exc), PLUGIN_ADVICE)
    except FileRejected as exc:
        return CheckStep("shape", "fail", f"{name}: {exc.message}", _SHAPE_ADVICE.get(exc.code, _SHAPE_DEFAULT))
    layout = ctx.layout
    assert layout is not None
    gzipped = layout.compression is not None or inflated
    form = f"{name} ({layout.encoding}, {'gzip, ' if gzipped else ''}delimiter {layout.delimiter!r})"
    try:
        mapping = ctx.mapping = checked_mapping(layout.header, ctx.plugins(), ctx.source, newest.path)
    except PluginError as exc:
        return CheckStep("shape", "fail", str(exc), PLUGIN_ADVICE)
    except FileRejected as exc:
        return _unmappable(ctx, name, form, exc)
    return _judge_columns(ctx, form, layout, mapping)


def _unmappable(ctx: CheckContext, name: str, form: str, exc: FileRejected) -> CheckStep:
    """A header the importer would reject: a blank or repeated column name, or no identity column."""
    assert ctx.layout is not None
    header = ctx.layout.header
    if exc.code != "no_identity_column":  # shown escaped: the message names the columns
        return CheckStep(
            "shape", "fail", f"{name}: {escape_name(exc.message)}", _SHAPE_ADVICE.get(exc.code, _SHAPE_DEFAULT)
        )
    detail = f"{form}: no column maps to external_id, email or phone; columns: {names(header, 12)}"
    almost = [near.describe() for near in near_misses(header, ctx.plugins().layout_list())]
    if almost:
        detail += "; " + "; ".join(almost)
    return CheckStep("shape", "fail", detail, _identity_advice(ctx, header))


def _newest_complete(ctx: CheckContext) -> RemoteFile:
    if not ctx.files:
        raise Skip("not run: no file matches the pattern")
    complete = [f for f in ctx.files if f.state in ("new", "changed", "imported")]
    if not complete:
        raise Skip("not run: no complete file to read")
    ctx.newest_complete = max(complete, key=lambda f: f.mtime)
    return ctx.newest_complete


def _read_head(ctx: CheckContext, newest: RemoteFile) -> bool:
    """Download the head of ``newest`` and keep its layout and first rows (at most one more than
    :data:`SAMPLE_ROWS`, to know whether there were more); whether a cut gzip head was inflated."""
    assert ctx.listed is not None
    head = download_head(ctx.listed.filesystem(), newest.path, ctx.spool / "head", remote=ctx.integration is not None)
    truncated = head.truncated
    rows: list[list[str] | None] = []
    with open_local_rows(ctx.source, head.path, header_finder(ctx.plugins(), ctx.source)) as (layout, iterator):
        try:
            for row in iterator:
                rows.append(row)
                if len(rows) > SAMPLE_ROWS:
                    break
        except FileRejected:
            if not truncated:
                raise
    if truncated and len(rows) <= SAMPLE_ROWS and rows:
        rows.pop()  # cut by the download: it may be partial
    ctx.whole_file = not truncated and len(rows) <= SAMPLE_ROWS
    ctx.layout, ctx.rows = layout, rows[:SAMPLE_ROWS]
    return head.inflated


def _judge_columns(ctx: CheckContext, form: str, layout: Shape, mapping: ColumnMapping) -> CheckStep:
    header = layout.header
    identity = next(f for f in ("external_id", "email", "phone") if f in mapping.fields)
    mapped = sum(1 for t in mapping.by_column.values() if not t.startswith("attributes."))
    read_as = f"; read as a {mapping.layout.title} ({mapping.layout.name})" if mapping.layout else ""
    preamble = f"; {layout.preamble_lines} preamble lines before the header" if layout.preamble_lines else ""
    fields = ", ".join(
        f"{escape_name(column)} -> {target}" for column, target in mapping.by_column.items()
        if not target.startswith("attributes.")
    )  # fmt: skip
    detail = (
        f"{form}{read_as}{preamble}: {len(header)} columns, identity from {header[mapping.fields[identity]]!r} "
        f"({identity}); {mapped} mapped to fields ({fields}), {len(mapping.attributes)} kept as attributes"
    )
    drift = ctx.drift(header)
    if drift is not None:
        detail += f"; {drift.describe()}"
        advice = (
            "if the upstream changed its export on purpose, map renamed columns in [sources.mapping]; "
            "otherwise ask it why the columns changed"
        )
        if ctx.source.on_drift == "reject":
            return CheckStep("shape", "fail", f"{detail}; on_drift = 'reject' rejects this file", advice)
        return CheckStep("shape", "warn", detail, advice)
    if mapping.warnings:
        return CheckStep(
            "shape",
            "warn",
            f"{detail}; {'; '.join(mapping.warnings)}",
            "map the intended column explicitly in [sources.mapping]",
        )
    return CheckStep("shape", "pass", detail)


_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_PHONE = re.compile(r"^\+?[\d\s().\-]{7,20}$")


def _identity_advice(ctx: CheckContext, header: list[str]) -> str:
    guesses = _guess_identity(header, [r for r in ctx.rows[:50] if r is not None])
    advice = "name one of the columns like 'email', 'phone' or 'external id', or map it in [sources.mapping]"
    if guesses:
        lines = ", ".join(f'"{escape_name(c)}" = "{f}"' for c, f in guesses)
        advice += f"; the values suggest: {lines}"
    return advice


def _guess_identity(header: list[str], rows: list[list[str]]) -> list[tuple[str, str]]:
    """Columns whose values look like e-mail addresses or phone numbers (a hint, not a rule)."""
    guesses: list[tuple[str, str]] = []
    for index, column in enumerate(header):
        values = [r[index].strip() for r in rows if index < len(r) and r[index].strip()]
        if not values:
            continue
        for field, regex in (("email", _EMAIL), ("phone", _PHONE)):
            if sum(1 for v in values if regex.match(v)) * 2 > len(values):
                guesses.append((column, field))
                break
    return guesses[:3]


# -- sample -------------------------------------------------------------------------------------


@attrs.define
class Sampled:
    """How the sample rows fared in the row pipeline."""

    rows: int = 0
    rejected: int = 0
    #: Valid rows whose identity an earlier valid row already had (the later one wins on import).
    duplicates: int = 0
    #: Problems by code, and the first problem of each code.
    codes: Counter[str] = attrs.field(factory=Counter)
    first: dict[str, Problem] = attrs.field(factory=dict)


def sample_rows(ctx: CheckContext) -> Sampled:
    """Run the sample rows through the row pipeline (mapping, normalisers, validator plugins);
    nothing is written anywhere and no plugin hears of a run."""
    assert ctx.layout is not None
    assert ctx.mapping is not None
    assert ctx.newest_complete is not None
    out = Sampled()

    def rejected(_: list[str] | None, problems: list[Problem]) -> None:
        out.rejected += 1
        for p in problems:
            out.codes[p.code] += 1
            out.first.setdefault(p.code, p)

    pipeline = RowPipeline(
        ctx.source,
        ctx.layout.header,
        ctx.mapping,
        plugins=ctx.plugins(),
        file=ctx.newest_complete.path,
        on_reject=rejected,
    )
    accepted, identities = 0, set[str | None]()
    for batch in pipeline.batches(ctx.rows):
        accepted += len(batch.contacts)
        identities.update(c.identity for c in batch.contacts)
    out.rows = pipeline.rows
    out.duplicates = accepted - len(identities)
    return out


def sample(ctx: CheckContext) -> CheckStep:
    """Few of the newest file's first rows would be rejected."""
    ctx.need("shape", "not run: the shape of the newest file is not known")
    assert ctx.newest_complete is not None
    name = escape_name(ctx.newest_complete.name)
    if not ctx.rows:
        return CheckStep(
            "sample",
            "warn",
            f"{name} has a header but no data rows",
            "ask the upstream whether its export selected nothing (an empty result still writes a header)",
        )
    try:
        found = sample_rows(ctx)
    except PluginError as exc:
        return CheckStep("sample", "fail", f"{name}: {exc}", PLUGIN_ADVICE)
    share = found.rejected / found.rows if found.rows else 0.0
    rows_read = f"{found.rows} rows" if ctx.whole_file else f"the first {found.rows} rows"
    detail = f"{found.rejected} of {rows_read} of {name} would be rejected ({share:.0%})"
    if found.duplicates:
        detail += f", {found.duplicates} duplicates"
    if found.codes:
        top = found.codes.most_common(1)[0][0]
        detail += f"; problems: {', '.join(f'{code} {n}' for code, n in found.codes.most_common(3))}"
        first = found.first[top]
        where = f"row {first.row}" + (f", column {escape_name(first.column)!r}" if first.column else "")
        detail += f" (e.g. {where}: {first.message})"
    if share > FAIL_SHARE:
        return CheckStep("sample", "fail", detail, _sample_advice(ctx, found.codes))
    if share > WARN_SHARE:
        return CheckStep("sample", "warn", detail, _sample_advice(ctx, found.codes))
    return CheckStep("sample", "pass", detail)


def _sample_advice(ctx: CheckContext, codes: Counter[str]) -> str:
    top = codes.most_common(1)[0][0] if codes else ""
    region = ctx.source.default_region
    specific = {
        "invalid_email": "the column mapped to email holds something else, or the export garbles addresses: "
        "check the mapping in the shape step",
        "invalid_phone": "phone numbers without a country code are read with default_region "
        f"({region or 'not set'}): set `default_region` for the source, or check the phone column's mapping",
        "invalid_timezone": "time zones must be IANA names like America/New_York",
        "invalid_unsubscribed": "unsubscribed takes true/false, yes/no, y/n or 1/0",
        "ragged_row": "rows have another number of fields than the header: the delimiter or quoting of "
        "the export is wrong",
        "missing_identity": "rows have no external_id, email or phone: ask the upstream to fill one of them",
        "field_too_large": "a field is larger than max_field_size: the quoting of the export is broken",
    }.get(top, "the rows fail the validators (a plugin's, if the code is not a built-in one)")
    return (
        f"{specific}; to see every rejected row: `truagents-import import --dry-run --rejects DIR` "
        f"(--source {ctx.source.name})"
    )
