"""One untrusted query on a PostgreSQL database, with the SQLite sandbox's promises.

- The query has passed `engine.query_problem` (sqlglot, postgres dialect): one statement, a query,
  no data-modifying CTE, no SELECT INTO or FOR UPDATE, no file, network, large-object, signal or
  settings function.
- It runs in a READ ONLY transaction that is always rolled back, through a server-side cursor
  that hands over at most `max_rows` rows (and 64 MB of text (execute.fetch_bounded)), so a
  `generate_series(1, 10^12)` never reaches the client.
- Each session sets `statement_timeout` (the query's deadline, enforced by the server),
  `idle_in_transaction_session_timeout`, `work_mem` and `temp_file_limit` (the last needs
  superuser or, on PostgreSQL 15+, `GRANT SET ON PARAMETER temp_file_limit TO <role>`: without
  either the role's own setting stays, and if that is unlimited we warn once). `application_name`
  carries the worker's PID, so that the parent can find and end the backend of a worker it killed
  (`terminate_workers_backend`): a killed client does not stop a running query by itself.
- The role is checked once per connection. A superuser, or a member of pg_read_server_files,
  pg_write_server_files or pg_execute_server_program, is refused: such a role can read or write
  the server's files from inside a SELECT, and no transaction mode stops that. A role that may
  write tables is accepted with one warning: the read-only transaction, the rollback and the
  statement check keep it from writing, but a dedicated read-only role is what we recommend:

      CREATE ROLE sqltune_reader LOGIN;  GRANT pg_read_all_data TO sqltune_reader;

Passwords come from libpq itself (PGPASSWORD, ~/.pgpass or the URL); messages name the database
through `engine.display`, which hides them.
"""

from __future__ import annotations

import logging
import os
import re
import time

import psycopg

from sqltune.sql.engine import display
from sqltune.sql.execute import ExecResult, fetch_bounded

log = logging.getLogger(__name__)

WORK_MEM = "16MB"
TEMP_FILE_LIMIT = "64MB"
APP_PREFIX = "sqltune-sandbox-"
_DANGEROUS_ROLES = ("pg_read_server_files", "pg_write_server_files", "pg_execute_server_program")

_OPEN: dict[str, psycopg.Connection] = {}
_WARNED: set[tuple[str, str]] = set()  # (database, what) warned about once per process


class RoleRefused(Exception):
    """The connection's role could do more than read (see the module doc)."""


def _connect(db: str) -> psycopg.Connection:
    conn = psycopg.connect(db, autocommit=False, connect_timeout=5, application_name=f"{APP_PREFIX}{os.getpid()}")
    try:
        _check_role(conn, db)
        with conn.cursor() as cur:
            cur.execute(f"SET idle_in_transaction_session_timeout = '5s'; SET work_mem = '{WORK_MEM}'")
            conn.commit()
            try:
                cur.execute(f"SET temp_file_limit = '{TEMP_FILE_LIMIT}'")
                conn.commit()
            except psycopg.errors.InsufficientPrivilege:
                conn.rollback()
                cur.execute("SELECT current_setting('temp_file_limit')")
                if cur.fetchone()[0] == "-1" and (_database(db), "temp_file_limit") not in _WARNED:
                    _WARNED.add((_database(db), "temp_file_limit"))
                    log.warning("%s: temp_file_limit is unlimited for this role and it may not set it: a query may "
                                "fill the server's disk with temporary files (ALTER ROLE ... SET temp_file_limit, "
                                "or GRANT SET ON PARAMETER temp_file_limit TO the role)", display(_database(db)))
                conn.rollback()
    except BaseException:
        conn.close()
        raise
    conn.read_only = True  # every transaction from now on: BEGIN READ ONLY
    return conn


def _check_role(conn: psycopg.Connection, db: str) -> None:
    with conn.cursor() as cur:
        cur.execute("SELECT rolname, rolsuper, " + ", ".join(f"pg_has_role(oid, '{r}', 'MEMBER')" for r in _DANGEROUS_ROLES)
                    + " FROM pg_roles WHERE rolname = current_user")
        name, superuser, *members = cur.fetchone()
        if superuser or any(members):
            why = "a superuser" if superuser else "a member of " + ", ".join(r for r, m in zip(_DANGEROUS_ROLES, members) if m)
            raise RoleRefused(f"role {name} on {display(db)} is {why}, which can read or write the server's files "
                              "from a SELECT: connect as a read-only role (CREATE ROLE sqltune_reader LOGIN; "
                              "GRANT pg_read_all_data TO sqltune_reader)")
        cur.execute("SELECT count(*) FROM information_schema.table_privileges WHERE grantee = current_user "
                    "AND privilege_type IN ('INSERT', 'UPDATE', 'DELETE', 'TRUNCATE')")
        writable = cur.fetchone()[0]
        conn.rollback()
    if writable and (_database(db), "writer") not in _WARNED:
        _WARNED.add((_database(db), "writer"))
        log.warning("role %s may write %d table privilege(s) on %s: queries still run read-only and are rolled "
                    "back, but a read-only role is safer (GRANT pg_read_all_data)", name, writable,
                    display(_database(db)))


def _database(db: str) -> str:
    """`db` without its `options` (a search_path): the schemas of one database, such as fuzzed
    copies (fuzz/engines.py), are warned about once, not once each."""
    return re.sub(r"\s*options='[^']*'", "", re.sub(r"[?&]options=[^&#]*", "", db))


_CHECKED: dict[str, str | None] = {}


def preflight(db: str) -> str | None:
    """Once per database and process, in the process that scores (the worker's own log goes
    nowhere): why `db` can't be used (server down, role refused), or None; its warnings are logged
    here."""
    if db not in _CHECKED:
        try:
            _connect(db).close()
            _CHECKED[db] = None
        except Exception as e:  # noqa: BLE001
            _CHECKED[db] = f"{type(e).__name__}: {display(str(e).strip().splitlines()[0] if str(e).strip() else '')}"
    return _CHECKED[db]


def _open(db: str, keep_open: bool) -> psycopg.Connection:
    conn = _OPEN.get(db) if keep_open else None
    if conn is None or conn.closed or conn.broken:
        conn = _connect(db)
        if keep_open:
            _OPEN[db] = conn
    return conn


def execute(db: str, sql: str, *, timeout_s: float = 1.0, max_rows: int = 10_000, keep_open: bool = False) -> ExecResult:
    """Run one checked query (engine.execute_here checked it) on the PostgreSQL database `db`;
    never raises, never writes. Errors come back as "<ExceptionType>: <first line>"."""
    try:
        conn = _open(db, keep_open)
    except Exception as e:  # noqa: BLE001 - a bad URL, a refused role, a server down: a result
        return ExecResult(error=f"{type(e).__name__}: {display(str(e).strip().splitlines()[0] if str(e).strip() else '')}")
    started = time.monotonic()
    try:
        with conn.cursor() as setup:
            setup.execute(f"SET LOCAL statement_timeout = {max(1, int(timeout_s * 1000))}")
        with conn.cursor(name="sqltune_query") as cur:  # server-side: rows come over in batches
            cur.execute(sql)
            return ExecResult(rows=fetch_bounded(cur, max_rows))
    except psycopg.errors.QueryCanceled:
        return ExecResult(error=f"TimeoutError: query ran past {timeout_s:g} s")
    except Exception as e:  # noqa: BLE001
        text = str(e).strip().splitlines()[0] if str(e).strip() else ""
        if time.monotonic() - started > timeout_s:
            return ExecResult(error=f"TimeoutError: query ran past {timeout_s:g} s ({type(e).__name__}: {text[:200]})")
        return ExecResult(error=f"{type(e).__name__}: {text[:500]}")
    finally:
        try:
            conn.rollback()
        except Exception:  # noqa: BLE001 - a broken connection is reopened next time
            pass
        if not keep_open:
            conn.close()


def terminate_workers_backend(db: str, worker_pid: int) -> None:
    """End the backend that a killed worker left running (its query may still be spinning until
    `statement_timeout`): found by the worker's application_name; a role may end its own sessions."""
    try:
        with psycopg.connect(db, autocommit=True, connect_timeout=5) as conn:
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
                         (f"{APP_PREFIX}{worker_pid}",))
    except Exception as e:  # noqa: BLE001 - statement_timeout still ends it server-side
        log.warning("could not end the backend of a stopped sandbox worker on %s: %s", display(db), type(e).__name__)
