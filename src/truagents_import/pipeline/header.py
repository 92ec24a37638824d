"""A file's header: where it is (after a preamble), its export layout, and its mapping (SPEC 3, 5, 9).

:func:`checked_mapping` refuses a header that cannot be imported (a blank or repeated column
name, no identity column) and otherwise maps it: the ``map_columns`` plugins and the aliases,
the recognised (or forced) export layout, the generic rules of SPEC 9, then the source's
explicit mapping. :func:`header_finder` tells a header line from preamble lines, without
calling any plugin (hooks run once per file, on the header).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import attrs

from truagents_import.errors import ConfigError, FileRejected
from truagents_import.fields.contact import IDENTITY_FIELDS
from truagents_import.fields.layout import (
    Layout,
    fold_column,
    generic_targets,
    near_misses,
    recognise,
    structured_targets,
)
from truagents_import.fields.mapping import (
    ALIAS_FIELDS,
    BuiltinAliases,
    ColumnMapping,
    describe_missing_identity,
    resolve_mapping,
)

if TYPE_CHECKING:
    from truagents_import.plugins import Plugins
    from truagents_import.source import DataSource

__all__ = ["checked_mapping", "choose_layout", "header_finder", "map_header"]


def choose_layout(header: Sequence[str], layouts: Sequence[Layout], setting: str) -> Layout | None:
    """The layout a file is read in: recognised (``"auto"``), the one named, or none (``"none"``)."""
    if setting == "none":
        return None
    if setting == "auto":
        return recognise(header, layouts)
    for layout in layouts:
        if layout.name == setting:
            return layout
    known = ", ".join(sorted(layout.name for layout in layouts)) or "none"
    msg = f"layout = {setting!r} is not a registered export layout; the layouts are: {known} (or 'auto', 'none')"
    raise ConfigError(msg)


def map_header(
    header: list[str],
    plugin_results: Sequence[dict[str, str]] | Sequence[object],
    source: DataSource,
    layouts: Sequence[Layout],
) -> ColumnMapping:
    """The mapping of ``header`` for ``source``: plugins, layout, generic rules, explicit mapping."""
    layout = choose_layout(header, layouts, source.layout)
    mapping = resolve_mapping(
        header,
        plugin_results,  # type: ignore[arg-type]
        source.mapping,
        layout=structured_targets(layout, header) if layout is not None else (),
        generic=generic_targets(header, ALIAS_FIELDS),
    )
    warnings = list(mapping.warnings)
    if layout is None and source.layout == "auto":
        warnings.extend(near.describe() for near in near_misses(header, layouts))
    return attrs.evolve(mapping, layout=layout, warnings=tuple(warnings))


def checked_mapping(header: list[str], plugins: Plugins, source: DataSource, file: str) -> ColumnMapping:
    """The mapping of a file's header, or :class:`FileRejected` when the header cannot be imported.

    Every column needs a name, no name may appear twice, and some column must map to an identity
    field (``external_id``, ``email`` or ``phone``). The ``map_columns`` plugins, the aliases, the
    export layout, the generic rules and the source's explicit mapping decide the rest.
    """
    if len(header) > source.max_columns:
        message = (
            f"the header has {len(header)} columns, more than max_columns ({source.max_columns}): "
            "ask the upstream to export only the columns you import, or raise max_columns for this source"
        )
        raise FileRejected("too_many_columns", message)
    blank = [i + 1 for i, h in enumerate(header) if not h]
    if blank:
        raise FileRejected("blank_header", f"header column(s) {blank} have no name; every column needs one")
    seen: dict[str, int] = {}
    for h in header:
        seen[h] = seen.get(h, 0) + 1
    dupes = sorted(h for h, n in seen.items() if n > 1)
    if dupes:
        raise FileRejected("duplicate_header", f"header names appear more than once: {', '.join(dupes)}")
    layouts = plugins.layout_list()
    mapping = map_header(header, plugins.map_columns(header, source, file), source, layouts)
    if not mapping.has_identity:
        message = describe_missing_identity(header, mapping)
        hints = [w for w in mapping.warnings if w.startswith("looks like")]
        raise FileRejected("no_identity_column", message + ("; " + "; ".join(hints) if hints else ""))
    return mapping


def header_finder(plugins: Plugins, source: DataSource) -> Callable[[list[str]], bool]:
    """Whether a line is a header (SPEC 9): it maps an identity column by the aliases, a layout, the
    generic rules or the source's mapping, or it is the header line a layout names."""
    layouts = plugins.layout_list()
    header_lines = {fold_column(layout.header_line) for layout in layouts if layout.header_line}
    aliases = BuiltinAliases()

    def is_header(cells: list[str]) -> bool:
        if not any(cells) or len(set(cells)) != len(cells):
            return False
        if cells and fold_column(cells[0]) in header_lines:
            return True
        try:
            mapping = map_header(cells, [aliases.map_columns(cells, source)], source, layouts)
        except ConfigError:
            return False
        return any(f in mapping.fields for f in IDENTITY_FIELDS)

    return is_header
