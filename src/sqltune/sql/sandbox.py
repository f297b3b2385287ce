"""Untrusted SQL in a worker process that can be killed.

    result = sandbox.execute(db_path, sql, timeout_s=1.0)     # same contract as execute.execute

`execute.execute` bounds a query by a deadline checked between SQLite VM steps, which one slow C
call outruns: `printf('%.*c', 1000000000, 'x')` takes ~10 s, `instr` over two ~1 MB strings ~8 s.
So queries run in a worker process, reused across queries (a round trip costs ~0.2 ms, a new
process ~50 ms; the worker keeps its database connections open, which pays for the round trip).
The parent waits `timeout_s + GRACE_S` for the answer, then kills the worker and answers with a
timeout; the next query starts a fresh one. The worker also runs under an
address-space cap (`RLIMIT_AS`) and a CPU-time cap renewed before each query (`RLIMIT_CPU`), so a
query that allocates wildly or spins dies alone. Every guard of `execute` still applies inside.
The same worker serves every engine (engine.py: SQLite, PostgreSQL, DuckDB); for PostgreSQL, the
backend of a worker killed at the deadline is ended too (a killed client does not stop it).

Why a hand-written pipe instead of `multiprocessing.Pool` / `concurrent.futures`: neither can kill
one worker at a deadline and go on (a `ProcessPoolExecutor` breaks as a whole when a worker dies),
and `spawn` re-imports the caller's `__main__`. One worker per process is enough: scoring runs
one query at a time, and each rank of a distributed job has its own.
"""

from __future__ import annotations

import atexit
import os
import pickle
import resource
import select
import struct
import subprocess
import sys
import threading
from pathlib import Path

from sqltune.sql import engine
from sqltune.sql.engine import execute_here
from sqltune.sql.execute import ExecResult

GRACE_S = 0.25  # beyond the query's own deadline: fetching, pickling, the pipe
MEMORY_BYTES = 2 * 2**30  # RLIMIT_AS of a worker: SQLite's own caps keep honest queries far below
_HEADER = struct.Struct("<I")


def _send(stream, obj: object) -> None:  # noqa: ANN001
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_HEADER.pack(len(data)) + data)
    stream.flush()


def _recv(stream) -> object | None:  # noqa: ANN001
    header = stream.read(_HEADER.size)
    if len(header) < _HEADER.size:
        return None
    size = _HEADER.unpack(header)[0]
    data = stream.read(size)
    return pickle.loads(data) if len(data) == size else None


def serve() -> None:
    """The worker: read (db_path, sql, timeout_s, max_rows), answer (rows, error), until EOF."""
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_BYTES, MEMORY_BYTES))
    _, cpu_hard = resource.getrlimit(resource.RLIMIT_CPU)
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    while (request := _recv(stdin)) is not None:
        db_path, sql, timeout_s, max_rows = request
        usage = resource.getrusage(resource.RUSAGE_SELF)
        cpu_cap = int(usage.ru_utime + usage.ru_stime + timeout_s) + 2
        if cpu_hard == resource.RLIM_INFINITY or cpu_cap <= cpu_hard:
            resource.setrlimit(resource.RLIMIT_CPU, (cpu_cap, cpu_hard))
        try:
            result = execute_here(db_path, sql, timeout_s=timeout_s, max_rows=max_rows, keep_open=True)
        except MemoryError:
            result = ExecResult(error="MemoryError: the query needed more memory than a worker may use")
        _send(stdout, (result.rows, result.error))


class Worker:
    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "from sqltune.sql.sandbox import serve; serve()"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        )

    def run(self, db_path: str, sql: str, timeout_s: float, max_rows: int) -> ExecResult | None:
        """The answer, or None when the worker overran its deadline or died (then it is dead)."""
        try:
            _send(self.proc.stdin, (db_path, sql, timeout_s, max_rows))
            ready, _, _ = select.select([self.proc.stdout], [], [], timeout_s + GRACE_S)
            reply = _recv(self.proc.stdout) if ready else None
        except (BrokenPipeError, OSError, pickle.UnpicklingError):
            reply = None
        if reply is None:
            self.close()
            return None
        rows, error = reply
        return ExecResult(rows=rows, error=error)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout):
            try:
                stream.close()
            except OSError:
                pass


class Pool:
    """One reusable worker, replaced whenever a query kills it or overruns."""

    def __init__(self) -> None:
        self._worker: Worker | None = None
        self._lock = threading.Lock()
        self._pid = os.getpid()

    def execute(self, db_path: str | Path, sql: str, *, timeout_s: float = 1.0, max_rows: int = 10_000) -> ExecResult:
        if engine.kind(db_path) == "postgres":
            from sqltune.sql import postgres

            if problem := postgres.preflight(str(db_path)):  # a refused role never reaches the worker
                return ExecResult(error=problem)
        with self._lock:
            if self._worker is None or self._worker.proc.poll() is not None:
                self._worker = Worker()
            result = self._worker.run(str(db_path), sql, timeout_s, max_rows)
            if result is None:
                if engine.kind(db_path) == "postgres":
                    from sqltune.sql import postgres

                    postgres.terminate_workers_backend(str(db_path), self._worker.proc.pid)
                self._worker = None
                return ExecResult(error=f"TimeoutError: query ran past {timeout_s:g} s (its worker was stopped)")
            return result

    def close(self) -> None:
        with self._lock:
            if self._worker is not None and os.getpid() == self._pid:
                self._worker.close()
            self._worker = None


_pool: Pool | None = None


def execute(db_path: str | Path, sql: str, *, timeout_s: float = 1.0, max_rows: int = 10_000) -> ExecResult:
    """`execute.execute` in this process's worker; never raises, never writes, never outruns
    `timeout_s + GRACE_S` (plus a worker start, ~50 ms, on the first query)."""
    global _pool
    if _pool is None or _pool._pid != os.getpid():  # a forked child gets its own worker
        _pool = Pool()
        atexit.register(_pool.close)
    return _pool.execute(db_path, sql, timeout_s=timeout_s, max_rows=max_rows)
