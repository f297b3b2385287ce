"""A SQLite database copied into DuckDB or PostgreSQL, so that the same questions can be scored on
another engine (`sqltune copy-db`; bench/sqlexec.py --engines).

    to_duckdb(src, folder)          -> folder/<name>.duckdb
    to_postgres(src, url)           -> the URL with search_path set to a schema named after the file

Tables keep their names and columns; each column's type follows SQLite's affinity of its declared
type (INTEGER, REAL, TEXT, NUMERIC; BLOB columns become BYTEA/BLOB), and falls back to text when a
stored value doesn't fit it (Spider's SQLite files hold '' in integer columns, for instance), so the
copy keeps every value. Keys and constraints are not copied: the data may break them, and queries
don't need them. Only data leaves the SQLite file, through Python's sqlite3 (DuckDB's sqlite
extension would need a download).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sqltune.data import schema as sqlite_schema

_TYPES = {  # SQLite affinity -> (DuckDB type, PostgreSQL type, the Python types that fit it)
    "INTEGER": ("BIGINT", "BIGINT", (int,)),
    "REAL": ("DOUBLE", "DOUBLE PRECISION", (int, float)),
    "NUMERIC": ("DOUBLE", "DOUBLE PRECISION", (int, float)),
    "TEXT": ("VARCHAR", "TEXT", (str,)),
    "BLOB": ("BLOB", "BYTEA", (bytes,)),
}


def affinity(declared: str) -> str:
    """SQLite's column affinity of a declared type (https://sqlite.org/datatype3.html, 3.1)."""
    t = declared.upper()
    if "INT" in t:
        return "INTEGER"
    if any(s in t for s in ("CHAR", "CLOB", "TEXT")):
        return "TEXT"
    if "BLOB" in t or not t:
        return "BLOB" if "BLOB" in t else "TEXT"  # no declared type: anything goes, kept as text
    if any(s in t for s in ("REAL", "FLOA", "DOUB")):
        return "REAL"
    return "NUMERIC"


def quote_name(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def tables(src: Path) -> list[tuple[str, list[tuple[str, str]], list[tuple]]]:
    """Each table of the SQLite file: (name, [(column, affinity)], rows), the affinity relaxed to
    TEXT where a stored value doesn't fit the declared one."""
    out = []
    conn = sqlite3.connect(Path(src).resolve().as_uri() + "?mode=ro&immutable=1", uri=True)
    conn.text_factory = lambda b: b.decode("utf-8", errors="replace")
    try:
        for table in sqlite_schema.read_schema(src):  # its tables, as the prompts name them
            info = conn.execute(f"PRAGMA table_info({quote_name(table.name)})").fetchall()
            columns = [(col, affinity(declared or "")) for _, col, declared, *_ in info]
            rows = conn.execute(f"SELECT * FROM {quote_name(table.name)}").fetchall()
            for i, (name, kind) in enumerate(columns):
                fits = _TYPES[kind][2]
                if any(row[i] is not None and not isinstance(row[i], fits) for row in rows):
                    columns[i] = (name, "TEXT")
            rows = [tuple(_as(v, kind) for v, (_, kind) in zip(row, columns)) for row in rows]
            out.append((table.name, columns, rows))
    finally:
        conn.close()
    return out


def _as(value: Any, kind: str) -> Any:
    if value is None:
        return None
    if kind == "TEXT" and not isinstance(value, str):
        return value.hex() if isinstance(value, bytes) else str(value)
    if kind in ("REAL", "NUMERIC"):
        return float(value)
    return value


def to_duckdb(src: Path, folder: Path) -> Path:
    """`src` as `folder/<stem>.duckdb` (replaced if it exists)."""
    import duckdb

    folder.mkdir(parents=True, exist_ok=True)
    dst = folder / f"{Path(src).stem}.duckdb"
    dst.unlink(missing_ok=True)
    conn = duckdb.connect(str(dst))
    try:
        for name, columns, rows in tables(src):
            conn.execute(f"CREATE TABLE {quote_name(name)} ("
                         + ", ".join(f"{quote_name(c)} {_TYPES[k][0]}" for c, k in columns) + ")")
            if rows:
                conn.executemany(f"INSERT INTO {quote_name(name)} VALUES ({', '.join('?' * len(columns))})", rows)
    finally:
        conn.close()
    return dst


def to_postgres(src: Path, url: str, schema: str | None = None) -> str:
    """`src`'s tables into the schema `schema` (default: the file's stem) of the PostgreSQL database
    at `url` (a role that may create schemas; the schema is replaced), read access granted to
    PUBLIC; returns `url` with that schema as its search_path."""
    import psycopg

    schema = schema or Path(src).stem
    with psycopg.connect(url, autocommit=False) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {quote_name(schema)} CASCADE")
        conn.execute(f"CREATE SCHEMA {quote_name(schema)}")
        conn.execute(f"GRANT USAGE ON SCHEMA {quote_name(schema)} TO PUBLIC")
        for name, columns, rows in tables(src):
            target = f"{quote_name(schema)}.{quote_name(name)}"
            conn.execute(f"CREATE TABLE {target} (" + ", ".join(f"{quote_name(c)} {_TYPES[k][1]}" for c, k in columns) + ")")
            with conn.cursor().copy(f"COPY {target} FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
            conn.execute(f"GRANT SELECT ON {target} TO PUBLIC")
        conn.commit()
    return search_path_url(url, schema)


def search_path_url(url: str, schema: str) -> str:
    """`url` (a libpq URL or DSN) with `schema` as its search_path."""
    if "://" in url:
        return f"{url}{'&' if '?' in url else '?'}options={quote(f'-c search_path={schema}', safe='{}')}"
    return f"{url} options='-c search_path={schema}'"
