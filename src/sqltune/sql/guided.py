"""Execution-guided decoding: of several SQL candidates for one question, keep one the database
accepts.

    first_valid  the best-ranked candidate that runs without error (and, with `needs_rows`,
                 returns at least one row): the long-known cheap gain (Wang et al., 2018)
    vote         self-consistency: the result most candidates agree on, among those that run;
                 its best-ranked candidate (ties: the better-ranked result)

Without a database a candidate counts as valid when sqlglot parses it (no vote: there is no result
to compare). When no candidate is valid, the first is kept. Candidates run in `sandbox`.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from sqltune.sql.execute import clean_sql
from sqltune.sql.match import parse_query
from sqltune.sql.sandbox import execute


def _result_key(rows: list[tuple]) -> tuple:
    """A result as a bag of rows, columns in order: equal keys, equal results (for voting)."""
    return tuple(sorted(Counter(tuple(repr(v) for v in row) for row in rows).items()))


def pick(candidates: list[str], db_path: str | Path | None, rule: str = "first_valid", *,
         needs_rows: bool = False, timeout_s: float = 1.0) -> int:
    """The index of the candidate to answer with (see module doc)."""
    if db_path is None:
        return next((i for i, sql in enumerate(candidates) if parse_query(clean_sql(sql)) is not None), 0)
    results = []
    for i, sql in enumerate(candidates):
        run = execute(db_path, clean_sql(sql), timeout_s=timeout_s)
        if run.ok and (run.rows or not needs_rows):
            if rule == "first_valid":
                return i
            results.append((i, _result_key(run.rows)))
    if not results:
        return 0
    votes = Counter(key for _, key in results)
    best = max(votes.values())
    return next(i for i, key in results if votes[key] == best)
