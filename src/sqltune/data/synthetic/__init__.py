"""Offline synthetic text-to-SQL data: English questions with gold SQLite queries.

    rows = generate(10_000, seed=0, db_dir="dbs")        # generate.py

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

    schemas.py     the ten hand-written domains' tables, columns and roles
    spec.py        the schema language (tables, columns, roles, value generators) and its parser
    values.py      a domain's rows, from its generators
    domains.py     a domain: its tables, rows, CREATE TABLE text and SQLite file
    conditions.py  what templates share: picking tables and columns, WHERE conditions, phrasing;
                   `Unfit`, the one way a template says it can't make a question here
    questions.py   one-table templates;  joins.py  templates over foreign keys
    generate.py    the rows: (domain, template) pairs, retries, the schema view of each row
"""

from sqltune.data.synthetic.generate import DOMAINS, generate

__all__ = ["DOMAINS", "generate"]
