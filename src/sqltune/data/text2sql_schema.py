"""A text2sql-data set's schema and database (text2sql_data.py reads its questions): `-schema.csv`
as CREATE TABLE text with keys (foreign keys inferred: the CSVs don't list them), and its SQLite
file found beside the JSON and reconciled with the CSV (see text2sql_data.py for why)."""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import logging
import re
import shutil
import sqlite3
from pathlib import Path

from sqltune.data.schema import quote
from sqltune.errors import DataError

log = logging.getLogger(__name__)


# ---- schema: the -schema.csv as CREATE TABLE text ------------------------------------------------


@dataclasses.dataclass
class _Table:
    name: str
    columns: list[tuple[str, str]] = dataclasses.field(default_factory=list)  # (name, declared type)
    primary: list[str] = dataclasses.field(default_factory=list)
    references: list[tuple[str, str, str]] = dataclasses.field(default_factory=list)  # (column, table, column)


def read_schema_csv(path: Path) -> list[_Table]:
    """Tables of a `-schema.csv` (Table Name, Field Name, Is Primary Key, Is Foreign Key, Type), in
    file order, with inferred foreign keys (module doc).

    Raises:
        DataError: the file is missing, has no header of that shape, or a line lacks a field.
    """
    if not path.is_file():
        raise DataError(f"{path}: no such schema file (text2sql-data keeps <name>-schema.csv beside <name>.json)")
    tables: dict[str, _Table] = {}
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f, skipinitialspace=True)
        header = [h.strip().lower() for h in next(reader, [])]
        if header[:2] != ["table name", "field name"] or len(header) < 5:
            raise DataError(f"{path}: expected the header 'Table Name, Field Name, Is Primary Key, Is Foreign Key, "
                            f"Type', got {', '.join(header) or 'nothing'}")
        # advising's header says "Type" third, and its lines are MySQL's DESCRIBE output:
        # Field, Type, Null, Key (PRI = primary), Default, Extra
        describe = header[2] == "type"
        for line_no, cells in enumerate(reader, 2):
            cells = [c.strip() for c in cells]
            if not any(cells) or cells[0] == "-":  # blank line or the "-, -, -, -, -" table separator
                continue
            if len(cells) < 5:
                raise DataError(f"{path} line {line_no}: expected 5 fields, got {len(cells)}: {', '.join(cells)}")
            if describe:
                table, column, type_, _, key = cells[:5]
                primary = key.upper() == "PRI"
            else:
                table, column, is_pk, _, type_ = cells[:5]
                primary = is_pk.lower() in ("y", "yes", "true")
            t = tables.setdefault(table.lower(), _Table(table))
            t.columns.append((column, "" if type_ == "-" else type_))
            if primary:
                t.primary.append(column)
    _infer_references(list(tables.values()))
    return list(tables.values())


def _infer_references(tables: list[_Table]) -> None:
    """A column references table T when it is named `<T>ID` / `<T>_ID` and T has that column or
    ID (COURSE_ID -> COURSE), else when it is named as T's one-column primary key (the first such
    T in the file: CITY_NAME -> GEOGRAPHIC), unless that name is a bare ID."""
    by_pk: dict[str, _Table] = {}
    for t in tables:
        if len(t.primary) == 1:
            by_pk.setdefault(t.primary[0].lower(), t)
    by_name = {t.name.lower(): t for t in tables}
    for t in tables:
        for column, _ in t.columns:
            key = column.lower()
            named = by_name.get(re.sub(r"_?id$", "", key)) if key.endswith("id") else None
            if named is not None and named is not t:
                have = {c.lower(): c for c, _ in named.columns}
                if key in have or "id" in have:
                    t.references.append((column, named.name, have.get(key) or have["id"]))
                    continue
            target = by_pk.get(key) if key != "id" else None  # a bare ID is every table's own
            if target is not None and target is not t:
                t.references.append((column, target.name, target.primary[0]))


def create_tables(tables: list[_Table]) -> str:
    """The tables as CREATE TABLE statements, laid out as `schema.render` lays out a SQLite file's."""
    out = []
    for t in tables:
        lines = [f"{quote(c)} {type_}".rstrip() for c, type_ in t.columns]
        if t.primary:
            lines.append(f"PRIMARY KEY ({', '.join(map(quote, t.primary))})")
        lines += [f"FOREIGN KEY ({quote(c)}) REFERENCES {quote(parent)}({quote(pc)})" for c, parent, pc in t.references]
        out.append(f"CREATE TABLE {quote(t.name)} (\n" + ",\n".join(f"  {line}" for line in lines) + "\n);")
    return "\n".join(out)


# ---- the database: found beside the JSON, reconciled with the CSV ---------------------------------


def find_database(path: Path) -> Path | None:
    """`<name>-db*.sqlite` beside `<name>.json` (the repository names it -db.added-in-2020.sqlite)."""
    found = sorted(p for p in path.parent.glob(f"{path.stem}-db*.sqlite") if p.is_file() and p.stat().st_size > 0)
    return found[0] if found else None


def _renames(db: Path, tables: list[_Table]) -> list[tuple[str, str, str]]:
    """(table, the file's column name, the CSV's) for each column the two name differently at the
    same place: the columns only one side has, paired in order, when both sides have as many."""
    conn = sqlite3.connect(db.resolve().as_uri() + "?mode=ro&immutable=1", uri=True)
    try:
        out = []
        for t in tables:
            info = conn.execute(f"PRAGMA table_info({quote(t.name)})").fetchall()
            mine = [r[1] for r in info]
            if not mine:
                continue
            theirs = [c for c, _ in t.columns]
            only_db = [c for c in mine if c.lower() not in {x.lower() for x in theirs}]
            only_csv = [c for c in theirs if c.lower() not in {x.lower() for x in mine}]
            if only_db and len(only_db) == len(only_csv):
                out += [(t.name, a, b) for a, b in zip(only_db, only_csv)]
        return out
    except sqlite3.Error as e:
        raise DataError(f"{db}: not a readable SQLite database ({e})") from None
    finally:
        conn.close()


def reconciled_database(db: Path, tables: list[_Table], cache_dir: Path) -> Path:
    """`db` itself when it names every column as the CSV does, else a copy under `cache_dir` with
    the differing columns renamed (built once per file version; an atomic rename lands it)."""
    renames = _renames(db, tables)
    if not renames:
        return db.resolve()
    stat = db.stat()
    key = hashlib.sha256(f"{db.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{renames}".encode()).hexdigest()[:12]
    target = cache_dir / f"{db.stem}-{key}.sqlite"
    if not target.is_file():
        cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(".building")
        shutil.copyfile(db, tmp)
        conn = sqlite3.connect(tmp)
        try:
            for table, old, new in renames:
                conn.execute(f"ALTER TABLE {quote(table)} RENAME COLUMN {quote(old)} TO {quote(new)}")
            conn.commit()
        finally:
            conn.close()
        tmp.replace(target)
    log.info("%s: columns renamed to the schema CSV's names in a copy (%s)", db.name,
             ", ".join(f"{t}.{a} -> {b}" for t, a, b in renames))
    return target
