"""The plugin manager: built-ins, entry points, plugins passed in, and attribution of failures.

Built-in behaviour is registered exactly like a third-party plugin (:data:`DEFAULT_PLUGINS`).
Entry points of the ``truagents_import`` group load when a manager is built, never at import.
Every hook is called through :class:`Plugins`, one implementation at a time, so a plugin that
raises is named in the error with the hook it was in.
"""

from __future__ import annotations

import importlib
import os
import types
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import attrs
import pluggy

from truagents_import import hookspecs
from truagents_import.errors import ConfigError, PluginError

if TYPE_CHECKING:
    from truagents_import.contact import Contact
    from truagents_import.hookspecs import Sink, SinkFactory
    from truagents_import.report import ImportReport, Problem
    from truagents_import.source import DataSource

__all__ = ["BLOCK_ENV", "DEFAULT_PLUGINS", "Plugins", "get_plugin_manager"]

#: Built-in plugins, registered first, in this order.
DEFAULT_PLUGINS: tuple[str, ...] = (
    "truagents_import.mapping:BuiltinAliases",
    "truagents_import.validators",
    "truagents_import.sinks.memory",
    "truagents_import.sinks.jsonl",
    "truagents_import.sinks.sqlite",
)

#: Comma-separated names of plugins not to load (entry-point names or built-in module names).
BLOCK_ENV = "TRUAGENTS_IMPORT_BLOCK_PLUGINS"


def _load_default(spec: str) -> tuple[str, object]:
    module_name, _, attr = spec.partition(":")
    module = importlib.import_module(module_name)
    if attr:
        return module_name + "." + attr, getattr(module, attr)()
    return module_name, module


def _plugin_name(plugin: object) -> str:
    if isinstance(plugin, types.ModuleType):
        return plugin.__name__
    cls = plugin if isinstance(plugin, type) else type(plugin)
    return f"{cls.__module__}.{cls.__qualname__}"


def get_plugin_manager(plugins: Iterable[object] = (), *, entry_points: bool = True) -> pluggy.PluginManager:
    """A plugin manager with the specs, the built-ins, installed entry points and ``plugins``."""
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    blocked = {n.strip() for n in os.environ.get(BLOCK_ENV, "").split(",") if n.strip()}
    for name in blocked:
        pm.set_blocked(name)
    for spec in DEFAULT_PLUGINS:
        name, plugin = _load_default(spec)
        if not pm.is_blocked(name):
            pm.register(plugin, name=name)
    if entry_points:
        pm.load_setuptools_entrypoints(hookspecs.PROJECT)
    for plugin in plugins:
        name = _plugin_name(plugin)
        candidate, n = name, 1
        while pm.has_plugin(candidate):
            n += 1
            candidate = f"{name}#{n}"
        pm.register(plugin, name=candidate)
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        name = pm.get_name(exc.plugin) or repr(exc.plugin)
        raise PluginError(f"plugin {name}: {exc}", plugin=name) from None
    return pm


@attrs.define
class Plugins:
    """A typed front over the plugin manager; every hook call names the plugin that failed."""

    pm: pluggy.PluginManager
    sinks: dict[str, tuple[SinkFactory, str]] = attrs.field(factory=dict)

    @classmethod
    def build(cls, plugins: Iterable[object] = (), *, entry_points: bool = True) -> Plugins:
        """Build the manager and collect the sink types every plugin registers."""
        self = cls(get_plugin_manager(plugins, entry_points=entry_points))
        for impl in self._impls("register_sinks"):

            def register(name: str, factory: SinkFactory, _plugin: str = impl.plugin_name) -> None:
                if name in self.sinks:
                    other = self.sinks[name][1]
                    msg = f"sink type {name!r} is registered by both {other} and {_plugin}; block one of them"
                    raise PluginError(msg, plugin=_plugin, hook="register_sinks")
                self.sinks[name] = (factory, _plugin)

            self._call(impl, "register_sinks", None, register=register)
        return self

    def _impls(self, hook: str) -> list[pluggy.HookImpl]:
        # Registration order, so that later registrations win when results merge.
        return list(getattr(self.pm.hook, hook).get_hookimpls())

    def _call(self, impl: pluggy.HookImpl, hook: str, file: str | None, **kwargs: Any) -> Any:
        args = {name: kwargs[name] for name in impl.argnames}
        try:
            return impl.function(**args)
        except PluginError:
            raise
        except Exception as exc:
            where = f" on {file}" if file else ""
            dist = self.distribution(impl.plugin_name)
            plugin = impl.plugin_name + (f" ({dist})" if dist else "")
            msg = f"plugin {plugin} failed in {hook}{where}: {type(exc).__name__}: {exc}"
            raise PluginError(msg, plugin=impl.plugin_name, hook=hook) from exc

    def distribution(self, plugin_name: str) -> str | None:
        """``name version`` of the distribution a plugin came from, for entry-point plugins."""
        for plugin, dist in self.pm.list_plugin_distinfo():
            if self.pm.get_name(plugin) == plugin_name:
                return f"{dist.project_name} {dist.version}"
        return None

    def map_columns(self, header: list[str], source: DataSource, file: str) -> list[Mapping[str, str]]:
        """Every plugin's mapping of a header, in registration order."""
        results: list[Mapping[str, str]] = []
        for impl in self._impls("map_columns"):
            result = self._call(impl, "map_columns", file, header=list(header), source=source)
            if result:
                results.append(dict(result))
        return results

    def validate_contacts(
        self, contacts: list[Contact], source: DataSource, file: str
    ) -> list[tuple[int, Problem]]:
        """Every plugin's problems with a batch, as ``(index_in_batch, problem)``."""
        problems: list[tuple[int, Problem]] = []
        for impl in self._impls("validate_contacts"):
            result = self._call(impl, "validate_contacts", file, contacts=contacts, source=source)
            if result:
                for index, problem in result:
                    if not 0 <= index < len(contacts):
                        msg = (
                            f"plugin {impl.plugin_name} returned index {index} for a batch of {len(contacts)}"
                        )
                        raise PluginError(msg, plugin=impl.plugin_name, hook="validate_contacts")
                    problems.append((index, problem))
        return problems

    def import_finished(self, report: ImportReport, source: DataSource) -> list[str]:
        """Tell every plugin the run finished; returns the messages of those that failed."""
        failures = []
        for impl in self._impls("import_finished"):
            try:
                self._call(impl, "import_finished", None, report=report, source=source)
            except PluginError as exc:
                failures.append(str(exc))
        return failures

    def make_sink(self, name: str, options: Mapping[str, Any]) -> Sink:
        """Build a sink of a registered type from the ``[sink]`` options."""
        try:
            factory, plugin = self.sinks[name]
        except KeyError:
            known = ", ".join(sorted(self.sinks))
            msg = f"sink type {name!r} is unknown; known types: {known} (a plugin may offer more)"
            raise ConfigError(msg) from None
        try:
            sink: Sink = factory(**options)
        except TypeError as exc:
            msg = f"[sink] options for {name!r} (from {plugin}) are wrong: {exc}"
            raise ConfigError(msg) from None
        return sink

    def list(self) -> list[dict[str, Any]]:
        """Installed plugins with their hooks and distributions (for ``truagents-import plugins``)."""
        out = []
        for name, plugin in self.pm.list_name_plugin():
            hooks = sorted(h.name for h in self.pm.get_hookcallers(plugin) or [])
            out.append({"name": name, "hooks": hooks, "distribution": self.distribution(name)})
        return out
