"""Execution accuracy where no database ships: small SQLite databases fuzzed from CREATE TABLE text.

    dbs = fuzz_databases(row["input"], row["response"], cache_dir=cache)        # None: no verdict
    right = fuzz_exec_match(dbs, prediction, row["response"]) if dbs else None

The test-suite idea of Zhong et al. (2020), kept small. The DDL is parsed with sqlglot (MySQL,
SQLite or other flavours: VARCHAR(255), INT(11), `backquotes`) and each table is created with its
declared type in SQLite form, so column affinities match a database built from the same DDL.
Tables get 5-15 rows of values of the column's kind (integer, real, date, text), steered by the
gold query (`_plan`):
- every literal it compares a column with (=, <>, <, >, BETWEEN, IN, LIKE, IS NULL, strftime('%Y',
  c) = '2023'; on joined tables and in subqueries too) is planted with its neighbours (v-1 and
  v+1, a day either side, LIKE patterns filled in and near misses): two rows meet every filter,
  then each planted value gets a row where the other filters hold, so each boundary counts alone;
- columns equated anywhere (ON, WHERE, IN (SELECT ...), REFERENCES) share one small pool of keys,
  so joins match; primary keys are unique; the two rows meeting every filter reference the same
  row of each table they join (so a DISTINCT over the join has a repeat to remove);
- HAVING COUNT(*) > N gets groups of N-1 .. N+2 rows; LIMIT N makes tables hold over 2N rows;
- labels (names, titles, emails, ...) and declared PRIMARY KEY / UNIQUE columns do not repeat,
  categories do; nullable columns get ~10% NULLs.
Each database has its own seed; one on which the gold returns nothing, or one of its WHERE
clauses matches no row, is drawn again (`TRIES`). A prediction is right when it matches the gold
on every database by Spider's execution rule (`official.spider_exec_match`), the rule of
`eval_execution_accuracy`.

Against the one real database of the generator's rows the verdicts agree on 96.2% of (row,
prediction) pairs (bench/NOTES.md, section 8). Fuzz says right where the real database says wrong
on 0.2%; the other disagreements are fuzz rejecting a query that differs from the gold where the
real data happens not to show it (no row on the boundary, a DISTINCT over a join that lists every
parent anyway): the single-database blind spot Zhong et al. measured. Values are random words and
numbers, so a query that leans on the real domain (an IN list naming every category, a condition
no real row fails) is wrong here. Cost per row, 3 databases, 2 CPU cores: 9 ms to build and check
them once, 0.02 ms on a cache hit, 0.9 ms to score a prediction (3 sandboxed queries).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import os
import random
import re
import sqlite3
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import sqlglot
from sqlglot import exp

from sqltune.sql import official
from sqltune.sql.match import parse_query
from sqltune.sql.sandbox import execute

VERSION = 1  # part of the cache key: bump whenever the databases for a (schema, gold) change
TRIES = 4  # draws per database before keeping one on which a filter of the gold matches nothing
DDL_DIALECTS = ("mysql", "sqlite", None, "postgres", "tsql")  # tried in order, per statement

Value = int | float | str | None
Key = tuple[str, str]  # (table, column), lower case
_DATE = re.compile(r"(\d{4})-(\d{2})-(\d{2})((?:[ T]\d{2}:\d{2}(?::\d{2})?)?)")
_LABEL = re.compile(r"name|title|email|phone|address|registration|isbn|code|number|licen[cs]e", re.IGNORECASE)
_SYLLABLES = ["ka", "lo", "mi", "ren", "sa", "tor", "vel", "di", "no", "bra", "qu", "es", "ul", "zen", "pa", "ri"]
_COMPARE = {exp.EQ: "=", exp.NEQ: "!=", exp.GT: ">", exp.GTE: ">=", exp.LT: "<", exp.LTE: "<="}
_FLIP = {"=": "=", "!=": "!=", ">": "<", ">=": "<=", "<": ">", "<=": ">="}


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


@dataclass
class _Plan:
    hits: dict[Key, list[Value]] = field(default_factory=dict)  # values meeting a filter
    misses: dict[Key, list[Value]] = field(default_factory=dict)  # values just failing one
    parent: dict[Key, Key] = field(default_factory=dict)  # union-find over equated columns
    groups: dict[Key, list[int]] = field(default_factory=dict)  # group sizes to plant
    min_rows: int = 5

    def find(self, key: Key) -> Key:
        while self.parent.get(key, key) != key:
            key = self.parent[key]
        return key

    def link(self, a: Key, b: Key) -> None:
        if a != b:
            self.parent.setdefault(a, a)
            self.parent[self.find(a)] = self.find(b)


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


# ----------------------------------------------------------------------------- what the gold asks for


def _sources(select: exp.Select) -> dict[str, str]:
    """alias (and name) -> table name, for the tables in this SELECT's FROM and JOINs."""
    out = {}
    for node in [select.args.get("from_"), *(select.args.get("joins") or [])]:
        if node is not None and isinstance(node.this, exp.Table):
            out[node.this.alias_or_name.lower()] = out[node.this.name.lower()] = node.this.name.lower()
    return out


def _resolve(col: exp.Column, tables: dict[str, Table]) -> Key | None:
    """The (table, column) a column reference reads: enclosing SELECTs outwards, then any table."""
    name, qual, node = col.name.lower(), col.table.lower(), col
    while (select := node.find_ancestor(exp.Select)) is not None:
        for alias, table in _sources(select).items():
            if table in tables and name in tables[table].columns and (alias == qual or not qual):
                return table, name
        node = select
    owners = [t for t in tables if name in tables[t].columns and (not qual or t == qual)]
    return (owners[0], name) if owners else None


def _literal(node: exp.Expression, tables: dict[str, Table]) -> Value:
    """Python value of a literal, or None. "x" is the string 'x' when no table has a column x."""
    if isinstance(node, exp.Paren):
        return _literal(node.this, tables)
    if isinstance(node, exp.Neg):
        inner = _literal(node.this, tables)
        return -inner if isinstance(inner, (int, float)) else None
    if isinstance(node, exp.Literal):
        text = str(node.this)
        return text if node.is_string else int(text) if re.fullmatch(r"\d+", text) else float(text)
    if isinstance(node, exp.Column) and not node.table and node.this.quoted:
        return None if any(node.name.lower() in t.columns for t in tables.values()) else node.name
    return None


def _target(node: exp.Expression) -> tuple[exp.Column, str] | None:
    """The column a compared expression reads, and the strftime format around it ('' if none)."""
    if isinstance(node, exp.Column):
        return node, ""
    if isinstance(node, exp.TimeToStr) and isinstance(node.args.get("format"), exp.Literal):
        inner = next(node.this.find_all(exp.Column), None)
        return (inner, str(node.args["format"].this)) if inner is not None else None
    if isinstance(node, (exp.Paren, exp.Lower, exp.Upper, exp.Trim, exp.Cast, exp.Avg, exp.Min, exp.Max, exp.Abs)):
        return _target(node.this)
    return None


def _near(v: Value) -> tuple[Value, Value]:
    """The values just below and just above v, in the order SQLite compares them."""
    if isinstance(v, int):
        return v - 1, v + 1
    if isinstance(v, float):
        places = len(repr(v).split(".")[1]) if "." in repr(v) and "e" not in repr(v) else 2
        return round(v - 10.0 ** -min(places, 6), places), round(v + 10.0 ** -min(places, 6), places)
    if not isinstance(v, str):
        return None, None
    m = _DATE.fullmatch(v)
    try:
        day = dt.date(int(m[1]), int(m[2]), int(m[3])) if m else None
    except ValueError:  # 2023-02-30: not a date, compared as text below
        day = None
    if m and day and dt.date.min < day < dt.date.max:
        return str(day - dt.timedelta(days=1)) + m[4], str(day + dt.timedelta(days=1)) + m[4]
    if v.isdigit():
        return str(max(int(v) - 1, 0)).zfill(len(v)), str(int(v) + 1).zfill(len(v))
    return v[:-1], v + "a"


def _like_values(pattern: str, glob: bool, rng: random.Random) -> tuple[list[Value], list[Value]]:
    """Two strings matching a LIKE / GLOB pattern, and a near miss (its first fixed letter changed)."""
    many, one = ("*", "?") if glob else ("%", "_")

    def fill(p: str) -> str:
        return "".join("".join(rng.choices("aeilnorst", k=rng.randint(0, 3))) if ch == many
                       else rng.choice("aeilnorst") if ch == one else ch for ch in p)

    fixed = [i for i, ch in enumerate(pattern) if ch.isalnum()]
    if not fixed:
        return [fill(pattern), fill(pattern)], []
    i = fixed[0]
    swap = "q" if pattern[i].lower() != "q" else "x"
    swap = swap.upper() if pattern[i].isupper() else swap
    return [fill(pattern), fill(pattern)], [fill(pattern[:i] + swap + pattern[i + 1:])]


def _date_part(fmt: str, value: str, rng: random.Random) -> tuple[list[Value], list[Value]]:
    """Dates whose strftime(fmt) is `value`, and dates next to those; for %Y, %m and %Y-%m only."""
    day = f"{rng.randint(1, 28):02d}"
    if fmt == "%Y" and value.isdigit():
        y = int(value)
        return [f"{y}-{rng.randint(1, 12):02d}-{day}", f"{y}-01-01", f"{y}-12-31"], [f"{y - 1}-12-31", f"{y + 1}-01-01"]
    if fmt == "%m" and value.isdigit() and 1 <= int(value) <= 12:
        y = rng.randint(2000, 2024)
        return [f"{y}-{int(value):02d}-{day}"], [f"{y}-{int(value) % 12 + 1:02d}-{day}"]
    if fmt == "%Y-%m" and re.fullmatch(r"\d{4}-\d{2}", value):
        return [f"{value}-{day}"], [f"{value[:4]}-{int(value[5:]) % 12 + 1:02d}-{day}"]
    return [], []


def _add(plan: _Plan, key: Key, hits: list[Value], misses: list[Value]) -> None:
    plan.hits.setdefault(key, []).extend(v for v in hits if v is not None)
    plan.misses.setdefault(key, []).extend(v for v in misses if v is not None)


def _plan_predicate(node: exp.Expression, plan: _Plan, tables: dict[str, Table], rng: random.Random) -> None:
    found = _target(node.this) if node.this is not None else None
    key = _resolve(found[0], tables) if found else None
    if isinstance(node, tuple(_COMPARE)):
        op, sides = _COMPARE[type(node)], (node.this, node.expression)
        for flip, (col_side, val_side) in enumerate((sides, sides[::-1])):
            found, value = _target(col_side), _literal(val_side, tables)
            if found and value is None and (other := _target(val_side)):  # column = column: a join
                a, b = _resolve(found[0], tables), _resolve(other[0], tables)
                if op == "=" and a and b:
                    plan.link(a, b)
                return
            if not found or value is None or (key := _resolve(found[0], tables)) is None:
                continue
            if found[1]:
                _add(plan, key, *_date_part(found[1], str(value), rng))
                return
            op = _FLIP[op] if flip else op
            down, up = _near(value)
            hits = {"=": [value], "!=": [down, up], ">": [up], ">=": [value, up], "<": [down], "<=": [value, down]}
            misses = {"=": [down, up], "!=": [value], ">": [value, down], ">=": [down], "<": [value, up], "<=": [up]}
            _add(plan, key, hits[op], misses[op])
            return
    elif key is None:
        return
    elif isinstance(node, (exp.Like, exp.ILike)) and isinstance(pattern := _literal(node.expression, tables), str):
        _add(plan, key, *_like_values(pattern, isinstance(node, exp.Glob), rng))
    elif isinstance(node, exp.Is) and isinstance(node.expression, exp.Null):
        plan.hits.setdefault(key, []).append(None)  # a few NULL rows; the background has the others
    elif isinstance(node, exp.Between):
        low, high = _literal(node.args["low"], tables), _literal(node.args["high"], tables)
        if low is not None and high is not None:
            _add(plan, key, [low, high, _near(low)[1], _near(high)[0]], [_near(low)[0], _near(high)[1]])
    elif isinstance(node, exp.In) and (query := node.args.get("query")) is not None:
        inner = query.this if isinstance(query, exp.Subquery) else query
        first = inner.selects[0] if isinstance(inner, exp.Select) and inner.selects else None
        if isinstance(first, exp.Column) and (other := _resolve(first, tables)):
            plan.link(key, other)
    elif isinstance(node, exp.In):
        values = [v for v in (_literal(e, tables) for e in node.expressions) if v is not None]
        _add(plan, key, values, [x for v in values for x in _near(v)])


def _classes(plan: _Plan, tables: dict[str, Table]) -> list[list[Key]]:
    """Groups of columns equated with each other (joins, IN subqueries, REFERENCES)."""
    members: dict[Key, list[Key]] = {}
    for key in sorted({*plan.parent, *plan.parent.values()}):
        if key[0] in tables and key[1] in tables[key[0]].columns:
            members.setdefault(plan.find(key), []).append(key)
    return [keys for keys in members.values() if len(keys) > 1]


def _plan_having(select: exp.Select, plan: _Plan, tables: dict[str, Table]) -> None:
    """HAVING COUNT(...) <op> N: groups of N-1 .. N+2 rows, planted in the grouped column, or, when
    its table is the "one" side of a join, in the joined table's foreign key (what COUNT counts)."""
    having, group = select.args.get("having"), select.args.get("group")
    if having is None or group is None:
        return
    values = [_literal(c.expression, tables) for c in having.find_all(*_COMPARE) if isinstance(c.this, exp.Count)]
    sizes = sorted({s for v in values if isinstance(v, int) for s in range(v - 1, v + 3) if 0 < s <= 1000})
    grouped = next((c for e in group.expressions for c in e.find_all(exp.Column)), None)
    key = _resolve(grouped, tables) if grouped is not None else None
    if not sizes or key is None:
        return
    sources = set(_sources(select).values())
    for keys in _classes(plan, tables):
        if any(k[0] == key[0] for k in keys) and all(tables[t].columns[c].unique for t, c in keys if t == key[0]):
            many = [(t, c) for t, c in keys if t in sources and t != key[0] and not tables[t].columns[c].unique]
            if many:
                key = many[0]
                break
    plan.groups[key] = sizes


def _plan(tree: exp.Expression, tables: dict[str, Table], rng: random.Random) -> _Plan:
    plan = _Plan()
    for name, table in tables.items():
        for col in table.columns.values():
            if col.ref and col.ref[0] in tables:
                target = tables[col.ref[0]].columns
                ref = col.ref[1] or next((c for c, v in target.items() if v.unique), "")
                if ref in target:
                    plan.link((name, col.name.lower()), (col.ref[0], ref))
    for node in tree.find_all(exp.Predicate):
        _plan_predicate(node, plan, tables, rng)
    for select in tree.find_all(exp.Select):  # after the joins are linked: HAVING follows them
        _plan_having(select, plan, tables)
    limits = [_literal(limit.expression, tables) for limit in tree.find_all(exp.Limit)]
    plan.min_rows = max([5] + [2 * v + 4 for v in limits if isinstance(v, int) and 0 < v <= 200])
    return plan


# ----------------------------------------------------------------------------- values


def _word(rng: random.Random) -> str:
    return " ".join("".join(rng.choices(_SYLLABLES, k=rng.randint(2, 3))).capitalize() for _ in range(rng.randint(1, 2)))


def _distinctish(col: Column) -> bool:
    """Unique by constraint, or a label (name, title, email, ...): real tables rarely repeat those."""
    return col.unique or (col.kind == "text" and bool(_LABEL.search(col.name)))


def _sampler(col: Column, lits: list[Value], rng: random.Random) -> Callable[[], Value]:
    """Background values for a column: of its kind, and around its planted literals if it has any."""
    dates = [v for v in lits if isinstance(v, str) and _DATE.fullmatch(v)]
    nums = [float(v) for v in lits if isinstance(v, (int, float)) or (isinstance(v, str) and v.isdigit())]
    if col.kind in ("date", "datetime") or (dates and len(dates) == len(lits)):
        years = [int(v[:4]) for v in dates] or [rng.randint(1990, 2020)]
        lo, hi = dt.date(max(min(years) - 3, 1), 1, 1), dt.date(min(max(years) + 3, 9999), 12, 31)
        timed = col.kind == "datetime" or any(_DATE.fullmatch(v)[4] for v in dates)
        return lambda: str(lo + dt.timedelta(days=rng.randint(0, (hi - lo).days))) + (
            f" {rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:00" if timed else "")
    if col.kind in ("int", "real") or (nums and len(nums) == len(lits)):
        if nums:
            span = max(3.0, max(nums) - min(nums), abs(max(nums)) * 0.3)
            lo, hi = min(nums) - span, max(nums) + span
        else:  # a range of its own: from a few repeated values to all distinct
            lo = float(rng.randint(0, 100))
            hi = lo + rng.choice([5, 20, 200, 5000])
        if col.kind == "real" or any(isinstance(v, float) for v in lits):
            return lambda: round(rng.uniform(lo, hi), 2)
        if col.kind == "text":  # numbers kept as text, zero-padded like the literals ('0042')
            width = max(len(str(v)) for v in lits)
            return lambda: str(rng.randint(round(lo), round(hi))).zfill(width)
        return lambda: rng.randint(round(lo), round(hi))
    if _distinctish(col):
        return lambda: _word(rng)
    pool = [_word(rng) for _ in range(rng.randint(2, 12))]  # a category: from many repeats to few
    return lambda: rng.choice(pool)


def _dedupe(out: list[Value], draw: Callable[[], Value], ints: bool) -> None:
    """Replace repeats and NULLs in place: by the smallest unused id for integers, else new draws."""
    seen: set[str] = set()
    taken = {str(v) for v in out}
    next_id = 1
    for i, v in enumerate(out):
        tries = 0
        while v is None or str(v) in seen:
            if ints:
                while str(next_id) in taken:
                    next_id += 1
                v = next_id
                taken.add(str(v))
            else:
                v, tries = (draw() if tries < 20 else f"{draw()} {i}"), tries + 1
        out[i] = v
        seen.add(str(v))


def _assignments(table: str, plan: _Plan, rng: random.Random) -> list[dict[str, Value]]:
    """Planted values of one table, row by row: two rows meeting every filter; per planted value, a
    row where its column takes it and the other columns meet their filters (each boundary alone);
    per column, a row where only it meets its filter (for OR)."""
    keys = {k for k in plan.hits.keys() | plan.misses.keys() if k[0] == table and k not in plan.groups}
    cols = {c: (plan.hits.get((t, c), []), plan.misses.get((t, c), [])) for t, c in sorted(keys)}
    cols = {c: (h, m) for c, (h, m) in cols.items() if h or m}
    if not cols:
        return []

    def hit(c: str) -> Value:
        return rng.choice(cols[c][0] or cols[c][1])

    def miss(c: str) -> Value:
        return rng.choice(cols[c][1] or cols[c][0])

    rows = [{c: (h or m)[i % len(h or m)] for c, (h, m) in cols.items()} for i in range(2)]
    for c, (hits, misses) in cols.items():
        rows += [{**{o: hit(o) for o in cols}, c: v} for v in hits + misses]
        rows += [{**{o: miss(o) for o in cols}, c: hit(c)}] if len(cols) > 1 else []
    return rows[:60]


def _pools(plan: _Plan, tables: dict[str, Table], sizes: dict[str, int],
           rng: random.Random) -> dict[Key, tuple[list[Value], int]]:
    """Per class of equated columns: (its key values, how many of them non-unique columns draw from).
    Planted literals come first; unique columns take the head, so every drawn key exists in them."""
    pools = {}
    for keys in _classes(plan, tables):
        cols = [tables[t].columns[c] for t, c in keys]
        kind = "int" if any(c.kind == "int" for c in cols) else cols[0].kind
        unique_n = [sizes[t] for (t, _), c in zip(keys, cols) if c.unique]
        draw_n = min(unique_n) if unique_n else max(3, max(sizes[t] for t, _ in keys) // 2)
        lits = list(dict.fromkeys(v for k in keys for v in plan.hits.get(k, []) if v is not None))
        total = max(unique_n + [draw_n])
        fresh: list[Value] = []
        if kind == "int":
            fresh = [v for v in range(1, total + len(lits) + 1) if v not in lits]
            rng.shuffle(fresh)  # ids 1..n, but rows 0 and 1 get random ones
        else:
            draw = _sampler(replace(cols[0], kind=kind, unique=True), [], rng)
            for _ in range(20 * total):
                v = draw()
                fresh += [] if v in lits or v in fresh else [v]
                if len(fresh) >= total:
                    break
        pools[plan.find(keys[0])] = ((lits + fresh)[:max(total, len(lits))], min(draw_n, len(lits) + len(fresh)))
    return pools


def _column(table: str, col: Column, n: int, plan: _Plan, pools: dict[Key, tuple[list[Value], int]],
            planted: list[dict[str, Value]], rng: random.Random) -> list[Value]:
    key = (table, col.name.lower())
    pool, draw_n = pools.get(plan.find(key), (None, 0))
    lits = [v for v in plan.hits.get(key, []) + plan.misses.get(key, []) if v is not None]
    draw = (lambda: rng.choice(pool[:draw_n])) if pool else _sampler(col, lits, rng)
    if key in plan.groups:  # the group sizes, then rows outside those groups
        sizes = plan.groups[key]
        values = pool[:len(sizes)] if pool else list(dict.fromkeys(draw() for _ in range(8 * len(sizes))))
        out = [v for v, size in zip(values, sizes) for _ in range(size)]
        others = [v for v in (pool[:draw_n] if pool else [draw() for _ in range(8)]) if v not in values]
        out += [rng.choice(others or [None]) for _ in range(n - len(out))]
    elif pool and col.unique:
        out = list(pool[:n])
    else:
        fill_ids = col.unique and col.kind == "int"  # left None here, numbered by _dedupe
        nullable = not col.not_null and not _distinctish(col)
        out = [planted[i][key[1]] if i < len(planted) and key[1] in planted[i]
               else pool[0] if pool and i < 2  # rows 0 and 1 join row 0 of the tables they reference
               else None if fill_ids or (nullable and rng.random() < 0.1) else draw() for i in range(n)]
    out = (out + [None] * n)[:n]
    if _distinctish(col) and not (pool and col.unique):
        _dedupe(out, draw, col.kind == "int")
    return out


def _build(tables: dict[str, Table], plan: _Plan, rng: random.Random) -> bytes:
    """One database, as the bytes of a SQLite file."""
    planted = {name: _assignments(name, plan, rng) for name in tables}
    sizes = {name: max(plan.min_rows, rng.randint(5, 15), len(planted[name]) + 3) for name in tables}
    for (table, _), groups in plan.groups.items():
        sizes[table] = max(sizes[table], sum(groups) + 4)
    pools = _pools(plan, tables, sizes, rng)
    conn = sqlite3.connect(":memory:")
    try:
        for name, table in tables.items():
            cols = list(table.columns.values())
            ddl = ", ".join(f"{_quote(c.name)} {c.decl}".rstrip() for c in cols)
            conn.execute(f"CREATE TABLE {_quote(table.name)} ({ddl})")
            rows = list(zip(*(_column(name, c, sizes[name], plan, pools, planted[name], rng) for c in cols)))
            rng.shuffle(rows)
            conn.executemany(f"INSERT INTO {_quote(table.name)} VALUES ({', '.join('?' * len(cols))})", rows)
        conn.commit()
        return conn.serialize()
    finally:
        conn.close()


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


# ----------------------------------------------------------------------------- databases and verdicts


def _probes(tree: exp.Expression) -> list[str]:
    """SELECT COUNT(*) with the FROM and WHERE of each filtering SELECT (correlated ones fail to run)."""
    out = []
    for select in tree.find_all(exp.Select):
        if select.args.get("where") is not None:
            probe = select.copy()
            probe.set("expressions", [exp.Count(this=exp.Star())])
            for arg in ("group", "having", "order", "limit", "offset", "distinct", "with"):
                probe.set(arg, None)
            out.append(probe.sql(dialect="sqlite"))
    return out


def _check(db: Path, gold: str, probes: list[str]) -> str | bool:
    """The gold's error, else True when it returns rows and every runnable probe counts some."""
    run = execute(db, gold)
    if not run.ok:
        return run.error or "error"
    counts = [execute(db, p) for p in probes]
    return bool(run.rows) and all(c.rows[0][0] > 0 for c in counts if c.ok and c.rows)


def _make(schema_text: str, gold_sql: str, paths: list[Path], seed: int) -> tuple[list[Path] | None, bool]:
    """Write the databases; or (None, whether that answer may be remembered: not after a timeout)."""
    tables, tree = parse_schema(schema_text), parse_query(gold_sql)
    if not tables or tree is None:
        return None, True
    probes, kept = _probes(tree), []
    try:
        for i, path in enumerate(paths):
            for attempt in range(TRIES):
                rng = random.Random(f"{seed}:{i}:{attempt}")
                data = _build(tables, _plan(tree, tables, rng), rng)
                fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                if attempt:
                    os.replace(tmp, kept[-1])  # a redraw replaces the one that matched too little
                else:
                    kept.append(Path(tmp))
                verdict = _check(kept[-1], gold_sql, probes)
                if isinstance(verdict, str):
                    return None, not verdict.startswith("TimeoutError")
                if verdict:
                    break
        for tmp, path in zip(kept, paths):
            os.replace(tmp, path)  # atomic: a reader sees a whole database or none
        kept = []
        return paths, True
    except (sqlite3.Error, OverflowError, ValueError):  # e.g. an integer literal beyond 64 bits
        return None, True
    finally:
        for tmp in kept:
            tmp.unlink(missing_ok=True)


def fuzz_databases(schema_text: str, gold_sql: str, *, n: int = 3, seed: int = 0, cache_dir: Path) -> list[Path] | None:
    """`n` fuzzed SQLite files for one (schema, gold) pair, built once and cached; None if unusable.

    Files are `<cache_dir>/<hash>-<i>.sqlite`, hashed over the schema text, the gold SQL, `n`,
    `seed` and `VERSION`, each written to a temporary file and renamed; a later call finds them
    and writes nothing. None when no CREATE TABLE parses, the gold does not parse, or the gold
    fails on the fuzzed data (a column the schema lacks, bad SQL): the row then has no fuzz
    verdict, and `<hash>.none` remembers it (not after a timeout). ~9 ms for 3 databases.
    """
    cache_dir = Path(cache_dir)
    digest = hashlib.sha256(f"{VERSION}\0{n}\0{seed}\0{schema_text}\0{gold_sql}".encode()).hexdigest()[:32]
    paths = [cache_dir / f"{digest}-{i}.sqlite" for i in range(n)]
    if all(p.is_file() for p in paths):
        return paths
    unusable = cache_dir / f"{digest}.none"
    if unusable.is_file():
        return None
    cache_dir.mkdir(parents=True, exist_ok=True)
    dbs, remember = _make(schema_text, gold_sql, paths, seed)
    if dbs is None and remember:
        unusable.touch()
    return dbs




def fuzz_exec_match(dbs: list[Path], pred: str, gold: str, *, timeout_s: float = 1.0) -> bool:
    """True iff the prediction matches the gold on every database by Spider's execution rule
    (`official.spider_exec_match`, the rule of `eval_execution_accuracy`). False too if the gold
    fails there (a timeout)."""
    try:
        return all(official.spider_exec_match(db, pred, gold, timeout_s=timeout_s) for db in dbs)
    except ValueError:  # the gold failed on a fuzzed database
        return False
