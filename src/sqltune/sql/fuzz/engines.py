"""Fuzzed databases on DuckDB or PostgreSQL: where the model writes that engine's SQL
(`format.dialect`) and no database ships, its queries are judged by the engine they are written
for, not by SQLite.

    fuzz_databases(schema, gold, cache_dir=cache, on="duckdb")                  # .duckdb files
    fuzz_databases(schema, gold, cache_dir=cache, on="postgresql://me@/fuzz")   # schemas on that server

The data are SQLite's fuzzed databases (databases.py), drawn from the gold transpiled to SQLite's
SQL (sqlglot), then copied as they are (`copy_db`): the same rows, whatever the engine. A gold that
sqlglot can't say in SQLite's SQL, or that fails on the copy, gives no verdict, as a gold failing
on SQLite does. DuckDB copies are files beside the SQLite ones, written to a temporary name and
renamed. PostgreSQL copies are schemas `fuzz_<hash>_<i>` of the database the URL names, loaded
once (the URL's role must be able to create schemas; predictions then run read-only, in the
sandbox, through the same URL).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from sqltune.sql import copy_db, engine
from sqltune.sql.sandbox import execute

LOCAL = ("sqlite", "duckdb")  # engines that need no server: named by these words in `on`


def dialect(on: str) -> str:
    """sqlglot's name of the SQL that engine `on` runs ("sqlite", "duckdb" or a PostgreSQL URL)."""
    if on in LOCAL:
        return on
    if engine.kind(on) != "postgres":
        raise ValueError(f"fuzzed databases go on sqlite, duckdb or a PostgreSQL URL, not {engine.display(on)!r}")
    return "postgres"


def _duckdb_copy(lite: Path) -> str:
    dst = lite.with_suffix(".duckdb")
    if not dst.is_file():
        with tempfile.TemporaryDirectory(dir=lite.parent, prefix=".duckdb-") as tmp:
            made = copy_db.to_duckdb(lite, Path(tmp))
            made.replace(dst)  # atomic: a reader sees a whole copy or none
    return str(dst)


_LOADED: set[str] = set()  # PostgreSQL copies this process has loaded or found (server, schema)


def _postgres_copy(lite: Path, url: str) -> str:
    import psycopg

    schema = "fuzz_" + lite.stem.replace("-", "_")
    copy = copy_db.search_path_url(url, schema)
    if copy not in _LOADED:
        with psycopg.connect(url, autocommit=True) as conn:
            # ranks or processes scoring at once: one loads the schema, the others wait and find it
            conn.execute("SELECT pg_advisory_lock(hashtext(%s))", (schema,))
            try:
                if not conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,)).fetchone():
                    copy_db.to_postgres(lite, url, schema=schema)
            finally:
                conn.execute("SELECT pg_advisory_unlock(hashtext(%s))", (schema,))
        _LOADED.add(copy)
    return copy


def copy(lite: Path, on: str) -> str:
    """The SQLite database `lite` on engine `on` (made once)."""
    return _duckdb_copy(lite) if on == "duckdb" else _postgres_copy(lite, on)


_CHECKED: dict[tuple[tuple[str, ...], str], bool] = {}  # (copies, gold) -> the gold runs on each


def copies(lites: list[Path], gold: str, on: str) -> list[str] | None:
    """The SQLite databases `lites` on engine `on`; None when `gold` fails on a copy (checked once
    a process: scoring asks again for every prediction)."""
    dbs = tuple(copy(p, on) for p in lites)
    if (dbs, gold) not in _CHECKED:
        _CHECKED[dbs, gold] = all(execute(db, gold).ok for db in dbs)
    return list(dbs) if _CHECKED[dbs, gold] else None
