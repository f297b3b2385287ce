"""What a row is: its columns, when it is usable, and its difficulty bucket.

Difficulty follows the reference (determined-examples blog/llm-finetuning) exactly: the word count
(`str.split`) of instruction + input + response; easy 10-100, medium 101-200, hard 201-800, inclusive.
The generator (`synthetic`) aims its schema views at the same buckets.
"""

from __future__ import annotations

import math
from typing import Any

from sqltune.errors import DataError

COLUMNS = ("instruction", "input", "response")
BUCKETS = {"easy": (10, 100), "medium": (101, 200), "hard": (201, 800)}  # inclusive word counts
MAX_CELL_CHARS = 1_000_000  # a cell longer than this is skipped: no schema or query is that long


def word_count(row: dict[str, Any]) -> int:
    return sum(len(str(row[c]).split()) for c in COLUMNS)


def difficulty(row: dict[str, Any], *, open_ended: bool = False) -> str | None:
    """The row's bucket; None outside 10-800 words, or, `open_ended`, "hard" beyond 800 (a
    benchmark's big schemas, which the reference's buckets leave out)."""
    n = word_count(row)
    for name, (lo, hi) in BUCKETS.items():
        if lo <= n <= hi:
            return name
    return "hard" if open_ended and n > BUCKETS["hard"][1] else None


def with_golds(row: dict[str, Any]) -> dict[str, Any]:
    """A row whose `response` is a list of gold queries (several correct answers) as one gold
    `response`, the first, which training learns, plus `golds`, all of them, which scoring
    accepts (a prediction matching any counts). Any other row is returned as it is."""
    response = row.get("response")
    if not isinstance(response, (list, tuple)):
        return row
    golds = [str(g).strip() for g in response if g is not None and str(g).strip()]
    return {**row, "response": golds[0] if golds else "", "golds": golds}


def on_database(row: dict[str, Any], database: str | None) -> dict[str, Any]:
    """The row on `database` (data.database) when set, `{db_id}` in it becoming the row's db_id.

    Raises:
        DataError: `database` names {db_id} and the row has none.
    """
    if not database:
        return row
    if "{db_id}" in database:
        if not row.get("db_id"):
            raise DataError(f"data.database names {{db_id}}, but a row has no db_id: {str(row.get('instruction'))[:80]!r}")
        database = database.replace("{db_id}", str(row["db_id"]))
    return {**row, "db_path": database}


def golds(row: dict[str, Any]) -> list[str]:
    """Every accepted gold query of a row: its `golds`, else its `response`."""
    return list(row.get("golds") or [str(row["response"])])


def row_problem(row: Any) -> str | None:
    if not isinstance(row, dict):
        return "not a mapping"
    for c in COLUMNS:
        value = row.get(c)
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return f"missing '{c}'"
        if len(str(value)) > MAX_CELL_CHARS:
            return f"'{c}' longer than {MAX_CELL_CHARS:,} characters"
    if not str(row["response"]).strip():
        return "empty 'response'"
    return None
