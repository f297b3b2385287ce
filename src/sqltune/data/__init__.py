"""Data: rows from a source (the generator, a hub dataset, local files) -> difficulty buckets ->
cached train/valid/test splits.

    rows.py       what a row is: columns, usability, difficulty bucket
    files.py      JSONL / JSON / CSV / Parquet files
    splits.py     source -> bucket -> 80/10/10 split, cached on disk
    synthetic/    the offline generator: ten domains, each a real SQLite database

Nothing is imported here: `sqltune.data.rows` stays light (no `datasets`) for the tools that only
need the buckets.
"""
