"""SQL that a model wrote: run it safely, and score it against the gold query.

    ddl.py           CREATE TABLE text -> statements (names, types, keys, references, offsets): the one reader
    execute.py       one query on a read-only SQLite connection, bounded in time, rows and memory
    postgres.py      one query on a PostgreSQL database: checked, read-only transaction rolled back, role refused if too strong
    duck.py          one query on a DuckDB file: read-only, no external access, configuration locked
    engine.py        which engine a database reference names, the query check for servers, one query on any engine
    sandbox.py       the same in a worker process, killed at the deadline (untrusted SQL)
    match.py         SQL as text: sqlglot parsing, BLEU, our normalised exact match
    compact.py       the same SQL and schema in fewer tokens, for training targets (format.compact_sql)
    hardness.py      Spider's hardness of a query
    spider_parse.py  Spider's SQL parser and schema (a port of process_sql.py)
    official.py      Spider's and BIRD's execution accuracy and Spider's exact set match, as their scripts
    fuzz/            small databases fuzzed from CREATE TABLE text, for rows that ship none
                     (schema.py: the DDL's tables as fuzzing needs them; plan.py: what the gold asks of the data; values.py;
                     databases.py: build, check, cache, verdict)
    scoring.py       every metric per row, summed up overall, per difficulty and per hardness
"""
