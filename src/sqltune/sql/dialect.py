"""Gold SQL written for one engine, rewritten for another (sqlglot's transpiler), at data load.

A corpus's queries are written in `data.dialect` (Spider's and BIRD's in SQLite's); a model taught
to write `format.dialect` learns from, and is scored against, the same queries transpiled. A query
sqlglot can't read, or writes with a warning that something was lost ("unsupported"), is not
guessed at: its row is left out, counted and named in the data's stats and in one warning line.
"""

from __future__ import annotations

import logging
from typing import Any

import sqlglot
from sqlglot.errors import ErrorLevel, ParseError, UnsupportedError

from sqltune.data.rows import golds


def transpile(sql: str, read: str, write: str) -> str:
    """`sql` in dialect `write`; raises ValueError when sqlglot can't read it or can't say it."""
    try:
        out = sqlglot.transpile(sql, read=read, write=write, unsupported_level=ErrorLevel.RAISE)
    except (ParseError, UnsupportedError, sqlglot.errors.TokenError) as e:
        raise ValueError(f"{type(e).__name__}: {str(e).splitlines()[0][:200]}") from None
    if len(out) != 1:
        raise ValueError(f"{len(out)} statements")
    return out[0]


def transpile_rows(rows: list[dict[str, Any]], read: str, write: str, name: str
                   ) -> tuple[list[dict[str, Any]], list[str]]:
    """The rows with their gold queries (`response`, `golds`) in `write`, and a line per row left
    out ("<name> row <i>: <why>")."""
    out, left_out = [], []
    quiet = logging.getLogger("sqlglot")
    level, quiet.level = quiet.level, logging.ERROR
    try:
        for i, row in enumerate(rows, 1):
            try:
                moved = [transpile(g, read, write) for g in golds(row)]
            except ValueError as e:
                left_out.append(f"{name} row {i}: {e}")
                continue
            out.append({**row, "response": moved[0], **({"golds": moved} if row.get("golds") else {})})
    finally:
        quiet.setLevel(level)
    return out, left_out
