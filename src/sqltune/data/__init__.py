"""Data: rows from a source (the generator, a hub dataset, local files) -> difficulty buckets ->
cached train/valid/test splits.

    rows.py       what a row is: columns, usability, difficulty bucket
    files.py      JSONL / JSON / CSV / Parquet files
    splits.py     source -> bucket -> 80/10/10 split, cached on disk
    synthetic/    the offline generator: ten domains, each a real SQLite database
"""

from sqltune.data.rows import BUCKETS, difficulty
from sqltune.data.splits import data_cache_dir, load_splits, read_rows

__all__ = ["BUCKETS", "data_cache_dir", "difficulty", "load_splits", "read_rows"]
