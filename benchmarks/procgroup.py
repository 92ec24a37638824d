"""Run a command as a new process group, timed by its wall clock, with the peak memory of the whole group.

``run_measured(argv, work, timeout)`` starts ``argv`` as the leader of a new process group (its output
in files under ``work``), samples the ``VmHWM`` and ``VmRSS`` of the leader and every descendant
from /proc every 25 ms, reaps it with ``wait4`` and kills the group it started (by its id) when
``timeout`` seconds pass. Linux only.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

SAMPLE_SECONDS = 0.025


@dataclass
class Measured:
    """One command's run: exit status, wall clock, the peak memory of its process group, its output."""

    returncode: int
    seconds: float
    peak_mb: float
    peaks_mb: dict[int, float]
    commands: dict[int, str]
    concurrent_mb: float
    wait4_maxrss_mb: float
    timed_out: bool
    stdout: str
    stderr: str


class _GroupWatch(threading.Thread):
    """Samples ``VmHWM`` of a process and all its descendants; kills its group after the deadline."""

    def __init__(self, root: int, deadline: float) -> None:
        super().__init__(name="group-watch", daemon=True)
        self.root, self.deadline = root, deadline
        self.peaks_kb: dict[int, int] = {}
        self.commands: dict[int, str] = {}
        self.concurrent_kb = 0
        self.timed_out = False
        self.done = threading.Event()

    def _tree(self) -> list[int]:
        pids, i = [self.root], 0
        while i < len(pids):
            with suppress(OSError):
                for task in os.listdir(f"/proc/{pids[i]}/task"):
                    with suppress(OSError, ValueError):
                        text = Path(f"/proc/{pids[i]}/task/{task}/children").read_text()
                        pids.extend(int(p) for p in text.split())
            i += 1
        return pids

    def sample(self) -> None:
        resident = 0
        for pid in self._tree():
            with suppress(OSError, ValueError, IndexError):
                status = Path(f"/proc/{pid}/status").read_text(encoding="ascii")
                kb = int(status.split("VmHWM:", 1)[1].split()[0])
                self.peaks_kb[pid] = max(self.peaks_kb.get(pid, 0), kb)
                resident += int(status.split("VmRSS:", 1)[1].split()[0])
                if not self.commands.get(pid) or pid != self.root:  # a forked child execs after its first sample
                    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
                    self.commands[pid] = cmdline.decode(errors="replace").strip()[:160]
        self.concurrent_kb = max(self.concurrent_kb, resident)

    def run(self) -> None:
        while not self.done.wait(SAMPLE_SECONDS):
            self.sample()
            if time.monotonic() > self.deadline and not self.timed_out:
                self.timed_out = True
                with suppress(ProcessLookupError):
                    os.killpg(self.root, signal.SIGKILL)  # the group this script started, by its id


def run_measured(argv: Sequence[str], work: Path, timeout: float, env: dict[str, str] | None = None) -> Measured:
    """Run ``argv`` as the leader of a new process group; its output goes to files in ``work``.

    The group's peak is the sum of every member's sampled ``VmHWM``; when ``wait4``'s figure (the
    largest of the leader and the children it reaped) is higher than any sample, the difference is
    added, so a growth after the last sample is not lost. That sum is an upper bound (short-lived
    members, such as the ``ldconfig`` a library runs at import, count as if they lived at the peak);
    ``concurrent_mb`` is the largest sampled sum of the members' ``VmRSS`` at one moment.
    """
    work.mkdir(parents=True, exist_ok=True)
    out_path, err_path = work / "stdout.txt", work / "stderr.txt"
    with out_path.open("wb") as out, err_path.open("wb") as err:
        t = time.perf_counter()
        proc = subprocess.Popen(
            list(argv), stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=env, start_new_session=True
        )
        watch = _GroupWatch(proc.pid, time.monotonic() + timeout)
        watch.sample()
        watch.start()
        _pid, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - t
    watch.done.set()
    watch.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    peaks = {pid: kb / 1024 for pid, kb in watch.peaks_kb.items()}
    wait4_mb = usage.ru_maxrss / 1024
    total = sum(peaks.values()) + max(0.0, wait4_mb - max(peaks.values(), default=0.0))
    return Measured(
        returncode=proc.returncode,
        seconds=seconds,
        peak_mb=total,
        peaks_mb=peaks,
        commands=watch.commands,
        concurrent_mb=watch.concurrent_kb / 1024,
        wait4_maxrss_mb=wait4_mb,
        timed_out=watch.timed_out,
        stdout=out_path.read_text(encoding="utf-8", errors="replace"),
        stderr=err_path.read_text(encoding="utf-8", errors="replace"),
    )
