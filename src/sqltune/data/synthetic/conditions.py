"""Saying tables, columns and conditions in English and in SQL, for the question templates.

Templates know nothing about shops or hospitals. They read column roles (label, cat,
num, date, fk) from spec.py and say columns by their names: `home_city` is "home
city", the fk `major_department_id` is "major department", `height_cm` is "height in
cm". A condition is built from an "anchor" row of the real data, so it holds for that
row and the gold query returns at least one row: a bound for `>` is a smaller value of
the same column, a LIKE pattern is a piece of the row's own label, and so on.

The English is grammatical but plain ("customers whose city is Lyon"); the variety comes
from several phrasings per template and the many columns and values that fill them.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, TypeVar

from sqltune.data.synthetic.domains import Domain
from sqltune.data.synthetic.spec import Column, Row, Table

Choice = TypeVar("Choice")
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
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September",
          "October", "November", "December"]


class Made(NamedTuple):
    """What a template makes: the question, its gold SQL and the tables that SQL reads."""
    question: str
    sql: str
    tables: list[str]


# (rng, domain) -> a question; raises Unfit when the domain has nothing the template can use (this draw)
Template = Callable[[random.Random, Domain], "Made"]


# ---- small language helpers ---------------------------------------------------------------

def literal(value: Any) -> str:
    """A SQL literal: 'O''Brien' for a string, repr() for a number."""
    return "'" + value.replace("'", "''") + "'" if isinstance(value, str) else repr(value)


def phrase(column: Column) -> str:
    """How a question names a column: home_city -> "home city", customer_id (fk) -> "customer",
    height_cm -> "height in cm"."""
    name = column.name[:-3] if column.role == "fk" and column.name.endswith("_id") else column.name
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


def with_article(words: str) -> str:
    """'album' -> 'an album', 'city' -> 'a city'."""
    return ("an " if words[0].lower() in "aeiou" else "a ") + words


def strip_owner(owner: str, words: str) -> str:
    """Drop the owner's noun from a column phrase: ('publisher', 'publisher name') -> 'name'."""
    last = owner.split()[-1] + " "
    return words[len(last):] if words.startswith(last) else words


def qualified(owner: str, words: str) -> str:
    """'away team' + 'team name' -> 'away team name'; 'author' + 'full name' -> 'author full name'."""
    return f"{owner} {strip_owner(owner, words)}"


def possessive(owner: str, words: str) -> str:
    """'publisher' + 'publisher name' -> "publisher's name"; + 'city' -> "publisher's city"."""
    return f"{owner}'s {strip_owner(owner, words)}"


def listing(items: list[str]) -> str:
    """['a', 'b', 'c'] -> 'a, b and c'."""
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def tidy(question: str) -> str:
    """Drop the space an empty part leaves before punctuation: 'of customers ?' -> 'of customers?'."""
    return question.replace(" .", ".").replace(" ?", "?").replace(" ,", ",")


def relative(rng: random.Random, subject: str, pred: str) -> str:
    """A relative clause usable after a plural or singular noun."""
    form = rng.choices(["whose {} {}", "where the {} {}", "for which the {} {}"], [6, 3, 1])[0]
    return form.format(subject, pred)


def say_date(rng: random.Random, iso: str) -> str:
    """'2021-03-05' as is, or as '5 March 2021' or 'March 5, 2021'."""
    year, month, day = iso.split("-")
    name = MONTHS[int(month) - 1]
    return rng.choices([iso, f"{int(day)} {name} {year}", f"{name} {int(day)}, {year}"], [6, 2, 2])[0]


def say(rng: random.Random, column: Column, value: Any) -> str:
    return say_date(rng, value) if column.role == "date" else str(value)


# ---- picking tables, columns and conditions -------------------------------------------------

def columns(table: Table, *roles: str, row: Row | None = None) -> list[Column]:
    """The table's columns with one of `roles` (and, given a row, not NULL in it)."""
    return [column for column in table.columns
            if column.role in roles and (row is None or row[column.name] is not None)]


class Unfit(Exception):
    """The domain has nothing this template can use; the generator tries another (`make_question`)."""


def pick_table(rng: random.Random, domain: Domain, *roles: str) -> Table:
    """A table having at least one column of each role; Unfit when the domain has none."""
    tables = [table for table in domain.tables.values() if all(columns(table, role) for role in roles)]
    if not tables:
        raise Unfit(f"{domain.name} has no table with columns of roles {', '.join(roles)}")
    return rng.choice(tables)


def pick_one(rng: random.Random, options: Sequence[Choice], what: str) -> Choice:
    """One of `options`; Unfit when there are none (a domain without `what`)."""
    if not options:
        raise Unfit(f"no {what}")
    return rng.choice(options)


def anchor_row(rng: random.Random, domain: Domain, table: Table) -> Row:
    """A random row of the table, for the conditions to hold on."""
    return rng.choice(domain.rows[table.name])


class Cond(NamedTuple):
    """A WHERE condition: sql "T2.city = 'Lyon'", subject "city", pred "is Lyon"."""
    sql: str
    subject: str
    pred: str
    column: Column


class Where(NamedTuple):
    """A condition with its relative clause: sql "city = 'Lyon'", rel "whose city is Lyon"."""
    sql: str
    rel: str


def condition(rng: random.Random, domain: Domain, table: Table, row: Row, alias: str = "",
              skip: tuple[Column, ...] = ()) -> Cond | None:
    """A condition on one column of `table` (not one in `skip`) that holds for `row`."""
    candidates = [column for column in columns(table, *FILTER_ROLES, row=row) if column not in skip]
    if not candidates:
        return None
    column = rng.choice(candidates)
    value, ref = row[column.name], f"{alias}.{column.name}" if alias else column.name
    values = domain.values(table.name, column.name)
    subject = phrase(column)
    kind = rng.choice(condition_kinds(column, value, values))
    if kind == "in":
        picked = rng.sample([other for other in values if other != value], rng.randint(1, 2)) + [value]
        rng.shuffle(picked)
        said = listing([str(item) for item in picked])
        pred = rng.choice(["is " + said.replace(" and ", " or "), "is one of " + said])
        return Cond(f"{ref} IN ({', '.join(literal(item) for item in picked)})", subject, pred, column)
    if kind == "like":
        if rng.random() < 0.5:
            part = value[: rng.randint(1, 3)]
            return Cond(f"{ref} LIKE {literal(part + '%')}", subject, f"starts with '{part}'", column)
        start = rng.randrange(len(value) - 3)
        part = value[start:start + rng.randint(3, 4)].strip()
        return Cond(f"{ref} LIKE {literal('%' + part + '%')}", subject, f"contains '{part}'", column)
    if kind == "year":
        return Cond(f"strftime('%Y', {ref}) = '{value[:4]}'", subject, f"is in {value[:4]}", column)
    if kind == "range":
        return comparison(rng, column, ref, value, values)
    return Cond(f"{ref} = {literal(value)}", subject, f"is {say(rng, column, value)}", column)


def condition_kinds(column: Column, value: Any, values: list[Any]) -> list[str]:
    """The kinds of condition that suit a column and value, repeated to weight the draw."""
    few = isinstance(value, int) and len(values) <= 12
    kinds = ["eq"] if column.role in ("cat", "label") or few else []
    if column.role == "cat" and len(values) > 2:
        kinds.append("in")
    if column.role == "label" and isinstance(value, str) and len(value) >= 5:
        kinds += ["like", "like"]
    if column.role == "date":
        kinds += ["year", "range", "range"]
    elif column.role != "cat" and isinstance(value, (int, float)) and len(values) > 1:
        kinds += ["range", "range"]
    return kinds or ["eq"]


def comparison(rng: random.Random, column: Column, ref: str, value: Any, values: list[Any]) -> Cond:
    """ref BETWEEN / > / < / >= / <= a bound taken from the column, true for `value`."""
    lower, higher = [other for other in values if other < value], [other for other in values if other > value]
    op = rng.choice(["BETWEEN", ">", "<"] if column.role == "date" else ["BETWEEN", ">", "<", ">=", "<="])
    if op == "BETWEEN" and lower and higher:
        low, high = rng.choice(lower), rng.choice(higher)
        pred = f"is between {say(rng, column, low)} and {say(rng, column, high)}"
        return Cond(f"{ref} BETWEEN {literal(low)} AND {literal(high)}", phrase(column), pred, column)
    op = rng.choice([">", "<"]) if op == "BETWEEN" else op
    if not (lower if op in (">", ">=") else higher):  # nothing on that side of the value: turn around
        op = {">": "<", ">=": "<=", "<": ">", "<=": ">="}[op]
    # >= and <= may use the value itself, but not the column's min / max (always true)
    bound = rng.choice({">": lower, "<": higher, ">=": (lower + [value])[1:], "<=": ([value] + higher)[:-1]}[op])
    form = rng.choice(COMPARISONS[("date" if column.role == "date" else "") + op])
    return Cond(f"{ref} {op} {literal(bound)}", phrase(column), form.format(say(rng, column, bound)), column)


def where(rng: random.Random, domain: Domain, table: Table, row: Row, alias: str = "",
          skip: tuple[Column, ...] = ()) -> Where | None:
    """A condition as `condition` makes it, said as a relative clause."""
    cond = condition(rng, domain, table, row, alias, skip)
    return Where(cond.sql, relative(rng, cond.subject, cond.pred)) if cond else None


def details(rng: random.Random, table: Table) -> list[Column]:
    """One or two plain columns (not keys, not the label) to show."""
    plain = [column for column in table.columns if column.role not in ("pk", "fk", "label") and column.gen != "flag"]
    return rng.sample(plain, min(len(plain), rng.randint(1, 2)))


def not_null(column: Column) -> str:
    """A WHERE clause keeping NULLs out of a ranking, for columns that may hold them."""
    return f" WHERE {column.name} IS NOT NULL" if column.nullable else ""


def below_max(values: list[Any]) -> list[Any]:
    """Distinct values under the maximum: thresholds that some group still exceeds."""
    top = max(values, default=None)
    return sorted({value for value in values if value < top})


def order_words(column: Column, desc: bool) -> str:
    if column.role == "date":
        return "latest" if desc else "earliest"
    return "highest" if desc else "lowest"


def aggregate_for(rng: random.Random, column: Column) -> str:
    """An aggregate function that makes sense for the column (no sums of years)."""
    return rng.choice(["AVG", "MIN", "MAX"] if column.gen.startswith("year") else list(AGGREGATES))
