"""The whole path on this machine alone (``truagents-import demo``).

Starts the embedded SFTP server in a folder, makes a key pair, uploads the sample files the
way an upstream owner would (temporary name, then rename), and imports them into SQLite.
"""

from __future__ import annotations

import getpass
import tempfile
from importlib import resources
from pathlib import Path

import attrs

from truagents_import.config import CONFIG_NAME, load_config
from truagents_import.errors import ConfigError
from truagents_import.pipeline.importer import Importer
from truagents_import.remote import keys
from truagents_import.remote.integration import Integration
from truagents_import.remote.server import SFTPServer
from truagents_import.report import ImportReport

__all__ = ["DemoResult", "run_demo", "sample_files"]

_CONFIG = """\
# Written by `truagents-import demo`: the embedded server on 127.0.0.1.
[integration]
host = "127.0.0.1"
port = {port}
username = "{username}"
private_key = "keys/demo_ed25519"
host_key = "{fingerprint}"

[[sources]]
name = "demo"
path = "/inbox"
pattern = "contacts_*.csv"
default_region = "US"
default_timezone = "America/New_York"
# Uploads are renamed into place only when complete, so no waiting is needed here.
min_age = 0

[sink]
type = "sqlite"
path = "contacts.db"

[state]
path = "state.db"
"""


@attrs.frozen
class DemoResult:
    """What the demo did: its folder, its report and where the contacts are."""

    directory: Path
    config: Path
    database: Path
    report: ImportReport


def sample_files() -> list[Path]:
    """The sample CSV files shipped with the package."""
    folder = resources.files("truagents_import") / "samples"
    return sorted(Path(str(p)) for p in folder.iterdir() if p.name.endswith(".csv"))


def run_demo(directory: Path | str | None = None) -> DemoResult:
    """Run the demo in ``directory`` (a new temporary folder by default) and return what it did."""
    work = Path(directory) if directory is not None else Path(tempfile.mkdtemp(prefix="truagents-demo-"))
    work.mkdir(parents=True, exist_ok=True)
    if (work / CONFIG_NAME).exists() or (work / "keys").exists():
        msg = f"{work} already holds a demo; pass another --dir (or none, for a new temporary folder)"
        raise ConfigError(msg)
    root = work / "server"
    root.mkdir(exist_ok=True)
    client_key = keys.generate_key_pair("truagents-import demo")
    pair = keys.write_key_pair(client_key, work / "keys", "demo_ed25519")
    username = getpass.getuser()
    with SFTPServer(root, [pair.public_line], username=username) as server:
        config_file = work / CONFIG_NAME
        config_file.write_text(
            _CONFIG.format(port=server.port, username=username, fingerprint=server.host_key_fingerprint),
            encoding="utf-8",
        )
        config = load_config(config_file)
        assert config.integration is not None
        upstream = Integration(
            host=config.integration.host,
            port=config.integration.port,
            username=username,
            private_key=pair.private_key,
            host_key=server.host_key_fingerprint,
        )
        with upstream:
            for sample in sample_files():
                upstream.upload(sample, "/inbox")
        with Importer.from_config(config) as importer:
            report = importer.run()
    database = Path(str(config.sink.options["path"]))
    return DemoResult(directory=work, config=config_file, database=database, report=report)
