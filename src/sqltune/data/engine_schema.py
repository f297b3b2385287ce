"""The schema text of a PostgreSQL database or a DuckDB file, in the form data/schema.py renders a
SQLite file's: one CREATE TABLE per table (in creation order), each column with its declared type,
then the PRIMARY KEY and each FOREIGN KEY ... REFERENCES, as the server reports them
(`pg_get_constraintdef`, `duckdb_constraints()`). On PostgreSQL the tables are those of the
connection's current schema (the first of its search_path; `sqltune copy-db` sets one per
database). Read through a read-only connection. `add_sample_rows` adds a few rows per table
(format.sample_rows), read through the sandbox like any query.
"""

from __future__ import annotations

import functools

from sqltune.data.schema import quote, rows_comment
from sqltune.errors import DataError
from sqltune.sql import ddl, engine, sandbox


def render(db: str) -> str:
    """CREATE TABLE statements of every table of `db` (a PostgreSQL reference or a DuckDB file).

    Raises:
        DataError: the database can't be reached or read, naming it (password hidden).
    """
    try:
        tables = _postgres(db) if engine.kind(db) == "postgres" else _duckdb(engine.duckdb_path(db))
    except Exception as e:  # noqa: BLE001 - any driver error: one line naming the database
        raise DataError(f"{engine.display(db)}: could not read its schema ({type(e).__name__}: "
                        f"{engine.display(str(e).strip().splitlines()[0] if str(e).strip() else '')})") from None
    if not tables:
        raise DataError(f"{engine.display(db)}: no tables")
    return "\n".join(_ddl(name, columns, keys) for name, columns, keys in tables)


def _ddl(name: str, columns: list[tuple[str, str]], keys: list[str]) -> str:
    lines = [f"{quote(col)} {type_}".rstrip() for col, type_ in columns] + keys
    return f"CREATE TABLE {quote(name)} (\n" + ",\n".join(f"  {line}" for line in lines) + "\n);"


@functools.lru_cache(maxsize=64)
def _postgres(db: str) -> list[tuple[str, list[tuple[str, str]], list[str]]]:
    import psycopg

    with psycopg.connect(db, connect_timeout=10) as conn:
        conn.read_only = True
        columns = conn.execute(
            "SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a "
            "JOIN pg_class c ON a.attrelid = c.oid WHERE c.relnamespace = current_schema()::regnamespace "
            "AND c.relkind IN ('r', 'p', 'v') AND a.attnum > 0 AND NOT a.attisdropped ORDER BY c.oid, a.attnum").fetchall()
        keys = conn.execute(
            "SELECT conrelid::regclass::text, pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE connamespace = current_schema()::regnamespace AND contype IN ('p', 'f') "
            "ORDER BY contype DESC, oid").fetchall()
        conn.rollback()
    return _grouped(columns, keys)


@functools.lru_cache(maxsize=64)
def _duckdb(path: str) -> list[tuple[str, list[tuple[str, str]], list[str]]]:
    import duckdb

    conn = duckdb.connect(path, read_only=True, config={"enable_external_access": False})
    try:
        columns = conn.execute("SELECT table_name, column_name, data_type FROM duckdb_columns() "
                               "WHERE schema_name = current_schema() AND NOT internal "
                               "ORDER BY table_oid, column_index").fetchall()
        keys = conn.execute("SELECT table_name, constraint_text FROM duckdb_constraints() "
                            "WHERE schema_name = current_schema() AND constraint_type IN ('PRIMARY KEY', 'FOREIGN KEY') "
                            "ORDER BY table_oid, constraint_type DESC, constraint_index").fetchall()
    finally:
        conn.close()
    return _grouped(columns, keys)


def _grouped(columns: list[tuple], keys: list[tuple]) -> list[tuple[str, list[tuple[str, str]], list[str]]]:
    tables: dict[str, tuple[list[tuple[str, str]], list[str]]] = {}
    for table, column, type_ in columns:
        tables.setdefault(table, ([], []))[0].append((column, type_))
    for table, text in keys:
        table = table.split(".")[-1].strip('"')  # regclass text may be schema-qualified and quoted
        if table in tables:
            tables[table][1].append(text)
    return [(name, cols, keys) for name, (cols, keys) in tables.items()]


@functools.lru_cache(maxsize=256)  # rows of one database share their schema text: read its rows once
def add_sample_rows(schema_text: str, db: str, n: int) -> str:
    """`schema_text` with up to `n` rows of each CREATE TABLE's table after it, as a comment (the
    columns the statement declares), read from the PostgreSQL or DuckDB database `db` through the
    sandbox; a statement whose table the database can't answer for stays as it is."""
    if n <= 0:
        return schema_text
    out, start = [], 0
    for statement in ddl.statements(schema_text):
        columns = statement.column_names if statement.parsed else []
        if not columns:
            continue
        names = ", ".join('"' + c.replace('"', '""') + '"' for c in columns)
        run = sandbox.execute(db, f'SELECT {names} FROM "{statement.table.replace(chr(34), chr(34) * 2)}" LIMIT {int(n)}')
        if not run.ok:
            continue
        out.append(schema_text[start:statement.ddl_end])
        out.append("\n" + rows_comment(statement.table, columns, run.rows))
        start = statement.ddl_end
    return "".join(out) + schema_text[start:]
