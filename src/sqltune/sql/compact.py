"""Compact SQL and schema text (`format.compact_sql`): the same queries in fewer tokens.

Some corpora write SQL in a form that costs a model many tokens: text2sql-data puts every name in
capitals and gives every table an alias such as `RESTAURANTalias0`, so a restaurants answer is ~134
SmolLM2 tokens where the same query written plainly is ~84 (scholar 130 -> 75, atis 315 ->
222; the schemas shrink by a fifth). The model has to learn and write every
one of them. Here, for the training target and the solved examples in the prompt only:

- the SQL is lower-cased outside string literals and quoted names, each `<TABLE>alias<N>` alias is
  renamed `<table><N>`, and the corpus's tokenizer-style spacing (`COUNT( * )`, `a , b`, ` ;`)
  closes up. The text is rewritten, not re-generated: sqlglot would also turn `FROM a , b` into
  `CROSS JOIN`, longer and not the corpus's style;
- the schema text is lower-cased outside string literals, quoted names and comments (sample rows
  keep their values).

SQLite and PostgreSQL read unquoted names case-insensitively, so the query means the same on the
same database; scoring still compares results against the corpus's own gold queries (`golds`).
"""

from __future__ import annotations

import re
from typing import Any

from sqltune.data.rows import golds

_ALIAS_WORD = re.compile(r"\b(\w+?)alias(\d+)\b")
_LITERAL = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|`[^`]*`|\[[^\]]*\]")
_KEEP = re.compile(_LITERAL.pattern + r"|/\*.*?(?:\*/|\Z)|--[^\n]*", re.DOTALL)  # and comments (sample rows)


def compact_sql(sql: str) -> str:
    """`sql` lower-cased outside literals and quoted names, `XaliasN` aliases renamed `xN`, spacing
    closed up and a final ';' dropped (module doc)."""
    def rewrite(text: str) -> str:
        text = _ALIAS_WORD.sub(r"\1\2", text.lower())
        text = re.sub(r"\s+", " ", text)
        return re.sub(r"\s+([,)])|([(])\s+", lambda m: m.group(1) or m.group(2), text)

    out, pos = [], 0
    for m in _LITERAL.finditer(sql):
        out += [rewrite(sql[pos:m.start()]), m.group(0)]
        pos = m.end()
    return ("".join(out) + rewrite(sql[pos:])).strip().rstrip(";").rstrip()


def compact_schema(text: str) -> str:
    """`text` lower-cased except inside string literals, quoted names and comments."""
    out, pos = [], 0
    for m in _KEEP.finditer(text):
        out += [text[pos:m.start()].lower(), m.group(0)]
        pos = m.end()
    return "".join(out) + text[pos:].lower()


def compact_row(row: dict[str, Any]) -> dict[str, Any]:
    """The row as the model sees it with `format.compact_sql`: its schema, training target and
    examples compact; `golds` keeps the corpus's own queries, which scoring runs."""
    out = {**row, "golds": golds(row), "input": compact_schema(str(row["input"])),
           "response": compact_sql(str(row["response"]))}
    if row.get("examples"):
        out["examples"] = [{**e, "sql": compact_sql(e["sql"])} for e in row["examples"]]
    return out
