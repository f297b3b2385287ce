"""The published metrics with the official scripts' semantics, beside our own (scoring.py).

    spider_exec_match(db, pred, gold)     Spider test suite: exec_eval.eval_exec_match, as evaluate() calls it
    exact_set_match(pred, gold, schema)   Spider exact set match: Evaluator.eval_exact_match after evaluate()'s
                                          rebuild_sql_val / rebuild_sql_col (values ignored, foreign keys)
    bird_exec_match(db, pred, gold)       BIRD execution accuracy: set(pred rows) == set(gold rows)

Ported, not imported: the scripts need nltk (with punkt data to download) and sqlparse, and run
SQL on a writable connection. The Spider code is a port of process_sql.py, evaluation.py and
exec_eval.py of taoyds/test-suite-sql-eval (commit e97acc5, Apache License 2.0), changed by us:
restyled; nltk's word tokenizer and sqlparse's remove_distinct re-implemented (`_word_tokenize`,
`_remove_distinct`); asserts raise exceptions, so `python -O` changes nothing; result_eq tries
column permutations without random sampling (the same answer: sampling only prunes permutations
that cannot match). BIRD's comparison is one line of AlibabaResearch/DAMO-ConvAI's
bird/llm/src/evaluation.py (MIT). tests/test_official_metrics.py runs the unchanged scripts
(tests/official/) on the same pairs and requires the same answer on each.

The same as the scripts (with evaluate()'s defaults: no --plug_value, no --keep_distinct):
- Spider execution: "value" in the prediction becomes "1", '> =' becomes '>=', DISTINCT is dropped
  from both queries and only the first statement (as sqlparse splits) is kept; YEAR(CURDATE())
  becomes 2020; rows compare as bags, as lists when the gold text contains 'order by', with the
  columns in any order. `keep_distinct=True` is --keep_distinct.
- Both execution metrics run what Python's sqlite3 runs (leading ';' skipped, a second statement
  fails). A failing prediction is a miss; a failing gold query is a miss for BIRD.
- Exact set match: the same tokenizer, parser, rebuild steps and component comparison; an
  unparseable prediction is a miss.

Where we differ, on purpose or by necessity:
- Queries run in `sandbox` (read-only; SELECT / WITH / VALUES only; `timeout_s`, default 1 s, and
  `max_rows`), after `clean_sql`, which unwraps a ``` code fence the scripts would fail on. The
  scripts run anything, for 30-60 s. Text that is not valid UTF-8 fails here (Spider's script
  decodes it with errors="ignore").
- Spider runs on one database, not on every .sqlite file in its folder (the distilled test suites
  put several there); a gold query that fails, or that Spider's parser cannot read, raises
  ValueError where the script stops on an exception.
- The foreign keys come from the database itself (`schema_from_db`) or from CREATE TABLE text
  (`schema_from_ddl`), not from tables.json; for Spider's databases these agree (a test checks).
- word_tokenize first splits sentences with punkt, which could only matter where a '.' is
  followed by whitespace outside quoted values: not in a query Spider's parser reads.
- remove_distinct: sqlparse's BEGIN ... END blocks and $$-quoted strings are approximated.
"""

from __future__ import annotations

import re
import sqlite3
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any


from sqltune.sql.execute import ExecResult
from sqltune.sql.spider_parse import SQL_OPS, WHERE_OPS, Parser, SpiderSchema
from sqltune.sql.sandbox import execute

MAX_ROWS = 100_000  # per query; the official scripts fetch everything

# ----------------------------------------------------------------------------- execution


def spider_order_matters(gold: str) -> bool:
    """exec_eval: row order counts when the gold text contains 'order by' (anywhere, any case)."""
    return "order by" in gold.lower()


def _sort_key(x: Any) -> str:
    return str(x) + str(type(x))


def _permutations(allowed: list[set[int]], taken: tuple[int, ...] = ()) -> Iterator[tuple[int, ...]]:
    if len(taken) == len(allowed):
        yield taken
        return
    for j in sorted(allowed[len(taken)] - set(taken)):
        yield from _permutations(allowed, (*taken, j))


def spider_result_eq(gold_rows: list[tuple], pred_rows: list[tuple], order_matters: bool) -> bool:
    """exec_eval.result_eq: equal up to a permutation of the columns; rows as bags (multisets),
    or as lists when `order_matters`. Values compare with Python's == (1 == 1.0, '1' != 1)."""
    gold, pred = [tuple(r) for r in gold_rows], [tuple(r) for r in pred_rows]
    if not gold and not pred:
        return True
    if len(gold) != len(pred) or len(gold[0]) != len(pred[0]):
        return False
    s1 = [tuple(sorted(r, key=_sort_key)) for r in gold]  # quick_rej: each row's values as a bag
    s2 = [tuple(sorted(r, key=_sort_key)) for r in pred]
    if (s1 != s2) if order_matters else (set(s1) != set(s2)):
        return False
    n = len(gold[0])
    gold_cols = [{r[i] for r in gold} for i in range(n)]
    allowed = [{j for j in range(n) if all(r[j] in gold_cols[i] for r in pred)} for i in range(n)]
    for perm in _permutations(allowed):
        moved = [tuple(r[j] for j in perm) for r in pred]
        if (gold == moved) if order_matters else (Counter(gold) == Counter(moved)):
            return True
    return False


# sqlparse's lexer, as far as it decides which words are tokens of their own: strings, quoted
# names, comments and placeholders hide a 'distinct' inside them; ( ) ; END BEGIN steer splitting.
_LEX = re.compile(r"""
    (?:--|\#\ ).*?(?:\r\n|\r|\n|$) | /\*[\s\S]*?\*/ | :: | \\\w+
  | `(?:``|[^`])*` | ´(?:´´|[^´])*´ | '(?:''|\\'|[^'])*' | "(?:""|\\"|[^"])*" | ""|".*?[^\\]"
  | (?<![\w\])])\[[^\]\[]+\] | (?<!\w)[$:]\w+ | (?:@|\#\#|\#)[A-ZÀ-Ü]\w+
  | -?0x[\dA-F]+ | -?\d+(?:\.\d+)?E-?\d+
  | (?P<word>\w[$\#\w]*)(?P<name>(?=\s*\.(?!\d))|(?=\())? | (?P<punct>[;()])
""", re.IGNORECASE | re.VERBOSE)
_TRAILING = re.compile(r"(?:[^\S\r\n]|(?:--|\# )(?!\+).*?(?:\r\n|\r|\n|$))*")


def _remove_distinct(sql: str) -> str:
    """parse.remove_distinct: the first statement as sqlparse splits it, less every token that
    reads 'distinct'. (sqlparse's BEGIN ... END blocks are only approximated: a BEGIN before the
    first ';' keeps the whole text, and dollar-quoted strings are not seen; neither is a query.)"""
    out, last, level, block = [], 0, 0, False
    for m in _LEX.finditer(sql):
        word, punct = m.group("word"), m.group("punct")
        if word and word.lower() == "distinct":
            out.append(sql[last:m.start()])
            last = m.end("word")
        elif word and m.group("name") is None and word.upper() in ("END", "BEGIN"):
            level += 1 if word.upper() == "BEGIN" else -1
            block = block or word.upper() == "BEGIN"
        elif punct:
            level += {"(": 1, ")": -1, ";": 0}[punct]
            if punct == ";" and level <= 0 and not block:  # the statement takes spaces and -- comments after it
                return "".join(out) + sql[last:_TRAILING.match(sql, m.end()).end()]
    return "".join(out) + sql[last:]


_SKIP = re.compile(r"(?:\s|--[^\n]*(?:\n|$)|/\*.*?(?:\*/|$))*", re.DOTALL)  # whitespace, comments


def _run(db_path: str | Path, sql: str, timeout_s: float, max_rows: int) -> ExecResult:
    """`sandbox.execute` on what Python's sqlite3 runs of `sql`, as the scripts call it: leading
    ';' skipped, no statement at all gives no rows, and anything but comments after the first
    statement fails."""
    rest = sql[_SKIP.match(sql).end():]
    while rest.startswith(";"):
        rest = rest[1:][_SKIP.match(rest[1:]).end():]
    if not rest:
        return ExecResult(rows=[])
    end = next((i + 1 for i, ch in enumerate(rest) if ch == ";" and sqlite3.complete_statement(rest[:i + 1])), None)
    if end is not None and rest[_SKIP.match(rest, end).end():]:
        return ExecResult(error="ProgrammingError: You can only execute one statement at a time.")
    return execute(db_path, rest[:end], timeout_s=timeout_s, max_rows=max_rows)


_CUR_YEAR = re.compile(r"YEAR\s*\(\s*CURDATE\s*\(\s*\)\s*\)\s*", re.IGNORECASE)  # exec_eval.replace_cur_year


def _prepare_spider(sql: str, keep_distinct: bool) -> str:
    sql = sql.replace("> =", ">=").replace("< =", "<=").replace("! =", "!=")  # exec_eval.postprocess
    return sql if keep_distinct else _remove_distinct(sql)


def spider_exec_match(
    db_path: str | Path, pred: str, gold: str, *, timeout_s: float = 1.0, keep_distinct: bool = False,
    max_rows: int = MAX_ROWS,
) -> bool:
    """Spider test-suite execution match on one database (see the module docstring).

    Raises:
        ValueError: the gold query fails on `db_path` (the official script stops on an assert).
    """
    pred = _prepare_spider(pred.replace("value", "1"), keep_distinct)  # evaluate() does the replace
    gold = _prepare_spider(gold, keep_distinct)
    order_matters = spider_order_matters(gold)
    gold_res = _run(db_path, _CUR_YEAR.sub("2020", gold), timeout_s, max_rows)
    if not gold_res.ok:
        raise ValueError(f"gold query fails on {db_path}: {gold_res.error} ({gold[:200]!r})")
    pred_res = _run(db_path, _CUR_YEAR.sub("2020", pred), timeout_s, max_rows)
    return pred_res.ok and spider_result_eq(gold_res.rows, pred_res.rows, order_matters)


def bird_result_eq(gold_rows: list[tuple], pred_rows: list[tuple]) -> bool:
    """BIRD's comparison: the results as sets (order, duplicates and empty vs empty ignored)."""
    return set(map(tuple, pred_rows)) == set(map(tuple, gold_rows))


def bird_exec_match(
    db_path: str | Path, pred: str, gold: str, *, timeout_s: float = 1.0, max_rows: int = MAX_ROWS
) -> bool:
    """BIRD execution accuracy for one pair: both run, and their results are equal as sets."""
    pred_res = _run(db_path, pred, timeout_s, max_rows)
    if not pred_res.ok:
        return False
    gold_res = _run(db_path, gold, timeout_s, max_rows)
    return gold_res.ok and bird_result_eq(gold_res.rows, pred_res.rows)


def _drop_values(sql: dict | None) -> dict | None:
    """evaluation.rebuild_sql_val: every value in ON / WHERE / HAVING becomes None, except
    subqueries, which are rebuilt the same way (subqueries in FROM are left as they are)."""
    if sql is None:
        return None

    def conds(cs: list) -> list:
        return [c if i % 2 else (*c[:3], *(_drop_values(v) if isinstance(v, dict) else None for v in c[3:]))
                for i, c in enumerate(cs)]

    sql["from"]["conds"], sql["where"], sql["having"] = (conds(x) for x in (sql["from"]["conds"], sql["where"], sql["having"]))
    for op in SQL_OPS:
        sql[op] = _drop_values(sql[op])
    return sql


def _map_columns(sql: dict | None, valid: set[str], keys: dict[str, str]) -> dict | None:
    """evaluation.rebuild_sql_col: DISTINCT flags dropped, each foreign-key column of a table in
    the outer FROM replaced by its group's id, in SELECT, ON, WHERE, GROUP BY, ORDER BY, HAVING
    and set operations (not inside subqueries of WHERE or FROM)."""
    if sql is None:
        return None

    def col(cu: tuple | None) -> tuple | None:
        return None if cu is None else (cu[0], keys[cu[1]] if cu[1] in keys and cu[1] in valid else cu[1], None)

    def val(vu: tuple) -> tuple:
        return vu[0], col(vu[1]), col(vu[2])

    def conds(cs: list) -> list:
        return [c if i % 2 else (c[0], c[1], val(c[2]), c[3], c[4]) for i, c in enumerate(cs)]

    sql["select"] = (None, [(agg, val(vu)) for agg, vu in sql["select"][1]])
    sql["from"]["conds"] = conds(sql["from"]["conds"])
    sql["where"], sql["having"] = conds(sql["where"]), conds(sql["having"])
    sql["groupBy"] = [col(cu) for cu in sql["groupBy"]]
    if sql["orderBy"]:
        sql["orderBy"] = (sql["orderBy"][0], [val(vu) for vu in sql["orderBy"][1]])
    for op in SQL_OPS:
        sql[op] = _map_columns(sql[op], valid, keys)
    return sql


def _same_bag(pred: list, gold: list) -> bool:
    rest = list(gold)
    for x in pred:
        if x not in rest:
            return False
        rest.remove(x)
    return not rest


def _keywords(sql: dict) -> set[str]:
    """evaluation.get_keywords."""
    found = {k for k, key in (("where", "where"), ("group", "groupBy"), ("having", "having")) if sql[key]}
    found |= {op for op in SQL_OPS if sql[op] is not None} | ({"limit"} if sql["limit"] is not None else set())
    if sql["orderBy"]:
        found |= {sql["orderBy"][0], "order"}
    units = sql["from"]["conds"][::2] + sql["where"][::2] + sql["having"][::2]
    if "or" in sql["from"]["conds"][1::2] + sql["where"][1::2] + sql["having"][1::2]:
        found.add("or")
    found |= {"not"} if any(u[0] for u in units) else set()
    found |= {op for op in ("in", "like") if any(u[1] == WHERE_OPS.index(op) for u in units)}
    return found


def _exact(pred: dict, gold: dict) -> bool:
    """Evaluator.eval_exact_match: every partial score is 1, then the same FROM tables."""
    def group_cols(sql: dict) -> list[str]:
        return [cu[1] for cu in sql["groupBy"]]

    ok = (
        _same_bag(pred["select"][1], gold["select"][1])  # select (and so select(no AGG))
        and _same_bag(pred["where"][::2], gold["where"][::2])  # where (and so where(no OP))
        and _same_bag(*([c.split(".")[1] if "." in c else c for c in group_cols(s)] for s in (pred, gold)))
        and bool(pred["groupBy"]) == bool(gold["groupBy"])  # group: same columns, same HAVING
        and (not gold["groupBy"] or (group_cols(pred) == group_cols(gold) and pred["having"] == gold["having"]))
        and bool(pred["orderBy"]) == bool(gold["orderBy"])  # order: same ORDER BY, LIMIT both or neither
        and (not gold["orderBy"] or (pred["orderBy"] == gold["orderBy"]
                                     and (pred["limit"] is None) == (gold["limit"] is None)))
        and set(pred["where"][1::2]) == set(gold["where"][1::2])  # and/or
        and all((pred[op] is None) == (gold[op] is None) and (pred[op] is None or _exact(pred[op], gold[op]))
                for op in SQL_OPS)  # IUEN
        and _keywords(pred) == _keywords(gold)
    )
    if not ok or not gold["from"]["table_units"]:
        return ok
    return sorted(gold["from"]["table_units"]) == sorted(pred["from"]["table_units"])


def _rebuilt(sql: str, schema: SpiderSchema) -> dict:
    """get_sql, then evaluate()'s rebuild_sql_val and rebuild_sql_col (with the foreign keys)."""
    parsed = Parser(schema, sql).sql(0)[1]
    tables = [unit[1][:-2] for unit in parsed["from"]["table_units"] if unit[0] == "table_unit"]
    valid = {v for v in schema.id_map.values() if "." in v and v[:v.index(".")] in tables}
    return _map_columns(_drop_values(parsed), valid, schema.foreign_keys)


def exact_set_match(pred: str, gold: str, schema: SpiderSchema) -> bool:
    """Spider's exact set match (values and DISTINCT ignored), as `evaluate()` scores one pair.

    `schema` comes from `schema_from_db` or `schema_from_ddl`. A prediction the parser cannot
    read is a miss (the script scores an empty query, which never matches).

    Raises:
        ValueError: the gold query is outside the grammar Spider's parser reads.
    """
    try:
        label = _rebuilt(gold, schema)
    except Exception as e:  # the parser fails with Index/Key/ValueError, RecursionError
        raise ValueError(f"gold query is outside Spider's grammar ({type(e).__name__}: {e}): {gold[:200]!r}") from e
    try:
        return _exact(_rebuilt(pred.replace("value", "1"), schema), label)  # evaluate() does the replace
    except Exception:  # noqa: BLE001 - also sorting two FROM subqueries, where the script crashes
        return False
