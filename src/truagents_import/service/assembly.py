"""An importer for any data source with a configuration's sink and state: for watch and Celery.

:meth:`Importer.from_config` does this for the sources a configuration lists; a service also
runs sources it made itself (a copy with a connection of its own, one a factory built from the
user's database), so it assembles them here.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from truagents_import.pipeline.importer import Importer
from truagents_import.plugins import Plugins
from truagents_import.state import open_state

if TYPE_CHECKING:
    from truagents_import.config import Config
    from truagents_import.source import DataSource

__all__ = ["importer_for"]


def importer_for(
    config: Config,
    source: DataSource,
    *,
    plugins: Sequence[object] = (),
    rejects_dir: Path | str | None = None,
) -> Importer:
    """An :class:`Importer` of ``source`` into the configuration's sink, with its state database.

    The importer owns its sink and state connections (and the source's SFTP connection, when it is
    not open yet): close it, or use it in a ``with`` block.
    """
    plugin_set = Plugins.build(plugins)
    sink = plugin_set.make_sink(config.sink.type, config.sink.options)
    try:
        state = open_state(config.state)
    except BaseException:
        sink.close()
        raise
    return Importer(source, sink, state=state, plugin_set=plugin_set, rejects_dir=rejects_dir)
