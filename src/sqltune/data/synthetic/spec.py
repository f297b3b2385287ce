"""The schema language of the synthetic databases: tables and columns with roles and value generators.

Each domain is written in a tiny schema language, one table per paragraph:

    customers (customer, 150): customer_id pk, full_name label person, city cat city?

reads "table customers, a row is a customer, 150 rows; then for each column its name,
its role and its value generator". A trailing `?` lets about 8% of the values be NULL;
every other column is declared NOT NULL. The role tells the question templates in
questions.py and joins.py how a column may be used:

    pk     INTEGER PRIMARY KEY, numbered 1..rows
    fk     foreign key; the generator is the parent table
    label  what a row is called (a name, a title): shown in answers, matched with LIKE
    cat    a category: filtered with = and IN, grouped on
    num    a number: compared, averaged, summed, sorted on
    date   an ISO date: compared, bucketed by year
    -      only there to make the schema realistic (phones, e-mails, flags)

A string language instead of dataclass literals keeps ten schemas of ~540 columns in one
readable file (schemas.py); the cost is a small parser, which rejects any role or
generator it does not know. Rows come from random.Random seeded with the domain name, so they do not
depend on the question seed: every seed asks about the same databases.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from sqltune.data.synthetic.schemas import (ADJ, CITIES, COUNTRIES, FIRST, LAST, NOUN, PATTERNS, PRODUCT_ITEMS,
                                            PRODUCT_KINDS, VOCAB)

Row = dict[str, Any]  # column name -> value: str, int, float or None (NULL)
ValueMaker = Callable[[random.Random, Row], Any]  # (rng, the row made so far) -> a value


@dataclass
class Column:
    name: str
    role: str  # pk, fk, label, cat, num, date or -
    gen: str  # value generator; for a fk, the parent table
    nullable: bool
    sql_type: str
    ref: str = ""  # "customers(customer_id)" for a fk


@dataclass
class Table:
    name: str
    singular: str
    n_rows: int
    columns: list[Column]

    @property
    def plural(self) -> str:
        """How a question names the rows: order_items -> "order items"."""
        return self.name.replace("_", " ")

    @property
    def pk(self) -> Column:
        return self.columns[0]

    @property
    def label(self) -> Column:
        """The column that names a row; the primary key when nothing better exists."""
        return next((column for column in self.columns if column.role == "label"), self.pk)


ROLES = {"pk", "fk", "label", "cat", "num", "date", "-"}
HEADER = re.compile(r"(\w+) \(([\w ]+), (\d+)\): (.*)")


def parse_domain_spec(spec: str) -> dict[str, Table]:
    """Turn one domain's schema text into tables, checking roles, generators and fks."""
    tables: dict[str, Table] = {}
    for paragraph in re.sub(r"\n\s+", " ", spec.strip()).splitlines():
        header = HEADER.fullmatch(paragraph.strip())
        if not header:
            raise ValueError(f"bad table line: {paragraph!r}")
        name, singular, n_rows, items = header.groups()
        columns = [parse_column(item, name, tables) for item in items.split(",")]
        if columns[0].role != "pk":
            raise ValueError(f"{name}: the first column must be the primary key")
        tables[name] = Table(name, singular, int(n_rows), columns)
    return tables


def parse_column(item: str, table: str, tables: dict[str, Table]) -> Column:
    """One `name role generator?` item; a fk's parent must be one of the `tables` before it."""
    name, role, *gens = item.split()
    if role not in ROLES or len(gens) > 1:
        raise ValueError(f"bad column {item.strip()!r} in table {table}")
    spec = gens[0] if gens else ""
    gen = spec.rstrip("?")
    column = Column(name, role, gen, spec.endswith("?"), sql_type(role, gen))
    if role == "fk":
        if gen not in tables:
            raise ValueError(f"{table}.{name}: unknown parent table {gen!r}")
        column.ref = f"{gen}({tables[gen].pk.name})"
    return column


def sql_type(role: str, gen: str) -> str:
    head = gen.split(":")[0]
    if role in ("pk", "fk") or head in ("int", "year", "flag"):
        return "INTEGER"
    if head in ("money", "real"):
        return "REAL"
    if head in ("date", "after"):
        return "DATE"
    if head in GENERATORS or head in VOCAB or head == "code" or "/" in gen:
        return "TEXT"
    raise ValueError(f"unknown value generator {gen!r}")


# ---- value generators ---------------------------------------------------------------------

def _city(rng: random.Random, row: Row) -> str:
    """A city; it and its country stay in the row as hints, so later columns agree with it."""
    city, country = rng.choice(CITIES)
    row["_city"], row["_country"] = city, country
    return city


def _person(rng: random.Random, row: Row) -> str:
    """A full name; kept as a hint so that an `email` column later in the row matches it."""
    person = f"{rng.choice(FIRST)} {rng.choice(LAST)}"
    row["_person"] = person
    return person


def _email(rng: random.Random, row: Row) -> str:
    name = row.get("_person") or f"{rng.choice(FIRST)} {rng.choice(LAST)}"
    host = rng.choice(["gmail.com", "outlook.com", "yahoo.com", "proton.me", "mail.com"])
    return f"{name.lower().replace(' ', '.')}{rng.randint(1, 99)}@{host}"


FIELDS: dict[str, ValueMaker] = {  # the {fields} a PATTERNS entry may use
    "city": lambda rng, row: row.get("_city") or _city(rng, row),
    "first": lambda rng, row: rng.choice(FIRST),
    "last": lambda rng, row: rng.choice(LAST),
    "adj": lambda rng, row: rng.choice(ADJ),
    "noun": lambda rng, row: rng.choice(NOUN),
    "item": lambda rng, row: rng.choice(PRODUCT_ITEMS),
    "kind": lambda rng, row: rng.choice(PRODUCT_KINDS),
    "brand": lambda rng, row: rng.choice(VOCAB["cinema_brand"]),
    "n": lambda rng, row: rng.randint(1, 250),
}


def _pattern(name: str) -> ValueMaker:
    """A generator filling one of the PATTERNS[name] at random."""
    def make(rng: random.Random, row: Row) -> str:
        pattern = rng.choice(PATTERNS[name])
        return pattern.format(**{key: FIELDS[key](rng, row) for key in re.findall(r"{(\w+)}", pattern)})
    return make


GENERATORS: dict[str, ValueMaker] = {  # `row` holds the columns made so far, plus _hints (_city, _person)
    "person": _person,
    "email": _email,
    "city": _city,
    "country": lambda rng, row: row.get("_country") or rng.choice(COUNTRIES),
    "nationality": lambda rng, row: rng.choice(COUNTRIES),
    "phone": lambda rng, row: f"+{rng.randint(1, 99)} {rng.randint(100, 999)} {rng.randint(10**6, 10**7 - 1)}",
    "postcode": lambda rng, row: str(rng.randint(10000, 99999)),
    "handle": lambda rng, row: f"{rng.choice(ADJ).lower()}_{rng.choice(NOUN).lower()}{rng.randint(1, 99)}",
    "isbn": lambda rng, row: f"978-{rng.randint(0, 9)}-{rng.randint(1000, 9999)}-{rng.randint(1000, 9999)}",
    "seat": lambda rng, row: f"{rng.randint(1, 40)}{rng.choice('ABCDEF')}",
    "time": lambda rng, row: f"{rng.randint(6, 23):02d}:{rng.choice(range(0, 60, 5)):02d}",
    **{name: _pattern(name) for name in PATTERNS},
}


def make_value(gen: str, rng: random.Random, row: Row) -> Any:
    """One value from a generator spec: a GENERATORS name, a VOCAB list, a/b/c, or head:args."""
    head, *args = gen.split(":")
    if head in GENERATORS:
        return GENERATORS[head](rng, row)
    if head in VOCAB:
        return rng.choice(VOCAB[head])
    if "/" in gen:
        return rng.choice(gen.split("/")).replace("_", " ")
    if head == "code":  # code:BA:4 -> "BA" and 4 digits
        return args[0] + str(rng.randint(10 ** (int(args[1]) - 1), 10 ** int(args[1]) - 1))
    if head in ("int", "year"):
        return rng.randint(int(args[0]), int(args[1]))
    if head == "flag":
        return int(rng.random() < 0.5)
    if head in ("money", "real"):
        return round(rng.uniform(float(args[0]), float(args[1])), 2 if head == "money" else 1)
    if head == "date":  # date:2015:2024, any day of those years
        start = date(int(args[0]), 1, 1)
        return (start + timedelta(rng.randrange((date(int(args[1]) + 1, 1, 1) - start).days))).isoformat()
    if head == "after":  # after:loan_date:7:30, days after another date column
        if row[args[0]] is None:
            return None
        days = rng.randint(int(args[1]), int(args[2]))
        return (date.fromisoformat(row[args[0]]) + timedelta(days)).isoformat()
    raise ValueError(f"unknown value generator {gen!r}")
