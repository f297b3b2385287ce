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
     buckets (words in instruction + input + response: 10-100, 101-200, 201-800) all
     get about a third of the rows.

Trade-offs: 23 templates over ten hand-written schemas give grammatical but plain,
column-name English ("whose home city is Lyon"); there are no misspellings, vague
questions or dialect quirks as in human-written data, and a model trained only on this
will find real questions harder. In exchange every gold query is exactly right, runs,
and for all but a handful of rows in 10,000 returns something. The databases do not
depend on `seed`, so rows made with different seeds share one db_dir.
"""

import random
import re
from functools import cache
from pathlib import Path

from sqltune.data.synthetic import joins, questions
from sqltune.data.synthetic.domains import Domain, create_table, load_domain, write_database
from sqltune.data.synthetic.schemas import SCHEMAS

DOMAINS = list(SCHEMAS)
BUCKETS = {"easy": (10, 100), "medium": (101, 200), "hard": (201, 800)}  # inclusive word counts
TEMPLATES = [
    questions.select_filter, questions.select_columns, questions.two_conditions, questions.lookup,
    questions.count, questions.aggregate, questions.top, questions.distinct, questions.group_count,
    questions.group_aggregate, questions.group_having, questions.compare_average, questions.extreme,
    joins.join_filter, joins.join_show, joins.join_count, joins.join_having, joins.join_aggregate,
    joins.join_count_filter, joins.subquery_in, joins.anti_join, joins.chain, joins.bridge,
]
MAX_TRIES = 20  # per row: a template may not fit a domain, or may repeat a question


def generate(n_rows: int, seed: int, db_dir: str | Path) -> list[dict]:
    """Deterministic rows; writes one SQLite file per domain database into db_dir."""
    if n_rows < 0:
        raise ValueError(f"n_rows must be >= 0, got {n_rows}")
    db_dir = Path(db_dir).resolve()
    db_dir.mkdir(parents=True, exist_ok=True)
    domains = [load_domain(name) for name in DOMAINS]
    paths = {d.name: str(write_database(d, db_dir)) for d in domains}

    rng = random.Random(seed)
    pairs = [(d, t) for d in domains for t in TEMPLATES]
    rng.shuffle(pairs)  # so that a short run still draws from every domain
    jobs = [pairs[i % len(pairs)] for i in range(n_rows)]
    rng.shuffle(jobs)
    seen: set[tuple[str, str]] = set()
    rows = []
    for dom, template in jobs:
        question, sql, tables = make_question(rng, dom, template, seen)
        rows.append({
            "instruction": question,
            "input": pick_schema_view(rng, dom, tables, sql, len(question.split()) + len(sql.split())),
            "response": sql,
            "db_id": dom.name,
            "db_path": paths[dom.name],
        })
    return rows


def make_question(rng: random.Random, dom: Domain, template, seen: set) -> tuple[str, str, list[str]]:
    """Run the template, retrying (with other templates after a few tries) on None or a repeat."""
    made = None
    for attempt in range(MAX_TRIES):
        made = template(rng, dom) or made
        if made and (dom.name, made[0]) not in seen:
            break
        if attempt >= 4:
            template = rng.choice(TEMPLATES)
    assert made, f"no template produced a question for domain {dom.name}"
    question = made[0][0].upper() + made[0][1:]
    seen.add((dom.name, made[0]))
    return question, made[1], made[2]


def schema_views(rng: random.Random, dom: Domain, tables: list[str], sql: str) -> list[list[str]]:
    """Candidate `input`s as lists of CREATE TABLE statements, smallest first: the used
    columns only, the used tables, then those plus more of the domain, up to all of it."""
    views = []
    if "*" not in sql:
        used = set(re.findall(r"\w+", re.sub(r"'(?:[^']|'')*'", "", sql)))
        views.append([create_table(t, keep=used) for t in dom.tables.values() if t.name in tables])
    others = [t for t in dom.tables if t not in tables]
    rng.shuffle(others)
    for k in range(len(others) + 1):
        shown = set(tables) | set(others[:k])
        views.append([dom.ddl[t] for t in dom.tables if t in shown])
    return views


def pick_schema_view(rng: random.Random, dom: Domain, tables: list[str], sql: str, words: int) -> str:
    """Pick a length bucket the row can reach, at random, then a view inside it."""
    views = schema_views(rng, dom, tables, sql)
    by_bucket: dict[str, list[list[str]]] = {}
    for view in views:
        total = words + sum(n_words(statement) for statement in view)
        for name, (lo, hi) in BUCKETS.items():
            if lo <= total <= hi:
                by_bucket.setdefault(name, []).append(view)
    if not by_bucket:  # cannot land in any bucket; keep the smallest view
        return "\n".join(views[0])
    return "\n".join(rng.choice(by_bucket[rng.choice(list(by_bucket))]))


@cache
def n_words(text: str) -> int:
    return len(text.split())
