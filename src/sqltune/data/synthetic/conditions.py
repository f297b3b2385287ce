"""Saying tables, columns and conditions in English and in SQL, for the question templates.

Templates know nothing about shops or hospitals. They read column roles (label, cat,
num, date, fk) from domains.py and say columns by their names: `home_city` is "home
city", the fk `major_department_id` is "major department", `height_cm` is "height in
cm". A condition is built from an "anchor" row of the real data, so it holds for that
row and the gold query returns at least one row: a bound for `>` is a smaller value of
the same column, a LIKE pattern is a piece of the row's own label, and so on.

The English is grammatical but plain ("customers whose city is Lyon"); the variety comes
from several phrasings per template and the many columns and values that fill them.
"""

import random
from typing import NamedTuple

from sqltune.data.synthetic.domains import Column, Domain, Table

FILTER_ROLES = ("label", "cat", "num", "date")
AGGREGATES = {"AVG": ["average", "mean"], "SUM": ["total"], "MIN": ["minimum", "lowest"],
              "MAX": ["maximum", "highest"]}
UNITS = {"m": "meters", "km": "km", "kg": "kg", "cm": "cm", "mg": "mg", "sqm": "square meters",
         "million": "millions", "thousands": "thousands", "minutes": "minutes", "seconds": "seconds"}
COMPARISONS = {
    ">": ["is greater than {}", "is above {}", "exceeds {}"], ">=": ["is at least {}", "is {} or more"],
    "<": ["is less than {}", "is below {}", "is under {}"], "<=": ["is at most {}", "is {} or less"],
    "date>": ["is after {}", "is later than {}"], "date<": ["is before {}", "is earlier than {}"],
}


# ---- small language helpers ---------------------------------------------------------------

def lit(value) -> str:
    """A SQL literal."""
    return "'" + value.replace("'", "''") + "'" if isinstance(value, str) else repr(value)


def phrase(col: Column) -> str:
    """How a question names a column: home_city -> "home city", customer_id (fk) -> "customer",
    height_cm -> "height in cm"."""
    name = col.name[:-3] if col.role == "fk" and col.name.endswith("_id") else col.name
    head, _, unit = name.rpartition("_")
    if head and unit in UNITS:
        return f"{head.replace('_', ' ')} in {UNITS[unit]}"
    return name.replace("_", " ")


def plural(words: str) -> str:
    if " in " in words:  # "height in cm" -> "heights in cm"
        head, tail = words.split(" in ", 1)
        return f"{plural(head)} in {tail}"
    if words.endswith(("s", "x", "ch", "sh")):
        return words + "es"
    if words.endswith("y") and words[-2:-1] not in "aeiou":
        return words[:-1] + "ies"
    return words + "s"


def a(words: str) -> str:
    return ("an " if words[0].lower() in "aeiou" else "a ") + words


def bare(owner: str, words: str) -> str:
    """Drop the owner's noun from a column phrase: ('publisher', 'publisher name') -> 'name'."""
    last = owner.split()[-1] + " "
    return words[len(last):] if words.startswith(last) else words


def of(owner: str, words: str) -> str:
    """'away team' + 'team name' -> 'away team name'; 'author' + 'full name' -> 'author full name'."""
    return f"{owner} {bare(owner, words)}"


def owned(owner: str, words: str) -> str:
    """'publisher' + 'publisher name' -> "publisher's name"; + 'city' -> "publisher's city"."""
    return f"{owner}'s {bare(owner, words)}"


def listing(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def nouns(t: Table) -> tuple[str, str]:
    return t.name.replace("_", " "), t.singular


def relative(rng: random.Random, subject: str, pred: str) -> str:
    """A relative clause usable after a plural or singular noun."""
    form = rng.choices(["whose {} {}", "where the {} {}", "for which the {} {}"], [6, 3, 1])[0]
    return form.format(subject, pred)


def say_date(rng: random.Random, iso: str) -> str:
    y, m, d = iso.split("-")
    month = ["January", "February", "March", "April", "May", "June", "July", "August",
             "September", "October", "November", "December"][int(m) - 1]
    return rng.choices([iso, f"{int(d)} {month} {y}", f"{month} {int(d)}, {y}"], [6, 2, 2])[0]


# ---- picking tables, columns and conditions -------------------------------------------------

def columns(t: Table, *roles: str, row: dict | None = None) -> list[Column]:
    return [c for c in t.columns if c.role in roles and (row is None or row[c.name] is not None)]


def pick_table(rng: random.Random, dom: Domain, *roles: str) -> Table | None:
    """A table having at least one column of each role."""
    tables = [t for t in dom.tables.values() if all(columns(t, r) for r in roles)]
    return rng.choice(tables) if tables else None


class Cond(NamedTuple):
    """A WHERE condition: sql "T2.city = 'Lyon'", subject "city", pred "is Lyon"."""
    sql: str
    subject: str
    pred: str
    column: Column


def condition(rng: random.Random, dom: Domain, t: Table, row: dict, alias: str = "",
              skip: tuple[Column, ...] = ()) -> Cond | None:
    """A condition on one column of `t` (not one in `skip`) that holds for `row`."""
    cols = [c for c in columns(t, *FILTER_ROLES, row=row) if c not in skip]
    if not cols:
        return None
    col = rng.choice(cols)
    v, x = row[col.name], f"{alias}.{col.name}" if alias else col.name
    values = dom.values(t.name, col.name)
    kinds = ["eq"] if col.role in ("cat", "label") or (isinstance(v, int) and len(values) <= 12) else []
    if col.role == "cat" and len(values) > 2:
        kinds.append("in")
    if col.role == "label" and isinstance(v, str) and len(v) >= 5:
        kinds += ["like", "like"]
    if col.role == "date":
        kinds += ["year", "range", "range"]
    elif col.role != "cat" and isinstance(v, (int, float)) and len(values) > 1:
        kinds += ["range", "range"]
    kind = rng.choice(kinds or ["eq"])
    if kind == "in":
        picked = rng.sample([u for u in values if u != v], rng.randint(1, 2)) + [v]
        rng.shuffle(picked)
        said = listing([str(u) for u in picked])
        pred = rng.choice(["is " + said.replace(" and ", " or "), "is one of " + said])
        return Cond(f"{x} IN ({', '.join(lit(u) for u in picked)})", phrase(col), pred, col)
    if kind == "like":
        if rng.random() < 0.5:
            part = v[: rng.randint(1, 3)]
            return Cond(f"{x} LIKE {lit(part + '%')}", phrase(col), f"starts with '{part}'", col)
        start = rng.randrange(len(v) - 3)
        part = v[start:start + rng.randint(3, 4)].strip()
        return Cond(f"{x} LIKE {lit('%' + part + '%')}", phrase(col), f"contains '{part}'", col)
    if kind == "year":
        return Cond(f"strftime('%Y', {x}) = '{v[:4]}'", phrase(col), f"is in {v[:4]}", col)
    if kind == "range":
        sql, pred = comparison(rng, col, x, v, values)
        return Cond(sql, phrase(col), pred, col)
    return Cond(f"{x} = {lit(v)}", phrase(col), f"is {say(rng, col, v)}", col)


def comparison(rng: random.Random, col: Column, x: str, v, values: list) -> tuple[str, str]:
    """x BETWEEN / > / < / >= / <= a bound taken from the column, true for the value v."""
    lower, higher = [u for u in values if u < v], [u for u in values if u > v]
    op = rng.choice(["BETWEEN", ">", "<"] if col.role == "date" else ["BETWEEN", ">", "<", ">=", "<="])
    if op == "BETWEEN" and lower and higher:
        lo, hi = rng.choice(lower), rng.choice(higher)
        return f"{x} BETWEEN {lit(lo)} AND {lit(hi)}", f"is between {say(rng, col, lo)} and {say(rng, col, hi)}"
    op = rng.choice([">", "<"]) if op == "BETWEEN" else op
    if not (lower if op in (">", ">=") else higher):  # nothing on that side of v: turn around
        op = {">": "<", ">=": "<=", "<": ">", "<=": ">="}[op]
    # >= and <= may use v itself, but not the column's min / max (always true)
    bound = rng.choice({">": lower, "<": higher, ">=": (lower + [v])[1:], "<=": ([v] + higher)[:-1]}[op])
    form = rng.choice(COMPARISONS[("date" if col.role == "date" else "") + op])
    return f"{x} {op} {lit(bound)}", form.format(say(rng, col, bound))


def say(rng: random.Random, col: Column, value) -> str:
    return say_date(rng, value) if col.role == "date" else str(value)


class Where(NamedTuple):
    """A condition with its relative clause: sql "city = 'Lyon'", rel "whose city is Lyon"."""
    sql: str
    rel: str


def where(rng, dom, t, row, alias="", skip=()) -> Where | None:
    made = condition(rng, dom, t, row, alias, skip)
    return Where(made.sql, relative(rng, made.subject, made.pred)) if made else None


def details(rng: random.Random, t: Table) -> list[Column]:
    """One or two plain columns (not keys, not the label) to show."""
    plain = [c for c in t.columns if c.role not in ("pk", "fk", "label") and c.gen != "flag"]
    return rng.sample(plain, min(len(plain), rng.randint(1, 2)))


def not_null(col: Column) -> str:
    """A WHERE clause keeping NULLs out of a ranking, for columns that may hold them."""
    return f" WHERE {col.name} IS NOT NULL" if col.nullable else ""


def below_max(values: list) -> list:
    """Distinct values under the maximum: thresholds that some group still exceeds."""
    top = max(values, default=None)
    return sorted({v for v in values if v < top})


def order_words(col: Column, desc: bool) -> str:
    if col.role == "date":
        return "latest" if desc else "earliest"
    return "highest" if desc else "lowest"


def aggregate_for(rng: random.Random, col: Column) -> str:
    """An aggregate function that makes sense for the column (no sums of years)."""
    return rng.choice(["AVG", "MIN", "MAX"] if col.gen.startswith("year") else list(AGGREGATES))
