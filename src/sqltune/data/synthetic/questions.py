"""Question templates over one table: filters, aggregates, ranking, grouping, subqueries.

Each template is a `Template`: it takes (rng, domain) and returns a `Made` (question, gold
SQL, tables used), or None when the domain has nothing it can use. See conditions.py for
how columns and conditions are put into words.
"""

from __future__ import annotations

import random
from typing import Any

from sqltune.data.synthetic.conditions import (AGGREGATES, Made, aggregate_for, anchor_row, below_max, columns,
                                               condition, details, listing, literal, not_null, order_words,
                                               Unfit, phrase, pick_table, plural, relative, tidy, where,
                                               with_article)
from sqltune.data.synthetic.domains import Domain


def select_filter(rng: random.Random, domain: Domain) -> Made:
    """Labels of the rows meeting one condition."""
    table = pick_table(rng, domain, "label")
    cond = condition(rng, domain, table, anchor_row(rng, domain, table), skip=(table.label,))
    if not cond:
        raise Unfit("nothing in this domain fits (this draw)")
    rows, what = table.plural, plural(phrase(table.label))
    rel = relative(rng, cond.subject, cond.pred)
    question = rng.choice([
        f"List the {what} of {rows} {rel}.", f"What are the {what} of the {rows} {rel}?",
        f"Show me the {what} of all {rows} {rel}.", f"Find the {what} of {rows} {rel}.",
        f"Which {rows} have {with_article(cond.subject)} that {cond.pred}? Give their {what}."])
    return Made(question, f"SELECT {table.label.name} FROM {table.name} WHERE {cond.sql}", [table.name])


def select_columns(rng: random.Random, domain: Domain) -> Made:
    """A few columns, or all of them, of the rows meeting one condition."""
    table = pick_table(rng, domain, "label")
    found = where(rng, domain, table, anchor_row(rng, domain, table))
    if not found:
        raise Unfit("nothing in this domain fits (this draw)")
    rows, rel = table.plural, found.rel
    if rng.random() < 0.25:
        question = rng.choice([f"Show all information about {rows} {rel}.", f"Give me every column for {rows} {rel}.",
                               f"What are the full details of the {rows} {rel}?"])
        return Made(question, f"SELECT * FROM {table.name} WHERE {found.sql}", [table.name])
    shown = [table.label] + details(rng, table)
    said = listing([phrase(column) for column in shown])
    question = rng.choice([f"Show the {said} of {rows} {rel}.", f"List the {said} for every {table.singular} {rel}.",
                           f"For {rows} {rel}, what are their {said}?"])
    sql = f"SELECT {', '.join(column.name for column in shown)} FROM {table.name} WHERE {found.sql}"
    return Made(question, sql, [table.name])


def two_conditions(rng: random.Random, domain: Domain) -> Made:
    """Labels of the rows meeting two conditions, joined by AND or OR."""
    table = pick_table(rng, domain, "label")
    row = anchor_row(rng, domain, table)
    first = condition(rng, domain, table, row, skip=(table.label,))
    if not first:
        raise Unfit("nothing in this domain fits (this draw)")
    second = condition(rng, domain, table, row, skip=(table.label, first.column))
    if not second:
        raise Unfit("nothing in this domain fits (this draw)")
    joiner = "AND" if rng.random() < 0.8 else "OR"
    what, rows = plural(phrase(table.label)), table.plural
    both = (f"{relative(rng, first.subject, first.pred)} {joiner.lower()} "
            f"{'whose ' if joiner == 'OR' else ''}{second.subject} {second.pred}")
    question = rng.choice([f"List the {what} of {rows} {both}.", f"Which {rows} are there {both}? Show their {what}.",
                           f"Find the {what} of all {rows} {both}."])
    return Made(question, f"SELECT {table.label.name} FROM {table.name} WHERE {first.sql} {joiner} {second.sql}",
                [table.name])


def lookup(rng: random.Random, domain: Domain) -> Made:
    """Some columns of the one row with a given label."""
    table = pick_table(rng, domain, "label")
    row = anchor_row(rng, domain, table)
    shown = details(rng, table)
    said, name = listing([phrase(column) for column in shown]), row[table.label.name]
    verb = "is" if len(shown) == 1 else "are"
    question = rng.choice([
        f"What {verb} the {said} of the {table.singular} whose {phrase(table.label)} is {name}?",
        f"Show the {said} for the {table.singular} {name}.",
        f"Give me the {said} of the {table.singular} called {name}."])
    sql = (f"SELECT {', '.join(column.name for column in shown)} FROM {table.name} "
           f"WHERE {table.label.name} = {literal(name)}")
    return Made(question, sql, [table.name])


def count(rng: random.Random, domain: Domain) -> Made:
    """COUNT(*) of a table, usually with one condition."""
    table = rng.choice(list(domain.tables.values()))
    rows = table.plural
    found = where(rng, domain, table, anchor_row(rng, domain, table)) if rng.random() < 0.85 else None
    if not found:
        question = rng.choice([f"How many {rows} are there?", f"Count all {rows}.",
                               f"What is the total number of {rows}?"])
        return Made(question, f"SELECT COUNT(*) FROM {table.name}", [table.name])
    question = rng.choice([f"How many {rows} {found.rel} are there?", f"Count the {rows} {found.rel}.",
                           f"What is the number of {rows} {found.rel}?"])
    return Made(question, f"SELECT COUNT(*) FROM {table.name} WHERE {found.sql}", [table.name])


def aggregate(rng: random.Random, domain: Domain) -> Made:
    """One aggregate of a number (or its minimum and maximum), sometimes over a condition."""
    table = pick_table(rng, domain, "num")
    number = rng.choice(columns(table, "num"))
    function = aggregate_for(rng, number)
    rows, word, said = table.plural, rng.choice(AGGREGATES[function]), phrase(number)
    found = (where(rng, domain, table, anchor_row(rng, domain, table), skip=(number,))
             if rng.random() < 0.6 else None)
    scope = found.rel if found else rng.choice(["", "in the database", "overall"])
    filter_sql = f" WHERE {found.sql}" if found else ""
    if rng.random() < 0.2:
        question = tidy(f"What are the minimum and maximum {said} of {rows} {scope}?")
        return Made(question, f"SELECT MIN({number.name}), MAX({number.name}) FROM {table.name}{filter_sql}",
                    [table.name])
    question = rng.choice([f"What is the {word} {said} of {rows} {scope}?",
                           f"Find the {word} {said} among {rows} {scope}.",
                           f"Compute the {word} {said} for {rows} {scope}."])
    return Made(tidy(question), f"SELECT {function}({number.name}) FROM {table.name}{filter_sql}", [table.name])


def top(rng: random.Random, domain: Domain) -> Made:
    """The rows with the k highest (or lowest) values of a number or date."""
    table = pick_table(rng, domain, "label", "num")
    key = rng.choice(columns(table, "num", "date"))
    desc = rng.random() < 0.6
    limit = rng.choice([1, 3, 5, 10])
    best, said, rows, label = order_words(key, desc), phrase(key), table.plural, phrase(table.label)
    filter_sql = "" if desc else not_null(key)  # ascending, NULLs would come first
    order = f" ORDER BY {key.name} {'DESC' if desc else 'ASC'} LIMIT {limit}"
    if rng.random() < 0.3:
        which = f"the {table.singular}" if limit == 1 else f"the {limit} {rows}"
        question = rng.choice([f"Show the {label} and {said} of {which} with the {best} {said}.",
                               f"List the top {limit} {rows} by {said} ({best} first), with their {label} and {said}."])
        sql = f"SELECT {table.label.name}, {key.name} FROM {table.name}{filter_sql}{order}"
        return Made(question, sql, [table.name])
    if limit == 1:
        question = rng.choice([f"Which {table.singular} has the {best} {said}?",
                               f"What is the {label} of the {table.singular} with the {best} {said}?"])
    else:
        question = rng.choice([f"Which {limit} {rows} have the {best} {said}?",
                               f"List the {plural(label)} of the {limit} {rows} with the {best} {said}."])
    return Made(question, f"SELECT {table.label.name} FROM {table.name}{filter_sql}{order}", [table.name])


def distinct(rng: random.Random, domain: Domain) -> Made:
    """The distinct values of a category, or their number, sometimes over a condition."""
    table = pick_table(rng, domain, "cat")
    category = rng.choice(columns(table, "cat"))
    said, rows = plural(phrase(category)), table.plural
    found = (where(rng, domain, table, anchor_row(rng, domain, table), skip=(category,))
             if rng.random() < 0.5 else None)
    rel = found.rel if found else ""
    if rng.random() < 0.3:
        question = rng.choice([f"How many different {said} are there among {rows} {rel}?",
                               f"Count the distinct {said} of {rows} {rel}."])
        sql = f"SELECT COUNT(DISTINCT {category.name}) FROM {table.name}"
    else:
        question = rng.choice([f"List the distinct {said} of {rows} {rel}.", f"Which {said} appear among {rows} {rel}?",
                               f"Show every {phrase(category)} that occurs among {rows} {rel}, without duplicates."])
        sql = f"SELECT DISTINCT {category.name} FROM {table.name}"
    return Made(tidy(question), sql + (f" WHERE {found.sql}" if found else ""), [table.name])


def group_count(rng: random.Random, domain: Domain) -> Made:
    """Rows counted per category, or the most (least) common category."""
    table = pick_table(rng, domain, "cat")
    category = rng.choice(columns(table, "cat"))
    said, rows = phrase(category), table.plural
    if rng.random() < 0.35:
        most = rng.random() < 0.7
        question = rng.choice([f"Which {said} has the {'most' if most else 'fewest'} {rows}?",
                               f"What is the {'most' if most else 'least'} common {said} among {rows}?"])
        sql = (f"SELECT {category.name} FROM {table.name}{not_null(category)} GROUP BY {category.name} "
               f"ORDER BY COUNT(*) {'DESC' if most else 'ASC'} LIMIT 1")
        return Made(question, sql, [table.name])
    question = rng.choice([f"How many {rows} are there for each {said}?", f"For each {said}, count the {rows}.",
                           f"Show the number of {rows} per {said}."])
    return Made(question, f"SELECT {category.name}, COUNT(*) FROM {table.name} GROUP BY {category.name}", [table.name])


def group_aggregate(rng: random.Random, domain: Domain) -> Made:
    """An aggregate of a number per category, or the category where it is highest."""
    table = pick_table(rng, domain, "cat", "num")
    category, number = rng.choice(columns(table, "cat")), rng.choice(columns(table, "num"))
    function = aggregate_for(rng, number)
    group, said, rows, word = phrase(category), phrase(number), table.plural, rng.choice(AGGREGATES[function])
    if rng.random() < 0.3:
        question = f"Which {group} has the highest {word} {said} among {rows}?"
        sql = (f"SELECT {category.name} FROM {table.name}{not_null(category)} GROUP BY {category.name} "
               f"ORDER BY {function}({number.name}) DESC LIMIT 1")
        return Made(question, sql, [table.name])
    question = rng.choice([f"What is the {word} {said} of {rows} for each {group}?",
                           f"For each {group}, show the {word} {said} of {rows}.",
                           f"Group {rows} by {group} and give the {word} {said} of each group."])
    sql = f"SELECT {category.name}, {function}({number.name}) FROM {table.name} GROUP BY {category.name}"
    return Made(question, sql, [table.name])


def group_having(rng: random.Random, domain: Domain) -> Made:
    """Categories with more than k rows, or with an average above a bound: HAVING."""
    table = pick_table(rng, domain, "cat", "num")
    category, number = rng.choice(columns(table, "cat")), rng.choice(columns(table, "num"))
    group, said, rows = phrase(category), phrase(number), table.plural
    groups: dict[Any, list[Any]] = {}
    for row in domain.rows[table.name]:
        if row[category.name] is not None:
            groups.setdefault(row[category.name], []).append(row[number.name])
    sizes = below_max([len(members) for members in groups.values()])
    if not sizes:
        raise Unfit("nothing in this domain fits (this draw)")
    having = f"SELECT {category.name} FROM {table.name} GROUP BY {category.name} HAVING"
    if rng.random() < 0.5:
        limit = rng.choice(sizes)
        question = rng.choice([f"Which {plural(group)} have more than {limit} {rows}?",
                               f"List the {plural(group)} shared by more than {limit} {rows}."])
        return Made(question, f"{having} COUNT(*) > {limit}", [table.name])
    means = below_max([_mean(members) for members in groups.values()])
    if not means:
        raise Unfit("nothing in this domain fits (this draw)")
    bound = int(rng.choice(means))  # int() rounds down, so the largest group still passes
    question = rng.choice([f"Which {plural(group)} have an average {said} above {bound} among {rows}?",
                           f"List each {group} whose {rows} have an average {said} greater than {bound}."])
    return Made(question, f"{having} AVG({number.name}) > {bound}", [table.name])


def _mean(values: list[Any]) -> float:
    """The mean of the non-NULL values; 0 when there are none."""
    present: list[float] = [value for value in values if value is not None]
    return sum(present) / max(1, len(present))


def compare_average(rng: random.Random, domain: Domain) -> Made:
    """Rows whose number is above (or below) the table's average: a scalar subquery."""
    table = pick_table(rng, domain, "label", "num")
    number = rng.choice(columns(table, "num"))
    above = rng.random() < 0.7
    what, said, rows = plural(phrase(table.label)), phrase(number), table.plural
    side, op = ("above", ">") if above else ("below", "<")
    question = rng.choice([f"Which {rows} have {side}-average {said}? List their {what}.",
                           f"List the {what} of {rows} whose {said} is {'greater' if above else 'less'} "
                           f"than the average {said}.",
                           f"Show the {what} of {rows} with {with_article(side + '-average ' + said)}."])
    average = f"(SELECT AVG({number.name}) FROM {table.name})"
    return Made(question, f"SELECT {table.label.name} FROM {table.name} WHERE {number.name} {op} {average}",
                [table.name])


def extreme(rng: random.Random, domain: Domain) -> Made:
    """Every row sharing the maximum (or minimum) of a number: a scalar subquery."""
    table = pick_table(rng, domain, "label", "num")
    number = rng.choice(columns(table, "num"))
    function = rng.choice(["MAX", "MIN"])
    what, said, rows, word = plural(phrase(table.label)), phrase(number), table.plural, AGGREGATES[function][-1]
    question = rng.choice([f"List every {table.singular} whose {said} equals the {word} {said} of all {rows}.",
                           f"Which {rows} share the {word} {said}? Give their {what}.",
                           f"Find the {what} of all {rows} whose {said} is the {word} in the table."])
    sql = (f"SELECT {table.label.name} FROM {table.name} "
           f"WHERE {number.name} = (SELECT {function}({number.name}) FROM {table.name})")
    return Made(question, sql, [table.name])
