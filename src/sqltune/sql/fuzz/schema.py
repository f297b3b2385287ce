"""The tables of CREATE TABLE text (read by sql/ddl.py) as fuzzing needs them: kinds of values, keys, references."""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqltune.sql import ddl

Value = int | float | str | None
Key = tuple[str, str]  # (table, column), lower case
DATE = re.compile(r"(\d{4})-(\d{2})-(\d{2})((?:[ T]\d{2}:\d{2}(?::\d{2})?)?)")


@dataclass
class Column:
    name: str  # as written in the DDL
    decl: str  # declared type in SQLite form, "" when none
    kind: str  # int, real, date, datetime or text
    not_null: bool = False
    unique: bool = False
    ref: Key | None = None  # REFERENCES table(column); column "" when not named


@dataclass
class Table:
    name: str
    columns: dict[str, Column]  # by lower-case name


# ----------------------------------------------------------------------------- schema


def _kind(type_name: str) -> str:
    if "INT" in type_name or type_name in ("BOOLEAN", "BIT", "SERIAL", "BIGSERIAL"):
        return "int"
    if any(s in type_name for s in ("FLOAT", "DOUBLE", "DECIMAL", "NUMERIC", "REAL", "MONEY", "NUMBER")):
        return "real"
    return "datetime" if "TIMESTAMP" in type_name or type_name == "DATETIME" else "date" if type_name == "DATE" else "text"


def _table(statement: ddl.Statement) -> Table:
    cols = {c.name.lower(): Column(c.name, c.decl, _kind(c.type_name), c.not_null, c.unique, c.ref)
            for c in statement.columns}
    if not any(c.unique for c in cols.values()):  # no key declared (typical of Text-to-sql-v1):
        name = statement.table.lower()  # take id, <table>_id or <singular table>_id as one
        for guess in ("id", f"{name}_id", f"{name.rstrip('s')}_id"):
            if guess in cols:
                cols[guess].unique = True
                break
    return Table(statement.table, cols)


def parse_schema(text: str) -> dict[str, Table] | None:
    """Tables (by lower-case name) of the CREATE TABLE statements in `text` that sqlglot reads
    (sql/ddl.py), or None if none does; other statements (INSERT, CREATE INDEX, comments) are skipped."""
    tables = {s.table.lower(): _table(s) for s in ddl.statements(text) if s.parsed and s.columns}
    return tables or None
