"""Plugins (SPEC 5): entry points, blocking, attribution of failures, the example plugin, the test kit.

The example plugin (examples/truagents-import-vendor) is pip-installed in the test environment
(the nox ``tests`` session does it) and used here through its entry point only. Without it the
tests that need it are skipped, except under CI=true, where they fail.

Failures are attributed by an "exploding" plugin that is installed for real, as a distribution
(``exploding-plugin 1.2.3``, a dist-info folder on sys.path) with an entry point: each test arms
the hook it wants to fail through the environment variable ``EXPLODE_IN``.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import json
import os
import re
import subprocess
import sys
import textwrap
import types
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import attrs
import pytest
from click.testing import CliRunner

from truagents_import import (
    ConfigError,
    Contact,
    DataSource,
    FileResult,
    Importer,
    Integration,
    MemorySink,
    PluginError,
    Problem,
    StateStore,
    hookimpl,
    hookspecs,
)
from truagents_import.cli import exit_status, main
from truagents_import.config import load_config
from truagents_import.plugins import BLOCK_ENV, Plugins, get_plugin_manager
from truagents_import.remote.server import SFTPServer
from truagents_import.testing import ENCODINGS, MessyCSV, make_messy_csv

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "truagents-import-vendor"
IN_CI = os.environ.get("CI") == "true"
VENDOR_COLUMNS = {"email": "EMAIL_ADDR_1", "phone": "MOB_NO", "external_id": "CUST_REF"}


@pytest.fixture(autouse=True)
def _no_blocking(monkeypatch: pytest.MonkeyPatch) -> None:
    """A developer's own TRUAGENTS_IMPORT_BLOCK_PLUGINS must not change these tests."""
    monkeypatch.delenv(BLOCK_ENV, raising=False)
    monkeypatch.delenv("EXPLODE_IN", raising=False)


def _local_source(tmp_path: Path, **kw: object) -> DataSource:
    inbox = tmp_path / "inbox"
    inbox.mkdir(exist_ok=True)
    return DataSource(name="local", path=str(inbox), min_age=0, **kw)  # type: ignore[arg-type]


def _by_name(report_files: Sequence[FileResult]) -> dict[str, FileResult]:
    return {Path(f.path).name: f for f in report_files}


# -- no work at import time -------------------------------------------------------------------


def test_importing_the_package_loads_no_entry_points() -> None:
    """Importing truagents_import (every module of it) neither reads nor loads entry points."""
    code = textwrap.dedent(
        """
        import importlib, importlib.metadata, pkgutil, sys
        calls = []
        real = importlib.metadata.entry_points
        def spy(*args, **kwargs):
            calls.append(kwargs.get("group"))
            return real(*args, **kwargs)
        importlib.metadata.entry_points = spy
        import pluggy
        pluggy.PluginManager.load_setuptools_entrypoints = lambda *a, **k: calls.append("pluggy")
        import truagents_import
        for info in pkgutil.walk_packages(truagents_import.__path__, "truagents_import."):
            try:
                importlib.import_module(info.name)
            except ModuleNotFoundError:  # an optional dependency (psycopg...) that is not installed
                pass
        assert "truagents_import" not in calls and "pluggy" not in calls, calls
        assert "truagents_import_vendor" not in sys.modules
        from truagents_import.plugins import Plugins
        Plugins.build()  # building a manager is what loads them
        assert "truagents_import" in calls, calls
        print("ok")
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


# -- the example plugin, through its entry point ------------------------------------------------


@pytest.fixture
def vendor() -> importlib.metadata.Distribution:
    """The installed example plugin's distribution (skip without it, fail under CI=true)."""
    try:
        dist = importlib.metadata.distribution("truagents-import-vendor")
    except importlib.metadata.PackageNotFoundError:
        why = f"the example plugin is not installed: pip install {EXAMPLE.relative_to(ROOT)}"
        if IN_CI:
            pytest.fail(f"CI=true but {why} (the nox tests session installs it)")
        pytest.skip(why)
    assert [ep.name for ep in dist.entry_points if ep.group == "truagents_import"] == ["vendor"]
    return dist


def _vendor_config(tmp_path: Path, server: SFTPServer, key_file: Path) -> Path:
    config = tmp_path / "truagents-import.toml"
    config.write_text(
        textwrap.dedent(
            f"""
            [integration]
            host = "{server.host}"
            port = {server.port}
            username = "truagents"
            private_key = "{key_file}"
            host_key = "{server.host_key_fingerprint}"

            [[sources]]
            name = "vendor-drop"
            path = "/inbox"
            pattern = "*.csv"
            min_age = 0
            default_region = "US"

            [sink]
            type = "vendor-audit"
            path = "audit"

            [state]
            path = "state.db"
            """
        ),
        encoding="utf-8",
    )
    return config


def test_example_plugin_maps_rejects_and_receives_through_its_entry_point(
    vendor: importlib.metadata.Distribution,
    tmp_path: Path,
    truagents_sftp_server: SFTPServer,
    truagents_key_file: Path,
    truagents_inbox: Path,
) -> None:
    """The acceptance test of SPEC 5: an operator's config names the plugin's sink; nothing is passed in."""
    messy = make_messy_csv(rows=150, seed=5, columns=VENDOR_COLUMNS)
    messy.write(truagents_inbox, "export_1.csv")
    (truagents_inbox / "export_2.csv").write_text(
        "CUST_REF,EMAIL_ADDR_1,MOB_NO,EMAIL_ADDR_2\n"
        "R1,info@acme.example,,\n"
        "R2,ann@acme.example,(212) 555-0100,ann@home.example\n"
        "R3,Sales+EU@acme.example,,\n",
        encoding="utf-8",
    )
    config = load_config(_vendor_config(tmp_path, truagents_sftp_server, truagents_key_file))

    with Importer.from_config(config) as importer:
        assert "vendor" in {p["name"] for p in importer.plugins.list()}
        report = importer.run()
    files = _by_name(report.files)

    # The mapping changed: without the vendor's names no column would give an identity.
    bulk = files["export_1.csv"]
    assert bulk.status == "imported", bulk.reason
    counts = (bulk.rows, bulk.imported, bulk.rejected, bulk.duplicates)
    assert counts == (messy.rows, messy.imported, messy.rejected, messy.duplicates)

    # Rows rejected with the plugin's own problem code.
    roles = files["export_2.csv"]
    assert (roles.rows, roles.imported, roles.rejected) == (3, 1, 2)
    assert [(p.code, p.row) for p in roles.problems] == [("role_address", 1), ("role_address", 3)]

    # The plugin's sink received the contacts: one audit file per committed file.
    audits = sorted((tmp_path / "audit").glob("audit-*.json"))
    documents = [json.loads(p.read_text(encoding="utf-8")) for p in audits]
    assert [d["count"] for d in documents] == [messy.imported, 1]
    assert {c["external_id"] or c["email"] for c in documents[0]["contacts"]} == messy.identities
    [ann] = documents[1]["contacts"]
    assert (ann["email"], ann["phone"], ann["attributes"]) == (
        "ann@acme.example",
        "+12125550100",
        {"secondary_email": "ann@home.example"},
    )


def test_blocking_the_example_plugin_by_entry_point_or_distribution_name(
    vendor: importlib.metadata.Distribution, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = _local_source(tmp_path)
    (Path(source.path) / "x.csv").write_text("CUST_REF,EMAIL_ADDR_1\nR1,ann@example.com\n", encoding="utf-8")
    with Importer(source, MemorySink()) as importer:
        [result] = importer.run().files
    assert result.status == "imported"

    for name in ("vendor", "truagents-import-vendor", " other , vendor "):
        monkeypatch.setenv(BLOCK_ENV, name)
        plugins = Plugins.build()
        assert "vendor" not in {p["name"] for p in plugins.list()}
        with pytest.raises(ConfigError, match=r"'vendor-audit' is unknown.*blocked by TRUAGENTS_IMPORT_BLOCK_PLUGINS"):
            plugins.make_sink("vendor-audit", {"path": str(tmp_path / "audit")})
        with Importer(source, MemorySink(), state=StateStore(":memory:")) as importer:
            [result] = importer.run().files
        assert result.status == "rejected"
        assert result.problems[0].code == "no_identity_column"


def test_later_plugins_win_over_the_entry_point(vendor: importlib.metadata.Distribution, tmp_path: Path) -> None:
    """Plugins passed in register after entry points, so their mapping wins; the explicit mapping wins over all."""

    class Mine:
        @hookimpl
        def map_columns(self, header: list[str]) -> dict[str, str]:
            return {"MOB_NO": "attributes.mobile"}

    source = _local_source(tmp_path, default_region="US")
    (Path(source.path) / "x.csv").write_text("CUST_REF,MOB_NO\nR1,(212) 555-0100\n", encoding="utf-8")
    sink = MemorySink()
    with Importer(source, sink, plugins=[Mine()]) as importer:
        importer.run()
    [contact] = sink.contacts
    assert (contact.phone, contact.attributes) == (None, {"mobile": "(212) 555-0100"})

    explicit = attrs.evolve(source, mapping={"MOB_NO": "phone"})
    sink = MemorySink()
    with Importer(explicit, sink, plugins=[Mine()]) as importer:
        importer.run()
    assert [c.phone for c in sink.contacts] == ["+12125550100"]


def test_plugins_command_shows_entry_point_distribution_and_version(vendor: importlib.metadata.Distribution) -> None:
    result = CliRunner().invoke(main, ["plugins", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    [entry] = [p for p in data["plugins"] if p["name"] == "vendor"]
    assert entry == {
        "name": "vendor",
        "kind": "entry point",
        "hooks": ["map_columns", "register_sinks", "validate_contacts"],
        "distribution": "truagents-import-vendor",
        "version": vendor.version,
        "sinks": ["vendor-audit"],
        "layouts": [],
    }
    assert "vendor-audit" in data["sinks"]
    text = CliRunner().invoke(main, ["plugins"]).output
    assert f"vendor  [truagents-import-vendor {vendor.version}]" in text


def test_the_example_plugins_own_tests_pass_with_the_testing_fixtures(vendor: importlib.metadata.Distribution) -> None:
    """A plugin author's suite (examples/.../tests) runs on the fixtures of truagents_import.testing alone."""
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(EXAMPLE / "tests")],
        cwd=EXAMPLE,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "4 passed" in done.stdout


# -- an installed plugin that fails, hook by hook ------------------------------------------------

EXPLODING = '''
"""A plugin that fails where EXPLODE_IN says: a comma-separated list of hook names."""
import os

from truagents_import import MemorySink, hookimpl


def armed(hook):
    return hook in os.environ.get("EXPLODE_IN", "").split(",")


@hookimpl
def map_columns(header):
    if armed("map_columns") and "boom" in header:
        raise RuntimeError("mapping exploded")
    return {}


@hookimpl
def validate_contacts(contacts):
    if armed("validate_contacts") and any((c.email or "").startswith("boom") for c in contacts):
        raise ValueError("validator exploded")
    if armed("validate_contacts_generator"):
        return _lazy(contacts)
    return []


def _lazy(contacts):
    for index, contact in enumerate(contacts):
        if (contact.email or "").startswith("boom"):
            raise KeyError("generator exploded")
        yield from ()


@hookimpl
def register_sinks(register):
    if armed("register_sinks"):
        raise OSError("no sinks today")
    register("exploding", ExplodingSink)


@hookimpl
def import_finished(report):
    if armed("import_finished"):
        raise RuntimeError("alerting exploded")


class ExplodingSink(MemorySink):
    def write(self, contacts):
        if armed("write") and any((c.email or "").startswith("boom") for c in contacts):
            raise OSError("disk full")
        super().write(contacts)
'''

BOOM = "email,boom\nann@example.com,1\nbob@example.com,2\nboom@example.com,3\ncid@example.com,4\n"
FINE = "email\ndee@example.com\n"
WHO = "exploding (exploding-plugin 1.2.3)"


@pytest.fixture
def exploding(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Install ``exploding-plugin 1.2.3`` (entry point ``exploding``) on sys.path for one test."""
    site = tmp_path / "site"
    dist_info = site / "exploding_plugin-1.2.3.dist-info"
    dist_info.mkdir(parents=True)
    (site / "exploding_plugin.py").write_text(EXPLODING, encoding="utf-8")
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: exploding-plugin\nVersion: 1.2.3\n")
    (dist_info / "entry_points.txt").write_text("[truagents_import]\nexploding = exploding_plugin\n")
    monkeypatch.syspath_prepend(str(site))
    yield "exploding"
    sys.modules.pop("exploding_plugin", None)
    importlib.invalidate_caches()


@pytest.fixture
def inbox(tmp_path: Path) -> DataSource:
    source = _local_source(tmp_path)
    (Path(source.path) / "boom.csv").write_text(BOOM, encoding="utf-8")
    (Path(source.path) / "fine.csv").write_text(FINE, encoding="utf-8")
    return source


def _assert_retried_cleanly(source: DataSource, state: StateStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing of the failed file was remembered as imported: with the fault gone, the next run imports it."""
    monkeypatch.delenv("EXPLODE_IN")
    sink = MemorySink()
    with Importer(source, sink, state=state) as importer:
        files = _by_name(importer.run().files)
    assert files["boom.csv"].status == "imported"
    assert files["fine.csv"].status == "skipped"
    assert sorted(c.email or "" for c in sink.contacts) == [
        "ann@example.com", "bob@example.com", "boom@example.com", "cid@example.com"
    ]


@pytest.mark.parametrize("hook", ["map_columns", "validate_contacts", "validate_contacts_generator"])
def test_a_failing_hook_fails_its_file_only_and_names_the_plugin(
    hook: str, exploding: str, inbox: DataSource, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EXPLODE_IN", hook)
    state = StateStore(tmp_path / "state.db")
    sink = MemorySink()
    # batch_size=2: the validator fails on the second batch, after the first one was judged.
    with Importer(inbox, sink, state=state, batch_size=2) as importer:
        report = importer.run()
        files = _by_name(report.files)
    boom = files["boom.csv"]
    assert boom.status == "failed"
    reason = str(boom.reason)
    assert WHO in reason
    assert f"failed in {hook.removesuffix('_generator')} on {inbox.path}/boom.csv" in reason
    assert f"{BLOCK_ENV}=exploding" in reason  # what to do next
    assert boom.imported == 0
    # The run carried on, and nothing of the failed file reached the sink.
    assert files["fine.csv"].status == "imported"
    assert [c.email for c in sink.contacts] == ["dee@example.com"]
    _assert_retried_cleanly(inbox, StateStore(tmp_path / "state.db"), monkeypatch)


def test_a_failing_sink_write_fails_its_file_only(
    exploding: str, inbox: DataSource, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EXPLODE_IN", "write")
    plugins = Plugins.build()
    sink = plugins.make_sink("exploding", {})
    with Importer(inbox, sink, state=StateStore(tmp_path / "state.db"), batch_size=2, plugin_set=plugins) as importer:
        files = _by_name(importer.run().files)
        committed = [c.email for c in sink.contacts]  # type: ignore[attr-defined]
    boom = files["boom.csv"]
    assert boom.status == "failed"
    reason = str(boom.reason)
    assert f"sink 'exploding' (ExplodingSink, from plugin {WHO}) failed in write on {inbox.path}/boom.csv" in reason
    assert "disk full" in reason
    assert files["fine.csv"].status == "imported"
    assert committed == ["dee@example.com"]  # the failed file's first batch was rolled back
    _assert_retried_cleanly(inbox, StateStore(tmp_path / "state.db"), monkeypatch)

    # What the importer can say about a sink a plugin made (see Plugins.sink_failure).
    error = plugins.sink_failure(sink, "write", "/inbox/boom.csv", OSError("disk full"))
    assert (error.plugin, error.hook) == ("exploding", "write")
    assert f"sink 'exploding' (ExplodingSink, from plugin {WHO}) failed in write on /inbox/boom.csv" in str(error)


def test_a_failing_import_finished_is_a_warning_naming_the_plugin(
    exploding: str, inbox: DataSource, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EXPLODE_IN", "import_finished")
    with Importer(inbox, MemorySink()) as importer:
        report = importer.run()
    assert {f.status for f in report.files} == {"imported"}
    [warning] = [w for w in report.warnings if "exploding" in w]
    assert f"plugin {WHO} failed in import_finished after the run of source 'local'" in warning
    assert "alerting exploded" in warning


def test_a_failing_register_sinks_names_the_plugin(
    exploding: str, inbox: DataSource, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EXPLODE_IN", "register_sinks")
    with pytest.raises(PluginError) as caught:
        Importer(inbox, MemorySink())
    assert (caught.value.plugin, caught.value.hook) == ("exploding", "register_sinks")
    assert f"plugin {WHO} failed in register_sinks: OSError: no sinks today" in str(caught.value)
    # The command line says the same, and blocking the plugin is the way around it.
    result = CliRunner().invoke(main, ["plugins", "--json"])
    assert result.exit_code == exit_status(caught.value)
    assert WHO in json.loads(result.stdout)["error"]
    monkeypatch.setenv(BLOCK_ENV, "exploding")
    result = CliRunner().invoke(main, ["plugins", "--json"])
    assert result.exit_code == 0
    assert json.loads(result.stdout)["blocked"] == ["exploding"]


def test_entry_point_plugins_name_their_distribution(exploding: str) -> None:
    plugins = Plugins.build()
    [entry] = [p for p in plugins.list() if p["name"] == "exploding"]
    assert (entry["kind"], entry["distribution"], entry["version"]) == ("entry point", "exploding-plugin", "1.2.3")
    assert plugins.distribution("exploding") == "exploding-plugin 1.2.3"
    own = importlib.metadata.version("truagents-import")
    assert plugins.distribution("truagents_import.fields.validators") == f"truagents-import {own}"
    assert plugins.sinks["exploding"][1] == "exploding"


def test_an_entry_point_that_cannot_load_names_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    site = tmp_path / "site"
    dist_info = site / "broken_plugin-0.3.dist-info"
    dist_info.mkdir(parents=True)
    (site / "broken_plugin.py").write_text("import no_such_module_anywhere\n", encoding="utf-8")
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugin\nVersion: 0.3\n")
    (dist_info / "entry_points.txt").write_text("[truagents_import]\nbroken = broken_plugin\n")
    monkeypatch.syspath_prepend(str(site))
    with pytest.raises(PluginError, match=r"plugin broken \(broken-plugin 0\.3\) cannot be loaded") as caught:
        Plugins.build()
    assert "ModuleNotFoundError" in str(caught.value) and f"{BLOCK_ENV}=broken" in str(caught.value)
    monkeypatch.setenv(BLOCK_ENV, "broken")
    assert "broken" not in {p["name"] for p in Plugins.build().list()}


# -- malformed plugins ---------------------------------------------------------------------------


class Typo:
    @hookimpl
    def validate_contact(self, contacts: list[Contact]) -> None:
        return None


def test_a_misspelled_hookimpl_fails_loudly_naming_plugin_and_hook(tmp_path: Path) -> None:
    with pytest.raises(PluginError) as caught:
        Importer(_local_source(tmp_path), MemorySink(), plugins=[Typo()], entry_points=False)
    message = str(caught.value)
    assert f"plugin {__name__}.Typo implements" in message
    assert "'validate_contact', which is not a truagents_import hook" in message
    assert "did you mean 'validate_contacts'?" in message
    assert (caught.value.hook, caught.value.plugin.endswith("Typo")) == ("validate_contact", True)


def test_a_misspelled_hookimpl_in_an_installed_plugin_names_its_distribution(
    exploding: str, tmp_path: Path
) -> None:
    module = sys.modules.get("exploding_plugin") or importlib.import_module("exploding_plugin")

    @hookimpl
    def import_finshed(report: object) -> None:
        return None

    module.__dict__["import_finshed"] = import_finshed
    with pytest.raises(PluginError, match=r"plugin exploding \(exploding-plugin 1\.2\.3\) implements 'import_finshed'"):
        Plugins.build()


def test_a_hookimpl_with_unknown_parameters_names_plugin_and_hook() -> None:
    class Wrong:
        @hookimpl
        def map_columns(self, headers: list[str]) -> dict[str, str]:
            return {}

    with pytest.raises(PluginError, match=r"(?s)Wrong does not match the hook specifications.*map_columns.*headers"):
        get_plugin_manager([Wrong()], entry_points=False)


def test_a_duplicate_sink_name_names_both_plugins() -> None:
    class Dup:
        @hookimpl
        def register_sinks(self, register: Callable[[str, object], None]) -> None:
            register("memory", MemorySink)

    with pytest.raises(PluginError) as caught:
        Plugins.build([Dup()], entry_points=False)
    message = str(caught.value)
    version = importlib.metadata.version("truagents-import")
    first = f"truagents_import.sinks.memory (truagents-import {version})"
    assert f"sink type 'memory' is registered by both {first} and" in message
    assert f"and {__name__}.test_a_duplicate_sink_name_names_both_plugins.<locals>.Dup;" in message
    assert caught.value.hook == "register_sinks"
    assert f"{BLOCK_ENV}=" in message


@pytest.mark.parametrize(
    ("result", "match"),
    [
        ([(0, "not a problem")], r"returned \(0, 'not a problem'\) from validate_contacts"),
        ([(7, Problem(code="x", message="y"))], r"returned index 7 for a batch of 1"),
        ([Problem(code="x", message="y")], r"return \(index_in_batch, Problem\) pairs"),
    ],
)
def test_a_validator_returning_nonsense_is_attributed(tmp_path: Path, result: object, match: str) -> None:
    class Nonsense:
        @hookimpl
        def validate_contacts(self, contacts: list[Contact]) -> object:
            return result

    source = _local_source(tmp_path)
    (Path(source.path) / "x.csv").write_text("email\nann@example.com\n", encoding="utf-8")
    with Importer(source, MemorySink(), plugins=[Nonsense()], entry_points=False) as importer:
        [file] = importer.run().files
    assert file.status == "failed"
    assert "Nonsense" in str(file.reason) and "x.csv" in str(file.reason)
    assert re.search(match, str(file.reason)), file.reason


def test_a_mapper_returning_nonsense_is_attributed(tmp_path: Path) -> None:
    class Listy:
        @hookimpl
        def map_columns(self, header: list[str]) -> object:
            return ["email"]

    source = _local_source(tmp_path)
    (Path(source.path) / "x.csv").write_text("email\nann@example.com\n", encoding="utf-8")
    with Importer(source, MemorySink(), plugins=[Listy()], entry_points=False) as importer:
        [file] = importer.run().files
    assert file.status == "failed"
    assert "Listy" in str(file.reason) and "returned list from map_columns" in str(file.reason)


# -- blocking ------------------------------------------------------------------------------------


class Tagger:
    @hookimpl
    def map_columns(self, header: list[str]) -> dict[str, str]:
        return {"mail": "attributes.kept"}


def test_blocking_builtins_and_passed_plugins_by_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(BLOCK_ENV, f"truagents_import.sinks.jsonl, {__name__}.Tagger")
    plugins = Plugins.build([Tagger()], entry_points=False)
    names = {p["name"] for p in plugins.list()}
    assert "truagents_import.sinks.jsonl" not in names and f"{__name__}.Tagger" not in names
    assert "jsonl" not in plugins.sinks and "memory" in plugins.sinks
    with pytest.raises(ConfigError, match="'jsonl' is unknown"):
        plugins.make_sink("jsonl", {"path": str(tmp_path / "x.jsonl")})


def test_make_sink_checks_options_before_calling_the_factory(tmp_path: Path) -> None:
    plugins = Plugins.build(entry_points=False)
    with pytest.raises(ConfigError, match=r"\[sink\] options for 'jsonl' \(from truagents_import\.sinks\.jsonl"):
        plugins.make_sink("jsonl", {"colour": "red"})
    sink = plugins.make_sink("jsonl", {"path": str(tmp_path / "out.jsonl")})
    assert plugins.sink_origin(sink).startswith("sink 'jsonl' (JSONLSink, from plugin truagents_import.sinks.jsonl")
    assert plugins.sink_origin(MemorySink()) == "sink MemorySink"
    sink.close()


# -- the test kit (truagents_import.testing) ------------------------------------------------------


def test_the_testing_module_is_a_pytest_plugin(request: pytest.FixtureRequest) -> None:
    """Registered through the pytest11 entry point, so plugin authors need no conftest."""
    plugin = request.config.pluginmanager.get_plugin("truagents_import")
    assert isinstance(plugin, types.ModuleType) and plugin.__name__ == "truagents_import.testing"


@pytest.mark.parametrize(("seed", "compress"), [(1, False), (2, True), (3, False)])
def test_messy_csv_over_sftp_matches_its_expectations(
    seed: int,
    compress: bool,
    truagents_source: DataSource,
    truagents_inbox: Path,
    truagents_messy_csv: Callable[..., MessyCSV],
) -> None:
    messy = truagents_messy_csv(rows=200, seed=seed, compress=compress)
    messy.write(truagents_inbox, "contacts.csv.gz" if compress else "contacts.csv")
    sink = MemorySink()
    with Importer(truagents_source, sink, entry_points=False) as importer:
        [result] = importer.run().files
    assert result.status == "imported", result.reason
    assert (result.rows, result.imported, result.rejected, result.duplicates) == (
        messy.rows,
        messy.imported,
        messy.rejected,
        messy.duplicates,
    )
    assert {p.code for p in result.problems} == set(messy.codes)
    assert set(sink.by_identity()) == messy.identities


def test_the_test_server_pins_its_host_key(
    truagents_integration: Integration, truagents_sftp_server: SFTPServer
) -> None:
    assert truagents_integration.host_key == truagents_sftp_server.host_key_fingerprint
    assert truagents_sftp_server.host == "127.0.0.1"


@pytest.mark.parametrize("seed", range(12))
def test_messy_csv_expectations_hold_for_every_encoding_and_delimiter(seed: int, tmp_path: Path) -> None:
    messy = make_messy_csv(rows=90, seed=seed, encoding=ENCODINGS[seed % 4], delimiter=",;\t|"[seed // 4 % 4])
    source = _local_source(tmp_path, default_region="US")
    messy.write(source.path, "m.csv")
    sink = MemorySink()
    with Importer(source, sink, entry_points=False) as importer:
        [result] = importer.run().files
    assert (result.rows, result.imported, result.rejected, result.duplicates) == (
        messy.rows,
        messy.imported,
        messy.rejected,
        messy.duplicates,
    ), (messy.encoding, messy.delimiter)
    assert messy.rows == messy.imported + messy.rejected + messy.duplicates


def test_messy_csv_is_deterministic_and_checks_its_arguments() -> None:
    assert make_messy_csv(rows=40, seed=9).data == make_messy_csv(rows=40, seed=9).data
    assert make_messy_csv(rows=40, seed=9).data != make_messy_csv(rows=40, seed=10).data
    clean = make_messy_csv(rows=30, seed=1, mess=False)
    assert (clean.encoding, clean.delimiter, clean.rejected, clean.duplicates) == ("utf-8", ",", 0, 0)
    assert clean.imported == clean.rows == 30
    empty = make_messy_csv(rows=0)
    assert (empty.rows, empty.imported) == (0, 0)
    no_email = make_messy_csv(rows=60, seed=4, columns={"email": None, "tags": "Labels"})
    assert "email" not in no_email.columns and no_email.columns["tags"] == "Labels"
    assert "invalid_email" not in no_email.codes
    with pytest.raises(ValueError, match="not a contact field"):
        make_messy_csv(columns={"colour": "Colour"})
    with pytest.raises(ValueError, match="encoding must be one of"):
        make_messy_csv(encoding="latin-1")
    with pytest.raises(ValueError, match="same header"):
        make_messy_csv(columns={"email": "Notes"})


# -- documentation -------------------------------------------------------------------------------


def _gen_hooks() -> types.ModuleType:
    spec = importlib.util.spec_from_file_location("gen_hooks", ROOT / "docs" / "gen_hooks.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_hook_reference_is_generated_and_current() -> None:
    gen = _gen_hooks()
    assert gen.problems(hookspecs) == [], "document every hook and parameter in hookspecs.py"
    expected = gen.render(hookspecs)
    current = (ROOT / "docs" / "hooks.md").read_text(encoding="utf-8")
    assert current == expected, "docs/hooks.md is out of date: run python docs/gen_hooks.py"
    for name in ("map_columns", "validate_contacts", "register_sinks", "import_finished"):
        assert f"## `{name}(" in current


def test_hook_reference_check_catches_an_undocumented_hook() -> None:
    gen = _gen_hooks()
    fake = types.ModuleType("fake_hookspecs")
    fake.__dict__["PROJECT"] = "truagents_import"

    @hookspecs.hookspec
    def silent(header: list[str]) -> None:
        pass

    @hookspecs.hookspec
    def half(header: list[str], source: object) -> None:
        """Documents one parameter of two.

        :param header: the header.
        :param sauce: a typo.
        """

    fake.__dict__.update(silent=silent, half=half)
    assert gen.problems(fake) == [
        "hook silent has no docstring",
        "hook half: parameter 'source' has no :param: line",
        "hook half: :param sauce: names no parameter",
    ]


def test_write_a_plugin_shows_the_example_files_as_they_are() -> None:
    """Every ```python title="examples/..."``` block of docs/write-a-plugin.md is that file, verbatim."""
    import re

    text = (ROOT / "docs" / "write-a-plugin.md").read_text(encoding="utf-8")
    blocks = re.findall(r'^```(?:python|toml) title="(examples/[^"]+)"\n(.*?)^```$', text, flags=re.M | re.S)
    shown = {path for path, _ in blocks}
    assert {
        "examples/truagents-import-vendor/pyproject.toml",
        "examples/truagents-import-vendor/src/truagents_import_vendor/mapping.py",
        "examples/truagents-import-vendor/src/truagents_import_vendor/validators.py",
        "examples/truagents-import-vendor/src/truagents_import_vendor/sink.py",
        "examples/truagents-import-vendor/src/truagents_import_vendor/__init__.py",
    } <= shown
    for path, body in blocks:
        assert body == (ROOT / path).read_text(encoding="utf-8"), f"docs/write-a-plugin.md shows an old {path}"
