"""Run untrusted SQL (a model's prediction) against a SQLite file, and compare results.

`execute` never raises and never writes. Every guard below is cheap, and each one covers a
different way a generated query can go wrong:

- the file is opened read-only and immutable (`file:...?mode=ro&immutable=1`), so SQLite
  takes no locks and creates no journal, WAL or -shm file next to it. Immutable means the file
  must not change while it is read, which holds for evaluation databases;
- only one statement, and it must start with SELECT, WITH or VALUES. This rejects VACUUM INTO
  (which can write a new file even on a read-only connection), PRAGMA, ATTACH, BEGIN, ...
  before SQLite prepares anything;
- an authorizer allows only reading: SELECT, READ, FUNCTION and RECURSIVE actions. So
  `WITH x AS (...) DELETE ...`, ATTACH, PRAGMA and any write are denied when prepared, and
  the function `load_extension` is denied by name;
- a progress handler aborts the query once `timeout_s` has passed (infinite recursive CTEs,
  huge cross joins), and the same deadline covers fetching;
- SQLite limits: no attached databases, strings and blobs at most 1 MB (so `randomblob(1e9)`
  fails at once instead of allocating a gigabyte). This also applies to stored values: a
  query touching a cell over 1 MB fails (raise `_MAX_VALUE_BYTES` for such databases);
- at most `max_rows` rows and `_MAX_RESULT_BYTES` of text and blobs come back to Python.

What this does not bound: the deadline is checked between VM instructions, so a single slow
C function call overruns it, e.g. `printf('%.*c', 1000000000, 'x')` (~10 s on 2 cores) or
`instr` / `LIKE` over two strings near the 1 MB limit (seconds to tens of seconds). So scoring
calls it through `sandbox.execute`, in a worker process killed at the deadline.

Results are compared by Spider's and BIRD's rules in official.py.
"""

from __future__ import annotations

import re
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_MAX_VALUE_BYTES = 1_000_000  # SQLITE_LIMIT_LENGTH: longest string/blob/row SQLite will build
_MAX_RESULT_BYTES = 64_000_000  # text and blobs fetched into Python, summed over all rows
_FETCH_BATCH = 100  # rows per fetchmany; the byte budget is checked between batches
_PROGRESS_STEPS = 1_000  # VM instructions between deadline checks

_ALLOWED_ACTIONS = {
    sqlite3.SQLITE_SELECT,
    sqlite3.SQLITE_READ,
    sqlite3.SQLITE_FUNCTION,
    getattr(sqlite3, "SQLITE_RECURSIVE", 33),  # WITH RECURSIVE; the deadline bounds it
}
# load_extension is the one built-in that loads code; fts3_tokenizer can register C pointers.
# readfile/writefile come from the fileio extension, denied in case the host links it.
_DENIED_FUNCTIONS = {"load_extension", "fts3_tokenizer", "readfile", "writefile", "edit"}

_FENCE = re.compile(r"```(?:[ \t]*[A-Za-z0-9_+-]*[ \t]*\n)?(.*?)(?:```|\Z)", re.DOTALL)
_LEADING_COMMENTS = re.compile(r"\A(?:\s+|--[^\n]*(?:\n|\Z)|/\*.*?(?:\*/|\Z))*", re.DOTALL)
_READ_ONLY_START = re.compile(r"(?:SELECT|WITH|VALUES)\b", re.IGNORECASE)


@dataclass(frozen=True)
class ExecResult:
    """Rows a query returned, or why it returned none. Exactly one of the two is set."""

    rows: list[tuple] | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def clean_sql(text: str) -> str:
    """Strip what models wrap around SQL: a markdown code fence, whitespace, trailing ';'.

    If the text holds a ``` fence (```sql or bare), the first fenced block is kept and the prose
    around it dropped; an unclosed fence runs to the end of the text. Nothing inside the query is
    changed, so `SELECT 1; DROP TABLE t` stays two statements and `execute` rejects it.
    """
    text = text or ""
    match = _FENCE.search(text)
    if match:
        text = match.group(1)
    return text.strip().rstrip(";").strip()


def _authorizer(action: int, arg1: Any, arg2: Any, db_name: Any, source: Any) -> int:
    if action not in _ALLOWED_ACTIONS:
        return sqlite3.SQLITE_DENY
    if action == sqlite3.SQLITE_FUNCTION and str(arg2).lower() in _DENIED_FUNCTIONS:
        return sqlite3.SQLITE_DENY
    return sqlite3.SQLITE_OK


def _connect(db_path: str | Path) -> sqlite3.Connection:
    path = Path(db_path)
    if not path.is_file():
        raise FileNotFoundError(f"no such database file '{db_path}'")
    # as_uri() percent-encodes the path, so '?', '#' or spaces in it cannot smuggle URI options.
    uri = path.resolve().as_uri() + "?mode=ro&immutable=1"
    conn = sqlite3.connect(uri, uri=True, isolation_level=None)
    if hasattr(conn, "enable_load_extension"):  # absent when Python is built without it
        conn.enable_load_extension(False)
    if hasattr(conn, "setlimit"):  # Python 3.11+; on 3.10 the 1 MB value limit is missing
        conn.setlimit(sqlite3.SQLITE_LIMIT_ATTACHED, 0)
        conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, _MAX_VALUE_BYTES)
    conn.set_authorizer(_authorizer)
    return conn


def _check_statement(sql: str) -> None:
    if not sql:
        raise ValueError("empty query")
    body = _LEADING_COMMENTS.sub("", sql, count=1)
    if not body:
        raise ValueError("empty query (only comments)")
    if not _READ_ONLY_START.match(body):
        first = body.split(None, 1)[0][:30]
        raise ValueError(f"only SELECT / WITH / VALUES queries are allowed, got '{first}'")


def fetch_bounded(cursor: Any, max_rows: int) -> list[tuple]:
    """Rows of a DB-API cursor (any engine's), in batches; raises ValueError past `max_rows` rows
    or `_MAX_RESULT_BYTES` of text and blobs."""
    rows: list[tuple] = []
    nbytes = 0
    while batch := cursor.fetchmany(_FETCH_BATCH):
        rows.extend(batch)
        if len(rows) > max_rows:
            raise ValueError(f"more than {max_rows} rows")
        nbytes += sum(len(v) for row in batch for v in row if isinstance(v, (str, bytes)))
        if nbytes > _MAX_RESULT_BYTES:
            raise ValueError(f"result larger than {_MAX_RESULT_BYTES} bytes")
    return rows


_OPEN: dict[tuple, sqlite3.Connection] = {}  # keep_open connections, by file identity
_MAX_OPEN = 16


def _open(db_path: str | Path) -> sqlite3.Connection:
    """A kept connection to `db_path`, reopened if the file was replaced or changed (immutable
    connections never look at the file again, so the key is its inode, size and mtime)."""
    st = Path(db_path).stat()
    key = (str(Path(db_path).resolve()), st.st_ino, st.st_size, st.st_mtime_ns)
    conn = _OPEN.pop(key, None) or _connect(db_path)
    _OPEN[key] = conn  # most recently used last
    while len(_OPEN) > _MAX_OPEN:
        _OPEN.pop(next(iter(_OPEN))).close()
    return conn


def execute(
    db_path: str | Path, sql: str, *, timeout_s: float = 1.0, max_rows: int = 10_000, keep_open: bool = False
) -> ExecResult:
    """Run one read-only query on the SQLite file `db_path`; never raises, never writes.

    `sql` goes through `clean_sql` first. Any failure (syntax error, denied action, timeout,
    more than `max_rows` rows, missing file) comes back as `ExecResult(error=...)`, the text
    prefixed with the exception type, e.g. "OperationalError: no such column: x".
    `keep_open` reuses a connection per database file across calls (opening one costs about
    as much as a simple query): for a long-lived process such as `sandbox`'s worker.
    """
    try:
        sql = clean_sql(sql)
        _check_statement(sql)
        conn = _open(db_path) if keep_open else _connect(db_path)
    except Exception as e:  # noqa: BLE001 - every failure is a result, not a crash
        return ExecResult(error=f"{type(e).__name__}: {e}")

    deadline = time.monotonic() + timeout_s
    conn.set_progress_handler(lambda: time.monotonic() > deadline, _PROGRESS_STEPS)
    try:
        cursor = conn.execute(sql)
        rows = fetch_bounded(cursor, max_rows)
        return ExecResult(rows=rows)
    except Exception as e:  # noqa: BLE001
        if time.monotonic() > deadline and "interrupt" in str(e):
            return ExecResult(error=f"TimeoutError: query ran past {timeout_s:g} s")
        return ExecResult(error=f"{type(e).__name__}: {e}")
    finally:
        conn.set_progress_handler(None, 0)
        if not keep_open:
            conn.close()
