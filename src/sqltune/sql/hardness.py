"""Spider's hardness of a query ('easy', 'medium', 'hard', 'extra'), on the sqlglot tree."""

from __future__ import annotations

from sqlglot import exp

from sqltune.sql.match import parse_query

HARDNESS = ("easy", "medium", "hard", "extra")  # Spider's labels

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
