"""The generator: seeded (domain, template) pairs -> questions with gold SQL -> a schema view per row
(package docstring: __init__.py)."""

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
    """Run the template, retrying (with other templates after a few tries) on Unfit or a repeat;
    the question comes back capitalised, and is added to `seen`."""
    made = None
    for attempt in range(MAX_TRIES):
        try:
            made = template(rng, domain)
        except Unfit:  # this template can't use this domain (now): try again, then another template
            pass
        if made and (domain.name, made.question) not in seen:
            break
        if attempt + 1 >= SAME_TEMPLATE_TRIES:
            template = rng.choice(TEMPLATES)
    if made is None:
        raise RuntimeError(f"no template produced a question for domain {domain.name} in {MAX_TRIES} tries")
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
