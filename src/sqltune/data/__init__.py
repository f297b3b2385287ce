"""Data: rows from a source (the generator, a hub dataset, local files) -> difficulty buckets ->
cached train/valid/test splits.

    rows.py       what a row is: columns, usability, difficulty bucket
    files.py      JSONL / JSON / CSV / Parquet files
    benchmarks.py Spider and BIRD folders (spider:PATH, bird:PATH), their own splits
    text2sql_data.py  the eight text2sql-data sets (text2sql-data:PATH), their question / query splits
    text2sql_schema.py  their -schema.csv as CREATE TABLE text, their SQLite files reconciled with it
    schema.py     the schema text rendered from a SQLite file (types, keys, sample rows)
    engine_schema.py  the same from a PostgreSQL database or a DuckDB file
    splits.py     source(s) -> bucket -> train/valid/test (random 80/10/10, by database, or given), cached
    examples.py   the training questions nearest a row's, with their SQL, for its prompt (format.examples)
    synthetic/    the offline generator: ten domains, each a real SQLite database

Nothing is imported here: `sqltune.data.rows` stays light (no `datasets`) for the tools that only
need the buckets.
"""
