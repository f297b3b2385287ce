"""One untrusted query on a DuckDB file, with the SQLite sandbox's promises.

- The query has passed `engine.query_problem` (sqlglot, duckdb dialect): one statement, a query,
  no file-reading table function or file path as a table, no `query()`, no `getenv()`.
- The file is opened read-only, with external access off (no file, URL or extension can be read
  even if a query slipped past the check), extensions neither installed nor loaded on the fly,
  one thread and a memory limit, and the configuration locked so no later statement can undo it.
- A timer interrupts the query at its deadline (`Connection.interrupt`); the sandbox's worker is
  killed if even that does not return. At most `max_rows` rows and 64 MB of text (execute.fetch_bounded)
  come back.
"""

from __future__ import annotations

import threading
from pathlib import Path

import duckdb

from sqltune.sql.execute import ExecResult, fetch_bounded

MEMORY_LIMIT = "512MB"
CONFIG = {
    "access_mode": "READ_ONLY",
    "enable_external_access": False,
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
    "allow_community_extensions": False,
    "threads": 1,
    "memory_limit": MEMORY_LIMIT,
    "max_temp_directory_size": "0B",
    "lock_configuration": True,
}

_OPEN: dict[tuple, duckdb.DuckDBPyConnection] = {}


def _connect(path: str) -> duckdb.DuckDBPyConnection:
    if not Path(path).is_file():
        raise FileNotFoundError(f"no such database file '{path}'")
    return duckdb.connect(path, read_only=True, config=dict(CONFIG))


def _open(path: str, keep_open: bool) -> duckdb.DuckDBPyConnection:
    if not keep_open:
        return _connect(path)
    st = Path(path).stat()
    key = (str(Path(path).resolve()), st.st_ino, st.st_size, st.st_mtime_ns)
    if key not in _OPEN:
        _OPEN[key] = _connect(path)
    return _OPEN[key]


def execute(path: str, sql: str, *, timeout_s: float = 1.0, max_rows: int = 10_000, keep_open: bool = False) -> ExecResult:
    """Run one checked query (engine.execute_here checked it) on the DuckDB file `path`; never
    raises, never writes."""
    try:
        conn = _open(path, keep_open)
    except Exception as e:  # noqa: BLE001
        return ExecResult(error=f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
    timer = threading.Timer(timeout_s, conn.interrupt)
    timer.start()
    try:
        return ExecResult(rows=fetch_bounded(conn.execute(sql), max_rows))
    except Exception as e:  # noqa: BLE001
        if not timer.is_alive():
            return ExecResult(error=f"TimeoutError: query ran past {timeout_s:g} s")
        return ExecResult(error=f"{type(e).__name__}: {(str(e).splitlines() or [''])[0][:500]}")
    finally:
        timer.cancel()
        if not keep_open:
            conn.close()
