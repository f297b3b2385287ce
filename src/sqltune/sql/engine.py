"""Which engine a database reference names, the check every query passes before it is sent to a
server, and one query on any engine.

A row's `db_path` (or a dataset's `data.database`) names one of:

    a SQLite file                   concert_singer.sqlite, /data/x.db
    a PostgreSQL database           postgresql://reader@/spider?host=/run/pg   "dbname=spider user=reader"
                                    (libpq's URL or key=value DSN; the password comes from PGPASSWORD
                                    or ~/.pgpass, never from a file we write, and `display` hides one
                                    written into the reference itself)
    a DuckDB file                   warehouse.duckdb, duckdb:/data/x.db

`execute_here` runs one query in this process; scoring calls it through `sandbox.execute`, in a
worker process killed at the deadline. Each engine keeps the same promises (execute.py, postgres.py,
duck.py): nothing written, no file or network reached, one query only, bounded in time and rows.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from sqltune.sql.execute import ExecResult, clean_sql

KINDS = ("sqlite", "postgres", "duckdb")
_DSN = re.compile(r"^\s*(?:host|hostaddr|port|dbname|user|service|sslmode|options)\s*=", re.IGNORECASE)
_URL_PASSWORD = re.compile(r"(://[^:/@?#]*):[^@/?#]*@")
_DSN_PASSWORD = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)

# Functions a query may not call even where the role could: they read or write files, reach the
# network, run a SQL string past our check, sign or signal other sessions, or read the environment.
DENIED_FUNCTIONS = {
    "postgres": {"pg_read_file", "pg_read_binary_file", "pg_ls_dir", "pg_stat_file", "pg_ls_logdir", "pg_ls_waldir",
                 "pg_ls_tmpdir", "pg_ls_archive_statusdir", "lo_import", "lo_export", "lo_from_bytea", "lo_put",
                 "lo_create", "lo_unlink", "pg_file_write", "pg_terminate_backend", "pg_cancel_backend",
                 "pg_reload_conf", "pg_rotate_logfile", "set_config", "pg_notify", "query_to_xml",
                 "query_to_xml_and_xmlschema", "query_to_xmlschema", "cursor_to_xml", "pg_advisory_lock",
                 "pg_advisory_xact_lock", "pg_switch_wal", "pg_create_restore_point", "pg_promote"},
    "duckdb": {"read_csv", "read_csv_auto", "read_parquet", "parquet_scan", "read_json", "read_json_auto",
               "read_ndjson", "read_ndjson_auto", "read_text", "read_blob", "glob", "sniff_csv", "query",
               "query_table", "getenv", "parquet_metadata", "parquet_schema", "duckdb_secrets", "which_secret",
               "install_extension", "load_extension"},
}
_DENIED_PREFIXES = {"postgres": ("dblink", "pg_advisory", "lo_"), "duckdb": ("read_", "iceberg_", "delta_")}


def kind(db: str | Path) -> str:
    """"sqlite", "postgres" or "duckdb": what the reference `db` names."""
    text = str(db).strip()
    if text.startswith(("postgresql://", "postgres://")) or _DSN.match(text):
        return "postgres"
    if text.startswith("duckdb:") or text.endswith(".duckdb"):
        return "duckdb"
    return "sqlite"


def duckdb_path(db: str | Path) -> str:
    text = str(db).strip()
    return text[len("duckdb:"):] if text.startswith("duckdb:") else text


def display(db: str | Path) -> str:
    """The reference as it may be printed or logged: any password in it replaced by ***."""
    text = str(db)
    if "://" not in text:
        return _DSN_PASSWORD.sub(r"\1***", text)
    text = _URL_PASSWORD.sub(r"\1:***@", text)
    return re.sub(r"([?&]password=)[^&#]*", r"\1***", text, flags=re.IGNORECASE)


def query_problem(sql: str, dialect: str) -> str | None:
    """Why `sql` may not be sent to a `dialect` server, or None: it must parse (sqlglot) as
    exactly one statement, a query (SELECT / WITH ... SELECT / VALUES) that writes nothing (no
    data-modifying CTE, no SELECT INTO, no FOR UPDATE) and calls no function of DENIED_FUNCTIONS."""
    import sqlglot  # here, not at the top: a sandbox worker serving SQLite only starts ~0.15 s sooner
    from sqlglot import exp

    writes = (exp.Insert, exp.Update, exp.Delete, exp.Merge, exp.Create, exp.Drop, exp.Alter, exp.Command, exp.Copy)
    sqlglot_log = logging.getLogger("sqlglot")
    level = sqlglot_log.level
    sqlglot_log.setLevel(logging.ERROR)  # "falling back to parsing as a Command": we refuse those anyway
    try:
        statements = [s for s in sqlglot.parse(sql, read=dialect) if s is not None]
    except (sqlglot.errors.ParseError, sqlglot.errors.TokenError) as e:
        return f"ParseError: {str(e).splitlines()[0][:200]}"
    finally:
        sqlglot_log.setLevel(level)
    if len(statements) != 1:
        return f"only one statement may run, got {len(statements)}"
    query = statements[0]
    if not isinstance(query, (exp.Query, exp.Values)):
        return f"only SELECT / WITH / VALUES queries are allowed, got '{query.key.upper()}'"
    for node in query.walk():
        if isinstance(node, writes):
            return f"only queries are allowed: '{node.key.upper()}' inside the query"
        if isinstance(node, exp.Select) and (node.args.get("into") or node.args.get("locks")):
            return "only queries are allowed: SELECT ... INTO / FOR UPDATE"
        if isinstance(node, exp.Func):
            name = (node.name if isinstance(node, exp.Anonymous) else node.sql_name()).lower()
            if name in DENIED_FUNCTIONS[dialect] or name.startswith(_DENIED_PREFIXES[dialect]):
                return f"function {name}() is not allowed"
        if dialect == "duckdb" and isinstance(node, exp.Table) and re.search(r"[./\\]", node.name or ""):
            return f"reading the file '{node.name}' is not allowed"
    return None


def execute_here(db: str | Path, sql: str, *, timeout_s: float = 1.0, max_rows: int = 10_000,
                 keep_open: bool = False) -> ExecResult:
    """One read-only query on whichever engine `db` names, in this process; never raises."""
    engine = kind(db)
    if engine == "sqlite":
        from sqltune.sql.execute import execute

        return execute(db, sql, timeout_s=timeout_s, max_rows=max_rows, keep_open=keep_open)
    sql = clean_sql(sql)
    if problem := query_problem(sql, engine):
        return ExecResult(error=f"ValueError: {problem}")
    if engine == "postgres":
        from sqltune.sql import postgres

        return postgres.execute(str(db), sql, timeout_s=timeout_s, max_rows=max_rows, keep_open=keep_open)
    from sqltune.sql import duck

    return duck.execute(duckdb_path(db), sql, timeout_s=timeout_s, max_rows=max_rows, keep_open=keep_open)
