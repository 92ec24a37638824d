"""The plugin manager: built-ins, entry points, plugins passed in, and attribution of failures.

Built-in behaviour is registered exactly like a third-party plugin (:data:`DEFAULT_PLUGINS`).
Entry points of the ``truagents_import`` group load when a manager is built (when an importer
is made), never when :mod:`truagents_import` is imported. Every hook is called through
:class:`Plugins`, one implementation at a time, so a plugin that raises is named in the error,
with its distribution, the hook it was in and the file it was working on.

Plugins are registered in this order, and later ones win when mappings merge: the built-ins,
then installed entry points, then the plugins passed to :class:`~truagents_import.Importer`.
The environment variable :data:`BLOCK_ENV` names plugins not to load.
"""

from __future__ import annotations

import contextlib
import difflib
import importlib
import importlib.metadata
import inspect
import logging
import os
import types
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import attrs
import pluggy

from truagents_import import hookspecs
from truagents_import._safety import escape_name
from truagents_import.errors import ConfigError, PluginError, TruagentsImportError
from truagents_import.fields.layout import Layout

if TYPE_CHECKING:
    from truagents_import.fields.contact import Contact
    from truagents_import.hookspecs import Sink, SinkFactory
    from truagents_import.report import ImportReport, Problem
    from truagents_import.source import DataSource

__all__ = ["BLOCK_ENV", "DEFAULT_PLUGINS", "Plugins", "blocked_names", "get_plugin_manager"]

#: Built-in plugins, registered first, in this order (``module`` or ``module:Class``).
DEFAULT_PLUGINS: tuple[str, ...] = (
    "truagents_import.fields.mapping:BuiltinAliases",
    "truagents_import.fields.layouts_builtin",
    "truagents_import.fields.validators",
    "truagents_import.sinks.memory",
    "truagents_import.sinks.jsonl",
    "truagents_import.sinks.sqlite",
    "truagents_import.sinks.csv",
    "truagents_import.sinks.postgres",
)

#: Comma-separated names of plugins not to load: the names ``truagents-import plugins`` shows
#: (entry-point names, built-in module names, names of plugins passed in) or distribution names.
BLOCK_ENV = "TRUAGENTS_IMPORT_BLOCK_PLUGINS"

logger = logging.getLogger(__name__)

#: The distribution the built-in plugins belong to.
_OWN_DISTRIBUTION = "truagents-import"


def blocked_names(environ: Mapping[str, str] | None = None) -> frozenset[str]:
    """The plugin names :data:`BLOCK_ENV` blocks (read from ``environ``, by default ``os.environ``)."""
    raw = (os.environ if environ is None else environ).get(BLOCK_ENV, "")
    return frozenset(n.strip() for n in raw.split(",") if n.strip())


def _normalise_dist(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def _advice(name: str) -> str:
    return f"Fix or upgrade the plugin, or run without it: {BLOCK_ENV}={name}"


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


def _distribution_of(plugin: object) -> tuple[str, str] | None:
    """The installed distribution that ships a plugin's top-level package, when there is one."""
    module = plugin.__name__ if isinstance(plugin, types.ModuleType) else getattr(plugin, "__module__", None)
    if module is None and not isinstance(plugin, type):
        module = type(plugin).__module__
    top = str(module or "").partition(".")[0]
    if not top:
        return None
    candidates = importlib.metadata.packages_distributions().get(top, [])
    if not candidates and top == hookspecs.PROJECT:
        candidates = [_OWN_DISTRIBUTION]  # an editable install records no top-level package
    for dist_name in candidates:
        try:
            return dist_name, importlib.metadata.version(dist_name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def _own_distribution() -> tuple[str, str] | None:
    try:
        return _OWN_DISTRIBUTION, importlib.metadata.version(_OWN_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - a source tree without metadata
        return None


def get_plugin_manager(
    plugins: Iterable[object] = (),
    *,
    entry_points: bool = True,
    environ: Mapping[str, str] | None = None,
) -> Plugins:
    """The plugin manager: the same as :meth:`Plugins.build` (pluggy's ``get_plugin_manager`` idiom)."""
    return Plugins.build(plugins, entry_points=entry_points, environ=environ)


@attrs.define
class Plugins:
    """The plugin manager: pluggy's manager with the hook specs, where each plugin came from, and a
    typed call for each hook that names the plugin that failed.

    Build one with :meth:`build`. The importer calls the hooks through it; plugin authors rarely
    need it, except :meth:`make_sink` to build a sink of a registered type by name.
    """

    #: pluggy's manager for the ``truagents_import`` project.
    pm: pluggy.PluginManager = attrs.field(factory=lambda: pluggy.PluginManager(hookspecs.PROJECT))
    #: Sink type name -> ``(factory, name of the plugin that registered it)``.
    sinks: dict[str, tuple[SinkFactory, str]] = attrs.field(factory=dict)
    #: Export layout name -> (layout, the plugin that registered it), in registration order (SPEC 9).
    layouts: dict[str, tuple[Layout, str]] = attrs.field(factory=dict)
    #: Plugin name -> ``(distribution name, version)``, for plugins whose distribution is known.
    distributions: dict[str, tuple[str, str]] = attrs.field(factory=dict)
    #: Plugin name -> how it was found: ``builtin``, ``entry point`` or ``passed``.
    kinds: dict[str, str] = attrs.field(factory=dict)
    #: The names :data:`BLOCK_ENV` blocked when the manager was built.
    blocked: frozenset[str] = frozenset()
    # Plugins passed in whose distribution was looked up (found or not): a lookup scans them all.
    _looked_up: set[str] = attrs.field(factory=set, init=False, repr=False)
    _made: dict[int, tuple[object, str]] = attrs.field(factory=dict, init=False, repr=False)

    @classmethod
    def build(
        cls, plugins: Iterable[object] = (), *, entry_points: bool = True, environ: Mapping[str, str] | None = None
    ) -> Plugins:
        """A manager with the hook specs, the built-ins, installed entry points and ``plugins``, and
        the sink types every plugin registers.

        :param plugins: modules, classes or objects with ``@hookimpl`` functions, registered last.
        :param entry_points: load the plugins installed under the ``truagents_import`` entry-point group.
        :param environ: where to read :data:`BLOCK_ENV` (default: ``os.environ``).
        :raises PluginError: a plugin cannot be loaded, implements a hook that does not exist (a
            misspelling) or with parameters the hook does not have, or a ``register_sinks`` raised
            or registered a sink type name that another plugin registered too.
        """
        self = cls(blocked=blocked_names(environ))
        self.pm.add_hookspecs(hookspecs)
        for name in self.blocked:
            self.pm.set_blocked(name)
        own = _own_distribution()
        for spec in DEFAULT_PLUGINS:
            name, plugin = _load_default(spec)
            if not self.pm.is_blocked(name):
                self._register(plugin, name, "builtin", own)
        if entry_points:
            self._load_entry_points()
        for plugin in plugins:
            self._register_passed(plugin)
        self.check_pending()
        for impl in self._impls("register_sinks"):
            self._call(impl, "register_sinks", "", register=self._registrar(impl.plugin_name))
        for impl in self._impls("register_layouts"):
            self._call(impl, "register_layouts", "", register=self._layout_registrar(impl.plugin_name))
        return self

    # -- registration -------------------------------------------------------------------------

    def _register(self, plugin: object, name: str, kind: str, dist: tuple[str, str] | None) -> None:
        """Register one plugin, turning pluggy's validation errors into a :class:`PluginError` naming it."""
        if dist is not None:
            self.distributions[name] = dist
        try:
            registered = self.pm.register(plugin, name=name)
        except pluggy.PluginValidationError as exc:
            msg = f"plugin {self._as_registered(name)} does not match the hook specifications: {exc}. {_advice(name)}"
            raise PluginError(msg, plugin=name) from None
        if registered is None:
            self.distributions.pop(name, None)
        else:
            self.kinds[name] = kind

    def _register_passed(self, plugin: object) -> None:
        """Register a plugin passed in, under a name of its own (``name#2`` when the name is taken)."""
        name = _plugin_name(plugin)
        if self.pm.is_blocked(name):
            return
        candidate, n = name, 1
        while self.pm.has_plugin(candidate) or self.pm.is_blocked(candidate):
            n += 1
            candidate = f"{name}#{n}"
        self._register(plugin, candidate, "passed", None)

    def _load_entry_points(self) -> None:
        """Register every plugin of the ``truagents_import`` entry-point group that is not blocked."""
        blocked_dists = {_normalise_dist(b) for b in self.blocked}
        for ep in importlib.metadata.entry_points(group=hookspecs.PROJECT):
            dist = (ep.dist.name, ep.dist.version) if ep.dist is not None else None
            if ep.name in self.blocked or (dist is not None and _normalise_dist(dist[0]) in blocked_dists):
                continue
            if self.pm.has_plugin(ep.name):
                other = self._as_registered(ep.name)
                msg = (
                    f"two plugins are installed under the entry-point name {ep.name!r}: {other} and "
                    f"{dist[0] if dist else ep.value}; uninstall one of them"
                )
                raise PluginError(msg, plugin=ep.name)
            try:
                plugin = ep.load()
            except Exception as exc:
                where = f" ({dist[0]} {dist[1]})" if dist else ""
                msg = (
                    f"plugin {ep.name}{where} cannot be loaded from entry point {ep.value!r}: "
                    f"{type(exc).__name__}: {exc}. {_advice(ep.name)}"
                )
                raise PluginError(msg, plugin=ep.name) from exc
            self._register(plugin, ep.name, "entry point", dist)

    def check_pending(self) -> None:
        """Fail loudly on a hookimpl whose name is not a hook (a misspelling), naming the plugin."""
        callers = {name: caller for name, caller in vars(self.pm.hook).items() if not name.startswith("_")}
        known = sorted(name for name, caller in callers.items() if caller.has_spec())
        for hook_name, caller in callers.items():
            if caller.has_spec():
                continue
            for impl in caller.get_hookimpls():
                if impl.optionalhook:
                    continue
                close = difflib.get_close_matches(hook_name, known, n=1)
                hint = f"did you mean {close[0]!r}? " if close else ""
                msg = (
                    f"plugin {self._as_registered(impl.plugin_name)} implements {hook_name!r}, which is not a "
                    f"truagents_import hook; {hint}the hooks are {', '.join(known)}. Rename the function "
                    f"(or mark it @hookimpl(optionalhook=True) if it is meant for a newer version)"
                )
                raise PluginError(msg, plugin=impl.plugin_name, hook=hook_name)
        self.pm.check_pending()  # pluggy's own check, in case it learns more than the loop above

    def _registrar(self, plugin: str) -> Callable[[str, SinkFactory], None]:
        def register(name: str, factory: SinkFactory) -> None:
            if not isinstance(name, str) or not name:
                msg = f"plugin {self.describe(plugin)} registered a sink type named {name!r}: use a non-empty string"
                raise PluginError(msg, plugin=plugin, hook="register_sinks")
            if not callable(factory):
                msg = (
                    f"plugin {self.describe(plugin)} registered sink type {name!r} with a factory that cannot be "
                    "called; pass the sink class or a function that returns a sink"
                )
                raise PluginError(msg, plugin=plugin, hook="register_sinks")
            if name in self.sinks:
                other = self.sinks[name][1]
                msg = (
                    f"sink type {name!r} is registered by both {self.describe(other)} and {self.describe(plugin)}; "
                    f"rename one, or block one of them: {BLOCK_ENV}={plugin}"
                )
                raise PluginError(msg, plugin=plugin, hook="register_sinks")
            self.sinks[name] = (factory, plugin)

        return register

    def _layout_registrar(self, plugin: str) -> Callable[[Layout], None]:
        def register(layout: Layout) -> None:
            if not isinstance(layout, Layout):
                msg = (
                    f"plugin {self.describe(plugin)} registered {layout!r} as an export layout: pass a "
                    "truagents_import.Layout"
                )
                raise PluginError(msg, plugin=plugin, hook="register_layouts")
            if layout.name in self.layouts:
                other = self.layouts[layout.name][1]
                msg = (
                    f"export layout {layout.name!r} is registered by both {self.describe(other)} and "
                    f"{self.describe(plugin)}; rename one, or block one of them: {BLOCK_ENV}={plugin}"
                )
                raise PluginError(msg, plugin=plugin, hook="register_layouts")
            self.layouts[layout.name] = (layout, plugin)

        return register

    def layout_list(self) -> list[Layout]:
        """The registered export layouts, in registration order."""
        return [layout for layout, _ in self.layouts.values()]

    def layout(self, name: str) -> Layout:
        """The export layout registered under ``name``; a :class:`ConfigError` listing the others if none is."""
        found = self.layouts.get(name)
        if found is None:
            known = ", ".join(sorted(self.layouts)) or "none"
            msg = f"layout = {name!r} is not a registered export layout; the layouts are: {known} (or 'auto', 'none')"
            raise ConfigError(msg)
        return found[0]

    # -- attribution --------------------------------------------------------------------------

    def describe(self, plugin_name: str) -> str:
        """``name (distribution version)`` of a registered plugin, or its bare name."""
        dist = self.distribution(plugin_name)
        return f"{plugin_name} ({dist})" if dist else plugin_name

    def distribution(self, plugin_name: str) -> str | None:
        """``name version`` of the distribution a plugin came from, when it is known.

        Known for entry-point plugins and the built-ins; for a plugin passed in, when its
        top-level package belongs to an installed distribution.
        """
        found = self._distribution(plugin_name)
        return f"{found[0]} {found[1]}" if found else None

    def _as_registered(self, name: str) -> str:
        """Like :meth:`describe`, from what registration recorded only (while the manager is being built)."""
        dist = self.distributions.get(name)
        return f"{name} ({dist[0]} {dist[1]})" if dist else name

    def _distribution(self, name: str) -> tuple[str, str] | None:
        """``(distribution, version)`` of a registered plugin, looked up once for plugins passed in."""
        if name not in self.distributions and name not in self._looked_up and self.kinds.get(name) == "passed":
            self._looked_up.add(name)
            dist = _distribution_of(self.pm.get_plugin(name))
            if dist is not None:
                self.distributions[name] = dist
        return self.distributions.get(name)

    @contextlib.contextmanager
    def _blame(self, plugin: str, hook: str, where: str) -> Iterator[None]:
        """Turn any exception raised inside into a :class:`PluginError` naming the plugin and hook.

        ``where`` completes the sentence: ``" on /inbox/contacts.csv"``.
        """
        try:
            yield
        except PluginError:
            raise
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
            msg = f"plugin {self.describe(plugin)} failed in {hook}{where}: {error}. {_advice(plugin)}"
            raise _logged(PluginError(msg, plugin=plugin, hook=hook)) from exc

    def _impls(self, hook: str) -> list[pluggy.HookImpl]:
        # Registration order, so that later registrations win when results merge.
        return list(getattr(self.pm.hook, hook).get_hookimpls())

    def _call(self, impl: pluggy.HookImpl, hook: str, where: str, **kwargs: Any) -> Any:
        args = {name: kwargs[name] for name in impl.argnames}
        with self._blame(impl.plugin_name, hook, where):
            return impl.function(**args)

    # -- the hooks ----------------------------------------------------------------------------

    def map_columns(self, header: list[str], source: DataSource, file: str) -> list[Mapping[str, str]]:
        """Every plugin's mapping of a header, in registration order."""
        results: list[Mapping[str, str]] = []
        for impl in self._impls("map_columns"):
            result = self._call(impl, "map_columns", f" on {file}", header=list(header), source=source)
            if not result:
                continue
            if not isinstance(result, Mapping) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in result.items()
            ):
                msg = (
                    f"plugin {self.describe(impl.plugin_name)} returned {type(result).__name__} from map_columns "
                    f"on {file}; return a dict of column name -> field name (str -> str)"
                )
                raise PluginError(msg, plugin=impl.plugin_name, hook="map_columns")
            results.append(dict(result))
        return results

    def validates_contacts(self) -> bool:
        """Whether a plugin other than the built-in ones implements ``validate_contacts``."""
        return any(self.kinds.get(impl.plugin_name) != "builtin" for impl in self._impls("validate_contacts"))

    def validate_contacts(self, contacts: list[Contact], source: DataSource, file: str) -> list[tuple[int, Problem]]:
        """Every plugin's problems with a batch, as ``(index_in_batch, problem)``."""
        from truagents_import.report import Problem

        problems: list[tuple[int, Problem]] = []
        for impl in self._impls("validate_contacts"):
            name = impl.plugin_name
            result = self._call(impl, "validate_contacts", f" on {file}", contacts=contacts, source=source)
            if not result:
                continue
            # A generator runs (and may raise) only while it is consumed: blame it there too.
            with self._blame(name, "validate_contacts", f" on {file}"):
                found = list(result)
            for item in found:
                if not (isinstance(item, tuple) and len(item) == 2 and isinstance(item[1], Problem)):
                    msg = (
                        f"plugin {self.describe(name)} returned {item!r} from validate_contacts on {file}; "
                        "return (index_in_batch, Problem) pairs"
                    )
                    raise PluginError(msg, plugin=name, hook="validate_contacts")
                index, problem = item
                if not isinstance(index, int) or not 0 <= index < len(contacts):
                    msg = (
                        f"plugin {self.describe(name)} returned index {index!r} for a batch of {len(contacts)} "
                        f"from validate_contacts on {file}; indexes count from 0 within the batch"
                    )
                    raise PluginError(msg, plugin=name, hook="validate_contacts")
                problems.append((index, problem))
        return problems

    def import_finished(self, report: ImportReport, source: DataSource) -> list[str]:
        """Tell every plugin the run finished; returns the messages of those that failed."""
        failures = []
        for impl in self._impls("import_finished"):
            try:
                where = f" after the run of source {source.name!r}"
                self._call(impl, "import_finished", where, report=report, source=source)
            except PluginError as exc:
                failures.append(str(exc))
        return failures

    # -- sinks --------------------------------------------------------------------------------

    def make_sink(self, name: str, options: Mapping[str, Any]) -> Sink:
        """Build a sink of a registered type from the ``[sink]`` options (without ``type``).

        :raises ConfigError: no plugin offers that type, or the options do not fit its factory.
        :raises PluginError: the factory raised anything else.
        """
        try:
            factory, plugin = self.sinks[name]
        except KeyError:
            known = ", ".join(sorted(self.sinks))
            also = f"; blocked by {BLOCK_ENV}: {', '.join(sorted(self.blocked))}" if self.blocked else ""
            msg = (
                f"sink type {name!r} is unknown; known types: {known}{also}. Install the plugin that offers it "
                "(`truagents-import plugins` lists what is installed)"
            )
            raise ConfigError(msg) from None
        try:
            inspect.signature(factory).bind(**options)
        except TypeError as exc:
            msg = f"[sink] options for {name!r} (from {self.describe(plugin)}) are wrong: {exc}"
            raise ConfigError(msg) from None
        except ValueError:  # no signature to check (a builtin): let the call tell
            pass
        try:
            sink: Sink = factory(**options)
        except TruagentsImportError:
            raise
        except Exception as exc:
            msg = (
                f"plugin {self.describe(plugin)} failed to make a {name!r} sink: {type(exc).__name__}: {exc}. "
                "Check the [sink] options"
            )
            raise _logged(PluginError(msg, plugin=plugin, hook="register_sinks")) from exc
        self._made[id(sink)] = (sink, name)
        return sink

    def sink_origin(self, sink: object) -> str:
        """Who to blame for a sink: its type name and plugin when :meth:`make_sink` made it, else its class."""
        made = self._made.get(id(sink))
        cls = type(sink).__name__
        if made is None or made[0] is not sink:
            return f"sink {cls}"
        _, plugin = self.sinks[made[1]]
        return f"sink {made[1]!r} ({cls}, from plugin {self.describe(plugin)})"

    def sink_failure(self, sink: object, method: str, file: str, exc: BaseException) -> PluginError:
        """The attributed error for a sink whose ``method`` raised ``exc`` while taking ``file``."""
        made = self._made.get(id(sink))
        plugin = self.sinks[made[1]][1] if made is not None and made[0] is sink else type(sink).__name__
        msg = (
            f"{self.sink_origin(sink)} failed in {method} on {file}: {type(exc).__name__}: {exc}. "
            "Nothing of this file was committed; it will be imported again on the next run"
        )
        return _logged(PluginError(msg, plugin=plugin, hook=method))

    # -- listing ------------------------------------------------------------------------------

    def list(self) -> list[dict[str, Any]]:
        """Registered plugins with their hooks, distribution and version (``truagents-import plugins``)."""
        by_plugin: dict[str, list[str]] = {}
        for sink_name, (_, owner) in self.sinks.items():
            by_plugin.setdefault(owner, []).append(sink_name)
        layouts_of: dict[str, list[str]] = {}
        for layout_name, (_, owner) in self.layouts.items():
            layouts_of.setdefault(owner, []).append(layout_name)
        out = []
        for name, plugin in self.pm.list_name_plugin():
            if plugin is None:  # a blocked name
                continue
            hooks = sorted(h.name for h in self.pm.get_hookcallers(plugin) or [])
            dist = self._distribution(name)
            out.append(
                {
                    "name": name,
                    "kind": self.kinds.get(name),
                    "hooks": hooks,
                    "distribution": dist[0] if dist else None,
                    "version": dist[1] if dist else None,
                    "sinks": sorted(by_plugin.get(name, [])),
                    "layouts": sorted(layouts_of.get(name, [])),
                }
            )
        return out


def _logged(error: PluginError) -> PluginError:
    """One ERROR record for a plugin's failure (names in the message escaped), then the error itself."""
    fields = {"plugin": error.plugin, "hook": error.hook, "status": "plugin_failed"}
    logger.error("%s", escape_name(str(error)), extra=fields)
    return error
