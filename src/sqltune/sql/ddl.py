"""CREATE TABLE text -> its statements: the one reader of schema text in sqltune.

    for s in statements(row["input"]):    # in text order; s.table is None for text that is no CREATE TABLE
        s.table, s.column_names, s.references, s.text

Pruning keeps and drops whole statements (prune.py), the prompt's sample rows go after each one
(data/schema.py), fuzzing builds databases from their columns, types and keys (sql/fuzz), and
Spider's schema is read from them where SQLite can't run the text (sql/spider_parse.py).

The text is cut at each CREATE TABLE (so statements without `;` between them are found), and
text before the first one, if any, is a statement of its own. Each CREATE TABLE is read by the
first sqlglot dialect of `DIALECTS` that makes it one (MySQL first: read as SQLite, its
`KEY idx (a)` would be a column named KEY), else its names by a regex (`parsed` False: no types
or keys). Each statement keeps its exact text and where it lies in the source.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import re

import sqlglot
from sqlglot import exp

DIALECTS = ("mysql", "sqlite", None, "postgres", "tsql")  # tried in order, per statement

_CREATE = re.compile(r"\bcreate\s+(?:temp(?:orary)?\s+)?table\b", re.IGNORECASE)
_IDENT = r'(?:"[^"]+"|`[^`]+`|\[[^\]]+\]|[^\s(),;.]+)'
_TABLE_NAME = re.compile(rf"table\s+(?:if\s+not\s+exists\s+)?((?:{_IDENT}\s*\.\s*)?{_IDENT})", re.IGNORECASE)
_REFERENCES = re.compile(rf"\breferences\s+((?:{_IDENT}\s*\.\s*)?{_IDENT})", re.IGNORECASE)
_NOT_A_COLUMN = re.compile(r"(constraint|primary|foreign|unique|check)\b", re.IGNORECASE)
_CLOSERS = {"'": "'", '"': '"', "`": "`", "[": "]"}


@dataclasses.dataclass(frozen=True)
class Column:
    name: str  # as written
    decl: str = ""  # declared type in SQLite's spelling, "" when none (or not parsed)
    type_name: str = ""  # sqlglot's type (INT, VARCHAR, DATE, ...), "" when none
    not_null: bool = False
    primary_key: bool = False  # alone in a PRIMARY KEY (column or table constraint)
    unique: bool = False  # PRIMARY KEY or UNIQUE, alone
    ref: tuple[str, str] | None = None  # REFERENCES (table, column), lower case; column "" when not named


@dataclasses.dataclass(frozen=True)
class ForeignKey:
    columns: tuple[str, ...]  # as written
    table: str
    to: tuple[str, ...]  # the referenced columns; () when not named


@dataclasses.dataclass(frozen=True)
class Statement:
    table: str | None  # None: not a CREATE TABLE (a preamble, a comment)
    columns: tuple[Column, ...]
    references: tuple[str, ...]  # the tables its foreign keys point to, in text order, as written
    text: str  # the statement's text, stripped, up to the next CREATE TABLE
    start: int = 0  # where `text` starts in the source
    ddl_end: int = 0  # just past the CREATE TABLE itself in the source: its `;`, else its last character
    parsed: bool = False  # read by sqlglot (types, keys); False: names by regex, or no CREATE TABLE
    primary_key: tuple[str, ...] = ()  # the PRIMARY KEY's columns (one column's or the table's), as written
    foreign_keys: tuple[ForeignKey, ...] = ()  # every REFERENCES, column-level and table-level, in text order

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)


def statements(text: str) -> list[Statement]:
    """The statements of `text`, in order (see module doc)."""
    return list(_statements(text))


@functools.lru_cache(maxsize=4096)
def _statements(text: str) -> tuple[Statement, ...]:
    starts = [m.start() for m in _CREATE.finditer(text)]
    bounds = [0, *starts] if starts and starts[0] > 0 else starts or [0]
    out = []
    for a, b in zip(bounds, [*bounds[1:], len(text)]):
        raw = text[a:b]
        piece = raw.strip()
        if not piece:
            continue
        start = a + raw.index(piece[0])
        read = _read(piece)
        out.append(dataclasses.replace(read, start=start, ddl_end=start + read.ddl_end))
    return tuple(out)


@functools.lru_cache(maxsize=16384)
def _read(piece: str) -> Statement:
    """One piece as a Statement at offset 0 (`ddl_end` then the CREATE TABLE's own length)."""
    if not _CREATE.match(piece):
        return Statement(None, (), (), piece, 0, len(piece))
    ddl = _create_part(piece)
    ddl_len = _statement_length(piece, len(ddl))
    create = _parse(ddl)
    if create is not None:
        return Statement(create.this.this.name, _columns(create), _references(create), piece, 0, ddl_len, True,
                         _primary_key(create), _foreign_keys(create))
    name = _TABLE_NAME.search(ddl)
    table = _unquote(name.group(1)) if name else None
    open_at = ddl.find("(")
    body = ddl[open_at + 1 : ddl.rfind(")")] if open_at >= 0 else ""
    columns = []
    for part in _split_top_level(body):
        first = re.match(_IDENT, part.strip())
        if first and not _NOT_A_COLUMN.match(part.strip()):
            columns.append(Column(_unquote(first.group(0))))
    refs = tuple(dict.fromkeys(_unquote(m.group(1)) for m in _REFERENCES.finditer(ddl)))
    return Statement(table, tuple(columns), refs, piece, 0, ddl_len)


def _parse(ddl: str) -> exp.Create | None:
    logger = logging.getLogger("sqlglot")
    level = logger.level
    logger.setLevel(logging.ERROR)  # quiet "falling back to parsing as a 'Command'" warnings
    try:
        for dialect in DIALECTS:
            try:
                tree = sqlglot.parse_one(ddl, read=dialect)
            except Exception:  # noqa: BLE001, S112 - ParseError, TokenError: try the next dialect
                continue
            if (isinstance(tree, exp.Create) and tree.kind == "TABLE" and isinstance(tree.this, exp.Schema)
                    and isinstance(tree.this.this, exp.Table) and tree.this.this.name):
                return tree
    finally:
        logger.setLevel(level)
    return None


def _columns(create: exp.Create) -> tuple[Column, ...]:
    cols: dict[str, dict] = {}
    for d in create.this.expressions:
        if isinstance(d, exp.ColumnDef):
            dtype = d.args.get("kind")
            col = {"name": d.name, "decl": dtype.sql(dialect="sqlite") if dtype else "",
                   "type_name": getattr(dtype.this, "name", "") if dtype is not None else ""}
            for kind in (c.args.get("kind") for c in d.args.get("constraints") or []):
                if isinstance(kind, exp.NotNullColumnConstraint):
                    col["not_null"] = True
                if isinstance(kind, exp.PrimaryKeyColumnConstraint):
                    col["primary_key"] = col["unique"] = True
                if isinstance(kind, exp.UniqueColumnConstraint):
                    col["unique"] = True
                if isinstance(kind, exp.Reference):
                    col["ref"] = _reference(kind)
            cols[d.name.lower()] = col
    for d in _table_constraints(create):  # PRIMARY KEY (a), UNIQUE (a), FOREIGN KEY
        names = [i.name.lower() for i in d.find_all(exp.Identifier)]
        if isinstance(d, (exp.PrimaryKey, exp.UniqueColumnConstraint)) and len(names) == 1 and names[0] in cols:
            cols[names[0]]["unique"] = True
            cols[names[0]]["primary_key"] = cols[names[0]].get("primary_key", False) or isinstance(d, exp.PrimaryKey)
        ref = d.args.get("reference") if isinstance(d, exp.ForeignKey) else None
        if isinstance(ref, exp.Reference) and d.expressions and (mine := d.expressions[0].name.lower()) in cols:
            cols[mine]["ref"] = _reference(ref)
    return tuple(Column(**c) for c in cols.values())


def _reference(ref: exp.Reference) -> tuple[str, str]:
    target = ref.this
    if isinstance(target, exp.Schema):
        return target.this.name.lower(), (target.expressions[0].name.lower() if target.expressions else "")
    return target.name.lower(), ""


def _table_constraints(create: exp.Create) -> list[exp.Expression]:
    """The column list's items that are no column, a named `CONSTRAINT c ...` unwrapped."""
    out = []
    for d in create.this.expressions:
        if isinstance(d, exp.Constraint):
            out += d.expressions
        elif not isinstance(d, exp.ColumnDef):
            out.append(d)
    return out


def _primary_key(create: exp.Create) -> tuple[str, ...]:
    for d in _table_constraints(create):
        if isinstance(d, exp.PrimaryKey):
            return tuple(i.name for i in d.find_all(exp.Identifier))
    for d in create.this.expressions:
        if isinstance(d, exp.ColumnDef) and any(isinstance(c.args.get("kind"), exp.PrimaryKeyColumnConstraint)
                                                for c in d.args.get("constraints") or []):
            return (d.name,)
    return ()


def _foreign_keys(create: exp.Create) -> tuple[ForeignKey, ...]:
    out = []
    for d in create.this.expressions:
        if isinstance(d, exp.ColumnDef):
            refs = [(d.name,), *[c.args.get("kind") for c in d.args.get("constraints") or []]]
            out += [_foreign_key(refs[0], r) for r in refs[1:] if isinstance(r, exp.Reference)]
        else:
            for fk in (d.expressions if isinstance(d, exp.Constraint) else [d]):
                if isinstance(fk, exp.ForeignKey) and isinstance(fk.args.get("reference"), exp.Reference):
                    out.append(_foreign_key(tuple(e.name for e in fk.expressions), fk.args["reference"]))
    return tuple(out)


def _foreign_key(columns: tuple[str, ...], ref: exp.Reference) -> ForeignKey:
    target = ref.this
    if isinstance(target, exp.Schema):
        return ForeignKey(columns, target.this.name, tuple(e.name for e in target.expressions))
    return ForeignKey(columns, target.name, ())


def _references(create: exp.Create) -> tuple[str, ...]:
    parts = create.this.expressions
    targets = (r.find(exp.Table) for part in parts for r in part.find_all(exp.Reference))  # in text order
    return tuple(dict.fromkeys(t.name for t in targets if t is not None and t.name))


def _unquote(name: str) -> str:
    """Last part of a possibly schema-qualified name, quotes removed."""
    parts = re.findall(_IDENT, name)
    last = parts[-1] if parts else name
    return last[1:-1] if last[:1] in '"`[' else last


def _create_part(piece: str) -> str:
    """The statement up to the parenthesis that closes its column list (quote-aware)."""
    depth, quote = 0, ""
    for i, ch in enumerate(piece):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in _CLOSERS:
            quote = _CLOSERS[ch]
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth == 0:
                return piece[: i + 1]
    return piece.split(";")[0]


def _statement_length(piece: str, from_: int) -> int:
    """Where the CREATE TABLE ends in `piece`: just past the first top-level `;` after its column
    list (outside quotes and comments: table options such as WITHOUT ROWID come before it), else
    the piece's end."""
    i = from_
    while i < len(piece):
        ch = piece[i]
        if ch in _CLOSERS:
            j = piece.find(_CLOSERS[ch], i + 1)
            i = len(piece) if j < 0 else j + 1
            continue
        if piece.startswith("--", i):
            j = piece.find("\n", i)
            i = len(piece) if j < 0 else j + 1
            continue
        if piece.startswith("/*", i):
            j = piece.find("*/", i + 2)
            i = len(piece) if j < 0 else j + 2
            continue
        if ch == ";":
            return i + 1
        i += 1
    return len(piece)


def _split_top_level(body: str) -> list[str]:
    parts, depth, quote, start = [], 0, "", 0
    for i, ch in enumerate(body):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in _CLOSERS:
            quote = _CLOSERS[ch]
        elif ch in "()":
            depth += 1 if ch == "(" else -1
        elif ch == "," and depth == 0:
            parts.append(body[start:i])
            start = i + 1
    return [*parts, body[start:]]
