"""Preview: a quick look at one file's shape, mapping, first rows and sample validity.

:func:`preview_file` fetches the file, reads its first rows through the one row pipeline
(:class:`~truagents_import.pipeline.process.RowPipeline`) and writes nothing anywhere.
"""

from __future__ import annotations

import html
import itertools
import tempfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from truagents_import._converter import to_dict
from truagents_import._safety import escape_name
from truagents_import.errors import PluginError
from truagents_import.pipeline.fetch import download, open_local_rows
from truagents_import.pipeline.header import header_finder, map_header
from truagents_import.pipeline.process import RowPipeline, checked_mapping
from truagents_import.reading import FileRejected, header_drift
from truagents_import.report import Problem

if TYPE_CHECKING:
    from truagents_import.plugins import Plugins
    from truagents_import.source import DataSource, RemoteFile
    from truagents_import.state import State

__all__ = ["Preview", "preview_file"]


@attrs.define
class Preview:
    """What ``DataSource.preview(file)`` and ``truagents-import preview`` show."""

    path: str
    size: int | None
    compression: str | None = None
    encoding: str | None = None
    delimiter: str | None = None
    header: list[str] = attrs.field(factory=list)
    #: column -> field (or ``attributes.<name>``)
    mapping: dict[str, str] = attrs.field(factory=dict)
    rows: list[list[str]] = attrs.field(factory=list)
    #: Rows read for the validation sample, and how they fared.
    sampled: int = 0
    valid: int = 0
    rejected: int = 0
    problem_codes: dict[str, int] = attrs.field(factory=dict)
    warnings: list[str] = attrs.field(factory=list)
    #: Why the whole file would be rejected, if it would be.
    rejected_because: str | None = None
    drift: dict[str, list[str]] | None = None
    #: The export layout recognised (SPEC 9): its name and title, if any.
    layout: str | None = None
    layout_title: str | None = None
    #: Lines before the header (a preamble); they are not rows.
    preamble_lines: int = 0

    def count(self, codes: Counter[str]) -> None:
        """Record the problem codes of the sample, most common first."""
        self.problem_codes = dict(codes.most_common())

    def to_dict(self) -> dict[str, Any]:
        """The preview as plain data (what ``--json`` prints)."""
        return to_dict(self)

    def to_pandas(self) -> Any:
        """The first rows as a pandas DataFrame (needs the ``pandas`` extra)."""
        try:
            import pandas as pd
        except ImportError:  # pragma: no cover - depends on the environment
            msg = "to_pandas() needs pandas: pip install 'truagents-import[pandas]'"
            raise ImportError(msg) from None
        return pd.DataFrame(self.rows, columns=self.header)

    def _repr_html_(self) -> str:
        esc = html.escape
        head = "".join(
            f"<th>{esc(escape_name(h))}<br><small>{esc(self.mapping.get(h, ''))}</small></th>" for h in self.header
        )
        body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in r) + "</tr>" for r in self.rows)
        facts = (
            f"{esc(escape_name(self.path))}: {self.encoding}, delimiter {self.delimiter!r}"
            + (f", {self.compression}" if self.compression else "")
            + f"; sample of {self.sampled} rows: {self.valid} valid, {self.rejected} rejected"
        )
        codes = ", ".join(f"{esc(k)}: {v}" for k, v in self.problem_codes.items())
        extra = f"<p>problems: {codes}</p>" if codes else ""
        if self.rejected_because:
            extra += f"<p><b>file would be rejected:</b> {esc(self.rejected_because)}</p>"
        return f"<p>{facts}</p>{extra}<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def preview_file(
    source: DataSource,
    file: RemoteFile | str,
    *,
    plugins: Plugins,
    state: State | None = None,
    rows: int = 10,
    sample: int = 1000,
) -> Preview:
    """Encoding, delimiter, header, mapping, the first ``rows`` rows and validation counts on the
    first ``sample`` rows of one file of ``source``, writing nothing anywhere (``state``: where
    the last imported header is found, for drift)."""
    path = file if isinstance(file, str) else file.path
    if not path.startswith("/") and not Path(path).is_absolute():
        path = f"{source.path.rstrip('/')}/{path}"
    listing = {f.path: f for f in source.list_files(state)}
    remote = listing.get(path)
    out = Preview(path=path, size=remote.size if remote is not None else None)
    with tempfile.TemporaryDirectory(prefix="truagents-preview-") as spool:
        local = Path(spool) / "0.data"
        download(source, remote if remote is not None else path, local)
        try:
            _preview_rows(out, source, local, plugins, state, rows, sample)
        except FileRejected as exc:
            out.rejected_because = exc.message
        except PluginError as exc:
            out.rejected_because = str(exc)
    return out


def _preview_rows(
    out: Preview, source: DataSource, local: Path, plugins: Plugins, state: State | None, rows: int, sample: int
) -> None:
    with open_local_rows(source, local, header_finder(plugins, source)) as (layout, it):
        out.compression, out.encoding, out.delimiter = layout.compression, layout.encoding, layout.delimiter
        out.header = layout.header
        drift = header_drift(None if state is None else state.last_header(source.name), layout.header)
        if drift is not None:
            out.drift = to_dict(drift)
            out.warnings.append(drift.describe())
        try:
            mapping = checked_mapping(layout.header, plugins, source, out.path)
        except FileRejected:  # still show how each column maps: the reason refers to it
            if len(set(layout.header)) == len(layout.header):
                found = plugins.map_columns(layout.header, source, out.path)
                out.mapping = dict(map_header(layout.header, found, source, plugins.layout_list()).by_column)
            raise
        out.mapping = dict(mapping.by_column)
        out.warnings.extend(mapping.warnings)
        out.preamble_lines = layout.preamble_lines
        if mapping.layout is not None:
            out.layout, out.layout_title = mapping.layout.name, mapping.layout.title
        codes: Counter[str] = Counter()

        def rejected(_: list[str] | None, problems: list[Problem]) -> None:
            codes[problems[0].code] += 1

        def shown(rows_in: Iterator[list[str] | None]) -> Iterator[list[str] | None]:
            for row in rows_in:
                if row is not None and len(out.rows) < rows:
                    out.rows.append(row)
                yield row

        pipeline = RowPipeline(
            source, layout.header, mapping, plugins=plugins, file=out.path, on_reject=rejected, batch_size=sample
        )
        for _ in pipeline.batches(shown(itertools.islice(it, sample))):
            pass
        out.sampled = pipeline.rows
        out.rejected = sum(codes.values())
        out.valid = out.sampled - out.rejected
        out.count(codes)
