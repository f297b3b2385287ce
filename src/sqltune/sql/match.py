"""SQL compared as text: parsing with sqlglot, corpus BLEU, and our normalised exact match.

`exact_match` is sqltune's own rule (both queries normalised, then compared as strings), not
Spider's exact set match (official.py); the two keep distinct names.
"""

from __future__ import annotations

from collections import defaultdict

import sacrebleu
import sqlglot
from sacrebleu.metrics import BLEU
from sqlglot import exp
from sqlglot.optimizer.normalize_identifiers import normalize_identifiers
from sqlglot.optimizer.scope import build_scope

from sqltune.sql.execute import clean_sql

DIALECT = "sqlite"

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
