"""Schema pruning on the real SmolLM2 tokenizer: what is kept, and that the result fits."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from sqltune import prune, tokens
from sqltune.config import DEFAULT_SYSTEM_PROMPT, ModelSettings
from sqltune.data import synthetic
from sqltune.model import load_tokenizer


@pytest.fixture(scope="module")
def tok() -> Any:
    return load_tokenizer(ModelSettings(name="smollm2"))


def wide_table(name: str, *, refs: tuple[str, ...] = ()) -> str:
    """A table of 12 columns with neutral names, so tables cost about the same number of tokens."""
    cols = [f"{name}_id INTEGER PRIMARY KEY"]
    cols += [f"field_{k} TEXT NOT NULL" for k in range(11 - len(refs))]
    cols += [f"{ref}_id INTEGER REFERENCES {ref}({ref}_id)" for ref in refs]
    return f"CREATE TABLE {name} ({', '.join(cols)});"


def encoded(row: dict[str, Any], tok: Any) -> dict[str, Any]:
    return tokens.encode(row, tok, DEFAULT_SYSTEM_PROMPT, max_length=10**6)


# --- split_schema --------------------------------------------------------------------------------

# --- gold_tables ---------------------------------------------------------------------------------

def test_gold_tables_of_joins_subqueries_and_ctes() -> None:
    assert prune.gold_tables("SELECT T1.a FROM Orders AS T1 JOIN \"Order Items\" AS T2 ON T1.id = T2.oid") == {
        "orders", "order items"}
    assert prune.gold_tables("SELECT name FROM a WHERE id IN (SELECT a_id FROM b WHERE x > (SELECT AVG(x) FROM c))") == {
        "a", "b", "c"}
    assert prune.gold_tables("WITH big AS (SELECT * FROM orders WHERE total > 9) SELECT COUNT(*) FROM big") == {"orders"}
    assert prune.gold_tables("SELECT 1") == set()


@pytest.mark.parametrize("sql", ["SELECT FROM WHERE", "SELECT (", "this is not sql", ""])
def test_gold_tables_of_what_does_not_parse_is_none(sql: str) -> None:
    assert prune.gold_tables(sql) is None


# --- rank_tables ---------------------------------------------------------------------------------

def test_words_split_names_and_strip_plurals() -> None:
    assert prune.words("OrderItems") == prune.words("order_items") == prune.words("order items") == {"order", "item"}
    assert prune.words("Which categories' names?") == {"category"}


def test_rank_puts_the_named_table_first_and_keeps_the_join_bridge() -> None:
    schema = prune.split_schema("\n".join([
        wide_table("rooms"),
        "CREATE TABLE teachers (teacher_id INTEGER PRIMARY KEY, full_name TEXT, course_title TEXT);",
        wide_table("enrollments", refs=("students", "courses")),
        wide_table("courses"),
        wide_table("students"),
    ]))
    order = [schema[i].table for i in prune.rank_tables("Which students take a course on Tuesdays?", schema)]
    assert order[:2] == ["courses", "students"]  # both named, no column hits: schema order
    assert order[2] == "enrollments"  # no name hit, but linked to both named tables
    assert order[3:] == ["teachers", "rooms"]  # a column hit (course_title) beats nothing


def test_rank_ties_keep_schema_order() -> None:
    schema = prune.split_schema("\n".join(wide_table(t) for t in ("a1", "b2", "c3")))
    assert prune.rank_tables("Nothing in common here", schema) == [0, 1, 2]


# --- fit_row -------------------------------------------------------------------------------------

def budget_row(n_tables: int = 6) -> tuple[dict[str, Any], list[str]]:
    """A question that names nothing in the schema, whose gold table is the last one."""
    names = [f"table{k}" for k in range(n_tables - 1)] + ["audit_log"]
    row = {
        "instruction": "How many were made in 2023?",
        "input": "\n".join(wide_table(n) for n in names),
        "response": "SELECT COUNT(*) FROM audit_log WHERE field_1 = '2023'",
        "db_id": "x",
    }
    return row, names


def length_with(row: dict[str, Any], tables: list[str], tok: Any) -> int:
    return encoded({**row, "input": "\n".join(wide_table(t) for t in tables)}, tok)["n_full"]


def test_fit_row_keeps_the_gold_table_with_use_gold(tok: Any) -> None:
    row, names = budget_row()
    max_length = length_with(row, names[:2], tok) + 3  # two tables fit, three don't
    assert length_with(row, names[:3], tok) > max_length

    gold = prune.fit_row(row, tok, DEFAULT_SYSTEM_PROMPT, max_length, use_gold=True)
    assert gold.pruned and gold.fits and gold.recall is True
    assert gold.kept == ["table0", "audit_log"]  # gold first, then the ranked others, in schema order
    assert gold.dropped == names[1:-1]
    assert gold.row["input"] == f"{wide_table('table0')}\n{wide_table('audit_log')}"
    assert {k: v for k, v in gold.row.items() if k != "input"} == {k: v for k, v in row.items() if k != "input"}

    blind = prune.fit_row(row, tok, DEFAULT_SYSTEM_PROMPT, max_length, use_gold=False)
    assert blind.kept == ["table0", "table1"] and blind.recall is False and blind.fits

    for fitted in (gold, blind):  # fits as tokens.encode counts it, and no answer token is cut
        enc = tokens.encode(fitted.row, tok, DEFAULT_SYSTEM_PROMPT, max_length)
        assert enc["n_full"] <= max_length and len(enc["input_ids"]) == enc["n_full"]
        answer = tok(str(row["response"]), add_special_tokens=False)["input_ids"]
        learned = [t for t in enc["labels"] if t != tokens.IGNORE]
        assert learned[: len(answer)] == answer


def test_fit_row_fills_the_budget_to_the_token(tok: Any) -> None:
    row, _ = budget_row()
    max_length = length_with(row, ["audit_log", "table0", "table1"], tok)  # exactly three
    fitted = prune.fit_row(row, tok, DEFAULT_SYSTEM_PROMPT, max_length, use_gold=True)
    assert fitted.kept == ["table0", "table1", "audit_log"]
    assert encoded(fitted.row, tok)["n_full"] == max_length


def test_fit_row_leaves_a_row_that_fits_unchanged(tok: Any) -> None:
    row, names = budget_row()
    fitted = prune.fit_row(row, tok, DEFAULT_SYSTEM_PROMPT, encoded(row, tok)["n_full"], use_gold=True)
    assert fitted == prune.Fitted(row, False, names, [], None, True)
    assert fitted.row is not row


def test_fit_row_keeps_the_best_table_when_nothing_fits(tok: Any) -> None:
    row, _ = budget_row()
    fitted = prune.fit_row(row, tok, DEFAULT_SYSTEM_PROMPT, 64, use_gold=True)
    assert fitted.pruned and not fitted.fits and fitted.kept == ["audit_log"] and fitted.recall is True


def test_fit_row_without_a_parseable_gold_uses_the_ranking(tok: Any) -> None:
    row, names = budget_row()
    row = {**row, "instruction": "Count the audit log entries", "response": "SELECT COUNT(*) FROM WHERE"}
    max_length = length_with(row, names[:1], tok) + 3
    fitted = prune.fit_row(row, tok, DEFAULT_SYSTEM_PROMPT, max_length, use_gold=True)
    assert fitted.kept == ["audit_log"] and fitted.recall is None and fitted.fits


# --- fit_rows ------------------------------------------------------------------------------------

def test_fit_rows_stats_add_up(tok: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    rows = synthetic.generate(60, seed=3, db_dir=tmp_path)
    max_length = 400
    before = [encoded(r, tok)["n_full"] for r in rows]
    with caplog.at_level(logging.INFO, logger="sqltune.prune"):
        out, stats = prune.fit_rows(rows, tok, DEFAULT_SYSTEM_PROMPT, max_length, use_gold=True, name="train")

    changed = [i for i, (a, b) in enumerate(zip(rows, out)) if a != b]
    assert stats["rows"] == len(out) == 60
    assert changed == [i for i, n in enumerate(before) if n > max_length] and stats["pruned"] == len(changed) > 0
    assert all(out[i]["response"] == rows[i]["response"] for i in changed)
    assert stats["tables_total"] == sum(len(prune.split_schema(rows[i]["input"])) for i in changed)
    assert stats["tables_kept"] == sum(len(prune.split_schema(out[i]["input"])) for i in changed)
    assert stats["tables_kept"] < stats["tables_total"]
    after = [encoded(r, tok)["n_full"] for r in out]
    assert stats["still_too_long"] == sum(n > max_length for n in after) == 0
    held = [prune.gold_tables(rows[i]["response"]) <= {s.table.lower() for s in prune.split_schema(out[i]["input"])}
            for i in changed]
    assert stats["schema_recall"] == sum(held) / len(held)  # at 400 tokens some gold sets don't fit whole
    assert caplog.messages == [prune.summary("train", max_length, stats)]
    assert caplog.messages[0].startswith(f"train: {len(changed)} of 60 rows over max_length=400: schema pruned")
