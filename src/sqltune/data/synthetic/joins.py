"""Question templates over two and three tables, following the domain's foreign keys.

An edge (C, fk, P) is "each C row points at a P row". The fk's name says the relation:
orders.customer_id reads "customer", flights.origin_airport_id reads "origin airport",
so "flights whose origin airport's city is Lyon". A chain A -> B -> C follows two edges;
a bridge A <- M -> B is a table with two fks (enrollments: student, course). As in
conditions.py, conditions are built from an anchor row so the answer is not empty; the
anti-joins (NOT IN, EXCEPT) find rows because domains.py leaves ~15% of every parent
table without children.
"""

from collections import Counter
from functools import cache

from sqltune.data.synthetic.domains import Domain
from sqltune.data.synthetic.conditions import (AGGREGATES, a, aggregate_for, bare, below_max, columns, condition,
                                          nouns, of, owned, phrase, plural, relative, where)


@cache
def links(dom: Domain) -> dict[str, list[tuple]]:
    """Foreign-key paths: edges (C, fk, P), chains A->B->C and bridges A<-M->B."""
    edges = [(t, c, dom.tables[c.gen]) for t in dom.tables.values() for c in columns(t, "fk")]
    chains = [(a1, f1, b, f2, c) for a1, f1, b in edges for b2, f2, c in edges if b2 is b]
    bridges = [(m, fa, x, fb, y) for m, fa, x in edges for m2, fb, y in edges
               if m2 is m and fa is not fb]
    assert edges, f"domain {dom.name} has no foreign keys"
    return {"edges": edges, "chains": chains, "bridges": bridges}


def _edge(rng, dom):
    return rng.choice(links(dom)["edges"])


def _on(c, fk, p, a1="T1", a2="T2"):
    return f"{c.name} AS {a1} JOIN {p.name} AS {a2} ON {a1}.{fk.name} = {a2}.{p.pk.name}"


def _owners(fk, p, c, rel):
    """'customers that have an order ...' or 'airports that are the origin airport of a flight ...'."""
    if phrase(fk) == p.singular:
        return f"{nouns(p)[0]} that have {a(c.singular)} {rel}"
    return f"{nouns(p)[0]} that are the {phrase(fk)} of {a(c.singular)} {rel}"


def _parent_filter(rng, dom):
    """A child->parent edge and a WHERE on the parent (alias T2) that some child row satisfies:
    (child, fk, parent, sql, fk phrase, relative clause, predicate, column phrase), or None."""
    c, fk, p = _edge(rng, dom)
    row = rng.choice(dom.rows[c.name])
    made = condition(rng, dom, p, dom.by_pk[p.name][row[fk.name]], alias="T2")
    if not made:
        return None
    sql, col, pred, _ = made
    fp = phrase(fk)
    return c, fk, p, sql, fp, relative(rng, owned(fp, col), pred), pred, col


def join_filter(rng, dom):
    """Child rows filtered on their parent: a 2-table join with WHERE."""
    made = _parent_filter(rng, dom)
    if not made:
        return None
    c, fk, p, sql, fp, rel, pred, col = made
    what, pl = plural(phrase(c.label)), nouns(c)[0]
    q = rng.choice([f"List the {what} of {pl} {rel}.", f"Show me the {what} of all {pl} {rel}.",
                    f"Which {pl} have {a(fp)} whose {bare(fp, col)} {pred}? Give their {what}."])
    return q, f"SELECT T1.{c.label.name} FROM {_on(c, fk, p)} WHERE {sql}", [c.name, p.name]


def join_show(rng, dom):
    """Child rows with a column of their parent."""
    c, fk, p = _edge(rng, dom)
    made = where(rng, dom, c, rng.choice(dom.rows[c.name]), alias="T1")
    if not made:
        return None
    fp, cl, pl_ = phrase(fk), phrase(c.label), phrase(p.label)
    q = rng.choice([f"For each {c.singular} {made.rel}, show its {cl} and the {pl_} of its {fp}.",
                    f"List the {plural(cl)} of {nouns(c)[0]} {made.rel} together with their {owned(fp, pl_)}.",
                    f"Show the {cl} and {of(fp, pl_)} of every {c.singular} {made.rel}."])
    sql = f"SELECT T1.{c.label.name}, T2.{p.label.name} FROM {_on(c, fk, p)} WHERE {made.sql}"
    return q, sql, [c.name, p.name]


def join_count(rng, dom):
    """Children counted per parent (GROUP BY over a join), or the parent with the most."""
    c, fk, p = _edge(rng, dom)
    fp, cpl, pl_ = phrase(fk), nouns(c)[0], phrase(p.label)
    group = f"FROM {_on(c, fk, p)} GROUP BY T1.{fk.name}"
    if rng.random() < 0.35:
        q = rng.choice([f"Which {fp} has the most {cpl}? Give its {pl_}.",
                        f"What is the {pl_} of the {fp} with the largest number of {cpl}?"])
        return q, f"SELECT T2.{p.label.name} {group} ORDER BY COUNT(*) DESC LIMIT 1", [c.name, p.name]
    q = rng.choice([f"How many {cpl} does each {fp} have? Show the {pl_} and the count.",
                    f"For every {fp}, list its {pl_} and its number of {cpl}.",
                    f"Count the {cpl} per {fp}, showing the {owned(fp, pl_)}."])
    return q, f"SELECT T2.{p.label.name}, COUNT(*) {group}", [c.name, p.name]


def join_having(rng, dom):
    """Parents with more than k children: GROUP BY ... HAVING COUNT(*)."""
    c, fk, p = _edge(rng, dom)
    counts = below_max(list(Counter(r[fk.name] for r in dom.rows[c.name]).values()))
    if not counts:
        return None
    k = rng.choice(counts)
    fps, cpl, what = plural(phrase(fk)), nouns(c)[0], plural(phrase(p.label))
    if rng.random() < 0.5:
        q, having = rng.choice([f"Which {fps} have more than {k} {cpl}? List their {what}.",
                                f"Show the {what} of {fps} with over {k} {cpl}."]), f"> {k}"
    else:
        q, having = f"List the {what} of {fps} that have at least {k + 1} {cpl}.", f">= {k + 1}"
    sql = f"SELECT T2.{p.label.name} FROM {_on(c, fk, p)} GROUP BY T1.{fk.name} HAVING COUNT(*) {having}"
    return q, sql, [c.name, p.name]


def join_aggregate(rng, dom):
    """An aggregate of a child number per parent, sometimes ranked."""
    edges = [e for e in links(dom)["edges"] if columns(e[0], "num")]
    if not edges:
        return None
    c, fk, p = rng.choice(edges)
    n = rng.choice(columns(c, "num"))
    fn = aggregate_for(rng, n)
    fp, np, cpl, pl_, word = phrase(fk), phrase(n), nouns(c)[0], phrase(p.label), rng.choice(AGGREGATES[fn])
    agg, group = f"{fn}(T1.{n.name})", f"FROM {_on(c, fk, p)} GROUP BY T1.{fk.name}"
    if rng.random() < 0.3:
        k = rng.choice([1, 3, 5])
        q = (f"Which {fp} has the highest {word} {np} of {cpl}? Give its {pl_}." if k == 1 else
             f"List the {plural(pl_)} of the {k} {plural(fp)} with the highest {word} {np} of {cpl}.")
        return q, f"SELECT T2.{p.label.name} {group} ORDER BY {agg} DESC LIMIT {k}", [c.name, p.name]
    q = rng.choice([f"What is the {word} {np} of {cpl} for each {fp}? Show the {owned(fp, pl_)}.",
                    f"For each {fp}, give the {pl_} and the {word} {np} of its {cpl}."])
    return q, f"SELECT T2.{p.label.name}, {agg} {group}", [c.name, p.name]


def join_count_filter(rng, dom):
    """COUNT(*) over a join filtered on the parent."""
    made = _parent_filter(rng, dom)
    if not made:
        return None
    c, fk, p, sql, fp, rel, pred, col = made
    cpl = nouns(c)[0]
    q = rng.choice([f"How many {cpl} have {a(fp)} whose {bare(fp, col)} {pred}?", f"Count the {cpl} {rel}.",
                    f"What is the number of {cpl} {rel}?"])
    return q, f"SELECT COUNT(*) FROM {_on(c, fk, p)} WHERE {sql}", [c.name, p.name]


def subquery_in(rng, dom):
    """Parents having a child that matches: WHERE pk IN (SELECT fk ...)."""
    c, fk, p = _edge(rng, dom)
    made = where(rng, dom, c, rng.choice(dom.rows[c.name]))
    if not made:
        return None
    what = plural(phrase(p.label))
    owners = _owners(fk, p, c, made.rel)
    q = rng.choice([f"List the {what} of {owners}.", f"Show the {what} of all {owners}.",
                    f"Find {owners}, and give their {what}."])
    sql = (f"SELECT {p.label.name} FROM {p.name} WHERE {p.pk.name} IN "
           f"(SELECT {fk.name} FROM {c.name} WHERE {made.sql})")
    return q, sql, [p.name, c.name]


def anti_join(rng, dom):
    """Parents without children, as NOT IN or as EXCEPT."""
    c, fk, p = _edge(rng, dom)
    fp, what, ppl, cpl = phrase(fk), plural(phrase(p.label)), nouns(p)[0], nouns(c)[0]
    if rng.random() < 0.5:
        if fp == p.singular:
            q = rng.choice([f"Which {ppl} have no {cpl}? List their {what}.",
                            f"List the {what} of {ppl} that do not have any {cpl}."])
        else:
            q = f"List the {what} of {ppl} that are never the {fp} of any {c.singular}."
        sql = f"SELECT {p.label.name} FROM {p.name} WHERE {p.pk.name} NOT IN (SELECT {fk.name} FROM {c.name})"
        return q, sql, [p.name, c.name]
    made = where(rng, dom, c, rng.choice(dom.rows[c.name]), alias="T1")
    if not made:
        return None
    role = f"have no {c.singular}" if fp == p.singular else f"are not the {fp} of any {c.singular}"
    q = rng.choice([f"List the {what} of {ppl} that {role} {made.rel}.",
                    f"Which {ppl} {role} {made.rel}? Give their {what}."])
    sql = (f"SELECT {p.label.name} FROM {p.name} EXCEPT SELECT T2.{p.label.name} "
           f"FROM {_on(c, fk, p)} WHERE {made.sql}")
    return q, sql, [p.name, c.name]


def chain(rng, dom):
    """Three tables A -> B -> C; filter at one end, answer from the other."""
    chains = links(dom)["chains"]
    if not chains:
        return None
    ta, f1, tb, f2, tc = rng.choice(chains)
    row_a = rng.choice(dom.rows[ta.name])
    row_c = dom.by_pk[tc.name][dom.by_pk[tb.name][row_a[f1.name]][f2.name]]
    joins = f"{_on(ta, f1, tb)} JOIN {tc.name} AS T3 ON T2.{f2.name} = T3.{tc.pk.name}"
    p1, p2 = phrase(f1), phrase(f2)
    if rng.random() < 0.5:
        made = where(rng, dom, ta, row_a, alias="T1")
        if not made:
            return None
        what = plural(phrase(tc.label))
        via, ends = nouns(tb)[0], f"{nouns(ta)[0]} {made.rel}"
        q = rng.choice([f"Which {plural(p2)} have {via} with {ends}? Give their {what}.",
                        f"List the distinct {what} of {plural(p2)} linked through {via} to {ends}."])
        sql = f"SELECT DISTINCT T3.{tc.label.name} FROM {joins} WHERE {made.sql}"
        return q, sql, [ta.name, tb.name, tc.name]
    made = condition(rng, dom, tc, row_c, alias="T3")
    if not made:
        return None
    what, rel = plural(phrase(ta.label)), relative(rng, f"{p1}'s " + owned(p2, made.subject), made.pred)
    q = rng.choice([f"Show the {what} of {nouns(ta)[0]} {rel}.",
                    f"List the {what} of {nouns(ta)[0]} whose {p1} belongs to {a(p2)} "
                    f"whose {bare(p2, made.subject)} {made.pred}."])
    return q, f"SELECT T1.{ta.label.name} FROM {joins} WHERE {made.sql}", [ta.name, tb.name, tc.name]


def bridge(rng, dom):
    """Three tables A <- M -> B: filter on B and answer A, or show both for some M rows."""
    bridges = links(dom)["bridges"]
    if not bridges:
        return None
    tm, fa, ta, fb, tb = rng.choice(bridges)
    row = rng.choice(dom.rows[tm.name])
    joins = f"{_on(tm, fa, ta)} JOIN {tb.name} AS T3 ON T1.{fb.name} = T3.{tb.pk.name}"
    pa, pb, al, bl = phrase(fa), phrase(fb), phrase(ta.label), phrase(tb.label)
    if rng.random() < 0.6:
        made = condition(rng, dom, tb, dom.by_pk[tb.name][row[fb.name]], alias="T3")
        if not made:
            return None
        rel = relative(rng, owned(pb, made.subject), made.pred)
        q = rng.choice([f"Which {plural(pa)} have {nouns(tm)[0]} {rel}? List their {plural(al)}.",
                        f"List the distinct {plural(al)} of {plural(pa)} with {a(tm.singular)} for {a(pb)} "
                        f"whose {bare(pb, made.subject)} {made.pred}."])
        sql = f"SELECT DISTINCT T2.{ta.label.name} FROM {joins} WHERE {made.sql}"
        return q, sql, [tm.name, ta.name, tb.name]
    made = where(rng, dom, tm, row, alias="T1")
    if not made:
        return None
    q = rng.choice([f"For each {tm.singular} {made.rel}, show the {owned(pa, al)} and the {owned(pb, bl)}.",
                    f"List the {of(pa, al)} and {of(pb, bl)} of every {tm.singular} {made.rel}."])
    sql = f"SELECT T2.{ta.label.name}, T3.{tb.label.name} FROM {joins} WHERE {made.sql}"
    return q, sql, [tm.name, ta.name, tb.name]
