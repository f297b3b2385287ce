"""Scores for generated SQL: BLEU, normalised exact match, execution accuracy, Spider hardness.

No model is involved: `score_rows` takes rows holding a `prediction` and a gold `response` (plus,
optionally, a `db_path` and a `difficulty`) and returns per-row results and averages, overall
and per group. A prediction that fails to parse or run is a miss with its error text kept;
`score_rows` never raises on bad SQL (only `hardness` does, when asked directly).

SQL is read with sqlglot in the sqlite dialect and run on SQLite by `execute.execute`, in a worker
process that is killed at the deadline (`sandbox`).
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import sacrebleu
import sqlglot
from sacrebleu.metrics import BLEU
from sqlglot import exp
from sqlglot.optimizer.normalize_identifiers import normalize_identifiers
from sqlglot.optimizer.scope import build_scope

from sqltune.data.rows import BUCKETS
from sqltune.sql.execute import ExecResult, clean_sql, same_result
from sqltune.sql.sandbox import execute

DIALECT = "sqlite"
SQL_METRICS = ("bleu", "exact_match", "execution_accuracy", "valid_sql")  # what `score_rows` sums up
HARDNESS = ("easy", "medium", "hard", "extra")  # Spider's labels (`hardness`)
GROUPS = (*BUCKETS, *(f"hardness_{h}" for h in HARDNESS))  # the per-group suffixes of the summary

# ----------------------------------------------------------------------------- parsing


def parse_query(sql: str) -> exp.Query | None:
    """sqlglot tree of one SELECT-like query (after `clean_sql`), or None.

    None when sqlglot cannot parse the text, when it holds more or fewer than one statement, or
    when that statement is not a query (sqlglot reads `foo` alone as a column, `SELECT` alone
    as an empty select; neither counts).
    """
    try:
        trees = [t for t in sqlglot.parse(clean_sql(sql), read=DIALECT) if t is not None]
    except Exception:  # noqa: BLE001 - ParseError, TokenError, RecursionError on deep nesting
        return None
    if len(trees) != 1 or not isinstance(trees[0], exp.Query):
        return None
    if any(not s.expressions for s in trees[0].find_all(exp.Select)):
        return None
    return trees[0]


def has_order_by(sql: str) -> bool:
    """True when the query's outermost level has ORDER BY (so row order is part of the answer)."""
    tree = parse_query(sql)
    while isinstance(tree, exp.Subquery):
        tree = tree.this
    return tree is not None and tree.args.get("order") is not None


# ----------------------------------------------------------------------------- BLEU


def bleu(predictions: list[str], references: list[str]) -> float:
    """Corpus BLEU (0-100) with one reference per prediction: `sacrebleu.corpus_bleu(...).score`.

    sacrebleu defaults, unchanged: 13a tokenizer, case-sensitive, 'exp' smoothing, no effective
    order. `bleu_signature()` gives the exact settings string to report beside the number.
    """
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references")
    return sacrebleu.corpus_bleu(predictions, [references]).score


def bleu_signature() -> str:
    """sacrebleu's settings string for `bleu`, e.g. 'nrefs:1|case:mixed|eff:no|tok:13a|...'."""
    metric = BLEU()
    metric.corpus_score(["x"], [["x"]])  # the signature needs the number of references
    return str(metric.get_signature())


# ----------------------------------------------------------------------------- exact match

_COMPARISONS = (exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE, exp.Like, exp.Glob)


def _quoted_values_to_strings(tree: exp.Expression) -> None:
    # Spider-style gold SQL writes strings in double quotes (name = "English"). sqlglot reads
    # those as identifiers; SQLite reads them as strings when no such column exists. We take
    # an unqualified quoted name on the value side of a comparison, IN list or BETWEEN as a string.
    for col in list(tree.find_all(exp.Column)):
        if col.table or not isinstance(col.this, exp.Identifier) or not col.this.quoted:
            continue
        parent, key = col.parent, col.arg_key
        if (
            (isinstance(parent, _COMPARISONS) and key == "expression")
            or (isinstance(parent, exp.In) and key == "expressions")
            or (isinstance(parent, exp.Between) and key in ("low", "high"))
        ):
            col.replace(exp.Literal.string(col.name))


def _canonical_tables(tree: exp.Expression) -> None:
    # A table named once in the whole query loses its alias (T1.name -> singer.name); a table
    # named several times gets the alias <table>_<k>, k counting its uses in reading order.
    # Then, in a scope that selects from one source only, qualifiers of that source are dropped
    # (singer.name -> name) unless the column name is also a SELECT alias there (ORDER BY and
    # GROUP BY would then bind to the alias). All bindings are resolved before anything changes.
    root = build_scope(tree)
    if root is None:
        return
    tables = [t for t in tree.find_all(exp.Table, bfs=False) if t.name]
    uses = defaultdict(int)
    for t in tables:
        uses[t.name] += 1
    taken = set(uses) | {t.alias for t in tables}
    new_name, seen = {}, defaultdict(int)
    for t in tables:
        seen[t.name] += 1
        if t.args.get("alias") is not None and t.args["alias"].columns:
            continue  # t AS x(a, b) renames columns too; leave it
        if uses[t.name] == 1:
            new_name[id(t)] = (t.name, None)
        elif t.alias and f"{t.name}_{seen[t.name]}" not in taken:
            alias = f"{t.name}_{seen[t.name]}"
            new_name[id(t)] = (alias, alias)

    edits = []
    for scope in root.traverse():
        aliases = {s.alias for s in getattr(scope.expression, "expressions", []) if s.alias}
        for col in scope.expression.find_all(exp.Column):
            if col.find_ancestor(exp.Query) is not scope.expression:
                continue  # it belongs to a nested scope
            owner = scope if col.table else None
            while owner is not None and col.table not in owner.selected_sources:
                owner = owner.parent
            if owner is None:
                continue
            node, _ = owner.selected_sources[col.table]
            if owner is scope and len(scope.selected_sources) == 1 and col.name not in aliases:
                edits.append((col, None))
            elif isinstance(node, exp.Table) and id(node) in new_name:
                edits.append((col, new_name[id(node)][0]))
    for col, qualifier in edits:
        col.set("table", exp.to_identifier(qualifier) if qualifier else None)
    for t in tables:
        if id(t) in new_name:
            alias = new_name[id(t)][1]
            t.set("alias", exp.TableAlias(this=exp.to_identifier(alias)) if alias else None)


def normalize_sql(sql: str) -> str | None:
    """Canonical text of a query for exact match, or None if it does not parse (`parse_query`).

    Steps, each keeping the query's meaning on SQLite:
    - keywords and function names upper case, whitespace and `!=`/`<>` as sqlglot prints them;
    - identifiers lower case (SQLite ignores their case, quoted or not) and always quoted;
    - "x" on the value side of a comparison becomes the string 'x' (Spider style, see below);
    - table aliases resolved: `SELECT T1.name FROM singer AS T1` == `SELECT name FROM singer`,
      and `T1.x` == `singer.x`; a table used twice gets the aliases singer_1, singer_2;
    - `INNER JOIN` -> `JOIN`, `LEFT OUTER JOIN` -> `LEFT JOIN`, `ORDER BY x ASC` -> `ORDER BY x`.

    Not normalised: the order of columns, conditions or joins, SELECT aliases, literals
    (1 vs 1.0), and unqualified columns in multi-table queries (`name` vs `singer.name`
    needs the schema, which this function does not take). sqlglot's `qualify` needs that
    schema too, and `normalize`/`simplify` rewrite logic, so none of them is used here.
    The double-quote rule is a heuristic: SQLite would read "x" as column x if one exists.
    """
    tree = parse_query(sql)
    if tree is None:
        return None
    _quoted_values_to_strings(tree)
    tree = normalize_identifiers(tree, dialect=DIALECT)
    try:
        _canonical_tables(tree)
    except Exception:  # noqa: BLE001 - sqlglot's scope builder rejects some odd trees
        pass
    for join in tree.find_all(exp.Join):
        if join.kind == "INNER" or (join.kind == "OUTER" and join.side):
            join.set("kind", None)
    for ordered in tree.find_all(exp.Ordered):
        if ordered.args.get("desc") is False:
            ordered.set("desc", None)
    return tree.sql(dialect=DIALECT, identify=True)


def exact_match(pred: str, gold: str) -> bool:
    """True when both queries normalise to the same text; an unparsable side is a miss."""
    norm_pred = normalize_sql(pred)
    return norm_pred is not None and norm_pred == normalize_sql(gold)


# ----------------------------------------------------------------------------- hardness


def _outside_subqueries(node: exp.Expression):
    """`node` and its descendants, not entering nested queries."""
    yield node
    for child in node.iter_expressions():
        if not isinstance(child, exp.Query):
            yield from _outside_subqueries(child)


def _count(nodes: list[exp.Expression], kind: type) -> int:
    return sum(isinstance(n, kind) for node in nodes for n in _outside_subqueries(node))


def _nested_queries(node: exp.Expression) -> int:
    return sum(
        1 if isinstance(c, exp.Query) else _nested_queries(c) for c in node.iter_expressions()
    )


def _conditions(cond: exp.Expression | None) -> tuple[list[exp.Expression], int]:
    """Spider's flat condition list: (atoms, number of AND/OR between them)."""
    if cond is None:
        return [], 0
    if isinstance(cond, exp.Paren):
        return _conditions(cond.this)
    if isinstance(cond, exp.Connector):
        left, n_left = _conditions(cond.this)
        right, n_right = _conditions(cond.expression)
        return left + right, n_left + n_right + 1
    return [cond], 0


def _spider_counts(tree: exp.Expression) -> tuple[int, int, int]:
    component2 = 0
    while isinstance(tree, exp.Subquery):
        tree = tree.this
    if isinstance(tree, exp.SetOperation):  # Spider: the first SELECT, plus one set operation
        component2 += 1
        while isinstance(tree, (exp.SetOperation, exp.Subquery)):
            tree = tree.this
    if not isinstance(tree, exp.Select):
        return 0, component2, 0

    clause = {k: tree.args.get(k) for k in ("where", "group", "having", "order", "limit")}
    joins = tree.args.get("joins") or []
    ons = [j.args["on"] for j in joins if j.args.get("on") is not None]
    where = clause["where"].this if clause["where"] else None
    having = clause["having"].this if clause["having"] else None
    conds = [c for c in (*ons, where, having) if c is not None]
    group = clause["group"].expressions if clause["group"] else []
    order = clause["order"].expressions if clause["order"] else []

    component1 = sum(clause[k] is not None for k in ("where", "group", "order", "limit"))
    component1 += len(joins) + _count(conds, exp.Or) + _count(conds, exp.Like)

    scanned = [*tree.expressions, *ons, *(c for c in (where, having) if c is not None), *order]
    component2 += sum(_nested_queries(n) + isinstance(n, exp.Query) for n in scanned)

    where_atoms, _ = _conditions(where)
    having_atoms, having_links = _conditions(having)
    aggs = sum(_count([e], exp.AggFunc) > 0 for e in (*tree.expressions, *group))
    aggs += _count(order, exp.AggFunc)
    # Spider quirks, kept so labels match: evaluation.py's count_agg reads the NOT flag of a
    # WHERE/HAVING condition as an aggregate, and counts each AND/OR inside HAVING as one.
    aggs += sum(isinstance(a, exp.Not) for a in (*where_atoms, *having_atoms)) + having_links
    others = (aggs > 1) + (len(tree.expressions) > 1) + (len(where_atoms) > 1) + (len(group) > 1)
    return component1, component2, others


def hardness(sql: str) -> str:
    """Spider's difficulty label of a query: 'easy', 'medium', 'hard' or 'extra'.

    Follows `eval_hardness` in Spider's evaluation.py (taoyds/spider), on the sqlglot tree:
    - component1: WHERE, GROUP BY, ORDER BY, LIMIT present (1 each), one per JOIN, one per OR
      and per LIKE in the ON / WHERE / HAVING conditions;
    - component2: one for a UNION / INTERSECT / EXCEPT, one per nested query in a condition;
    - others: more than one aggregate, more than one SELECT column, more than one WHERE
      condition, more than one GROUP BY column (each adds 1).
    As in Spider only the outermost query counts (for `A UNION B`, that is A), a subquery in
    FROM is a table, not a nested query, and two quirks of evaluation.py are kept so labels
    match it: NOT conditions in WHERE/HAVING and AND/OR inside HAVING count as aggregates.
    Beyond Spider's grammar: subqueries in the SELECT list or ORDER BY count as nested, and
    conditions in parentheses are flattened.

    Raises:
        ValueError: if the SQL does not parse as one query.
    """
    tree = parse_query(sql)
    if tree is None:
        raise ValueError(f"cannot parse SQL to rate its hardness: {sql[:80]!r}")
    c1, c2, others = _spider_counts(tree)
    if c1 <= 1 and others == 0 and c2 == 0:
        return "easy"
    if (others <= 2 and c1 <= 1 and c2 == 0) or (c1 <= 2 and others < 2 and c2 == 0):
        return "medium"
    if (
        (others > 2 and c1 <= 2 and c2 == 0)
        or (2 < c1 <= 3 and others <= 2 and c2 == 0)
        or (c1 <= 1 and others == 0 and c2 <= 1)
    ):
        return "hard"
    return "extra"


# ----------------------------------------------------------------------------- scoring


def _score_one(
    pred: str, gold: str, db_path: str | Path | None, gold_results: dict, **exec_kw: Any
) -> dict[str, Any]:
    result: dict[str, Any] = {
        "bleu": sacrebleu.sentence_bleu(pred, [gold]).score,
        "exact": exact_match(pred, gold),
        "executed": None,
        "error": None,
    }
    if db_path is None:  # no database: valid means sqlglot parses it
        result["valid"] = parse_query(pred) is not None
        result["error"] = None if result["valid"] else "sqlglot cannot parse the prediction"
        return result
    key = (str(db_path), gold)
    if key not in gold_results:
        gold_results[key] = execute(db_path, gold, **exec_kw)
    gold_run: ExecResult = gold_results[key]
    pred_run = execute(db_path, pred, **exec_kw)
    result["valid"] = pred_run.ok
    both_ran = pred_run.ok and gold_run.ok
    ordered = has_order_by(gold)
    result["executed"] = both_ran and same_result(gold_run.rows, pred_run.rows, ordered)
    result["error"] = pred_run.error or (None if gold_run.ok else f"gold: {gold_run.error}")
    return result


def _summary(results: list[dict], preds: list[str], golds: list[str]) -> dict[str, float]:
    out = {
        "n": len(results),
        "bleu": bleu(preds, golds),
        "exact_match": sum(r["exact"] for r in results) / len(results),
        "valid_sql": sum(r["valid"] for r in results) / len(results),
    }
    executed = [r["executed"] for r in results if r["executed"] is not None]
    if executed:
        out["execution_accuracy"] = sum(executed) / len(executed)
    return out


def score_rows(
    rows: list[dict[str, Any]], *, timeout_s: float = 1.0, max_rows: int = 10_000
) -> dict[str, Any]:
    """Score predictions against gold SQL. Returns {"summary": {...}, "rows": [...]}.

    Each input row needs `prediction` and `response` (the gold SQL); `db_path` (a SQLite file)
    and `difficulty` (any label, e.g. easy/medium/hard from data.py) are optional. Both texts go
    through `clean_sql` (code fences and the trailing ';' removed) before anything else.

    Per row, in order: `bleu` (sentence BLEU, sacrebleu `sentence_bleu` defaults), `exact`
    (`exact_match`), `executed` (same result on the database; None without `db_path`), `valid`
    (runs on SQLite without error; without `db_path`, parses with sqlglot), `error` (why the
    prediction failed, or "gold: ..." when the gold query did), `hardness` (of the gold query,
    'unknown' if sqlglot cannot parse it) and `difficulty`.

    Summary: `n`, `bleu` (corpus BLEU, 0-100), `exact_match`, `valid_sql` and
    `execution_accuracy` (fractions 0-1; execution only over rows with a `db_path` and absent if
    none has one). The same keys per difficulty (`bleu_easy`, `n_easy`, ...) and per gold
    hardness (`exact_match_hardness_extra`, ...). Rows compare in order only when the gold query
    has a top-level ORDER BY. Gold results are computed once per (db_path, gold SQL).

    Raises:
        ValueError: if a row lacks `prediction` or `response`.
    """
    preds, golds, results = [], [], []
    gold_results: dict[tuple[str, str], ExecResult] = {}
    for i, row in enumerate(rows):
        for field in ("prediction", "response"):
            if not isinstance(row.get(field), str):
                raise ValueError(f"row {i}: missing '{field}' (a string)")
        pred, gold = clean_sql(row["prediction"]), clean_sql(row["response"])
        result = _score_one(
            pred, gold, row.get("db_path"), gold_results, timeout_s=timeout_s, max_rows=max_rows
        )
        try:
            result["hardness"] = hardness(gold)
        except ValueError:
            result["hardness"] = "unknown"
        result["difficulty"] = row.get("difficulty")
        preds.append(pred)
        golds.append(gold)
        results.append(result)

    if not results:
        return {"summary": {"n": 0}, "rows": []}
    summary: dict[str, float] = _summary(results, preds, golds)
    for field, prefix in (("difficulty", ""), ("hardness", "hardness_")):
        groups = defaultdict(list)
        for i, r in enumerate(results):
            if r[field] is not None:
                groups[r[field]].append(i)
        for label, idx in sorted(groups.items(), key=lambda kv: str(kv[0])):
            part = _summary(
                [results[i] for i in idx], [preds[i] for i in idx], [golds[i] for i in idx]
            )
            summary.update({f"{k}_{prefix}{label}": v for k, v in part.items()})
    return {"summary": summary, "rows": results}
