"""The schema text of a SQLite file, rendered from the file itself: CREATE TABLE statements, and
optionally a few rows of each table as a SQL comment.

Benchmarks (Spider, BIRD) ship databases, not prompts, so the model's `input` is written here from
what SQLite reports (`PRAGMA table_info`, `PRAGMA foreign_key_list`), never from the DDL a database
happens to have been created with. The same database always renders the same text:

    CREATE TABLE singer (
      singer_id INTEGER,
      name TEXT,
      PRIMARY KEY (singer_id),
      FOREIGN KEY (stadium_id) REFERENCES stadium(stadium_id)
    );
    /* 2 rows of singer:
    singer_id | name
    1 | Joe Sharp
    2 | Timbaland
    */

Column types are kept as declared (`varchar(20)`, `int`, none at all). Names that are not plain
identifiers, or that SQLite reserves (`order`, `group`), are double-quoted: BIRD has tables and
columns such as "Free Meal Count (K-12)". Files are opened read-only and immutable, as
`sqltune.sql.execute` opens them, so reading never writes a journal next to a benchmark database.
"""

from __future__ import annotations

import dataclasses
import functools
import re
import sqlite3
from collections.abc import Sequence
from pathlib import Path

from sqltune.errors import DataError
from sqltune.sql import ddl

CELL_CHARS = 40  # a sample cell longer than this is cut, with "…"

_PLAIN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Keywords SQLite refuses as a bare table or column name (checked one by one against SQLite 3.40);
# the other ~80 keywords (key, first, left, ...) fall back to identifiers and stay unquoted.
_RESERVED = frozenset("""
    add all alter and as autoincrement between case cast check collate commit constraint create
    current_date current_time current_timestamp default deferrable delete distinct drop else escape
    except exists foreign from group having if in index insert intersect into is isnull join limit
    not nothing notnull null on or order primary raise references returning select set table then
    to transaction union unique update using values when where
""".split())


@dataclasses.dataclass(frozen=True)
class TableSchema:
    name: str
    ddl: str  # one normalised CREATE TABLE statement, ending in ';'
    columns: tuple[str, ...]
    references: tuple[str, ...]  # tables its foreign keys point to, in declaration order


def quote(name: str) -> str:
    """`name` as SQLite reads it: bare when plain and not reserved, else in double quotes."""
    if _PLAIN.fullmatch(name) and name.lower() not in _RESERVED:
        return name
    return '"' + name.replace('"', '""') + '"'


def _connect(db_path: Path) -> sqlite3.Connection:
    # as_uri() percent-encodes the path, so '?', '#' or spaces in it cannot smuggle URI options.
    return sqlite3.connect(db_path.resolve().as_uri() + "?mode=ro&immutable=1", uri=True)


def _file_key(db_path: str | Path) -> tuple[str, int, int]:
    path = Path(db_path).expanduser()
    if not path.is_file():
        raise DataError(f"{db_path}: no such database file")
    stat = path.stat()
    return str(path.resolve()), stat.st_mtime_ns, stat.st_size


def read_schema(db_path: str | Path) -> list[TableSchema]:
    """Every table of the SQLite file, in `sqlite_master` order; cached per (path, mtime, size).

    Raises:
        DataError: the file is missing, unreadable or not a SQLite database.
    """
    return list(_read_schema(*_file_key(db_path)))


@functools.lru_cache(maxsize=256)
def _read_schema(path: str, mtime_ns: int, size: int) -> tuple[TableSchema, ...]:
    try:
        conn = _connect(Path(path))
        try:
            names = [r[0] for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'"
            )]
            return tuple(_table(conn, name) for name in names)
        finally:
            conn.close()
    except sqlite3.Error as e:  # "file is not a database", "unable to open database file", ...
        raise DataError(f"{path}: not a readable SQLite database ({e})") from None


def _table(conn: sqlite3.Connection, name: str) -> TableSchema:
    q = quote(name)
    info = list(conn.execute(f"PRAGMA table_info({q})"))  # cid, name, type, notnull, default, pk
    columns = tuple(r[1] for r in info)
    lines = [f"{quote(col)} {type_}".rstrip() for _, col, type_, *_ in info]
    pk = [r[1] for r in sorted((r for r in info if r[5]), key=lambda r: r[5])]
    if pk:
        lines.append(f"PRIMARY KEY ({', '.join(map(quote, pk))})")
    references = []
    for parent, src, dst in _foreign_keys(conn, name):
        ref = f"{quote(parent)}({', '.join(map(quote, dst))})" if dst else quote(parent)
        lines.append(f"FOREIGN KEY ({', '.join(map(quote, src))}) REFERENCES {ref}")
        if parent not in references:
            references.append(parent)
    ddl = f"CREATE TABLE {q} (\n" + ",\n".join(f"  {line}" for line in lines) + "\n);"
    return TableSchema(name=name, ddl=ddl, columns=columns, references=tuple(references))


def _foreign_keys(conn: sqlite3.Connection, table: str) -> list[tuple[str, list[str], list[str]]]:
    """(parent table, child columns, parent columns) per foreign key, in declaration order."""
    keys: dict[int, tuple[str, list[str], list[str | None]]] = {}
    for id_, _, parent, src, dst, *_ in conn.execute(f"PRAGMA foreign_key_list({quote(table)})"):
        keys.setdefault(id_, (parent, [], []))
        keys[id_][1].append(src)
        keys[id_][2].append(dst)
    out = []
    for id_ in sorted(keys, reverse=True):  # SQLite numbers them last-declared first
        parent, src, dst = keys[id_]
        if None in dst:  # `REFERENCES stadium` alone means the parent's primary key
            pk = sorted((r for r in conn.execute(f"PRAGMA table_info({quote(parent)})") if r[5]), key=lambda r: r[5])
            dst = [r[1] for r in pk] if len(pk) == len(src) else []
        out.append((parent, src, dst))
    return out


def _find_table(db_path: str | Path, table: str) -> TableSchema:
    tables = read_schema(db_path)
    for t in tables:
        if t.name.lower() == table.lower():  # SQLite names are case-insensitive
            return t
    raise DataError(f"{db_path}: no table '{table}' (has: {', '.join(t.name for t in tables) or 'none'})")


def _cell(value: object) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    text = " ".join(str(value).split()).replace("*/", "* /")  # one line; never ends the comment
    return text if len(text) <= CELL_CHARS else text[: CELL_CHARS - 1] + "…"


def sample_rows(db_path: str | Path, table: str, n: int, *, columns: Sequence[str] | None = None) -> str:
    """Up to `n` rows of `table` as a SQL comment ("" when n is 0); `columns` limits what is shown.

    Raises:
        DataError: the file is not a SQLite database, or has no such table.
    """
    if n <= 0:
        return ""
    schema = _find_table(db_path, table)
    columns = list(columns or schema.columns)
    select = ", ".join(map(quote, columns))
    try:
        conn = _connect(Path(db_path))
        try:
            rows = conn.execute(f"SELECT {select} FROM {quote(schema.name)} LIMIT ?", (n,)).fetchall()
        finally:
            conn.close()
    except sqlite3.Error as e:
        raise DataError(f"{db_path}: could not read rows of '{schema.name}' ({e})") from None
    return rows_comment(schema.name, columns, rows)


def rows_comment(table: str, columns: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Rows of a table as the SQL comment the prompt shows after its CREATE TABLE."""
    lines = [" | ".join(map(_cell, columns))] + [" | ".join(map(_cell, row)) for row in rows]
    return f"/* {len(rows)} row{'s' * (len(rows) != 1)} of {quote(table)}:\n" + "\n".join(lines) + "\n*/"


def render(db_path: str | Path, sample_rows: int = 0, tables: Sequence[str] | None = None) -> str:
    """The CREATE TABLE statement of every table (or of `tables`, in schema order), one per block,
    each followed by `sample_rows` rows of it as a comment when that is above 0.

    Raises:
        DataError: the file is not a SQLite database, or `tables` names a table it lacks.
    """
    schema = read_schema(db_path)
    if tables is not None:
        wanted = {_find_table(db_path, t).name for t in tables}
        schema = [t for t in schema if t.name in wanted]
    blocks = []
    for t in schema:
        blocks.append(t.ddl)
        if sample_rows > 0:
            blocks.append(_sample(db_path, t.name, sample_rows))
    return "\n".join(blocks)


_sample = sample_rows  # `render`'s argument shadows the function's name inside it


# ---- sample rows for schema text written elsewhere -----------------------------------------------


def add_sample_rows(schema_text: str, db_path: str | Path, n: int) -> str:
    """`schema_text` with a sample-rows comment after each CREATE TABLE whose table is in the db.

    For prompts whose schema was not rendered here (the generator's, which may show only some of
    a table's columns): the comment shows the columns the statement declares, or all of them when
    it declares one the table lacks. Everything else in the text is kept byte for byte; a
    statement that is not a readable CREATE TABLE, or names a table the db lacks, stays as it is.

    Raises:
        DataError: `db_path` is missing or not a SQLite database.
    """
    if n <= 0:
        return schema_text
    known = {t.name.lower(): t for t in read_schema(db_path)}
    out, start = [], 0
    for statement in ddl.statements(schema_text):
        table = known.get(statement.table.lower()) if statement.parsed else None
        if table is None:
            continue
        out.append(schema_text[start:statement.ddl_end])
        have = {c.lower(): c for c in table.columns}
        declared = statement.column_names
        shown = [have[c.lower()] for c in declared] if all(c.lower() in have for c in declared) else None
        out.append("\n" + sample_rows(db_path, table.name, n, columns=shown or None))
        start = statement.ddl_end
    return "".join(out) + schema_text[start:]
