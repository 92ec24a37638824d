"""A newcomer follows the Quick start's "Pointing it at your own server", literally, to imported contacts.

The shell commands and the configuration file are taken from docs/quickstart.md itself and run,
in order, against a real OpenSSH sshd; only the values the page says are yours change (host,
port, user name, folder). The file owner's side is the command `upload-command` prints, pasted
into a shell, as docs/setup-integration.md and docs/deliver-files.md tell them. If the pages stop
matching what the commands do, this test fails.
"""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from sshd import run_sshd

DOCS = Path(__file__).resolve().parent.parent / "docs"
FENCE = re.compile(r"^```(\w+)\n(.*?)^```", re.MULTILINE | re.DOTALL)
#: What the owner of the drop box delivers, under the name the pages use.
DELIVERED = "contacts_2026-11-24.csv"
ROWS = (
    "Email,Phone,First Name,Last Name,Tags\n"
    "ann@example.com,(212) 555-0101,Ann,Lee,vip\n"
    "bob@example.com,+44 20 7946 0958,Bob,Stone,\n"
    "not-an-address,,Carl,,\n"
)


def own_server_section() -> str:
    text = (DOCS / "quickstart.md").read_text(encoding="utf-8")
    start = text.index("## Pointing it at your own server")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else None]


def blocks(section: str, language: str) -> list[str]:
    return [body for lang, body in FENCE.findall(section) if lang == language]


def commands(section: str) -> list[str]:
    """Every command of the section's ``sh`` blocks, in order, without its trailing comment."""
    out = []
    for body in blocks(section, "sh"):
        for line in body.splitlines():
            command = line.split("  #", 1)[0].strip()
            if command and not command.startswith("#"):
                out.append(command)
    return out


def shell(command: str, cwd: Path, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``command`` in bash, with this environment's ``truagents-import`` first on the PATH."""
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    env.pop("SSH_AUTH_SOCK", None)
    return subprocess.run(["bash", "-c", command], cwd=cwd, env=env, input=stdin, capture_output=True,
                          text=True, timeout=120, check=False)


def your_values(toml: str, replacements: dict[str, str]) -> str:
    """The page's configuration with the values the reader changes replaced (each must be there)."""
    for old, new in replacements.items():
        assert old in toml, f"the quick start's configuration no longer has {old!r}"
        toml = toml.replace(old, new)
    return toml


def test_quick_start_on_your_own_server(tmp_path: Path, sshd_binary: str) -> None:
    section = own_server_section()
    steps = commands(section)
    assert steps[:2] == ["truagents-import keygen --dir keys --name acme_ed25519", "truagents-import trust"]
    work = tmp_path / "operator"
    work.mkdir()

    # 1. A key pair; its authorized_keys line goes to the server's administrator.
    made = shell(steps[0], work)
    assert made.returncode == 0, made.stderr
    lines = made.stdout.splitlines()
    line = lines[lines.index("authorized_keys line for the SFTP server (SFTP only: no shell, no forwarding):") + 1]
    assert line.startswith('restrict,command="internal-sftp" ssh-ed25519 ')

    with run_sshd(tmp_path / "sshd", [line]) as server:
        inbox = tmp_path / "drop-box" / "inbox"
        inbox.mkdir(parents=True)

        # 2. The configuration file, as the page shows it, with this server's values.
        [toml] = blocks(section, "toml")
        config = your_values(toml, {
            'host = "sftp.example.com"': 'host = "127.0.0.1"',
            "port = 22": f"port = {server.port}",
            'username = "acme"': f'username = "{server.username}"',
            'path = "/inbox"': f'path = "{inbox}"',
        })  # fmt: skip
        (work / "truagents-import.toml").write_text(config, encoding="utf-8")

        # 3. Pin the host key: the fingerprint shown is the server's; the reader answers y.
        trusted = shell(steps[1], work, stdin="y\n")
        assert trusted.returncode == 0, trusted.stdout + trusted.stderr
        assert server.host_key_fingerprint in trusted.stdout
        assert f'host_key = "{server.host_key_fingerprint}"' in (work / "truagents-import.toml").read_text()

        # The file owner delivers a file with the command upload-command prints, pasted whole.
        owner = tmp_path / "owner"
        owner.mkdir()
        (owner / DELIVERED).write_text(ROWS, encoding="utf-8")
        printed = shell(f"truagents-import upload-command {owner / DELIVERED}", work)
        assert printed.returncode == 0, printed.stderr
        pasted = shell(printed.stdout, owner)
        assert pasted.returncode == 0, pasted.stdout + pasted.stderr
        assert [p.name for p in inbox.iterdir()] == [DELIVERED]
        # The page's min_age = 60: the newcomer comes back a couple of minutes later.
        old = time.time() - 120
        os.utime(inbox / DELIVERED, (old, old))

        # 4. Then: check, ls, preview, a dry run and the import, each as the page writes it.
        then = steps[2:]
        assert [s.split()[1] for s in then] == ["check", "ls", "preview", "import", "import"]
        outputs = {}
        for step in then:
            done = shell(step, work)
            assert done.returncode == 0, f"{step}\n{done.stdout}\n{done.stderr}"
            outputs[step] = done.stdout
        assert "contacts_2026-11-24.csv" in outputs["truagents-import ls"]

    with sqlite3.connect(work / "contacts.db") as db:
        rows = db.execute("SELECT email, phone, first_name, timezone, tags FROM contacts ORDER BY email").fetchall()
    assert rows == [
        ("ann@example.com", "+12125550101", "Ann", "America/New_York", '["vip"]'),
        ("bob@example.com", "+442079460958", "Bob", "America/New_York", "[]"),
    ]
    [rejects] = (work / "rejects").iterdir()
    assert "not-an-address" in rejects.read_text(encoding="utf-8")

