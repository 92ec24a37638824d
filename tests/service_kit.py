"""What the service tests share: waiting for a condition, delivering files, reading the SQLite
sink and state, stopping an sshd for good, and a plugin that holds a file half-way.

Waiting is never a timed assertion: :func:`wait_for` only gives up (and fails the test) after a
generous deadline.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

__all__ = [
    "HOLD_PLUGIN",
    "contacts_csv",
    "deliver",
    "descendants",
    "imported_rows",
    "install_hold_plugin",
    "kill_sshd",
    "sink_identities",
    "wait_for",
]

#: A plugin that holds the first batch of a file whose first e-mail starts with ``slow-`` while the
#: file ``hold`` exists in ``$TRUAGENTS_TEST_HOLD_DIR`` (two minutes at most), after writing
#: ``holding-<pid>`` there: the test then knows a process is in the middle of that file.
HOLD_PLUGIN = """
import os
import time
from pathlib import Path

from truagents_import import hookimpl


@hookimpl
def validate_contacts(contacts, source):
    if not contacts or not (contacts[0].email or "").startswith("slow-"):
        return None
    folder = Path(os.environ["TRUAGENTS_TEST_HOLD_DIR"])
    (folder / f"holding-{os.getpid()}").write_text(source.name)
    deadline = time.monotonic() + 120
    while (folder / "hold").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    return None
"""


def install_hold_plugin(where: Path) -> Path:
    """``where`` made a folder that, on ``PYTHONPATH``, installs the hold plugin through an entry point."""
    where.mkdir(parents=True, exist_ok=True)
    (where / "holdplugin.py").write_text(HOLD_PLUGIN, encoding="utf-8")
    dist = where / "holdplugin-0.1.dist-info"
    dist.mkdir(exist_ok=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: holdplugin\nVersion: 0.1\n", encoding="utf-8")
    (dist / "entry_points.txt").write_text("[truagents_import]\nhold = holdplugin\n", encoding="utf-8")
    return where


def wait_for(condition: Callable[[], object], what: str, timeout: float = 60.0) -> None:
    """Return once ``condition()`` is true; fail the test when it is still false after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.05)


def contacts_csv(prefix: str, n: int) -> str:
    """A CSV of ``n`` valid contacts whose e-mails start with ``prefix``."""
    lines = ["email,first_name"]
    lines += [f"{prefix}-{i}@example.com,N{i}" for i in range(n)]
    return "\n".join(lines) + "\n"


def deliver(inbox: Path, name: str, text: str) -> Path:
    """Put a file in place the way an upload does: written under a temporary name, then renamed."""
    temporary = inbox / f".{name}.part"
    temporary.write_text(text, encoding="utf-8")
    final = inbox / name
    os.replace(temporary, final)
    return final


def _query(db: Path, sql: str) -> list[tuple[object, ...]]:
    if not db.exists():
        return []
    conn = sqlite3.connect(db, timeout=30)
    try:
        return conn.execute(sql).fetchall()
    except sqlite3.OperationalError:  # the table is not there yet
        return []
    finally:
        conn.close()


def sink_identities(db: Path) -> list[str]:
    """The e-mail of every contact in the SQLite sink's ``contacts`` table, sorted."""
    return sorted(str(r[0]) for r in _query(db, "SELECT email FROM contacts"))


def imported_rows(state: Path) -> list[tuple[str, str, str]]:
    """``(source, file name, sha256)`` of every ``imported`` row of the SQLite state, repeats included."""
    rows = _query(state, "SELECT source, path, sha256 FROM files WHERE status = 'imported'")
    return sorted((str(s), os.path.basename(str(p)), str(h)) for s, p, h in rows)


def descendants(pid: int) -> list[int]:
    """The PIDs of every process below ``pid`` (read from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def kill_sshd(pid: int) -> None:
    """Stop an sshd we started, and the sessions it forked, by their PIDs: the server is gone."""
    for p in [*descendants(pid), pid]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(p, signal.SIGKILL)
