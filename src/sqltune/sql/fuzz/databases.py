"""Databases per (schema, gold): built, checked against the gold, cached; and the verdict."""

from __future__ import annotations

import functools
import hashlib
import os
import random
import sqlite3
import tempfile
from pathlib import Path

from sqlglot import exp

from sqltune.atomic import write_atomic
from sqltune.sql import official
from sqltune.sql.dialect import transpile
from sqltune.sql.fuzz import engines
from sqltune.sql.fuzz.plan import Plan, plan_for
from sqltune.sql.fuzz.schema import parse_schema
from sqltune.sql.fuzz.values import build
from sqltune.sql.match import parse_query
from sqltune.sql.sandbox import execute

VERSION = 1  # part of the cache key: bump whenever the databases for a (schema, gold) change
TRIES = 4  # draws per database before keeping one on which a filter of the gold matches nothing


# ----------------------------------------------------------------------------- databases and verdicts


def _probes(tree: exp.Expression) -> list[str]:
    """SELECT COUNT(*) with the FROM and WHERE of each filtering SELECT (correlated ones fail to run)."""
    out = []
    for select in tree.find_all(exp.Select):
        if select.args.get("where") is not None:
            probe = select.copy()
            probe.set("expressions", [exp.Count(this=exp.Star())])
            for arg in ("group", "having", "order", "limit", "offset", "distinct", "with"):
                probe.set(arg, None)
            out.append(probe.sql(dialect="sqlite"))
    return out


def _check(db: Path, gold: str, probes: list[str]) -> str | bool:
    """The gold's error, else True when it returns rows and every runnable probe counts some."""
    run = execute(db, gold)
    if not run.ok:
        return run.error or "error"
    counts = [execute(db, p) for p in probes]
    return bool(run.rows) and all(c.rows[0][0] > 0 for c in counts if c.ok and c.rows)


def _make(schema_text: str, gold_sql: str, paths: list[Path], seed: int) -> tuple[list[Path] | None, bool]:
    """Write the databases; or (None, whether that answer may be remembered: not after a timeout)."""
    tables, tree = parse_schema(schema_text), parse_query(gold_sql)
    if not tables or tree is None:
        return None, True
    probes, kept = _probes(tree), []
    try:
        for i, path in enumerate(paths):
            for attempt in range(TRIES):
                rng = random.Random(f"{seed}:{i}:{attempt}")
                data = build(tables, plan_for(tree, tables, rng), rng)
                fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                if attempt:
                    os.replace(tmp, kept[-1])  # a redraw replaces the one that matched too little
                else:
                    kept.append(Path(tmp))
                verdict = _check(kept[-1], gold_sql, probes)
                if isinstance(verdict, str):
                    return None, not verdict.startswith("TimeoutError")
                if verdict:
                    break
        for tmp, path in zip(kept, paths):
            os.replace(tmp, path)  # atomic: a reader sees a whole database or none
        kept = []
        return paths, True
    except (sqlite3.Error, OverflowError, ValueError):  # e.g. an integer literal beyond 64 bits
        return None, True
    finally:
        for tmp in kept:
            tmp.unlink(missing_ok=True)


def fuzz_databases(schema_text: str, gold_sql: str, *, n: int = 3, seed: int = 0, cache_dir: Path,
                   on: str = "sqlite") -> list[Path] | list[str] | None:
    """`n` fuzzed SQLite files for one (schema, gold) pair, built once and cached; None if unusable.

    Files are `<cache_dir>/<hash>-<i>.sqlite`, hashed over the schema text, the gold SQL, `n`,
    `seed` and `VERSION`, each written to a temporary file and renamed; a later call finds them
    and writes nothing. None when no CREATE TABLE parses, the gold does not parse, or the gold
    fails on the fuzzed data (a column the schema lacks, bad SQL): the row then has no fuzz
    verdict, and `<hash>.none` remembers it (not after a timeout). ~9 ms for 3 databases.

    `on`: the engine the gold is written for and the databases are judged on: "sqlite", "duckdb"
    or a PostgreSQL URL (engines.py: the same databases copied there).
    """
    if on != "sqlite":
        lite_gold = _in_sqlite(gold_sql, engines.dialect(on))
        if lite_gold is None:  # sqlglot can't say it in SQLite's SQL: no fuzzed data for it
            return None
        lites = fuzz_databases(schema_text, lite_gold, n=n, seed=seed, cache_dir=cache_dir)
        return engines.copies(lites, gold_sql, on) if lites else None
    cache_dir = Path(cache_dir)
    digest = hashlib.sha256(f"{VERSION}\0{n}\0{seed}\0{schema_text}\0{gold_sql}".encode()).hexdigest()[:32]
    paths = [cache_dir / f"{digest}-{i}.sqlite" for i in range(n)]
    if all(p.is_file() for p in paths):
        return paths
    unusable = cache_dir / f"{digest}.none"
    if unusable.is_file():
        return None
    cache_dir.mkdir(parents=True, exist_ok=True)
    dbs, remember = _make(schema_text, gold_sql, paths, seed)
    if dbs is None and remember:
        unusable.touch()
    return dbs




@functools.lru_cache(maxsize=4096)  # scoring asks again for every prediction of a row
def _in_sqlite(gold_sql: str, dialect: str) -> str | None:
    try:
        return transpile(gold_sql, read=dialect, write="sqlite")
    except ValueError:
        return None


def schema_database(schema_text: str, *, cache_dir: Path, on: str = "sqlite") -> Path | str | None:
    """One database drawn from the CREATE TABLE text alone (random rows; no gold is looked at),
    built once as `<cache_dir>/<hash>-schema.sqlite` (copied to `on` as fuzz_databases does): where
    a prediction's error is found for a row without a database (evaluate's repair round). None
    when no CREATE TABLE parses."""
    tables = parse_schema(schema_text) if schema_text else None
    if not tables:
        return None
    digest = hashlib.sha256(f"{VERSION}\0schema\0{schema_text}".encode()).hexdigest()[:32]
    path = Path(cache_dir) / f"{digest}-schema.sqlite"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            data = build(tables, Plan(), random.Random(0))
        except (sqlite3.Error, OverflowError, ValueError):
            return None
        write_atomic(path, data)  # a reader sees a whole database or none
    return path if on == "sqlite" else engines.copy(path, on)


def fuzz_exec_match(dbs: list[Path] | list[str], pred: str, gold: str, *, timeout_s: float = 1.0) -> bool:
    """True iff the prediction matches the gold on every database by Spider's execution rule
    (`official.spider_exec_match`, the rule of `eval_execution_accuracy`). False too if the gold
    fails there (a timeout)."""
    try:
        return all(official.spider_exec_match(db, pred, gold, timeout_s=timeout_s) for db in dbs)
    except ValueError:  # the gold failed on a fuzzed database
        return False
