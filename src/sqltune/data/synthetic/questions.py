"""Question templates over one table: filters, aggregates, ranking, grouping, subqueries.

Each template takes (rng, domain) and returns (question, gold SQL, tables used), or None
when the domain has nothing it can use (say, no numeric column). See conditions.py for
how columns and conditions are put into words.
"""

from sqltune.data.synthetic.conditions import (AGGREGATES, a, aggregate_for, below_max, columns, condition,
                                          details, lit, listing, nouns, not_null, order_words, phrase,
                                          pick_table, plural, relative, where)


def select_filter(rng, dom):
    t = pick_table(rng, dom, "label")
    row = rng.choice(dom.rows[t.name])
    made = condition(rng, dom, t, row, skip=(t.label,))
    if not made:
        return None
    sql, col, pred, _ = made
    pl, what = nouns(t)[0], plural(phrase(t.label))
    rel = relative(rng, col, pred)
    q = rng.choice([f"List the {what} of {pl} {rel}.", f"What are the {what} of the {pl} {rel}?",
                    f"Show me the {what} of all {pl} {rel}.", f"Find the {what} of {pl} {rel}.",
                    f"Which {pl} have {a(col)} that {pred}? Give their {what}."])
    return q, f"SELECT {t.label.name} FROM {t.name} WHERE {sql}", [t.name]


def select_columns(rng, dom):
    t = pick_table(rng, dom, "label")
    row = rng.choice(dom.rows[t.name])
    sql, rel = where(rng, dom, t, row)
    pl = nouns(t)[0]
    if rng.random() < 0.25:
        q = rng.choice([f"Show all information about {pl} {rel}.", f"Give me every column for {pl} {rel}.",
                        f"What are the full details of the {pl} {rel}?"])
        return q, f"SELECT * FROM {t.name} WHERE {sql}", [t.name]
    cols = [t.label] + details(rng, t)
    said = listing([phrase(c) for c in cols])
    q = rng.choice([f"Show the {said} of {pl} {rel}.", f"List the {said} for every {t.singular} {rel}.",
                    f"For {pl} {rel}, what are their {said}?"])
    return q, f"SELECT {', '.join(c.name for c in cols)} FROM {t.name} WHERE {sql}", [t.name]


def two_conditions(rng, dom):
    t = pick_table(rng, dom, "label")
    row = rng.choice(dom.rows[t.name])
    first = condition(rng, dom, t, row, skip=(t.label,))
    second = first and condition(rng, dom, t, row, skip=(t.label, first.column))
    if not second:
        return None
    joiner = "AND" if rng.random() < 0.8 else "OR"
    what, pl = plural(phrase(t.label)), nouns(t)[0]
    both = (f"{relative(rng, first.subject, first.pred)} {joiner.lower()} "
            f"{'whose ' if joiner == 'OR' else ''}{second.subject} {second.pred}")
    q = rng.choice([f"List the {what} of {pl} {both}.", f"Which {pl} are there {both}? Show their {what}.",
                    f"Find the {what} of all {pl} {both}."])
    return q, f"SELECT {t.label.name} FROM {t.name} WHERE {first.sql} {joiner} {second.sql}", [t.name]


def lookup(rng, dom):
    t = pick_table(rng, dom, "label")
    if t.label.role != "label":
        return None
    row = rng.choice(dom.rows[t.name])
    cols = details(rng, t)
    said, name = listing([phrase(c) for c in cols]), row[t.label.name]
    verb = "is" if len(cols) == 1 else "are"
    q = rng.choice([f"What {verb} the {said} of the {t.singular} whose {phrase(t.label)} is {name}?",
                    f"Show the {said} for the {t.singular} {name}.",
                    f"Give me the {said} of the {t.singular} called {name}."])
    sql = f"SELECT {', '.join(c.name for c in cols)} FROM {t.name} WHERE {t.label.name} = {lit(name)}"
    return q, sql, [t.name]


def count(rng, dom):
    t = rng.choice(list(dom.tables.values()))
    pl = nouns(t)[0]
    made = rng.random() < 0.85 and where(rng, dom, t, rng.choice(dom.rows[t.name]))
    if not made:
        q = rng.choice([f"How many {pl} are there?", f"Count all {pl}.", f"What is the total number of {pl}?"])
        return q, f"SELECT COUNT(*) FROM {t.name}", [t.name]
    sql, rel = made
    q = rng.choice([f"How many {pl} {rel} are there?", f"Count the {pl} {rel}.",
                    f"What is the number of {pl} {rel}?"])
    return q, f"SELECT COUNT(*) FROM {t.name} WHERE {sql}", [t.name]


def aggregate(rng, dom):
    t = pick_table(rng, dom, "num")
    n = rng.choice(columns(t, "num"))
    fn = aggregate_for(rng, n)
    pl, word, np = nouns(t)[0], rng.choice(AGGREGATES[fn]), phrase(n)
    made = rng.random() < 0.6 and where(rng, dom, t, rng.choice(dom.rows[t.name]), skip=(n,))
    scope = made.rel if made else rng.choice(["", "in the database", "overall"])
    filt = f" WHERE {made.sql}" if made else ""
    if rng.random() < 0.2:
        q = f"What are the minimum and maximum {np} of {pl} {scope}?".replace(" ?", "?")
        return q, f"SELECT MIN({n.name}), MAX({n.name}) FROM {t.name}{filt}", [t.name]
    q = rng.choice([f"What is the {word} {np} of {pl} {scope}?", f"Find the {word} {np} among {pl} {scope}.",
                    f"Compute the {word} {np} for {pl} {scope}."]).replace(" ?", "?").replace(" .", ".")
    return q, f"SELECT {fn}({n.name}) FROM {t.name}{filt}", [t.name]


def top(rng, dom):
    t = pick_table(rng, dom, "label", "num")
    n = rng.choice(columns(t, "num", "date"))
    desc, k = rng.random() < 0.6, rng.choice([1, 3, 5, 10])
    best, np, (pl, sg), lp = order_words(n, desc), phrase(n), nouns(t), phrase(t.label)
    filt = "" if desc else not_null(n)  # ascending, NULLs would come first
    order = f" ORDER BY {n.name} {'DESC' if desc else 'ASC'} LIMIT {k}"
    if rng.random() < 0.3:
        which = f"the {sg}" if k == 1 else f"the {k} {pl}"
        q = rng.choice([f"Show the {lp} and {np} of {which} with the {best} {np}.",
                        f"List the top {k} {pl} by {np} ({best} first), with their {lp} and {np}."])
        return q, f"SELECT {t.label.name}, {n.name} FROM {t.name}{filt}{order}", [t.name]
    if k == 1:
        q = rng.choice([f"Which {sg} has the {best} {np}?",
                        f"What is the {lp} of the {sg} with the {best} {np}?"])
    else:
        q = rng.choice([f"Which {k} {pl} have the {best} {np}?",
                        f"List the {plural(lp)} of the {k} {pl} with the {best} {np}."])
    return q, f"SELECT {t.label.name} FROM {t.name}{filt}{order}", [t.name]


def distinct(rng, dom):
    t = pick_table(rng, dom, "cat")
    c = rng.choice(columns(t, "cat"))
    cp, pl = plural(phrase(c)), nouns(t)[0]
    made = rng.random() < 0.5 and where(rng, dom, t, rng.choice(dom.rows[t.name]), skip=(c,))
    rel = made.rel if made else ""
    if rng.random() < 0.3:
        q = rng.choice([f"How many different {cp} are there among {pl} {rel}?",
                        f"Count the distinct {cp} of {pl} {rel}."])
        sql = f"SELECT COUNT(DISTINCT {c.name}) FROM {t.name}"
    else:
        q = rng.choice([f"List the distinct {cp} of {pl} {rel}.", f"Which {cp} appear among {pl} {rel}?",
                        f"Show every {phrase(c)} that occurs among {pl} {rel}, without duplicates."])
        sql = f"SELECT DISTINCT {c.name} FROM {t.name}"
    q = q.replace(" .", ".").replace(" ?", "?").replace(" ,", ",")
    return q, sql + (f" WHERE {made.sql}" if made else ""), [t.name]


def group_count(rng, dom):
    t = pick_table(rng, dom, "cat")
    c = rng.choice(columns(t, "cat"))
    cp, pl = phrase(c), nouns(t)[0]
    if rng.random() < 0.35:
        most = rng.random() < 0.7
        q = rng.choice([f"Which {cp} has the {'most' if most else 'fewest'} {pl}?",
                        f"What is the {'most' if most else 'least'} common {cp} among {pl}?"])
        sql = (f"SELECT {c.name} FROM {t.name}{not_null(c)} GROUP BY {c.name} "
               f"ORDER BY COUNT(*) {'DESC' if most else 'ASC'} LIMIT 1")
        return q, sql, [t.name]
    q = rng.choice([f"How many {pl} are there for each {cp}?", f"For each {cp}, count the {pl}.",
                    f"Show the number of {pl} per {cp}."])
    return q, f"SELECT {c.name}, COUNT(*) FROM {t.name} GROUP BY {c.name}", [t.name]


def group_aggregate(rng, dom):
    t = pick_table(rng, dom, "cat", "num")
    c, n = rng.choice(columns(t, "cat")), rng.choice(columns(t, "num"))
    fn = aggregate_for(rng, n)
    cp, np, pl, word = phrase(c), phrase(n), nouns(t)[0], rng.choice(AGGREGATES[fn])
    if rng.random() < 0.3:
        q = f"Which {cp} has the highest {word} {np} among {pl}?"
        sql = (f"SELECT {c.name} FROM {t.name}{not_null(c)} GROUP BY {c.name} "
               f"ORDER BY {fn}({n.name}) DESC LIMIT 1")
        return q, sql, [t.name]
    q = rng.choice([f"What is the {word} {np} of {pl} for each {cp}?",
                    f"For each {cp}, show the {word} {np} of {pl}.",
                    f"Group {pl} by {cp} and give the {word} {np} of each group."])
    return q, f"SELECT {c.name}, {fn}({n.name}) FROM {t.name} GROUP BY {c.name}", [t.name]


def group_having(rng, dom):
    t = pick_table(rng, dom, "cat", "num")
    c, n = rng.choice(columns(t, "cat")), rng.choice(columns(t, "num"))
    cp, np, pl = phrase(c), phrase(n), nouns(t)[0]
    groups: dict = {}
    for r in dom.rows[t.name]:
        if r[c.name] is not None:
            groups.setdefault(r[c.name], []).append(r[n.name])
    sizes = below_max([len(v) for v in groups.values()])
    if not sizes:
        return None
    if rng.random() < 0.5:
        k = rng.choice(sizes)
        q = rng.choice([f"Which {plural(cp)} have more than {k} {pl}?",
                        f"List the {plural(cp)} shared by more than {k} {pl}."])
        return q, f"SELECT {c.name} FROM {t.name} GROUP BY {c.name} HAVING COUNT(*) > {k}", [t.name]
    means = below_max([sum(x for x in v if x is not None) / max(1, sum(x is not None for x in v))
                       for v in groups.values()])
    if not means:
        return None
    bound = int(rng.choice(means))  # int() rounds down, so the largest group still passes
    q = rng.choice([f"Which {plural(cp)} have an average {np} above {bound} among {pl}?",
                    f"List each {cp} whose {pl} have an average {np} greater than {bound}."])
    return q, f"SELECT {c.name} FROM {t.name} GROUP BY {c.name} HAVING AVG({n.name}) > {bound}", [t.name]


def compare_average(rng, dom):
    t = pick_table(rng, dom, "label", "num")
    n = rng.choice(columns(t, "num"))
    above = rng.random() < 0.7
    what, np, pl = plural(phrase(t.label)), phrase(n), nouns(t)[0]
    side, op = ("above", ">") if above else ("below", "<")
    q = rng.choice([f"Which {pl} have {side}-average {np}? List their {what}.",
                    f"List the {what} of {pl} whose {np} is {'greater' if above else 'less'} "
                    f"than the average {np}.",
                    f"Show the {what} of {pl} with {a(side + '-average ' + np)}."])
    sql = f"SELECT {t.label.name} FROM {t.name} WHERE {n.name} {op} (SELECT AVG({n.name}) FROM {t.name})"
    return q, sql, [t.name]


def extreme(rng, dom):
    t = pick_table(rng, dom, "label", "num")
    n = rng.choice(columns(t, "num"))
    fn = rng.choice(["MAX", "MIN"])
    what, np, pl, word = plural(phrase(t.label)), phrase(n), nouns(t)[0], AGGREGATES[fn][-1]
    q = rng.choice([f"List every {t.singular} whose {np} equals the {word} {np} of all {pl}.",
                    f"Which {pl} share the {word} {np}? Give their {what}.",
                    f"Find the {what} of all {pl} whose {np} is the {word} in the table."])
    sql = f"SELECT {t.label.name} FROM {t.name} WHERE {n.name} = (SELECT {fn}({n.name}) FROM {t.name})"
    return q, sql, [t.name]
