"""Question templates over two and three tables, following the domain's foreign keys.

An `Edge` (child, fk, parent) is "each child row points at a parent row". The fk's name
says the relation: orders.customer_id reads "customer", flights.origin_airport_id reads
"origin airport", so "flights whose origin airport's city is Lyon". A `Chain` A -> B -> C
follows two edges; a `Bridge` A <- M -> B is a table with two fks (enrollments: student,
course). As in conditions.py, conditions are built from an anchor row so the answer is not
empty; the anti-joins (NOT IN, EXCEPT) find rows because values.py leaves ~15% of every
parent table without children.
"""

from __future__ import annotations

import random
from collections import Counter
from functools import cache
from typing import NamedTuple

from sqltune.data.synthetic.conditions import (AGGREGATES, Cond, Made, aggregate_for, anchor_row, below_max,
                                               columns, condition, phrase, pick_one, plural, possessive, qualified,
                                               relative, strip_owner, Unfit, where, with_article)
from sqltune.data.synthetic.domains import Domain
from sqltune.data.synthetic.spec import Column, Row, Table


class Edge(NamedTuple):
    """Each `child` row points at a `parent` row through the foreign key `fk`."""
    child: Table
    fk: Column
    parent: Table


class Chain(NamedTuple):
    """A -> B -> C: `first` goes from A to B, `second` from B to C."""
    first: Edge
    second: Edge


class Bridge(NamedTuple):
    """A <- M -> B: two edges out of the same table M, `left` to A and `right` to B."""
    left: Edge
    right: Edge


class Links(NamedTuple):
    edges: list[Edge]
    chains: list[Chain]
    bridges: list[Bridge]


class ParentFilter(NamedTuple):
    """An edge and a condition on its parent (alias T2) that some child row meets."""
    edge: Edge
    cond: Cond
    owner: str  # the fk's phrase: "customer", "origin airport"
    rel: str  # the condition said from the child: "whose customer's city is Lyon"


@cache
def links(domain: Domain) -> Links:
    """The domain's foreign-key paths: every edge, chain and bridge."""
    edges = [Edge(table, fk, domain.tables[fk.gen]) for table in domain.tables.values() for fk in columns(table, "fk")]
    if not edges:
        raise ValueError(f"domain {domain.name} has no foreign keys (schemas.py gives every domain some)")
    chains = [Chain(first, second) for first in edges for second in edges if second.child is first.parent]
    bridges = [Bridge(left, right) for left in edges for right in edges
               if right.child is left.child and left.fk is not right.fk]
    return Links(edges, chains, bridges)


def _join(edge: Edge) -> str:
    """The FROM clause of an edge: child AS T1 JOIN parent AS T2."""
    return f"{edge.child.name} AS T1 JOIN {edge.parent.name} AS T2 ON T1.{edge.fk.name} = T2.{edge.parent.pk.name}"


def _join_third(alias: str, edge: Edge) -> str:
    """A third table, the edge's parent as T3, joined on the table aliased `alias`."""
    return f" JOIN {edge.parent.name} AS T3 ON {alias}.{edge.fk.name} = T3.{edge.parent.pk.name}"


class ThreeTables(NamedTuple):
    """T1 = first.child, T2 = first.parent, T3 = second.parent, joined; and an anchor row of T1."""
    tables: list[str]
    joins: str
    row: Row


def _three_tables(rng: random.Random, domain: Domain, first: Edge, second: Edge, via: str) -> ThreeTables:
    """Two foreign keys as one FROM clause: `second` hangs off T1 (a bridge) or T2 (a chain)."""
    return ThreeTables([first.child.name, first.parent.name, second.parent.name],
                       _join(first) + _join_third(via, second), anchor_row(rng, domain, first.child))


def _whose(owner: str, cond: Cond) -> str:
    """'a customer whose city is Lyon', for a condition on the row an fk points at."""
    return f"{with_article(owner)} whose {strip_owner(owner, cond.subject)} {cond.pred}"


def _owners(edge: Edge, rel: str) -> str:
    """'customers that have an order ...' or 'airports that are the origin airport of a flight ...'."""
    if phrase(edge.fk) == edge.parent.singular:
        return f"{edge.parent.plural} that have {with_article(edge.child.singular)} {rel}"
    return f"{edge.parent.plural} that are the {phrase(edge.fk)} of {with_article(edge.child.singular)} {rel}"


def _parent_filter(rng: random.Random, domain: Domain) -> ParentFilter | None:
    """A random edge and a condition on the parent of one of its child rows."""
    edge = rng.choice(links(domain).edges)
    row = anchor_row(rng, domain, edge.child)
    cond = condition(rng, domain, edge.parent, domain.parent(row, edge.fk), alias="T2")
    if not cond:
        return None
    owner = phrase(edge.fk)
    return ParentFilter(edge, cond, owner, relative(rng, possessive(owner, cond.subject), cond.pred))


def join_filter(rng: random.Random, domain: Domain) -> Made:
    """Child rows filtered on their parent: a 2-table join with WHERE."""
    found = _parent_filter(rng, domain)
    if not found:
        raise Unfit("nothing in this domain fits (this draw)")
    child, parent = found.edge.child, found.edge.parent
    what, rows = plural(phrase(child.label)), child.plural
    question = rng.choice([f"List the {what} of {rows} {found.rel}.", f"Show me the {what} of all {rows} {found.rel}.",
                           f"Which {rows} have {_whose(found.owner, found.cond)}? Give their {what}."])
    return Made(question, f"SELECT T1.{child.label.name} FROM {_join(found.edge)} WHERE {found.cond.sql}",
                [child.name, parent.name])


def join_show(rng: random.Random, domain: Domain) -> Made:
    """Child rows with a column of their parent."""
    edge = rng.choice(links(domain).edges)
    child, parent = edge.child, edge.parent
    found = where(rng, domain, child, anchor_row(rng, domain, child), alias="T1")
    if not found:
        raise Unfit("nothing in this domain fits (this draw)")
    owner, label, parent_label = phrase(edge.fk), phrase(child.label), phrase(parent.label)
    question = rng.choice([
        f"For each {child.singular} {found.rel}, show its {label} and the {parent_label} of its {owner}.",
        f"List the {plural(label)} of {child.plural} {found.rel} together with their "
        f"{possessive(owner, parent_label)}.",
        f"Show the {label} and {qualified(owner, parent_label)} of every {child.singular} {found.rel}."])
    sql = f"SELECT T1.{child.label.name}, T2.{parent.label.name} FROM {_join(edge)} WHERE {found.sql}"
    return Made(question, sql, [child.name, parent.name])


def join_count(rng: random.Random, domain: Domain) -> Made:
    """Children counted per parent (GROUP BY over a join), or the parent with the most."""
    edge = rng.choice(links(domain).edges)
    child, parent = edge.child, edge.parent
    owner, rows, parent_label = phrase(edge.fk), child.plural, phrase(parent.label)
    group = f"FROM {_join(edge)} GROUP BY T1.{edge.fk.name}"
    if rng.random() < 0.35:
        question = rng.choice([f"Which {owner} has the most {rows}? Give its {parent_label}.",
                               f"What is the {parent_label} of the {owner} with the largest number of {rows}?"])
        sql = f"SELECT T2.{parent.label.name} {group} ORDER BY COUNT(*) DESC LIMIT 1"
        return Made(question, sql, [child.name, parent.name])
    question = rng.choice([f"How many {rows} does each {owner} have? Show the {parent_label} and the count.",
                           f"For every {owner}, list its {parent_label} and its number of {rows}.",
                           f"Count the {rows} per {owner}, showing the {possessive(owner, parent_label)}."])
    return Made(question, f"SELECT T2.{parent.label.name}, COUNT(*) {group}", [child.name, parent.name])


def join_having(rng: random.Random, domain: Domain) -> Made:
    """Parents with more than k children: GROUP BY ... HAVING COUNT(*)."""
    edge = rng.choice(links(domain).edges)
    child, parent = edge.child, edge.parent
    counts = below_max(list(Counter(row[edge.fk.name] for row in domain.rows[child.name]).values()))
    if not counts:
        raise Unfit("nothing in this domain fits (this draw)")
    limit = rng.choice(counts)
    owners, rows, what = plural(phrase(edge.fk)), child.plural, plural(phrase(parent.label))
    if rng.random() < 0.5:
        question = rng.choice([f"Which {owners} have more than {limit} {rows}? List their {what}.",
                               f"Show the {what} of {owners} with over {limit} {rows}."])
        having = f"> {limit}"
    else:
        question, having = f"List the {what} of {owners} that have at least {limit + 1} {rows}.", f">= {limit + 1}"
    sql = f"SELECT T2.{parent.label.name} FROM {_join(edge)} GROUP BY T1.{edge.fk.name} HAVING COUNT(*) {having}"
    return Made(question, sql, [child.name, parent.name])


def join_aggregate(rng: random.Random, domain: Domain) -> Made:
    """An aggregate of a child number per parent, sometimes ranked."""
    edges = [edge for edge in links(domain).edges if columns(edge.child, "num")]
    if not edges:
        raise Unfit("nothing in this domain fits (this draw)")
    edge = rng.choice(edges)
    child, parent = edge.child, edge.parent
    number = rng.choice(columns(child, "num"))
    function = aggregate_for(rng, number)
    owner, said, rows, parent_label = phrase(edge.fk), phrase(number), child.plural, phrase(parent.label)
    word = rng.choice(AGGREGATES[function])
    value, group = f"{function}(T1.{number.name})", f"FROM {_join(edge)} GROUP BY T1.{edge.fk.name}"
    if rng.random() < 0.3:
        limit = rng.choice([1, 3, 5])
        question = (f"Which {owner} has the highest {word} {said} of {rows}? Give its {parent_label}."
                    if limit == 1 else
                    f"List the {plural(parent_label)} of the {limit} {plural(owner)} with the highest {word} {said} "
                    f"of {rows}.")
        sql = f"SELECT T2.{parent.label.name} {group} ORDER BY {value} DESC LIMIT {limit}"
        return Made(question, sql, [child.name, parent.name])
    question = rng.choice([
        f"What is the {word} {said} of {rows} for each {owner}? Show the {possessive(owner, parent_label)}.",
        f"For each {owner}, give the {parent_label} and the {word} {said} of its {rows}."])
    return Made(question, f"SELECT T2.{parent.label.name}, {value} {group}", [child.name, parent.name])


def join_count_filter(rng: random.Random, domain: Domain) -> Made:
    """COUNT(*) over a join filtered on the parent."""
    found = _parent_filter(rng, domain)
    if not found:
        raise Unfit("nothing in this domain fits (this draw)")
    rows = found.edge.child.plural
    question = rng.choice([f"How many {rows} have {_whose(found.owner, found.cond)}?", f"Count the {rows} {found.rel}.",
                           f"What is the number of {rows} {found.rel}?"])
    sql = f"SELECT COUNT(*) FROM {_join(found.edge)} WHERE {found.cond.sql}"
    return Made(question, sql, [found.edge.child.name, found.edge.parent.name])


def subquery_in(rng: random.Random, domain: Domain) -> Made:
    """Parents having a child that matches: WHERE pk IN (SELECT fk ...)."""
    edge = rng.choice(links(domain).edges)
    child, parent = edge.child, edge.parent
    found = where(rng, domain, child, anchor_row(rng, domain, child))
    if not found:
        raise Unfit("nothing in this domain fits (this draw)")
    what, owners = plural(phrase(parent.label)), _owners(edge, found.rel)
    question = rng.choice([f"List the {what} of {owners}.", f"Show the {what} of all {owners}.",
                           f"Find {owners}, and give their {what}."])
    sql = (f"SELECT {parent.label.name} FROM {parent.name} WHERE {parent.pk.name} IN "
           f"(SELECT {edge.fk.name} FROM {child.name} WHERE {found.sql})")
    return Made(question, sql, [parent.name, child.name])


def anti_join(rng: random.Random, domain: Domain) -> Made:
    """Parents without children, as NOT IN or as EXCEPT."""
    edge = rng.choice(links(domain).edges)
    child, parent = edge.child, edge.parent
    owner, what, parents, rows = phrase(edge.fk), plural(phrase(parent.label)), parent.plural, child.plural
    if rng.random() < 0.5:
        if owner == parent.singular:
            question = rng.choice([f"Which {parents} have no {rows}? List their {what}.",
                                   f"List the {what} of {parents} that do not have any {rows}."])
        else:
            question = f"List the {what} of {parents} that are never the {owner} of any {child.singular}."
        sql = (f"SELECT {parent.label.name} FROM {parent.name} "
               f"WHERE {parent.pk.name} NOT IN (SELECT {edge.fk.name} FROM {child.name})")
        return Made(question, sql, [parent.name, child.name])
    found = where(rng, domain, child, anchor_row(rng, domain, child), alias="T1")
    if not found:
        raise Unfit("nothing in this domain fits (this draw)")
    role = f"have no {child.singular}" if owner == parent.singular else f"are not the {owner} of any {child.singular}"
    question = rng.choice([f"List the {what} of {parents} that {role} {found.rel}.",
                           f"Which {parents} {role} {found.rel}? Give their {what}."])
    sql = (f"SELECT {parent.label.name} FROM {parent.name} EXCEPT SELECT T2.{parent.label.name} "
           f"FROM {_join(edge)} WHERE {found.sql}")
    return Made(question, sql, [parent.name, child.name])


def chain(rng: random.Random, domain: Domain) -> Made:
    """Three tables A -> B -> C; filter at one end, answer from the other."""
    first, second = pick_one(rng, links(domain).chains, "chain of three tables")
    start, middle, end = first.child, first.parent, second.parent
    tables, joins, row = _three_tables(rng, domain, first, second, via="T2")
    owner_first, owner_second = phrase(first.fk), phrase(second.fk)
    if rng.random() < 0.5:
        found = where(rng, domain, start, row, alias="T1")
        if not found:
            raise Unfit("nothing in this domain fits (this draw)")
        what, via, ends = plural(phrase(end.label)), middle.plural, f"{start.plural} {found.rel}"
        question = rng.choice([
            f"Which {plural(owner_second)} have {via} with {ends}? Give their {what}.",
            f"List the distinct {what} of {plural(owner_second)} linked through {via} to {ends}."])
        return Made(question, f"SELECT DISTINCT T3.{end.label.name} FROM {joins} WHERE {found.sql}", tables)
    end_row = domain.parent(domain.parent(row, first.fk), second.fk)
    cond = condition(rng, domain, end, end_row, alias="T3")
    if not cond:
        raise Unfit("nothing in this domain fits (this draw)")
    what = plural(phrase(start.label))
    rel = relative(rng, f"{owner_first}'s " + possessive(owner_second, cond.subject), cond.pred)
    question = rng.choice([f"Show the {what} of {start.plural} {rel}.",
                           f"List the {what} of {start.plural} whose {owner_first} belongs to "
                           f"{_whose(owner_second, cond)}."])
    return Made(question, f"SELECT T1.{start.label.name} FROM {joins} WHERE {cond.sql}", tables)


def bridge(rng: random.Random, domain: Domain) -> Made:
    """Three tables A <- M -> B: filter on B and answer A, or show both for some M rows."""
    left, right = pick_one(rng, links(domain).bridges, "bridge table")
    middle, table_a, table_b = left.child, left.parent, right.parent
    tables, joins, row = _three_tables(rng, domain, left, right, via="T1")
    owner_a, owner_b, label_a, label_b = phrase(left.fk), phrase(right.fk), phrase(table_a.label), phrase(table_b.label)
    if rng.random() < 0.6:
        cond = condition(rng, domain, table_b, domain.parent(row, right.fk), alias="T3")
        if not cond:
            raise Unfit("nothing in this domain fits (this draw)")
        rel = relative(rng, possessive(owner_b, cond.subject), cond.pred)
        question = rng.choice([
            f"Which {plural(owner_a)} have {middle.plural} {rel}? List their {plural(label_a)}.",
            f"List the distinct {plural(label_a)} of {plural(owner_a)} with {with_article(middle.singular)} "
            f"for {_whose(owner_b, cond)}."])
        return Made(question, f"SELECT DISTINCT T2.{table_a.label.name} FROM {joins} WHERE {cond.sql}", tables)
    found = where(rng, domain, middle, row, alias="T1")
    if not found:
        raise Unfit("nothing in this domain fits (this draw)")
    question = rng.choice([
        f"For each {middle.singular} {found.rel}, show the {possessive(owner_a, label_a)} and the "
        f"{possessive(owner_b, label_b)}.",
        f"List the {qualified(owner_a, label_a)} and {qualified(owner_b, label_b)} of every {middle.singular} "
        f"{found.rel}."])
    sql = f"SELECT T2.{table_a.label.name}, T3.{table_b.label.name} FROM {joins} WHERE {found.sql}"
    return Made(question, sql, tables)
