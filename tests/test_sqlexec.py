"""sql.execute and sql.sandbox: hostile SQL ends as an error in bounded time and leaves the database file untouched."""

from __future__ import annotations

import hashlib
import sqlite3
import time
from pathlib import Path

import pytest

from sqltune.sql.execute import ExecResult, clean_sql, execute


def make_db(path: Path) -> Path:
    conn = sqlite3.connect(path)
    conn.executescript(
        """
        CREATE TABLE singer (id INTEGER PRIMARY KEY, name TEXT, country TEXT, age INTEGER);
        CREATE TABLE concert (id INTEGER PRIMARY KEY, singer_id INTEGER, year INTEGER);
        """
    )
    conn.executemany(
        "INSERT INTO singer VALUES (?, ?, ?, ?)",
        [(i, f"s{i}", ["France", "Spain", None][i % 3], 20 + i % 7) for i in range(300)],
    )
    concerts = [(i, i % 50, 2010 + i % 6) for i in range(200)]
    conn.executemany("INSERT INTO concert VALUES (?, ?, ?)", concerts)
    conn.commit()
    conn.close()
    return path


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return make_db(tmp_path / "music.sqlite")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ----------------------------------------------------------------------------- normal use


def test_execute_returns_rows(db: Path) -> None:
    result = execute(db, "SELECT name, age FROM singer WHERE id < 3 ORDER BY id")
    assert result == ExecResult(rows=[("s0", 20), ("s1", 21), ("s2", 22)])
    assert result.ok


def test_read_only_features_work(db: Path) -> None:
    queries = [
        "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 5) SELECT sum(n) FROM r",
        "SELECT country, count(*) FROM singer GROUP BY country HAVING count(*) > 1",
        "SELECT name, row_number() OVER (PARTITION BY country ORDER BY age) FROM singer LIMIT 3",
        "SELECT name FROM singer WHERE id IN (SELECT singer_id FROM concert) EXCEPT SELECT 's1'",
        "SELECT s.name FROM singer AS s JOIN concert AS c ON c.singer_id = s.id WHERE c.year = 2012",
        "SELECT name FROM sqlite_master",
        "VALUES (1, 2)",
        "-- a comment first\nSELECT 1",
        "SELECT 1; -- and one after",
    ]
    for sql in queries:
        assert execute(db, sql).ok, sql


def test_clean_sql() -> None:
    assert clean_sql("```sql\nSELECT 1;\n```") == "SELECT 1"
    assert clean_sql("Here it is:\n```SQL\nSELECT a\nFROM t\n```\nHope it helps.") == "SELECT a\nFROM t"
    assert clean_sql("```\nSELECT 1\n```") == "SELECT 1"
    assert clean_sql("```sql\nSELECT 1") == "SELECT 1"  # unclosed fence
    assert clean_sql("```SELECT 1```") == "SELECT 1"
    assert clean_sql("  SELECT 1 ;; \n") == "SELECT 1"
    assert clean_sql("SELECT 1; DROP TABLE t") == "SELECT 1; DROP TABLE t"
    assert clean_sql("") == ""


def test_row_cap(db: Path) -> None:
    assert execute(db, "SELECT id FROM singer LIMIT 5", max_rows=5).ok
    result = execute(db, "SELECT id FROM singer LIMIT 6", max_rows=5)
    assert result.rows is None and "more than 5 rows" in result.error


def test_timeout_is_reported(db: Path) -> None:
    start = time.monotonic()
    sql = "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT max(n) FROM r"
    result = execute(db, sql, timeout_s=0.2)
    assert time.monotonic() - start < 1.0
    assert result.error == "TimeoutError: query ran past 0.2 s"


def test_missing_database_is_an_error_and_is_not_created(tmp_path: Path) -> None:
    missing = tmp_path / "nope.sqlite"
    result = execute(missing, "SELECT 1")
    assert not result.ok and "no such database file" in result.error
    assert not missing.exists()


# ----------------------------------------------------------------------------- hostile SQL

RECURSE = "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r)"
HOSTILE = [
    f"{RECURSE} SELECT count(*) FROM r",
    f"{RECURSE} SELECT n FROM r ORDER BY n DESC",
    "SELECT count(*) FROM singer a, singer b, singer c, singer d",
    "SELECT * FROM singer a, singer b, singer c ORDER BY random()",
    "ATTACH DATABASE '{dir}/evil.sqlite' AS evil",
    "DETACH DATABASE main",
    "DROP TABLE singer",
    "DELETE FROM singer",
    "INSERT INTO singer VALUES (1000, 'x', 'y', 1)",
    "UPDATE singer SET name = 'x'",
    "CREATE TABLE evil (a)",
    "CREATE TEMP TABLE evil (a)",
    "ALTER TABLE singer ADD COLUMN evil",
    "PRAGMA writable_schema = 1",
    "PRAGMA journal_mode = WAL",
    "PRAGMA table_info(singer)",
    "SELECT * FROM pragma_journal_mode('wal')",
    "SELECT load_extension('x')",
    "VACUUM",
    "VACUUM INTO '{dir}/copy.sqlite'",
    "REINDEX",
    "ANALYZE",
    "BEGIN IMMEDIATE",
    "SELECT 1; DROP TABLE singer",
    "SELECT 1; SELECT 2",
    "/* hidden */ DELETE FROM singer",
    "WITH x AS (SELECT 1) DELETE FROM singer",
    "WITH x AS (SELECT 1) INSERT INTO singer SELECT 1000, 'a', 'b', 1 FROM x",
    "hello world, this is not SQL",
    "",
    "   ;  ",
    "```sql\n```",
    "SELEC name FROM singer",
    "SELECT nope FROM singer",
    "SELECT " + "1 + " * 100_000 + "1",
    "SELECT '" + "a" * 2_000_000 + "'",
    "x" * 1_000_000,
    "SELECT randomblob(1000000000)",
    "SELECT zeroblob(999999999)",
    "WITH RECURSIVE r(s) AS (SELECT 'x' UNION ALL SELECT s || s FROM r) SELECT length(s) FROM r",
    "SELECT fts3_tokenizer('simple')",
]


@pytest.mark.parametrize("sql", HOSTILE, ids=[f"{i:02d}" for i in range(len(HOSTILE))])
def test_hostile_query_is_a_bounded_miss(db: Path, sql: str) -> None:
    before, files_before = sha256(db), sorted(p.name for p in db.parent.iterdir())
    start = time.monotonic()
    result = execute(db, sql.format(dir=db.parent))
    elapsed = time.monotonic() - start
    assert not result.ok and result.rows is None and result.error
    assert elapsed < 2.0, f"took {elapsed:.2f} s"
    assert sha256(db) == before
    assert sorted(p.name for p in db.parent.iterdir()) == files_before  # no journal, WAL or copy


# ----------------------------------------------------------------------------- in a worker process

SLOW_C_CALLS = [  # one C call each: sqlexec's deadline, checked between VM steps, can't stop them
    "SELECT printf('%.*c', 1000000000, 'x')",
    "SELECT instr(replace(hex(zeroblob(400000)), '00', 'ab'), replace(hex(zeroblob(300000)), '00', 'ab') || 'c')",
]


@pytest.mark.parametrize("sql", HOSTILE + SLOW_C_CALLS, ids=[f"{i:02d}" for i in range(len(HOSTILE) + len(SLOW_C_CALLS))])
def test_hostile_query_in_the_worker_ends_by_the_deadline(db: Path, sql: str) -> None:
    from sqltune.sql import sandbox

    before, files_before = sha256(db), sorted(p.name for p in db.parent.iterdir())
    sandbox.execute(db, "SELECT 1")  # the worker is up: time only the query
    start = time.monotonic()
    result = sandbox.execute(db, sql.format(dir=db.parent), timeout_s=1.0)
    elapsed = time.monotonic() - start
    assert not result.ok and result.rows is None and result.error
    assert elapsed < 1.0 + 0.5, f"took {elapsed:.2f} s"
    assert sha256(db) == before
    assert sorted(p.name for p in db.parent.iterdir()) == files_before
    assert sandbox.execute(db, "SELECT count(*) FROM singer").rows == [(300,)]  # and the next query runs


def test_worker_answers_like_in_process(db: Path) -> None:
    from sqltune.sql import sandbox

    for sql in ("SELECT name, age FROM singer WHERE age > 24 ORDER BY id", "SELECT nope FROM singer",
                "SELECT x'00ff', 1.5, NULL"):
        assert sandbox.execute(db, sql) == execute(db, sql)


def test_slow_c_call_outruns_the_in_process_deadline(db: Path) -> None:
    """Why the worker exists: in process, the first slow call runs far past its 0.2 s deadline."""
    start = time.monotonic()
    execute(db, "SELECT printf('%.*c', 200000000, 'x')", timeout_s=0.2)
    assert time.monotonic() - start > 0.5


def test_kept_connection_sees_a_replaced_database(tmp_path: Path) -> None:
    db = make_db(tmp_path / "a.sqlite")
    assert execute(db, "SELECT count(*) FROM singer", keep_open=True).rows == [(300,)]
    other = make_db(tmp_path / "b.sqlite")
    conn = sqlite3.connect(other)
    conn.execute("DELETE FROM singer WHERE id >= 10")
    conn.commit()
    conn.close()
    other.replace(db)  # a regenerated database at the same path
    assert execute(db, "SELECT count(*) FROM singer", keep_open=True).rows == [(10,)]
