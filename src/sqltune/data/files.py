"""Rows from local files: JSONL, JSON, CSV or Parquet, a path or a glob.

A file that can't be read as its type (binary, not UTF-8, torn JSON, a broken Parquet footer) is
one DataError naming the file and, where there is one, the row; so is a file missing a whole
column. A row missing a cell, or with an empty response, is skipped and counted, never a crash.
"""

from __future__ import annotations

import csv
import glob
import json
import os
from typing import Any, Iterator

from sqltune.data import engine_schema, schema
from sqltune.data.rows import COLUMNS, on_database, row_problem, with_golds
from sqltune.errors import DataError
from sqltune.sql import engine

FILE_TYPES = (".jsonl", ".json", ".csv", ".parquet")


def is_local(source: str) -> bool:
    return any(ch in source for ch in "*?[") or source.endswith(FILE_TYPES) or os.path.exists(source)


def file_rows(path: str) -> Iterator[dict[str, Any]]:
    """Rows of one file; a file that can't be read as its type is a DataError naming it (and the row)."""
    try:
        yield from _parse_file(path)
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text (byte {e.start}: {e.reason}); is it binary, or in another "
                        "encoding? Convert it to UTF-8") from None


def _parse_file(path: str) -> Iterator[dict[str, Any]]:
    if path.endswith(".jsonl"):
        with open(path, encoding="utf-8") as f:
            for i, line in enumerate(f, 1):
                if line.strip():
                    try:
                        yield json.loads(line)
                    except json.JSONDecodeError as e:
                        raise DataError(f"{path} row {i}: not valid JSON ({e.msg})") from None
    elif path.endswith(".json"):
        with open(path, encoding="utf-8") as f:
            try:
                data = json.load(f)
            except json.JSONDecodeError as e:
                raise DataError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from None
        if isinstance(data, dict):  # {"data": [...]} or a column-oriented table
            data = data.get("data", data.get("rows", data))
        if isinstance(data, dict):
            keys = list(data)
            data = [dict(zip(keys, vals)) for vals in zip(*data.values())]
        if not isinstance(data, list):
            raise DataError(f"{path}: expected a list of rows, got {type(data).__name__}")
        yield from data
    elif path.endswith(".csv"):
        csv.field_size_limit(max(csv.field_size_limit(), 2**28))  # the default 128 kB refuses long cells: skip them by row
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            try:
                yield from reader
            except csv.Error as e:
                raise DataError(f"{path} row {reader.line_num}: not valid CSV ({e})") from None
    elif path.endswith(".parquet"):
        import pyarrow
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(path)
        except (pyarrow.ArrowException, OSError) as e:
            raise DataError(f"{path}: not a readable Parquet file ({e})") from None
        yield from table.to_pylist()
    else:
        raise DataError(f"data.source: '{path}' is not one of {', '.join(FILE_TYPES)}")


def local_rows(source: str, field: str = "data.source", database: str | None = None
               ) -> tuple[list[dict[str, Any]], list[str]]:
    """Usable rows of every file `source` matches, and a line per skipped row. A file may carry a
    `db_path` (or the dataset a `database`, data.database) instead of the `input` schema: the
    schema is then rendered from that database (SQLite file, PostgreSQL, DuckDB)."""
    paths = sorted(glob.glob(os.path.expanduser(source)))
    if not paths:
        raise DataError(f"{field}: no such file '{source}'")
    rows, skipped = [], []
    for path in paths:
        rows_of_file = list(file_rows(path))
        if not rows_of_file:
            raise DataError(f"{path}: no rows (an empty file, or a header only)")
        seen = set().union(*(r.keys() for r in rows_of_file if isinstance(r, dict)))
        needed = [c for c in COLUMNS if not (c == "input" and ("db_path" in seen or database))]
        missing = [c for c in needed if c not in seen]
        if missing:
            raise DataError(
                f"{path}: missing column {', '.join(repr(c) for c in missing)} "
                f"(has: {', '.join(sorted(seen)) or 'nothing'}; needs {', '.join(COLUMNS)}, or db_path instead of input)"
            )
        for i, row in enumerate(rows_of_file, 1):
            if isinstance(row, dict):
                row = with_golds(row)
                if database and not row.get("db_path") and row.get("input") is None:
                    row = on_database(row, database)
            if isinstance(row, dict) and row.get("input") is None and row.get("db_path"):
                row = _with_rendered_schema(row, path)
            problem = row_problem(row)
            if problem:
                skipped.append(f"{os.path.basename(path)} row {i}: {problem}")
            else:  # text columns as text: a number in `instruction` must not make the column mixed-type
                rows.append({**row, **{c: str(row[c]) for c in (*COLUMNS, "db_path") if row.get(c) is not None}})
    return rows, skipped


def _with_rendered_schema(row: dict[str, Any], path: str) -> dict[str, Any]:
    """The row with `input` rendered from its database (a relative db_path to a file is the
    data file's neighbour; a PostgreSQL database is asked for its schema)."""
    if engine.kind(row["db_path"]) == "postgres":
        return {**row, "input": engine_schema.render(str(row["db_path"]))}
    db = os.path.join(os.path.dirname(path), os.path.expanduser(engine.duckdb_path(row["db_path"])))
    if not os.path.isfile(db):
        return row  # skipped as missing 'input'
    if engine.kind(row["db_path"]) == "duckdb":
        return {**row, "db_path": os.path.abspath(db) if db.endswith(".duckdb") else f"duckdb:{os.path.abspath(db)}",
                "input": engine_schema.render(db if db.endswith(".duckdb") else f"duckdb:{db}")}
    return {**row, "db_path": os.path.abspath(db), "input": schema.render(db)}
