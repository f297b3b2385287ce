"""Spider's SQL parser and schema, ported from taoyds/test-suite-sql-eval's process_sql.py
(commit e97acc5, Apache License 2.0; see official.py for the changes): a query becomes Spider's
nested dict (select, from, where, ...) that exact set match compares component by component.

    schema = schema_from_db(db_path)      # or schema_from_ddl(create_table_text), cached
    sql = Parser(schema, query).sql(0)[1] # Spider's dict; ValueError outside Spider's grammar
"""

from __future__ import annotations

import contextlib
import copy
import re
import sqlite3
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from sqltune.sql import ddl

# ----------------------------------------------------------------------------- schema


@dataclass(frozen=True)
class SpiderSchema:
    """process_sql.Schema plus evaluation.py's foreign-key map, from one SQLite database."""

    tables: dict[str, list[str]]  # lowercased table -> its lowercased columns (get_schema)
    foreign_keys: dict[str, str] = field(default_factory=dict)  # '__t.c__' -> id of its key group
    id_map: dict[str, str] = field(init=False)

    def __post_init__(self) -> None:
        ids = {"*": "__all__"}
        ids.update({f"{t}.{c}": f"__{t}.{c}__" for t, cols in self.tables.items() for c in cols})
        ids.update({t: f"__{t}__" for t in self.tables})
        object.__setattr__(self, "id_map", ids)


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _primary_key(conn: sqlite3.Connection, table: str) -> list[str]:
    info = conn.execute(f"PRAGMA table_info({_quote(table)})").fetchall()
    return [r[1] for r in sorted(info, key=lambda r: r[5]) if r[5]]


def _read_schema(conn: sqlite3.Connection) -> SpiderSchema:
    names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
    tables = {t.lower(): [r[1].lower() for r in conn.execute(f"PRAGMA table_info({_quote(t)})")] for t in names}
    index = {(t, c): i for i, (t, c) in enumerate(((t, c) for t, cs in tables.items() for c in cs), 1)}
    pairs = []  # (column, referenced column) as tables.json's column indices, in declaration order
    for t in names:
        for _, seq, ref, col, to, *_ in sorted(conn.execute(f"PRAGMA foreign_key_list({_quote(t)})"),
                                               key=lambda r: (-r[0], r[1])):  # ids count from the last
            if to is None:  # REFERENCES t: its primary key
                key = _primary_key(conn, ref)
                to = key[seq] if seq < len(key) else ""
            a, b = index.get((t.lower(), col.lower())), index.get((ref.lower(), to.lower()))
            if a is not None and b is not None:
                pairs.append((a, b))
    groups: list[set[int]] = []  # build_foreign_key_map's grouping, kept as is (not transitive)
    for a, b in pairs:
        group = next((g for g in groups if a in g or b in g), None)
        if group is None:
            groups.append(group := set())
        group.update((a, b))
    ids = {i: f"__{t}.{c}__" for (t, c), i in index.items()}
    return SpiderSchema(tables, {ids[i]: ids[min(g)] for g in groups for i in sorted(g)})


def schema_from_db(db_path: str | Path) -> SpiderSchema:
    """The schema of a SQLite file, as process_sql.get_schema reads it, with its foreign keys."""
    path = Path(db_path)
    if not path.is_file():
        raise ValueError(f"no such database file '{db_path}'")
    with contextlib.closing(sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True)) as conn:
        return _read_schema(conn)


def _names_and_keys(statement: ddl.Statement) -> str:
    """A CREATE TABLE (as sql/ddl.py read it, in any dialect) cut down to what the schema needs,
    as SQLite: names and keys (MySQL's types, ENUM(...), AUTO_INCREMENT, KEY, ENGINE= go)."""
    items = [_quote(c.name) for c in statement.columns]
    if statement.primary_key:
        items.append(f"PRIMARY KEY ({', '.join(map(_quote, statement.primary_key))})")
    for fk in statement.foreign_keys:
        to = f" ({', '.join(map(_quote, fk.to))})" if fk.to else ""
        items.append(f"FOREIGN KEY ({', '.join(map(_quote, fk.columns))}) REFERENCES {_quote(fk.table)}{to}")
    return f"CREATE TABLE {_quote(statement.table)} ({', '.join(items)})"


def _scratch_db() -> sqlite3.Connection:
    """An in-memory database that cannot reach files (ATTACH and VACUUM INTO are denied) and
    gives up after 5 s (the text may insert rows, or loop)."""
    conn, deadline = sqlite3.connect(":memory:"), time.monotonic() + 5.0
    conn.set_authorizer(lambda action, *_: sqlite3.SQLITE_DENY if action == sqlite3.SQLITE_ATTACH else sqlite3.SQLITE_OK)
    conn.set_progress_handler(lambda: time.monotonic() > deadline, 10_000)
    return conn


@lru_cache(maxsize=1024)
def schema_from_ddl(text: str) -> SpiderSchema:
    """The schema of CREATE TABLE text (a row without a database): the text runs in an in-memory
    SQLite database, read like a file. If SQLite rejects it (MySQL's ENGINE=, AUTO_INCREMENT,
    KEY, ...), each CREATE TABLE as sql/ddl.py reads it runs cut down to names and keys; other
    statements are skipped, a CREATE TABLE that can't be read or run raises ValueError."""
    conn = _scratch_db()
    try:
        try:
            conn.executescript(text)
        except sqlite3.Error:
            conn.close()
            conn = _scratch_db()
            for statement in ddl.statements(text):
                if statement.table is None:
                    continue  # INSERT, comments, ...: not part of the schema
                try:
                    if not statement.parsed:
                        raise sqlite3.Error("no SQL dialect reads it")
                    conn.execute(_names_and_keys(statement))
                except sqlite3.Error as e:
                    raise ValueError(f"cannot build a schema from {statement.text[:120]!r}: {e}") from e
        schema = _read_schema(conn)
    finally:
        conn.close()
    if not schema.tables:
        raise ValueError(f"no CREATE TABLE statement in {text[:120]!r}")
    return schema


# ----------------------------------------------------------------------------- exact set match

CLAUSE_KEYWORDS = ("select", "from", "where", "group", "order", "limit", "intersect", "union", "except")
JOIN_KEYWORDS = ("join", "on", "as")
WHERE_OPS = ("not", "between", "=", ">", "<", ">=", "<=", "!=", "in", "like", "is", "exists")
UNIT_OPS = ("none", "-", "+", "*", "/")
AGG_OPS = ("none", "max", "min", "count", "sum", "avg")
SQL_OPS = ("intersect", "union", "except")
ORDER_OPS = ("desc", "asc")

# nltk's NLTKWordTokenizer (Apache License 2.0), the rules that can fire on text without ' or ",
# which is all process_sql.tokenize passes it (quoted values are swapped for placeholders first).
_NLTK_RULES = [[(re.compile(p, re.UNICODE), r) for p, r in rules] for rules in ((
    ("([«“‘„]|[`]+)", r" \1 "), (r"(``)", r" \1 "),  # starting quotes, then punctuation
    ((r'([^\.])(\.)([\]\)}>"\'' "»”’ " r"]*)\s*$"), r"\1 \2 \3 "), (r"([:,])([^\d])", r" \1 \2"),
    (r"([:,])$", r" \1 "), (r"\.{2,}", r" \g<0> "), (r"[;@#$%&]", r" \g<0> "),
    (r"[\u2012-\u2015]", r" \g<0> "), (r'([^\.])(\.)([\]\)}>"\']*)\s*$', r"\1 \2\3 "),
    (r"[?!]", r" \g<0> "), (r"[*]", r" \g<0> "), (r"[\]\[\(\)\{\}\<\>]", r" \g<0> "), (r"--", r" -- "),
), (  # after padding with spaces: ending quotes, contractions
    ("([»”’])", r" \1 "),
    *((rf"(?i)\b({a})(?#X)({b})\b", r" \1 \2 ") for a, b in
      (("can", "not"), ("gim", "me"), ("gon", "na"), ("got", "ta"), ("lem", "me"))),
    (r"(?i)\b(wan)(?#X)(na)(?=\s)", r" \1 \2 "),
))]


def _word_tokenize(text: str) -> list[str]:
    """nltk.word_tokenize(text, preserve_line=True) for text without ' and "."""
    before, after = _NLTK_RULES
    for rule, sub in before:
        text = rule.sub(sub, text)
    text = f" {text} "
    for rule, sub in after:
        text = rule.sub(sub, text)
    return text.split()


def _tokenize(sql: str) -> list[str]:
    """process_sql.tokenize: quoted values become single tokens, the rest nltk's words, lowercased."""
    sql = str(sql).replace("'", '"')
    quotes = [i for i, ch in enumerate(sql) if ch == '"']
    if len(quotes) % 2:
        raise ValueError("Unexpected quote")
    vals = {}
    for i in range(len(quotes) - 1, -1, -2):
        q1, q2 = quotes[i - 1], quotes[i]
        vals[key := f"__val_{q1}_{q2}__"] = sql[q1:q2 + 1]
        sql = sql[:q1] + key + sql[q2 + 1:]
    toks = [vals.get(w.lower(), w.lower()) for w in _word_tokenize(sql)]
    for eq in reversed([i for i, t in enumerate(toks) if t == "="]):
        if toks[eq - 1] in ("!", ">", "<"):
            toks = toks[:eq - 1] + [toks[eq - 1] + "="] + toks[eq + 1:]
    return toks


def _need(ok: bool) -> None:
    if not ok:
        raise ValueError("outside the Spider grammar")


class Parser:
    """process_sql.get_sql, one method per parse_* function, failing wherever the original does."""

    def __init__(self, schema: SpiderSchema, sql: str) -> None:
        self.schema, self.toks = schema, _tokenize(sql)
        self.aliases = {self.toks[i + 1]: self.toks[i - 1] for i, t in enumerate(self.toks) if t == "as"}
        for table in schema.tables:  # get_tables_with_alias
            _need(table not in self.aliases)
            self.aliases[table] = table

    def col(self, i: int, default_tables: list[str] | None) -> tuple[int, str]:
        tok = self.toks[i]
        if tok == "*":
            return i + 1, self.schema.id_map[tok]
        if "." in tok:
            alias, col = tok.split(".")
            return i + 1, self.schema.id_map[self.aliases[alias] + "." + col]
        _need(default_tables is not None and len(default_tables) > 0)
        for alias in default_tables:
            table = self.aliases[alias]
            if tok in self.schema.tables[table]:
                return i + 1, self.schema.id_map[table + "." + tok]
        raise ValueError(f"Error col: {tok}")

    def col_unit(self, i: int, default_tables: list[str] | None) -> tuple:
        toks = self.toks
        block = toks[i] == "("
        i += block
        if toks[i] in AGG_OPS:
            agg = AGG_OPS.index(toks[i])
            i += 1
            _need(i < len(toks) and toks[i] == "(")
            i += 1
            distinct = toks[i] == "distinct"
            i, col = self.col(i + distinct, default_tables)
            _need(i < len(toks) and toks[i] == ")")
            return i + 1, (agg, col, distinct)
        distinct = toks[i] == "distinct"
        i, col = self.col(i + distinct, default_tables)
        if block:
            _need(toks[i] == ")")
            i += 1
        return i, (AGG_OPS.index("none"), col, distinct)

    def val_unit(self, i: int, default_tables: list[str] | None) -> tuple:
        block = self.toks[i] == "("
        i += block
        i, unit1 = self.col_unit(i, default_tables)
        op, unit2 = UNIT_OPS.index("none"), None
        if i < len(self.toks) and self.toks[i] in UNIT_OPS:
            op = UNIT_OPS.index(self.toks[i])
            i, unit2 = self.col_unit(i + 1, default_tables)
        if block:
            _need(self.toks[i] == ")")
            i += 1
        return i, (op, unit1, unit2)

    def value(self, start: int, default_tables: list[str] | None) -> tuple[int, Any]:
        toks, i = self.toks, start
        block = toks[i] == "("
        i += block
        if toks[i] == "select":
            i, val = self.sql(i)
        elif '"' in toks[i]:
            i, val = i + 1, toks[i]
        else:
            try:
                i, val = i + 1, float(toks[i])
            except ValueError:
                end = i
                while end < len(toks) and toks[end] not in (",", ")", "and", *CLAUSE_KEYWORDS, *JOIN_KEYWORDS):
                    end += 1
                sub = copy.copy(self)  # parse_col_unit on the slice toks[start:end]
                sub.toks = toks[start:end]
                i, val = end, sub.col_unit(0, default_tables)[1]
        if block:
            _need(toks[i] == ")")
            i += 1
        return i, val

    def condition(self, i: int, default_tables: list[str] | None) -> tuple[int, list]:
        toks, conds = self.toks, []
        while i < len(toks):
            i, unit = self.val_unit(i, default_tables)
            negated = toks[i] == "not"
            i += negated
            _need(i < len(toks) and toks[i] in WHERE_OPS)
            op = WHERE_OPS.index(toks[i])
            i, val1 = self.value(i + 1, default_tables)
            val2 = None
            if op == WHERE_OPS.index("between"):
                _need(toks[i] == "and")
                i, val2 = self.value(i + 1, default_tables)
            conds.append((negated, op, unit, val1, val2))
            if i < len(toks) and (toks[i] in CLAUSE_KEYWORDS or toks[i] in (")", ";") or toks[i] in JOIN_KEYWORDS):
                break
            if i < len(toks) and toks[i] in ("and", "or"):
                conds.append(toks[i])
                i += 1
        return i, conds

    def select(self, i: int, default_tables: list[str]) -> tuple:
        toks = self.toks
        _need(toks[i] == "select")
        i += 1
        distinct = i < len(toks) and toks[i] == "distinct"
        i += distinct
        units = []
        while i < len(toks) and toks[i] not in CLAUSE_KEYWORDS:
            agg = AGG_OPS.index(toks[i]) if toks[i] in AGG_OPS else AGG_OPS.index("none")
            i, unit = self.val_unit(i + (toks[i] in AGG_OPS), default_tables)
            units.append((agg, unit))
            i += i < len(toks) and toks[i] == ","
        return distinct, units

    def from_(self, start: int) -> tuple[int, list, list, list[str]]:
        toks = self.toks
        _need("from" in toks[start:])
        i, default_tables, units, conds = toks.index("from", start) + 1, [], [], []
        while i < len(toks):
            block = toks[i] == "("
            i += block
            if toks[i] == "select":
                i, sub = self.sql(i)
                units.append(("sql", sub))
            else:
                i += i < len(toks) and toks[i] == "join"
                table = self.aliases[toks[i]]
                i += 3 if i + 1 < len(toks) and toks[i + 1] == "as" else 1
                units.append(("table_unit", self.schema.id_map[table]))
                default_tables.append(table)
            if i < len(toks) and toks[i] == "on":
                i, more = self.condition(i + 1, default_tables)
                conds.extend(["and", *more] if conds else more)
            if block:
                _need(toks[i] == ")")
                i += 1
            if i < len(toks) and (toks[i] in CLAUSE_KEYWORDS or toks[i] in (")", ";")):
                break
        return i, units, conds, default_tables

    def units_after(self, i: int, first: str, default_tables: list[str], unit: str) -> tuple[int, list, str]:
        """parse_group_by / parse_order_by: `first` BY, then units separated by ','."""
        toks, units, order = self.toks, [], "asc"
        if i >= len(toks) or toks[i] != first:
            return i, units, ""
        _need(toks[i + 1] == "by")
        i += 2
        while i < len(toks) and not (toks[i] in CLAUSE_KEYWORDS or toks[i] in (")", ";")):
            i, u = (self.col_unit if unit == "col" else self.val_unit)(i, default_tables)
            units.append(u)
            if unit == "val" and i < len(toks) and toks[i] in ORDER_OPS:
                order, i = toks[i], i + 1
            if not (i < len(toks) and toks[i] == ","):
                break
            i += 1
        return i, units, order

    def sql(self, start: int) -> tuple[int, dict]:
        toks = self.toks
        block = toks[start] == "("
        from_end, units, conds, default_tables = self.from_(start)
        sql: dict[str, Any] = {"from": {"table_units": units, "conds": conds}}
        sql["select"] = self.select(start + block, default_tables)
        i, sql["where"] = self.condition(from_end + 1, default_tables) if self._at(from_end, "where") else (from_end, [])
        i, sql["groupBy"], _ = self.units_after(i, "group", default_tables, "col")
        i, sql["having"] = self.condition(i + 1, default_tables) if self._at(i, "having") else (i, [])
        i, order_units, order = self.units_after(i, "order", default_tables, "val")
        sql["orderBy"] = (order, order_units) if order else []
        sql["limit"] = None
        if self._at(i, "limit"):  # parse_limit: reads the value (an IndexError at the end), keeps 1
            _need(i + 1 < len(toks))
            i, sql["limit"] = i + 2, 1
        i = self._skip_semicolons(i)
        if block:
            _need(toks[i] == ")")
            i += 1
        i = self._skip_semicolons(i)
        sql.update(dict.fromkeys(SQL_OPS))
        if i < len(toks) and toks[i] in SQL_OPS:
            op = toks[i]
            i, sql[op] = self.sql(i + 1)
        return i, sql

    def _at(self, i: int, tok: str) -> bool:
        return i < len(self.toks) and self.toks[i] == tok

    def _skip_semicolons(self, i: int) -> int:
        while self._at(i, ";"):
            i += 1
        return i
