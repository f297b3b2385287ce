"""Offline synthetic text-to-SQL data: English questions with gold SQLite queries.

    rows = generate(10_000, seed=0, db_dir="dbs")

gives rows shaped like the hub dataset Clinton/Text-to-sql-v1 (`instruction` is the
question, `input` the CREATE TABLE statements, `response` the gold SQL) plus `db_id` and
`db_path`, and writes one SQLite file per domain into db_dir, so that predicted queries
can be scored by executing them. A row is made in three steps:

  1. a (domain, template) pair comes from a seeded shuffle of all pairs, so any prefix of
     the rows mixes domains and query shapes (a question already asked is retried);
  2. the template (questions.py, joins.py) picks tables, columns and an anchor row of the
     real data and writes the question and the SQL;
  3. the `input` is one of several views of the schema, from "only the columns the query
     touches" to "the whole domain", chosen so that the easy / medium / hard length
     buckets of sqltune.data.rows (`BUCKETS`, `difficulty`) all get about a third of the rows.

Trade-offs: 23 templates over ten hand-written schemas give grammatical but plain,
column-name English ("whose home city is Lyon"); there are no misspellings, vague
questions or dialect quirks as in human-written data, and a model trained only on this
will find real questions harder. In exchange every gold query is exactly right, runs,
and for all but a handful of rows in 10,000 returns something. The databases do not
depend on `seed`, so rows made with different seeds share one db_dir.
"""

from __future__ import annotations

import random
import re
from itertools import cycle, islice
from pathlib import Path

from sqltune.data.rows import difficulty
from sqltune.data.synthetic import joins, questions
from sqltune.data.synthetic.conditions import Made, Template, Unfit
from sqltune.data.synthetic.domains import Domain, create_table, load_domain, write_database
from sqltune.data.synthetic.schemas import SCHEMAS

DOMAINS = list(SCHEMAS)
TEMPLATES: list[Template] = [
    questions.select_filter, questions.select_columns, questions.two_conditions, questions.lookup,
    questions.count, questions.aggregate, questions.top, questions.distinct, questions.group_count,
    questions.group_aggregate, questions.group_having, questions.compare_average, questions.extreme,
    joins.join_filter, joins.join_show, joins.join_count, joins.join_having, joins.join_aggregate,
    joins.join_count_filter, joins.subquery_in, joins.anti_join, joins.chain, joins.bridge,
]
MAX_TRIES = 20  # per row: a template may not fit a domain, or may repeat a question
SAME_TEMPLATE_TRIES = 5  # then each retry draws another template at random


def generate(n_rows: int, seed: int, db_dir: str | Path) -> list[dict[str, str]]:
    """Deterministic rows; writes one SQLite file per domain database into db_dir."""
    if n_rows < 0:
        raise ValueError(f"n_rows must be >= 0, got {n_rows}")
    db_dir = Path(db_dir).resolve()
    db_dir.mkdir(parents=True, exist_ok=True)
    domains = [load_domain(name) for name in DOMAINS]
    paths = {domain.name: str(write_database(domain, db_dir)) for domain in domains}

    rng = random.Random(seed)
    pairs = [(domain, template) for domain in domains for template in TEMPLATES]
    rng.shuffle(pairs)  # so that a short run still draws from every domain
    jobs = list(islice(cycle(pairs), n_rows))
    rng.shuffle(jobs)
    seen: set[tuple[str, str]] = set()
    rows = []
    for domain, template in jobs:
        made = make_question(rng, domain, template, seen)
        rows.append({
            "instruction": made.question,
            "input": pick_schema_view(rng, domain, made),
            "response": made.sql,
            "db_id": domain.name,
            "db_path": paths[domain.name],
        })
    return rows


def make_question(rng: random.Random, domain: Domain, template: Template, seen: set[tuple[str, str]]) -> Made:
    """Run the template, retrying (with other templates after a few tries) on None, Unfit or a repeat;
    the question comes back capitalised, and is added to `seen`."""
    made = None
    for attempt in range(MAX_TRIES):
        try:
            made = template(rng, domain) or made
        except Unfit:  # the same as a template's None: try again, then another template
            pass
        if made and (domain.name, made.question) not in seen:
            break
        if attempt + 1 >= SAME_TEMPLATE_TRIES:
            template = rng.choice(TEMPLATES)
    assert made, f"no template produced a question for domain {domain.name}"
    seen.add((domain.name, made.question))
    return made._replace(question=made.question[:1].upper() + made.question[1:])


def schema_views(rng: random.Random, domain: Domain, made: Made) -> list[str]:
    """Candidate `input`s (CREATE TABLE statements, one a line), smallest first: the used
    columns only, the used tables, then those plus more of the domain, up to all of it."""
    views = []
    if "*" not in made.sql:
        used = set(re.findall(r"\w+", re.sub(r"'(?:[^']|'')*'", "", made.sql)))
        views.append([create_table(table, keep=used) for table in domain.tables.values() if table.name in made.tables])
    others = [name for name in domain.tables if name not in made.tables]
    rng.shuffle(others)
    for n_others in range(len(others) + 1):
        shown = set(made.tables) | set(others[:n_others])
        views.append([domain.ddl[name] for name in domain.tables if name in shown])
    return ["\n".join(view) for view in views]


def pick_schema_view(rng: random.Random, domain: Domain, made: Made) -> str:
    """Pick a difficulty bucket the row can reach, at random, then a view inside it."""
    views = schema_views(rng, domain, made)
    by_bucket: dict[str, list[str]] = {}
    for view in views:
        bucket = difficulty({"instruction": made.question, "input": view, "response": made.sql})
        if bucket is not None:
            by_bucket.setdefault(bucket, []).append(view)
    if not by_bucket:  # cannot land in any bucket; keep the smallest view
        return views[0]
    return rng.choice(by_bucket[rng.choice(list(by_bucket))])
