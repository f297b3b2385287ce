"""A synthetic domain: its tables (spec.py), rows (values.py), CREATE TABLE text and SQLite file."""

from __future__ import annotations

import hashlib
import os
import random
import sqlite3
import tempfile
from contextlib import closing
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from sqltune.data.synthetic.schemas import SCHEMAS
from sqltune.data.synthetic.spec import Column, Row, Table, parse_domain_spec
from sqltune.data.synthetic.values import make_rows


@dataclass(eq=False)  # compared and hashed by identity: one cached Domain per name
class Domain:
    name: str
    tables: dict[str, Table]
    rows: dict[str, list[Row]]  # table name -> rows
    by_pk: dict[str, dict[int, Row]] = field(default_factory=dict)
    ddl: dict[str, str] = field(default_factory=dict)  # table name -> full CREATE TABLE
    _values: dict[tuple[str, str], list[Any]] = field(default_factory=dict)

    def values(self, table: str, column: str) -> list[Any]:
        """Sorted distinct non-NULL values of one column."""
        key = table, column
        if key not in self._values:
            self._values[key] = sorted({row[column] for row in self.rows[table] if row[column] is not None})
        return self._values[key]

    def parent(self, row: Row, fk: Column) -> Row:
        """The row that `row`'s foreign key `fk` points at."""
        return self.by_pk[fk.gen][row[fk.name]]


# ---- CREATE TABLE text and SQLite files ---------------------------------------------------

def create_table(table: Table, keep: set[str] | None = None) -> str:
    """CREATE TABLE text; with `keep`, only the primary key and those columns."""
    parts = []
    for column in table.columns:
        if keep is not None and column.role != "pk" and column.name not in keep:
            continue
        text = f"{column.name} {column.sql_type}"
        text += " PRIMARY KEY" if column.role == "pk" else "" if column.nullable else " NOT NULL"
        text += f" REFERENCES {column.ref}" if column.ref else ""
        parts.append(text)
    return f"CREATE TABLE {table.name} ({', '.join(parts)});"


@cache
def load_domain(name: str) -> Domain:
    """Parse a domain's schema and make its rows (cached: the same for every caller)."""
    tables = parse_domain_spec(SCHEMAS[name])
    domain = Domain(name, tables, make_rows(tables, random.Random(f"sqltune-{name}")))
    for table in tables.values():
        domain.by_pk[table.name] = {row[table.pk.name]: row for row in domain.rows[table.name]}
        domain.ddl[table.name] = create_table(table)
    return domain


def write_database(domain: Domain, db_dir: Path) -> Path:
    """Write `<db_dir>/<name>.sqlite` unless an identical one is there already.

    The content hash sits in PRAGMA user_version. The file is built under a temporary
    name and moved into place with os.replace, so a process reading it (or another
    process writing it at the same time) never sees half a database.
    """
    path = db_dir / f"{domain.name}.sqlite"
    digest = hashlib.sha256()
    for table in domain.tables.values():
        digest.update(domain.ddl[table.name].encode())
        digest.update(repr(_records(domain, table)).encode())
    version = int(digest.hexdigest()[:7], 16)
    if path.exists() and _user_version(path) == version:
        return path
    fd, tmp = tempfile.mkstemp(prefix=f".{domain.name}-", suffix=".sqlite", dir=db_dir)
    os.close(fd)
    try:
        with closing(sqlite3.connect(tmp)) as con:
            for table in domain.tables.values():
                con.execute(domain.ddl[table.name])
                marks = ", ".join("?" * len(table.columns))
                con.executemany(f"INSERT INTO {table.name} VALUES ({marks})", _records(domain, table))
            con.execute(f"PRAGMA user_version = {version}")
            con.commit()
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def _records(domain: Domain, table: Table) -> list[tuple[Any, ...]]:
    """A table's rows as tuples in column order, as SQLite takes them."""
    return [tuple(row.values()) for row in domain.rows[table.name]]


def _user_version(path: Path) -> int | None:
    try:
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as con:
            version: int = con.execute("PRAGMA user_version").fetchone()[0]
            return version
    except sqlite3.DatabaseError:  # not a database (a damaged or foreign file): rebuild it
        return None
