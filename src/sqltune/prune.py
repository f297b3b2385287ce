"""Schema pruning: drop CREATE TABLE statements from a row's `input` until prompt + answer fit.

A row longer than `max_length` tokens used to be truncated, and dropped from training when its
whole answer was cut. Instead we keep the tables that matter and drop the rest:

  - training (`use_gold=True`): every table the gold SQL reads, then the others by rank;
  - inference (`use_gold=False`): tables ranked by overlap with the question alone.

The ranking is lexical (shared word stems between the question and table / column names, plus
foreign-key neighbours of the best matches). It needs no model and no network and gives the same
answer every time; it misses synonyms ("clients" for a `customers` table), which is why the
inference side reports schema recall: how often the pruned schema still holds every gold table
that the full schema held. Whole tables are kept or dropped, never single columns, so a row whose
gold tables alone overflow keeps only those that fit (recall False, even in training).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import re
from typing import Any

import sqlglot
from sqlglot import exp
from tqdm import tqdm

from sqltune import prompts
from sqltune.config import FormatSettings
from sqltune.data import engine_schema, schema
from sqltune.sql import compact, ddl, engine
from sqltune.sql.ddl import Statement

log = logging.getLogger(__name__)

TABLE_WEIGHT = 3.0  # a question stem in the table's name counts this many column hits
FK_BONUS = 2.0  # per top-scored table a table is linked to by a foreign key (either direction)
BATCH = 256  # rows rendered and tokenized per tokenizer call in fit_rows
PROGRESS_OVER = 500  # fit_rows shows a progress bar above this many rows

# Words that say nothing about which table is meant: English glue and generic schema vocabulary.
STOP = frozenset({
    "a", "an", "the", "of", "and", "or", "to", "in", "on", "at", "by", "for", "from", "with", "without",
    "as", "is", "are", "was", "were", "be", "been", "has", "have", "had", "do", "does", "did", "not", "no",
    "than", "then", "that", "this", "these", "those", "which", "what", "who", "whom", "whose", "when",
    "where", "how", "many", "much", "all", "any", "each", "every", "some", "their", "there", "its", "it",
    "they", "them", "his", "her", "our", "your", "my", "me", "show", "list", "give", "find", "get",
    "return", "display", "tell", "name", "names", "id", "ids", "number",
})

@dataclasses.dataclass(frozen=True)
class Fitted:
    row: dict[str, Any]  # a copy; `input` holds the kept statements, in schema order
    pruned: bool
    kept: list[str]
    dropped: list[str]
    recall: bool | None  # every gold table in the schema kept; None if not pruned or no parseable gold
    fits: bool


# --- reading schemas and queries -------------------------------------------------------------

def split_schema(text: str) -> list[Statement]:
    """The schema's statements (sql/ddl.py): each CREATE TABLE, and any text before the first."""
    return ddl.statements(text)


def gold_tables(sql: str) -> set[str] | None:
    """Lower-cased names of the tables `sql` reads (CTE names left out); None if it doesn't parse
    as SQL statements."""
    try:
        trees = [t for t in sqlglot.parse(sql, read="sqlite") if t is not None]
    except sqlglot.errors.SqlglotError:
        return None
    if not trees or not all(isinstance(t, (exp.Query, exp.DML, exp.DDL)) for t in trees):
        return None  # sqlglot reads some prose as an expression ("this is not sql")
    ctes = {c.alias_or_name.lower() for t in trees for c in t.find_all(exp.CTE)}
    return {n.name.lower() for t in trees for n in t.find_all(exp.Table) if n.name} - ctes


# --- ranking ---------------------------------------------------------------------------------

@functools.lru_cache(maxsize=65536)
def words(text: str) -> frozenset[str]:
    """Crude stems of the words in a question or a name: snake_case, camelCase and spaces split,
    lower-cased, a plural 's' stripped, stop words left out."""
    text = re.sub(r"([a-z0-9])([A-Z])|([A-Z]+)([A-Z][a-z])", r"\1\3 \2\4", text)
    found = re.findall(r"[a-z]{2,}|[0-9]+", text.lower())  # a lone letter is noise (the possessive 's)
    return frozenset(_stem(w) for w in found if w not in STOP) - STOP


def _stem(word: str) -> str:
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if word.endswith(("sses", "shes", "ches", "xes")):
        return word[:-2]
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def rank_tables(question: str, statements: list[Statement]) -> list[int]:
    """Statement indices, best first. Lexical: question stems found in the table's name count
    TABLE_WEIGHT each, those found in its column names 1 each; then every table linked by a
    foreign key to a top-scored table gets FK_BONUS per such link, so the bridge table of a join
    survives. A table the question names ranks before any it doesn't (else a neighbour of two
    named tables could outrank a third named one); ties keep schema order. No model, no network:
    deterministic and free."""
    asked = words(question)
    base = []
    for s in statements:
        name_hits = asked & words(s.table or "")
        column_hits = asked & set().union(*(words(c) for c in s.column_names)) - name_hits
        base.append(TABLE_WEIGHT * len(name_hits) + len(column_hits))
    named = {i for i, s in enumerate(statements) if asked & words(s.table or "")}
    top = named or {i for i, b in enumerate(base) if b > 0 and b == max(base)}
    index = {s.table.lower(): i for i, s in enumerate(statements) if s.table}
    links: list[set[int]] = [set() for _ in statements]
    for i, s in enumerate(statements):
        for ref in s.references:
            j = index.get(ref.lower())
            if j is not None and j != i:
                links[i].add(j)
                links[j].add(i)
    score = [b + FK_BONUS * len(links[i] & top) for i, b in enumerate(base)]
    return sorted(range(len(statements)), key=lambda i: (i not in named, -score[i], i))


# --- fitting ---------------------------------------------------------------------------------

def fit_row(row: dict[str, Any], tokenizer: Any, system_prompt: str, max_length: int, *, use_gold: bool,
            layout: str = prompts.DEFAULT_LAYOUT) -> Fitted:
    """The row unchanged if prompt + completion fit `max_length` tokens (counted as
    tokens.encode counts them), else with as many tables as fit, best first (one that doesn't
    fit is skipped, a smaller one after it may still go in); see module doc. The row's `response`
    counts in both modes: at inference it stands for the room the generated answer will need."""
    (p, c), = _lengths([row], tokenizer, system_prompt, layout)
    return _fit(row, p, c, tokenizer, system_prompt, max_length, use_gold, layout)


def _fit(
    row: dict[str, Any], p: int, c: int, tokenizer: Any, system_prompt: str, max_length: int, use_gold: bool,
    layout: str,
) -> Fitted:
    """`p`, `c`: the row's prompt and completion token counts. The completion never changes, so
    only prompts are counted again below."""
    statements = split_schema(str(row["input"]))
    names = [s.table for s in statements if s.table]
    if p + c <= max_length or len(statements) < 2:
        return Fitted(dict(row), False, names, [], None, p + c <= max_length)
    gold = gold_tables(str(row["response"]))
    ranked = rank_tables(str(row["instruction"]), statements)
    if use_gold and gold:
        ranked = sorted(ranked, key=lambda i: not _is_in(statements[i], gold))  # stable: gold first, by rank

    # Estimate: the prompt without a schema, plus each statement's own token count, plus what the
    # newline between two statements costs (measured on the first one).
    texts = [prompts.prompt_text({**row, "input": ""}, tokenizer, system_prompt, layout), statements[0].text + "\n"]
    base, first_nl, *costs = (len(ids) for ids in tokenizer(
        texts + [s.text for s in statements], add_special_tokens=False)["input_ids"])
    newline = first_nl - costs[0]
    chosen: list[int] = []
    total = base + c - newline  # k statements, k - 1 newlines
    for i in ranked:
        if not chosen or total + costs[i] + newline <= max_length:
            chosen.append(i)
            total += costs[i] + newline
    # Verify exactly; drop the last-added until it fits, never below one table.
    while True:
        new = {**row, "input": "\n".join(statements[i].text for i in sorted(chosen))}
        p = len(tokenizer(prompts.prompt_text(new, tokenizer, system_prompt, layout), add_special_tokens=False)["input_ids"])
        if p + c <= max_length or len(chosen) == 1:
            break
        chosen.pop()
    kept = [statements[i].table for i in sorted(chosen) if statements[i].table]
    dropped = [s.table for i, s in enumerate(statements) if i not in chosen and s.table]
    present = {t.lower() for t in names} & gold if gold else set()
    recall = present <= {t.lower() for t in kept} if present else None
    return Fitted(new, True, kept, dropped, recall, p + c <= max_length)


def _is_in(statement: Statement, tables: set[str]) -> bool:
    return statement.table is not None and statement.table.lower() in tables


def _lengths(rows: list[dict[str, Any]], tokenizer: Any, system_prompt: str, layout: str) -> list[tuple[int, int]]:
    """(len(prompt ids), len(completion ids)) per row, exactly as tokens.encode counts them."""
    rendered = [prompts.render(r, tokenizer, system_prompt, layout) for r in rows]
    prompt_ids = tokenizer([p for p, _ in rendered], add_special_tokens=False)["input_ids"]
    completions = tokenizer([c for _, c in rendered], add_special_tokens=False)["input_ids"]
    return [(len(p), len(c)) for p, c in zip(prompt_ids, completions)]


def fit_rows(
    rows: list[dict[str, Any]], tokenizer: Any, system_prompt: str, max_length: int, *, use_gold: bool, name: str,
    layout: str = prompts.DEFAULT_LAYOUT,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Fit every row (see fit_row), log one line, return the rows and their stats:
    rows, pruned, still_too_long, schema_recall (over pruned rows with a parseable gold; None if
    none), tables_kept and tables_total (summed over the pruned rows)."""
    out: list[dict[str, Any]] = []
    fitted: list[Fitted] = []
    with tqdm(total=len(rows), desc=f"fitting {name} schemas", disable=len(rows) <= PROGRESS_OVER) as bar:
        for start in range(0, len(rows), BATCH):
            chunk = rows[start : start + BATCH]
            for row, (p, c) in zip(chunk, _lengths(chunk, tokenizer, system_prompt, layout)):
                f = _fit(row, p, c, tokenizer, system_prompt, max_length, use_gold, layout)
                fitted.append(f)
                out.append(f.row)
            bar.update(len(chunk))
    pruned = [f for f in fitted if f.pruned]
    recalls = [f.recall for f in pruned if f.recall is not None]
    stats = {
        "rows": len(rows),
        "pruned": len(pruned),
        "still_too_long": sum(not f.fits for f in fitted),
        "schema_recall": sum(recalls) / len(recalls) if recalls else None,
        "tables_kept": sum(len(f.kept) for f in pruned),
        "tables_total": sum(len(f.kept) + len(f.dropped) for f in pruned),
    }
    log.log(logging.WARNING if pruned or stats["still_too_long"] else logging.INFO, summary(name, max_length, stats))
    return out, stats


def summary(name: str, max_length: int, stats: dict[str, Any]) -> str:
    """The one line fit_rows logs."""
    n = max(stats["pruned"], 1)
    recall = "n/a" if stats["schema_recall"] is None else f"{stats['schema_recall']:.2f}"
    return (
        f"{name}: {stats['pruned']} of {stats['rows']} rows over max_length={max_length}: schema pruned to fit "
        f"(kept {stats['tables_kept'] / n:.1f} of {stats['tables_total'] / n:.1f} tables on average); "
        f"schema recall {recall} on the pruned rows; {stats['still_too_long']} still too long"
    )


def _with_sample_rows(text: str, db: str, n: int) -> str:
    if engine.kind(db) == "sqlite":
        return schema.add_sample_rows(text, db, n)
    return engine_schema.add_sample_rows(text, db, n)


def prepare(rows: list[dict[str, Any]], tokenizer: Any, cfg: FormatSettings, *, use_gold: bool,
            name: str) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """Rows as the model will see them: with `format.compact_sql` in fewer tokens (sql/compact.py),
    `format.sample_rows` example rows per table added from
    each row's database, then, with `format.prune_schema`, schemas pruned to fit `max_length`.
    Returns the rows and the pruning stats (None when pruning is off)."""
    if cfg.compact_sql:  # before sample rows: their values stay as the database has them
        rows = [compact.compact_row(row) for row in rows]
    if cfg.sample_rows:
        rows = [{**row, "input": _with_sample_rows(row["input"], row["db_path"], cfg.sample_rows)}
                if row.get("db_path") else row for row in rows]
    if not cfg.prune_schema:
        return rows, None
    return fit_rows(rows, tokenizer, cfg.system_text(), cfg.max_length, use_gold=use_gold, name=name, layout=cfg.layout)
