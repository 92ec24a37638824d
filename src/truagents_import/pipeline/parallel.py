"""A helper process for the second CPU: it builds chunks of rows while the importer reads and stages.

It runs ``python -c`` (not multiprocessing, whose start methods re-import the caller's
``__main__``) and speaks a small protocol over its pipes: length-prefixed pickles of
``(spec, first row number, rows)`` in, ``("ok", built)`` out, in order. Chunks are taken back in
row order by :class:`~truagents_import.pipeline.process.RowPipeline`, so the outcome is the same
with or without it.
"""

from __future__ import annotations

import contextlib
import gc
import marshal
import os
import pickle
import queue
import select
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

try:
    import fcntl
except ImportError:  # not on POSIX
    fcntl = None  # type: ignore[assignment]

from truagents_import.pipeline.builder import BuildSpec, Built, RowBuilder, build_chunk
from truagents_import.pipeline.process import HelperGone
from truagents_import.report import Problem

__all__ = ["PARALLEL_MIN_BYTES", "Worker", "fewer_collections", "usable_cpus", "worker_main"]

#: A file at least this large (bytes) is built with the help of a worker process, when this
#: process may use two CPUs or more; smaller files are not worth the worker's start-up (~0.5 s).
PARALLEL_MIN_BYTES = 16 << 20
#: Pipe buffers for the worker: a chunk (~150 KB) and its answer (~300 KB) then pass in one write,
#: so that neither process waits for the other to read (the default 64 KiB made them take turns).
_PIPE_BYTES = 1 << 20
_WORKER_CODE = "from truagents_import.pipeline.parallel import worker_main; worker_main()"
#: While a file is processed the cyclic garbage collector runs less often: its default (a
#: collection per 700 container allocations, and full ones as the batches in flight are promoted)
#: took about a tenth of the time, though the rows make no reference cycles.
_GC_THRESHOLD0 = 10_000


def usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


@contextlib.contextmanager
def fewer_collections() -> Iterator[None]:
    """Raise the first garbage-collection threshold for a while, then restore it (unless changed meanwhile)."""
    before = gc.get_threshold()
    if not gc.isenabled() or before[0] >= _GC_THRESHOLD0:
        yield
        return
    gc.set_threshold(_GC_THRESHOLD0, *before[1:])
    try:
        yield
    finally:
        if gc.get_threshold()[0] == _GC_THRESHOLD0:
            gc.set_threshold(*before)


def _enlarge_pipe(pipe: IO[bytes] | None) -> None:
    """Make a pipe's buffer :data:`_PIPE_BYTES` (or the system's maximum) where the OS allows it (Linux)."""
    setsize = getattr(fcntl, "F_SETPIPE_SZ", None) if fcntl is not None else None
    if pipe is None or setsize is None:
        return
    try:
        limit = int(Path("/proc/sys/fs/pipe-max-size").read_text(encoding="ascii"))
    except (OSError, ValueError):
        limit = _PIPE_BYTES
    with contextlib.suppress(OSError):
        fcntl.fcntl(pipe.fileno(), setsize, min(_PIPE_BYTES, limit))


class Worker:
    """A helper process, on another CPU, that turns chunks of raw rows into contact values.

    It runs ``python -c`` (not multiprocessing, whose start methods re-import the caller's
    ``__main__``). Chunks go to its stdin as length-prefixed pickles, written by a thread so that
    neither process can block the other on a full pipe; answers come back in order on its stdout,
    after a first ``ready`` once it has started. It exits when its stdin closes, so also when this
    process dies. Any failure marks it ``broken``: the importer then builds the rows itself, with
    the same code.
    """

    def __init__(self) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, "-c", _WORKER_CODE],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            bufsize=0,  # raw pipes: select() then tells exactly whether an answer has arrived
        )
        assert self._proc.stdin is not None
        assert self._proc.stdout is not None
        self._stdin: IO[bytes] = self._proc.stdin
        self._stdout: IO[bytes] = self._proc.stdout
        for pipe in (self._stdin, self._stdout):
            _enlarge_pipe(pipe)
        self._requests: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self._writer = threading.Thread(target=self._write, name="truagents-import-worker-feed", daemon=True)
        self._writer.start()
        #: The spec of the chunks sent last (sent once, with the first chunk that uses it).
        self._spec: BuildSpec | None = None
        #: Chunks sent and not yet answered.
        self.in_flight = 0
        self.broken = False
        self._ready = False

    def _write(self) -> None:
        try:
            while (data := self._requests.get()) is not None:
                frame = memoryview(len(data).to_bytes(8, "little") + data)
                while frame:
                    frame = frame[self._stdin.write(frame) or 0 :]
        except (OSError, ValueError):
            self.broken = True  # the worker is gone: receive() finds out too
        finally:
            with contextlib.suppress(OSError, ValueError):
                self._stdin.close()

    def _read_exactly(self, size: int) -> bytearray:
        buffer = bytearray(size)
        view = memoryview(buffer)
        got = 0
        while got < size:
            n = self._stdout.readinto(view[got:])  # type: ignore[attr-defined]
            if not n:
                raise HelperGone("the worker process ended")
            got += n
        return buffer

    def _read_answer(self) -> tuple[str, Any]:
        try:
            size = int.from_bytes(self._read_exactly(8), "little")
            status, answer = marshal.loads(self._read_exactly(size))  # noqa: S302  (our own child, private pipe)
        except (OSError, ValueError, EOFError, TypeError, HelperGone) as exc:
            self.broken = True
            raise HelperGone from exc
        return str(status), answer

    def answer_waiting(self) -> bool:
        """Whether the worker has begun its next answer (or ended): reading it will not wait long."""
        try:
            return bool(select.select([self._stdout], [], [], 0)[0])
        except (OSError, ValueError):
            return True  # receive() finds out what is wrong

    def usable(self, wait: float = 0.0) -> bool:
        """Whether chunks may be sent: the worker has started (it said ``ready``) and nothing broke.

        ``wait``: seconds to wait for the worker to start, if it has not yet.
        """
        if not self._ready and not self.broken and wait > 0:
            with contextlib.suppress(OSError, ValueError):
                select.select([self._stdout], [], [], wait)
        if not self._ready and not self.broken and self.answer_waiting():
            with contextlib.suppress(HelperGone):
                status, _ = self._read_answer()
                self._ready = status == "ready"
                self.broken = not self._ready
        return self._ready and not self.broken

    def submit(self, spec: BuildSpec, first: int, rows: list[list[str] | None]) -> None:
        """Send a chunk whose first row is data row ``first`` (the spec only when it changed)."""
        blob = None
        if spec is not self._spec:
            self._spec, blob = spec, pickle.dumps(spec, protocol=5)
        self._requests.put(marshal.dumps((blob, first, rows)))
        self.in_flight += 1

    def receive(self) -> Built:
        """The answer to the oldest chunk not yet received; raises :class:`HelperGone`."""
        if self.broken:
            raise HelperGone
        status, answer = self._read_answer()
        self.in_flight -= 1
        if status != "ok":
            self.broken = True
            raise HelperGone(answer)
        out, payloads, dropped = answer
        for i, kept in enumerate(out):
            if kept.__class__ is list:  # a rejected row's problems, as tuples on the wire
                out[i] = [Problem(*problem) for problem in kept]
        return out, payloads, dropped

    def close(self) -> None:
        """Stop the worker (at once when answers are still owed: nobody will read them)."""
        self._requests.put(None)
        if self.in_flight or self.broken:
            self._proc.kill()  # our own child, through its Popen handle
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._writer.join(timeout=10)
        self._stdout.close()


def worker_main() -> None:
    """The worker process: build each chunk read from stdin and answer it on stdout, until stdin closes.

    Requests and answers are ``marshal`` data (the fastest to write and read back of the stdlib's
    formats, and enough for rows of strings); the spec travels as a pickle, once per file.
    """
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # nothing else may write on the answer stream
    gc.set_threshold(_GC_THRESHOLD0, *gc.get_threshold()[1:])
    builder: RowBuilder | None = None

    def answer(message: tuple[str, Any]) -> None:
        out = marshal.dumps(message)
        stdout.write(len(out).to_bytes(8, "little"))
        stdout.write(out)
        stdout.flush()

    answer(("ready", None))
    while len(head := stdin.read(8)) == 8:
        size = int.from_bytes(head, "little")
        data = stdin.read(size)
        if len(data) < size:
            break
        try:
            blob, first, rows = marshal.loads(data)  # noqa: S302  (from our parent, over a private pipe)
            if blob is not None:
                builder = RowBuilder(pickle.loads(blob))  # noqa: S301  (from our parent, over a private pipe)
            assert builder is not None, "a chunk came before its spec"
            out, payloads, dropped = build_chunk(builder, first, rows)
            wire = [[_problem_tuple(p) for p in kept] if kept.__class__ is list else kept for kept in out]
            answer(("ok", (wire, payloads, dropped)))
        except Exception as exc:  # the importer builds this chunk itself, and sees the error there
            answer(("error", f"{type(exc).__name__}: {exc}"))


def _problem_tuple(problem: Problem) -> tuple[str, str, str | None, int | None, str | None]:
    return (problem.code, problem.message, problem.column, problem.row, problem.value)
