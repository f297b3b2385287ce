"""Values for each column of each table, with the Plan's literals planted, written as one SQLite file."""

from __future__ import annotations

import datetime as dt
import random
import re
import sqlite3
from collections.abc import Callable
from dataclasses import replace


from sqltune.sql.fuzz.plan import Plan, classes
from sqltune.sql.fuzz.schema import DATE, Column, Key, Table, Value

_LABEL = re.compile(r"name|title|email|phone|address|registration|isbn|code|number|licen[cs]e", re.IGNORECASE)
_SYLLABLES = ["ka", "lo", "mi", "ren", "sa", "tor", "vel", "di", "no", "bra", "qu", "es", "ul", "zen", "pa", "ri"]



# ----------------------------------------------------------------------------- values


def _word(rng: random.Random) -> str:
    return " ".join("".join(rng.choices(_SYLLABLES, k=rng.randint(2, 3))).capitalize() for _ in range(rng.randint(1, 2)))


def _distinctish(col: Column) -> bool:
    """Unique by constraint, or a label (name, title, email, ...): real tables rarely repeat those."""
    return col.unique or (col.kind == "text" and bool(_LABEL.search(col.name)))


def _sampler(col: Column, lits: list[Value], rng: random.Random) -> Callable[[], Value]:
    """Background values for a column: of its kind, and around its planted literals if it has any."""
    dates = [v for v in lits if isinstance(v, str) and DATE.fullmatch(v)]
    nums = [float(v) for v in lits if isinstance(v, (int, float)) or (isinstance(v, str) and v.isdigit())]
    if col.kind in ("date", "datetime") or (dates and len(dates) == len(lits)):
        years = [int(v[:4]) for v in dates] or [rng.randint(1990, 2020)]
        lo, hi = dt.date(max(min(years) - 3, 1), 1, 1), dt.date(min(max(years) + 3, 9999), 12, 31)
        timed = col.kind == "datetime" or any(DATE.fullmatch(v)[4] for v in dates)
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


def _assignments(table: str, plan: Plan, rng: random.Random) -> list[dict[str, Value]]:
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


def _pools(plan: Plan, tables: dict[str, Table], sizes: dict[str, int],
           rng: random.Random) -> dict[Key, tuple[list[Value], int]]:
    """Per class of equated columns: (its key values, how many of them non-unique columns draw from).
    Planted literals come first; unique columns take the head, so every drawn key exists in them."""
    pools = {}
    for keys in classes(plan, tables):
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


def _column(table: str, col: Column, n: int, plan: Plan, pools: dict[Key, tuple[list[Value], int]],
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


def build(tables: dict[str, Table], plan: Plan, rng: random.Random) -> bytes:
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
