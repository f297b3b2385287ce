"""The tables of CREATE TABLE text, read with sqlglot in any dialect it knows."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

import sqlglot
from sqlglot import exp

DDL_DIALECTS = ("mysql", "sqlite", None, "postgres", "tsql")  # tried in order, per statement

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


def _kind(dtype: exp.DataType | None) -> str:
    name = getattr(dtype.this, "name", "") if dtype is not None else ""
    if "INT" in name or name in ("BOOLEAN", "BIT", "SERIAL", "BIGSERIAL"):
        return "int"
    if any(s in name for s in ("FLOAT", "DOUBLE", "DECIMAL", "NUMERIC", "REAL", "MONEY", "NUMBER")):
        return "real"
    return "datetime" if "TIMESTAMP" in name or name == "DATETIME" else "date" if name == "DATE" else "text"


def _reference(ref: exp.Reference) -> Key:
    target = ref.this
    if isinstance(target, exp.Schema):
        return target.this.name.lower(), (target.expressions[0].name.lower() if target.expressions else "")
    return target.name.lower(), ""


def _table(create: exp.Create) -> Table:
    cols: dict[str, Column] = {}
    for d in create.this.expressions:
        if isinstance(d, exp.ColumnDef):
            dtype = d.args.get("kind")
            col = Column(d.name, dtype.sql(dialect="sqlite") if dtype else "", _kind(dtype))
            for kind in (c.args.get("kind") for c in d.args.get("constraints") or []):
                col.not_null |= isinstance(kind, exp.NotNullColumnConstraint)
                col.unique |= isinstance(kind, (exp.PrimaryKeyColumnConstraint, exp.UniqueColumnConstraint))
                col.ref = _reference(kind) if isinstance(kind, exp.Reference) else col.ref
            cols[d.name.lower()] = col
    for d in create.this.expressions:  # table constraints: PRIMARY KEY (a), UNIQUE (a), FOREIGN KEY
        names = [i.name.lower() for i in d.find_all(exp.Identifier)]
        if isinstance(d, (exp.PrimaryKey, exp.UniqueColumnConstraint)) and len(names) == 1 and names[0] in cols:
            cols[names[0]].unique = True
        ref = d.args.get("reference") if isinstance(d, exp.ForeignKey) else None
        if isinstance(ref, exp.Reference) and d.expressions and (mine := d.expressions[0].name.lower()) in cols:
            cols[mine].ref = _reference(ref)
    if not any(c.unique for c in cols.values()):  # no key declared (typical of Text-to-sql-v1):
        name = create.this.this.name.lower()  # take id, <table>_id or <singular table>_id as one
        for guess in ("id", f"{name}_id", f"{name.rstrip('s')}_id"):
            if guess in cols:
                cols[guess].unique = True
                break
    return Table(create.this.this.name, cols)


def parse_schema(text: str) -> dict[str, Table] | None:
    """Tables (by lower-case name) of the CREATE TABLE statements in `text`, or None if none parses.
    Each statement is read by the first of `DDL_DIALECTS` that makes it a CREATE TABLE; other
    statements (INSERT, CREATE INDEX, comments) are skipped."""
    tables: dict[str, Table] = {}
    logger = logging.getLogger("sqlglot")
    level = logger.level
    logger.setLevel(logging.ERROR)  # quiet "falling back to parsing as a 'Command'" warnings
    try:
        for stmt in re.split(r";\s*(?=\S)", text.strip()):
            for dialect in DDL_DIALECTS:
                try:
                    tree = sqlglot.parse_one(stmt.strip().rstrip(";"), read=dialect)
                except Exception:  # noqa: BLE001, S112 - ParseError, TokenError: try the next dialect
                    continue
                if isinstance(tree, exp.Create) and tree.kind == "TABLE" and isinstance(tree.this, exp.Schema):
                    table = _table(tree)
                    if table.name and table.columns:
                        tables[table.name.lower()] = table
                    break
    finally:
        logger.setLevel(level)
    return tables or None
