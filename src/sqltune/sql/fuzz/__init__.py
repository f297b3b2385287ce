"""Execution accuracy where no database ships: small SQLite databases fuzzed from CREATE TABLE text.

    dbs = fuzz_databases(row["input"], row["response"], cache_dir=cache)        # None: no verdict
    right = fuzz_exec_match(dbs, prediction, row["response"]) if dbs else None

The test-suite idea of Zhong et al. (2020), kept small. The DDL is parsed with sqlglot (MySQL,
SQLite or other flavours: VARCHAR(255), INT(11), `backquotes`) and each table is created with its
declared type in SQLite form, so column affinities match a database built from the same DDL.
Tables get 5-15 rows of values of the column's kind (integer, real, date, text), steered by the
gold query (`_plan`):
- every literal it compares a column with (=, <>, <, >, BETWEEN, IN, LIKE, IS NULL, strftime('%Y',
  c) = '2023'; on joined tables and in subqueries too) is planted with its neighbours (v-1 and
  v+1, a day either side, LIKE patterns filled in and near misses): two rows meet every filter,
  then each planted value gets a row where the other filters hold, so each boundary counts alone;
- columns equated anywhere (ON, WHERE, IN (SELECT ...), REFERENCES) share one small pool of keys,
  so joins match; primary keys are unique; the two rows meeting every filter reference the same
  row of each table they join (so a DISTINCT over the join has a repeat to remove);
- HAVING COUNT(*) > N gets groups of N-1 .. N+2 rows; LIMIT N makes tables hold over 2N rows;
- labels (names, titles, emails, ...) and declared PRIMARY KEY / UNIQUE columns do not repeat,
  categories do; nullable columns get ~10% NULLs.
Each database has its own seed; one on which the gold returns nothing, or one of its WHERE
clauses matches no row, is drawn again (`TRIES`). A prediction is right when it matches the gold
on every database by Spider's execution rule (`official.spider_exec_match`), the rule of
`eval_execution_accuracy`.

Against the one real database of the generator's rows the verdicts agree on 96.2% of (row,
prediction) pairs (bench/NOTES.md, section 8). Fuzz says right where the real database says wrong
on 0.2%; the other disagreements are fuzz rejecting a query that differs from the gold where the
real data happens not to show it (no row on the boundary, a DISTINCT over a join that lists every
parent anyway): the single-database blind spot Zhong et al. measured. Values are random words and
numbers, so a query that leans on the real domain (an IN list naming every category, a condition
no real row fails) is wrong here. Cost per row, 3 databases, 2 CPU cores: 9 ms to build and check
them once, 0.02 ms on a cache hit, 0.9 ms to score a prediction (3 sandboxed queries).

For a model that writes DuckDB's or PostgreSQL's SQL, `fuzz_databases(..., on=ENGINE)` copies the
same databases there and judges on them (engines.py).
"""

from sqltune.sql.fuzz.databases import fuzz_databases, fuzz_exec_match, schema_database
from sqltune.sql.fuzz.schema import parse_schema

__all__ = ["fuzz_databases", "fuzz_exec_match", "parse_schema", "schema_database"]
