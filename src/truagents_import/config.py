"""``truagents-import.toml`` <-> attrs classes, through the package's one cattrs converter.

Unknown keys are refused and every mistake names its path (``sources[0].min_age: ...``).
Relative paths in the file are relative to the file itself.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import attrs
import cattrs
from cattrs.gen import make_dict_structure_fn, override

from truagents_import._converter import converter
from truagents_import._text import parse_duration
from truagents_import.errors import ConfigError, FieldError
from truagents_import.fields.contact import normalise_timezone
from truagents_import.fields.mapping import valid_target
from truagents_import.remote.integration import Integration
from truagents_import.source import DataSource

__all__ = ["CONFIG_NAME", "DEFAULT_INTEGRATION", "Config", "SinkConfig", "StateConfig", "load_config"]

#: The file the command line reads from the working folder.
CONFIG_NAME = "truagents-import.toml"


@attrs.define
class SinkConfig:
    """``[sink]``: the sink type and its options (passed to the sink's factory)."""

    type: str = "sqlite"
    options: dict[str, Any] = attrs.field(factory=lambda: {"path": "contacts.db"})


@attrs.define
class StateConfig:
    """``[state]``: where the state database lives: a SQLite ``path``, or a PostgreSQL ``url``
    (which wins when set) for many workers sharing one state."""

    path: Path = Path(".truagents-import/state.db")
    url: str | None = None
    #: Seconds to wait for a lock another process holds on a SQLite state database before that file fails.
    lock_timeout: float = 10.0


#: What a source's ``integration`` names when it names none: the ``[integration]`` table.
DEFAULT_INTEGRATION = "integration"


@attrs.define
class Config:
    """A whole configuration file."""

    integration: Integration | None = None
    #: More endpoints, by name (``[integrations.NAME]``); a source picks one with ``integration = "NAME"``.
    integrations: dict[str, Integration] = attrs.field(factory=dict)
    sources: list[DataSource] = attrs.field(factory=list)
    sink: SinkConfig = attrs.field(factory=SinkConfig)
    state: StateConfig = attrs.field(factory=StateConfig)
    #: The file this configuration was read from, if any.
    path: Path | None = None
    #: Each source's ``poll_every`` in seconds, by source name (for ``watch`` and Celery beat).
    poll_every: dict[str, float] = attrs.field(factory=dict)
    #: The ``integration = "NAME"`` of each source that names one, by source name.
    source_integrations: dict[str, str] = attrs.field(factory=dict)

    def endpoint_name(self, source: str) -> str:
        """The name of the endpoint a source uses: its ``integration``, or ``"integration"`` for ``[integration]``."""
        return self.source_integrations.get(source, DEFAULT_INTEGRATION)

    def poll_interval(self, source: str, default: float) -> float:
        """How often (seconds) a source is listed when run continuously: its ``poll_every``, else ``default``."""
        return self.poll_every.get(source, default)

    def source(self, name: str | None = None) -> DataSource:
        """The source called ``name``, or the only source when ``name`` is None."""
        if not self.sources:
            raise ConfigError("the configuration has no [[sources]]; add one with name, path and pattern")
        if name is None:
            if len(self.sources) > 1:
                names = ", ".join(s.name for s in self.sources)
                raise ConfigError(f"several sources are configured ({names}); choose one with --source NAME")
            return self.sources[0]
        for s in self.sources:
            if s.name == name:
                return s
        names = ", ".join(s.name for s in self.sources)
        raise ConfigError(f"no source named {name!r}; configured sources: {names}")


converter.register_structure_hook(
    DataSource,
    make_dict_structure_fn(
        DataSource,
        converter,
        integration=override(omit=True),
        fs=override(omit=True),
        _cattrs_forbid_extra_keys=True,
    ),
)


def _structure_sink(value: Any, _: type) -> SinkConfig:
    if not isinstance(value, dict):
        raise TypeError("[sink] must be a table")
    options = dict(value)
    kind = options.pop("type", "sqlite")
    if not isinstance(kind, str):
        raise TypeError("type must be a string")
    if kind == "sqlite":
        # The default database sits next to the configuration file, like every relative path.
        options.setdefault("path", "contacts.db")
    return SinkConfig(type=kind, options=options)


converter.register_structure_hook(SinkConfig, _structure_sink)
converter.register_structure_hook(
    Config,
    make_dict_structure_fn(
        Config,
        converter,
        path=override(omit=True),
        poll_every=override(omit=True),
        source_integrations=override(omit=True),
        _cattrs_forbid_extra_keys=True,
    ),
)


def _format(exc: BaseException, type_: Any) -> str:
    if isinstance(exc, cattrs.errors.ForbiddenExtraKeysError):
        return f"unknown key(s) {', '.join(sorted(exc.extra_fields))}"
    if isinstance(exc, KeyError):
        return "required key missing"
    if isinstance(exc, ValueError | TypeError) and str(exc) and type_ in (None, type(None)):
        return str(exc)
    name = getattr(type_, "__name__", str(type_))
    if isinstance(exc, ValueError | TypeError) and str(exc).startswith("expected"):
        return str(exc)
    return f"expected {name}" + (f" ({exc})" if str(exc) and not isinstance(exc, TypeError) else "")


def _messages(exc: Exception) -> list[str]:
    out = []
    for line in cattrs.transform_error(exc, path="$", format_exception=_format):
        message, _, where = line.rpartition(" @ ")
        where = where.removeprefix("$").lstrip(".")
        # attrs validators run in __init__, so cattrs places their errors on the table: name the key.
        named = re.match(r"^(\w+) must ", message)
        if named and not where.endswith(named.group(1)):
            where = f"{where}.{named.group(1)}" if where else named.group(1)
        out.append(f"{where or '(top level)'}: {message}")
    return out


def _resolve(base: Path, value: Path | str) -> Path:
    p = Path(value).expanduser()
    return p if p.is_absolute() else base / p


def parse_config(data: dict[str, Any], base: Path, path: Path | None = None) -> Config:
    """Build a :class:`Config` from a dict (a parsed TOML file); relative paths resolve against ``base``."""
    try:
        return _parse_config(data, base, path)
    except ConfigError as exc:
        where = f"{path}: " if path else ""
        message = str(exc)
        raise ConfigError(message if message.startswith(where) else where + message) from None


def _service_keys(data: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """``data`` without each source's ``integration`` and ``poll_every`` (which the source's own
    table does not hold), and those keys, source by source."""
    sources = data.get("sources")
    if not isinstance(sources, list):
        return data, []
    tables, taken = [], []
    for table in sources:
        own = dict(table) if isinstance(table, dict) else table
        taken.append(
            {k: own.pop(k) for k in ("integration", "poll_every") if k in own} if isinstance(own, dict) else {}
        )
        tables.append(own)
    return {**data, "sources": tables}, taken


def _apply_service_keys(config: Config, taken: list[dict[str, Any]]) -> None:
    """Give each source the endpoint it names and remember its ``poll_every`` (SPEC 7 and 11)."""
    for i, (source, keys) in enumerate(zip(config.sources, taken, strict=False)):
        name = keys.get("integration")
        if name is not None:
            if not isinstance(name, str) or name not in config.integrations:
                known = ", ".join(sorted(config.integrations)) or "none: add an [integrations.NAME] table"
                raise ConfigError(f"sources[{i}].integration: no [integrations.{name}] table; configured: {known}")
            config.source_integrations[source.name] = name
            source.integration = config.integrations[name]
        every = keys.get("poll_every")
        if every is not None:
            try:
                seconds = parse_duration(every).total_seconds() if isinstance(every, str) else None
            except ValueError:
                seconds = None
            if seconds is None or seconds <= 0:
                raise ConfigError(
                    f"sources[{i}].poll_every: must be a duration like '30s', '5m' or '1h', got {every!r}"
                )
            config.poll_every[source.name] = seconds


def _resolve_integration(integration: Integration, base: Path) -> None:
    integration.private_key = _resolve(base, integration.private_key)
    if integration.known_hosts is not None:
        integration.known_hosts = _resolve(base, integration.known_hosts)


def _parse_config(data: dict[str, Any], base: Path, path: Path | None) -> Config:
    data, taken = _service_keys(data)
    try:
        config = converter.structure(data, Config)
    except (cattrs.BaseValidationError, ValueError, TypeError) as exc:
        messages = _messages(exc) if isinstance(exc, cattrs.BaseValidationError) else [str(exc)]
        where = f"{path}: " if path else ""
        raise ConfigError(where + "; ".join(messages)) from None
    config.path = path
    for integration in [config.integration, *config.integrations.values()]:
        if integration is not None:
            _resolve_integration(integration, base)
    names = set()
    for i, source in enumerate(config.sources):
        if source.name in names:
            raise ConfigError(f"sources[{i}].name: {source.name!r} is used by two sources")
        names.add(source.name)
        source.integration = config.integration
        for column, target in source.mapping.items():
            if not valid_target(target):
                msg = (
                    f"sources[{i}].mapping.{column!r}: {target!r} is not a contact field; use one of "
                    "external_id, email, phone, first_name, last_name, full_name, timezone, tags, "
                    "unsubscribed, or attributes.<name>"
                )
                raise ConfigError(msg)
        if source.default_timezone is not None:
            try:
                source.default_timezone = normalise_timezone(source.default_timezone)
            except FieldError as exc:
                raise ConfigError(f"sources[{i}].default_timezone: {exc.message}") from None
    _apply_service_keys(config, taken)
    if "path" in config.sink.options:
        config.sink.options["path"] = _resolve(base, config.sink.options["path"])
    config.state.path = _resolve(base, config.state.path)
    return config


def load_config(path: Path | str | None = None) -> Config:
    """Read a configuration file (``truagents-import.toml`` in the working folder by default)."""
    file = Path(path) if path is not None else Path.cwd() / CONFIG_NAME
    try:
        data = tomllib.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        msg = f"no configuration file at {file}; create {CONFIG_NAME} or pass --config PATH"
        raise ConfigError(msg) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{file}: not valid TOML: {exc}") from None
    return parse_config(data, file.resolve().parent, file)
