"""Commands that set up access and deliver files: ``keygen``, ``trust``, ``upload-command``, ``upload``."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import TYPE_CHECKING

import click

from truagents_import._converter import to_dict
from truagents_import.cli._base import command, config_option, emit_json, source_option
from truagents_import.errors import ConfigError
from truagents_import.report import escape_name

if TYPE_CHECKING:
    from truagents_import.remote.pinning import HostKeyCheck

__all__ = ["keygen", "trust", "upload", "upload_command"]


@click.command("keygen")
@click.option(
    "--dir",
    "directory",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("keys"),
    show_default=True,
    help="Folder for the key pair (created 0700; an existing one must be private already).",
)
@click.option("--name", default=None, help="File name of the private key [default: truagents_ed25519].")
@click.option("--comment", default="truagents-import", show_default=True, help="Comment ending the public key.")
@click.option(
    "--from",
    "from_",
    default=None,
    metavar="CIDR",
    help="Only allow the key from these addresses (comma-separated CIDRs or hosts) in the authorized_keys line.",
)
@click.option(
    "--passphrase-env",
    metavar="VAR",
    default=None,
    help="Encrypt the private key with the passphrase held in environment variable VAR.",
)
@click.option("--passphrase-prompt", is_flag=True, help="Ask for a passphrase (typed twice, never echoed).")
@command
def keygen(
    directory: Path,
    name: str | None,
    comment: str,
    from_: str | None,
    passphrase_env: str | None,
    passphrase_prompt: bool,
    as_json: bool,
) -> int:
    """Write an ed25519 key pair and print the public key, its fingerprint and an SFTP-only authorized_keys line.

    A passphrase never goes on the command line: it comes from an environment variable
    (--passphrase-env) or a prompt (--passphrase-prompt).
    """
    from truagents_import.remote import keys

    if passphrase_env and passphrase_prompt:
        raise click.UsageError("choose one of --passphrase-env and --passphrase-prompt")
    try:
        if from_ is not None:
            keys.check_from(from_)
        passphrase = None
        if passphrase_env:
            passphrase = keys.passphrase_from_env(passphrase_env)
        elif passphrase_prompt:
            passphrase = click.prompt("Passphrase for the new key", hide_input=True, confirmation_prompt=True, err=True)
        pair = keys.create_key_pair(directory, name or keys.DEFAULT_KEY_NAME, passphrase=passphrase, comment=comment)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    line = pair.authorized_keys_line(from_=from_)
    if as_json:
        data = to_dict(pair)
        protected = data.pop("passphrase_protected")
        emit_json(data | {"authorized_keys_line": line, "passphrase_protected": protected})
        return 0
    protected = ", passphrase-protected" if pair.passphrase_protected else ""
    click.echo(f"private key  {pair.private_key}  (mode 0600{protected}: keep it here, never send it)")
    click.echo(f"public key   {pair.public_key}")
    click.echo(f"fingerprint  {pair.fingerprint}")
    click.echo("\npublic key line:")
    click.echo(pair.public_line)
    click.echo("\nauthorized_keys line for the SFTP server (SFTP only: no shell, no forwarding):")
    click.echo(line)
    click.echo("\nin truagents-import.toml, [integration]:")
    click.echo(f'  private_key = "{pair.private_key}"')
    if passphrase_env:
        click.echo(f'  passphrase_env = "{passphrase_env}"')
    elif pair.passphrase_protected:
        click.echo('  passphrase_env = "NAME_OF_A_VARIABLE_HOLDING_THE_PASSPHRASE"')
    return 0


@click.command("trust")
@config_option
@source_option
@click.option(
    "--yes", is_flag=True, help="Pin without asking: only after checking the fingerprint with the server's owner."
)
@command
def trust(config_path: Path | None, source_name: str | None, yes: bool, as_json: bool) -> int:
    """Show the host key fingerprint the server presents and, once confirmed, pin it in the configuration.

    Only the `host_key` line of [integration] is written (or added); comments stay. Exit status 1
    when the key was not pinned (declined).
    """
    from truagents_import.config import load_config
    from truagents_import.remote.integration import configured
    from truagents_import.remote.pinning import check_host_key, pin_host_key
    from truagents_import.remote.upload import refresh_known_hosts

    config = load_config(config_path)
    if source_name is not None:
        config.source(source_name)
        if source_name in config.source_integrations:  # [integrations.NAME]: trust pins [integration] only
            name = config.source_integrations[source_name]
            raise ConfigError(f"trust pins [integration] only; pin [integrations.{name}]'s host_key by hand")
    integration = configured(config.integration)
    found = check_host_key(integration)
    where = f"{found.host}:{found.port}"
    if not as_json:
        click.echo(f"{where} presents host key {found.presented} ({found.key_type})")
        if found.status == "unchanged":
            click.echo(f"already pinned in {config.path}: nothing to do")
        elif found.status == "changed":
            click.echo(
                f"WARNING: {config.path} pins {found.pinned}, a different key. A server's key changes when it "
                "is reinstalled or its keys are rotated, and also when someone intercepts the connection: "
                "pin the new key only once the server's owner confirms it."
            )
        else:
            click.echo(
                "nothing is pinned yet. Before pinning, ask the server's owner to confirm this fingerprint "
                "(on the server: ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub)."
            )
    pinned = found.status == "unchanged"
    if not pinned:
        try:
            pinned = yes or click.confirm(f"Pin {found.presented} in {config.path}?", default=False, err=True)
        except click.Abort:
            pinned = False
        if pinned:
            assert config.path is not None  # load_config always records the file it read
            pin_host_key(config.path, found.presented)
    refreshed = refresh_known_hosts(integration, found.presented) if pinned and found.status == "changed" else None
    if as_json:
        emit_json(found.to_dict() | {"config": str(config.path), "pinned_now": pinned})
    elif found.status != "unchanged":
        _say_pinned(found, pinned, config.path, refreshed)
    return 0 if pinned else 1


def _say_pinned(found: HostKeyCheck, pinned: bool, config_path: Path | None, refreshed: Path | None) -> None:
    click.echo(
        f'pinned: host_key = "{found.presented}" in {config_path}'
        if pinned
        else "not pinned: connections stay refused until a host key is pinned"
    )
    if refreshed is not None:
        click.echo(f"updated {refreshed}, the known_hosts file the upload commands use, to the new key")
    if pinned and found.status == "changed":
        click.echo(
            "a known_hosts file written elsewhere (upload-command --known-hosts) still holds the old key: "
            "run upload-command again and send the new command to whoever uploads"
        )


_manifest_option = click.option(
    "--manifest",
    "with_manifest",
    is_flag=True,
    help="Also deliver each file's manifest (its bytes and sha256), after the file is in place: named as the "
    "source's `manifest` says [default: {name}.manifest.json].",
)


@click.command("upload-command")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@config_option
@source_option
@click.option(
    "--known-hosts",
    "known_hosts_file",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="known_hosts file to write the pinned host key to [default: known_hosts beside the private key; "
    "the configured known_hosts file when there is one].",
)
@_manifest_option
@command
def upload_command(
    file: Path,
    config_path: Path | None,
    source_name: str | None,
    known_hosts_file: Path | None,
    with_manifest: bool,
    as_json: bool,
) -> int:
    """Print the sftp command that uploads FILE under a temporary name and renames it into place.

    The command pins the host key (StrictHostKeyChecking=yes with a known_hosts file written from
    the pinned key) and never prompts (BatchMode=yes). An scp alternative is shown with its limits.
    With --manifest, FILE's manifest is written beside it now, and the command uploads it after FILE.
    """
    from truagents_import.config import load_config
    from truagents_import.manifest import DEFAULT_MANIFEST
    from truagents_import.remote.integration import configured

    config = load_config(config_path)
    source = config.source(source_name)
    manifest = (source.manifest or DEFAULT_MANIFEST) if with_manifest else None
    if manifest is not None and not file.is_file():
        raise click.UsageError(f"{escape_name(str(file))} is not a file here: --manifest is made from the file now")
    command = configured(source.integration).upload_command(
        file, source.path, known_hosts_file=known_hosts_file, manifest=manifest
    )
    if as_json:
        emit_json(command.to_dict())
        return 0
    # Everything but the command itself is a shell comment: the whole output can be pasted.
    click.echo(
        f"# Upload {escape_name(command.local.name)} to {escape_name(command.remote_path)} under a temporary "
        "name, then rename it into place."
    )
    pin = f" (checked against the pinned {command.host_key})" if command.host_key else ""
    click.echo(f"# Host key trusted from {command.known_hosts_file}{pin}.")
    if command.manifest_file is not None:
        click.echo(
            f"# Its manifest, {escape_name(str(command.manifest_file))}, was written from the file as it is now "
            "and goes up after it: make both again whenever the file changes."
        )
    if not command.local.is_file():
        click.echo(f"# Note: {escape_name(str(command.local))} does not exist here; the command expects it there.")
    click.echo(command.command)
    click.echo("#\n# The sftp batch it runs:")
    for line in command.batch.splitlines():
        click.echo(f"#   {line}")
    click.echo("#")
    for line in textwrap.wrap(f"scp alternative: {command.scp_note}", 96):
        click.echo(f"# {line}")
    click.echo(f"# {command.scp_command}")
    return 0


@click.command("upload")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path, dir_okay=False))
@config_option
@source_option
@_manifest_option
@command
def upload(
    files: tuple[Path, ...], config_path: Path | None, source_name: str | None, with_manifest: bool, as_json: bool
) -> int:
    """Upload FILES into the source's folder, each under a temporary name then renamed into place.

    With --manifest, each file's manifest follows it once it is in place. Exit status 1 when any
    file failed (the others are still uploaded).
    """
    from truagents_import.config import load_config
    from truagents_import.manifest import DEFAULT_MANIFEST
    from truagents_import.remote.integration import configured

    config = load_config(config_path)
    source = config.source(source_name)
    manifest = (source.manifest or DEFAULT_MANIFEST) if with_manifest else None
    with configured(source.integration) as integration:
        results = integration.upload_files(files, source.path, manifest=manifest)
    failed = sum(1 for r in results if r.status == "failed")
    if as_json:
        emit_json(
            {
                "source": source.name,
                "path": source.path,
                "files": [r.to_dict() for r in results],
                "uploaded": len(results) - failed,
                "failed": failed,
            }
        )
    else:
        for r in results:
            if r.status == "uploaded":
                remote = escape_name(r.remote_path or "")
                click.echo(f"uploaded  {escape_name(str(r.local))} -> {remote}  ({r.size} bytes)")
                if r.manifest_path:
                    click.echo(f"          manifest -> {escape_name(r.manifest_path)}")
            else:
                click.echo(f"failed    {escape_name(str(r.local))}: {escape_name(r.error or '')}")
        click.echo(f"{len(results) - failed} uploaded, {failed} failed")
    return 1 if failed else 0
