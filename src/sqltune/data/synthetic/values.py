"""The rows of a synthetic database: each column's values from its generator (spec.py), foreign
keys pointing at ~85% of the parent rows, ~8% NULLs where a column allows them."""

from __future__ import annotations

import random
from typing import Any

from sqltune.data.synthetic.spec import Column, Row, Table, make_value

NULL_RATE = 0.08  # share of NULLs in a column marked with `?`
FK_COVERAGE = 0.85  # share of parent rows that children point at (so anti-joins find rows)


# ---- rows ---------------------------------------------------------------------------------

def make_rows(tables: dict[str, Table], rng: random.Random) -> dict[str, list[Row]]:
    """Fill tables in order; labels are unique where the generator allows it."""
    rows: dict[str, list[Row]] = {}
    for table in tables.values():
        parents = {column.name: _fk_targets(rows[column.gen], tables[column.gen], rng)
                   for column in table.columns if column.role == "fk"}
        labels: set[Any] = set()
        made = []
        for row_id in range(1, table.n_rows + 1):
            row: Row = {}
            for column in table.columns:
                if column.role == "pk":
                    row[column.name] = row_id
                elif column.role == "fk":
                    row[column.name] = _pick_parent(rng, parents[column.name], row, table, column)
                elif column.nullable and rng.random() < NULL_RATE:
                    row[column.name] = None
                elif column.role == "label":
                    row[column.name] = _unique(column.gen, rng, row, labels)
                else:
                    row[column.name] = make_value(column.gen, rng, row)
            made.append({key: value for key, value in row.items() if not key.startswith("_")})
        rows[table.name] = made
    return rows


def _unique(gen: str, rng: random.Random, row: Row, seen: set[Any], tries: int = 30) -> Any:
    """A value not in `seen`, if `tries` draws find one (a short word list may repeat)."""
    for _ in range(tries):
        value = make_value(gen, rng, row)
        if value not in seen:
            break
    seen.add(value)
    return value


def _fk_targets(parent_rows: list[Row], parent: Table, rng: random.Random) -> list[int]:
    """The parent ids children may point at: all but 1 - FK_COVERAGE of them."""
    ids = [row[parent.pk.name] for row in parent_rows]
    return rng.sample(ids, max(1, round(len(ids) * FK_COVERAGE)))


def _pick_parent(rng: random.Random, targets: list[int], row: Row, table: Table, fk: Column) -> int:
    """A parent id; a second fk to the same parent (home/away team) gets a different one."""
    taken = {row[other.name] for other in table.columns
             if other.role == "fk" and other.gen == fk.gen and other.name in row}
    choice = rng.choice(targets)
    while choice in taken and len(targets) > len(taken):
        choice = rng.choice(targets)
    return choice
