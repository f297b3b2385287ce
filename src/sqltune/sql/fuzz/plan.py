"""What the gold query asks of the data: the literals it compares columns with, the columns it
equates, the group sizes and row counts it needs (a Plan), planted by values.py."""

from __future__ import annotations

import datetime as dt
import random
import re
from dataclasses import dataclass, field

from sqlglot import exp

from sqltune.sql.fuzz.schema import DATE, Key, Table, Value


_COMPARE = {exp.EQ: "=", exp.NEQ: "!=", exp.GT: ">", exp.GTE: ">=", exp.LT: "<", exp.LTE: "<="}
_FLIP = {"=": "=", "!=": "!=", ">": "<", ">=": "<=", "<": ">", "<=": ">="}


@dataclass
class Plan:
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


# ----------------------------------------------------------------------------- what the gold asks for


def _sources(select: exp.Select) -> dict[str, str]:
    """alias (and name) -> table name, for the tables in this SELECT's FROM and JOINs."""
    out = {}
    for node in [select.args.get("from_"), *(select.args.get("joins") or [])]:
        if node is not None and isinstance(node.this, exp.Table):
            out[node.this.alias_or_name.lower()] = out[node.this.name.lower()] = node.this.name.lower()
    return out


def resolve(col: exp.Column, tables: dict[str, Table]) -> Key | None:
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
    m = DATE.fullmatch(v)
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


def _add(plan: Plan, key: Key, hits: list[Value], misses: list[Value]) -> None:
    plan.hits.setdefault(key, []).extend(v for v in hits if v is not None)
    plan.misses.setdefault(key, []).extend(v for v in misses if v is not None)


def _plan_predicate(node: exp.Expression, plan: Plan, tables: dict[str, Table], rng: random.Random) -> None:
    found = _target(node.this) if node.this is not None else None
    key = resolve(found[0], tables) if found else None
    if isinstance(node, tuple(_COMPARE)):
        op, sides = _COMPARE[type(node)], (node.this, node.expression)
        for flip, (col_side, val_side) in enumerate((sides, sides[::-1])):
            found, value = _target(col_side), _literal(val_side, tables)
            if found and value is None and (other := _target(val_side)):  # column = column: a join
                a, b = resolve(found[0], tables), resolve(other[0], tables)
                if op == "=" and a and b:
                    plan.link(a, b)
                return
            if not found or value is None or (key := resolve(found[0], tables)) is None:
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
        if isinstance(first, exp.Column) and (other := resolve(first, tables)):
            plan.link(key, other)
    elif isinstance(node, exp.In):
        values = [v for v in (_literal(e, tables) for e in node.expressions) if v is not None]
        _add(plan, key, values, [x for v in values for x in _near(v)])


def classes(plan: Plan, tables: dict[str, Table]) -> list[list[Key]]:
    """Groups of columns equated with each other (joins, IN subqueries, REFERENCES)."""
    members: dict[Key, list[Key]] = {}
    for key in sorted({*plan.parent, *plan.parent.values()}):
        if key[0] in tables and key[1] in tables[key[0]].columns:
            members.setdefault(plan.find(key), []).append(key)
    return [keys for keys in members.values() if len(keys) > 1]


def _plan_having(select: exp.Select, plan: Plan, tables: dict[str, Table]) -> None:
    """HAVING COUNT(...) <op> N: groups of N-1 .. N+2 rows, planted in the grouped column, or, when
    its table is the "one" side of a join, in the joined table's foreign key (what COUNT counts)."""
    having, group = select.args.get("having"), select.args.get("group")
    if having is None or group is None:
        return
    values = [_literal(c.expression, tables) for c in having.find_all(*_COMPARE) if isinstance(c.this, exp.Count)]
    sizes = sorted({s for v in values if isinstance(v, int) for s in range(v - 1, v + 3) if 0 < s <= 1000})
    grouped = next((c for e in group.expressions for c in e.find_all(exp.Column)), None)
    key = resolve(grouped, tables) if grouped is not None else None
    if not sizes or key is None:
        return
    sources = set(_sources(select).values())
    for keys in classes(plan, tables):
        if any(k[0] == key[0] for k in keys) and all(tables[t].columns[c].unique for t, c in keys if t == key[0]):
            many = [(t, c) for t, c in keys if t in sources and t != key[0] and not tables[t].columns[c].unique]
            if many:
                key = many[0]
                break
    plan.groups[key] = sizes


def plan_for(tree: exp.Expression, tables: dict[str, Table], rng: random.Random) -> Plan:
    plan = Plan()
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
