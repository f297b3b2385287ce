"""The built-in generator: real SQLite files, gold SQL that runs, prompts in all three length buckets."""

import subprocess
import sys
import re
import sqlite3
from collections import Counter
from pathlib import Path

import pytest

from sqltune.data import synthetic
from sqltune.data.rows import BUCKETS, difficulty
from sqltune.data.synthetic.spec import parse_domain_spec


def run(con: sqlite3.Connection, sql: str) -> list[tuple]:
    return con.execute(sql).fetchall()


@pytest.fixture(scope="module")
def db_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("synthetic-dbs")


@pytest.fixture(scope="module")
def rows10k(db_dir) -> list[dict]:
    return synthetic.generate(10_000, seed=0, db_dir=db_dir)


@pytest.fixture(scope="module")
def rows3k(db_dir) -> list[dict]:
    return synthetic.generate(3_000, seed=1, db_dir=db_dir)


@pytest.fixture(scope="module")
def connections(rows10k) -> dict[str, sqlite3.Connection]:
    paths = {r["db_id"]: r["db_path"] for r in rows10k}
    return {db_id: sqlite3.connect(f"file:{p}?mode=ro", uri=True) for db_id, p in paths.items()}


def test_row_shape(rows10k, db_dir):
    assert len(rows10k) == 10_000
    for row in rows10k[:500]:
        assert set(row) == {"instruction", "input", "response", "db_id", "db_path"}
        assert all(isinstance(v, str) and v for v in row.values())
        assert row["db_id"] in synthetic.DOMAINS
        assert Path(row["db_path"]).is_absolute()
        assert Path(row["db_path"]) == (db_dir / f"{row['db_id']}.sqlite").resolve()
        assert all(line.startswith("CREATE TABLE ") for line in row["input"].split("\n"))
    assert synthetic.generate(0, seed=0, db_dir=db_dir) == []


def test_domains_are_multi_table_databases_with_keys_and_nulls(rows10k, connections):
    assert len(synthetic.DOMAINS) >= 8
    assert {r["db_id"] for r in rows10k} == set(synthetic.DOMAINS)
    for db_id, con in connections.items():
        tables = [t for (t,) in run(con, "SELECT name FROM sqlite_master WHERE type = 'table'")]
        assert len(tables) >= 5, db_id
        fks = sum(len(run(con, f"PRAGMA foreign_key_list({t})")) for t in tables)
        assert fks >= 4, db_id
        for t in tables:
            assert run(con, f"SELECT COUNT(*) FROM {t}")[0][0] >= 10, (db_id, t)
        nulls = 0
        for t in tables:
            for _, col, *_ in run(con, f"PRAGMA table_info({t})"):
                nulls += run(con, f"SELECT COUNT(*) FROM {t} WHERE {col} IS NULL")[0][0]
        assert nulls > 0, db_id
        assert run(con, "PRAGMA foreign_key_check") == [], db_id  # every fk points at a real row


def test_gold_sql_runs_and_mostly_returns_rows(rows3k, connections):
    empty = 0
    for row in rows3k:
        result = run(connections[row["db_id"]], row["response"])  # raises on any error
        if not result or all(v is None for r in result for v in r):
            empty += 1
    assert empty / len(rows3k) <= 0.2, f"{empty} of {len(rows3k)} gold queries return nothing"


def test_input_ddl_is_valid_and_matches_the_database(rows3k, connections):
    declared_types = {}
    for db_id, con in connections.items():
        for (t,) in run(con, "SELECT name FROM sqlite_master WHERE type = 'table'"):
            declared_types[db_id, t] = {col: typ for _, col, typ, *_ in run(con, f"PRAGMA table_info({t})")}
    for row in rows3k:
        mem = sqlite3.connect(":memory:")
        mem.executescript(row["input"])
        mem.execute("EXPLAIN " + row["response"])  # the gold query compiles against the prompt's schema
        for (t,) in run(mem, "SELECT name FROM sqlite_master WHERE type = 'table'"):
            real = declared_types[row["db_id"], t]
            for _, col, typ, *_ in run(mem, f"PRAGMA table_info({t})"):
                assert real.get(col) == typ, (row["db_id"], t, col)
        mem.close()


def test_length_buckets(rows10k):
    counts = Counter(difficulty(r) for r in rows10k)
    for name in BUCKETS:
        assert counts[name] >= 2_000, counts
    assert counts[None] <= 100, counts  # few rows outside 10-800 words


def test_same_seed_same_rows_other_seed_other_rows(rows10k, db_dir):
    again = synthetic.generate(1_000, seed=0, db_dir=db_dir)
    assert again == synthetic.generate(1_000, seed=0, db_dir=db_dir)
    other = synthetic.generate(1_000, seed=7, db_dir=db_dir)
    assert sum(seed0["instruction"] != seed7["instruction"] for seed0, seed7 in zip(again, other)) > 900


def test_sql_covers_the_usual_shapes(rows10k):
    sqls = [r["response"] for r in rows10k]
    shapes = {
        "=": r" = ", "<": r" < ", ">": r" > ", "LIKE": r" LIKE '", "BETWEEN": r" BETWEEN ",
        "IN list": r" IN \('", "COUNT": r"COUNT\(", "AVG": r"AVG\(", "SUM": r"SUM\(", "MIN": r"MIN\(",
        "MAX": r"MAX\(", "ORDER BY LIMIT": r"ORDER BY .* LIMIT \d+$", "DISTINCT": r"DISTINCT ",
        "2-table join": r"^(?!.* JOIN .* JOIN ).* JOIN ", "3-table join": r" JOIN .* JOIN ",
        "GROUP BY": r"GROUP BY", "HAVING": r"HAVING ", "IN subquery": r"(?<!NOT) IN \(SELECT ",
        "above average": r"> \(SELECT AVG\(", "NOT IN subquery": r"NOT IN \(SELECT ", "EXCEPT": r" EXCEPT SELECT ",
    }
    for name, pattern in shapes.items():
        hits = sum(bool(re.search(pattern, s)) for s in sqls)
        assert hits >= 50, f"{name}: {hits} rows"


def test_questions_vary(rows10k):
    starts = Counter(r["instruction"].split()[0] for r in rows10k)
    assert {"List", "Which", "Show", "How", "What", "Find", "Count", "Give"} <= set(starts), starts
    assert len({r["instruction"] for r in rows10k}) >= 9_500
    assert len({r["input"] for r in rows10k}) >= 1_500  # schema views of many sizes


def test_first_rows_mix_domains_and_shapes(rows10k, db_dir):
    for head in rows10k[:60], synthetic.generate(60, seed=5, db_dir=db_dir):
        assert len({r["db_id"] for r in head}) >= 8
        assert len({r["response"].split(" FROM ")[0].split("(")[0] for r in head}) >= 10


def test_databases_are_reused_not_rewritten(rows10k, db_dir):
    path = db_dir / "shop.sqlite"
    before = path.stat().st_ino, path.stat().st_mtime_ns
    synthetic.generate(10, seed=3, db_dir=db_dir)
    assert (path.stat().st_ino, path.stat().st_mtime_ns) == before
    path.write_bytes(b"not a database")  # damaged or stale: rebuilt
    synthetic.generate(10, seed=3, db_dir=db_dir)
    assert sqlite3.connect(path).execute("SELECT COUNT(*) FROM customers").fetchone()[0] > 0
    assert not [p for p in db_dir.iterdir() if p.name.startswith(".")]  # no temporary files left


def test_two_processes_building_at_once(tmp_path):
    # two real processes (not fork: forking a process that already runs torch's thread pools can deadlock)
    code = f"from sqltune.data import synthetic; print(len(synthetic.generate(200, 0, {str(tmp_path)!r})))"
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True) for _ in range(2)]
    assert [int(p.communicate(timeout=120)[0]) for p in procs] == [200, 200]
    for name in synthetic.DOMAINS:
        con = sqlite3.connect(tmp_path / f"{name}.sqlite")
        assert con.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"{n}.sqlite" for n in synthetic.DOMAINS)


def test_schema_text_errors_name_the_problem():
    with pytest.raises(ValueError, match="bad column 'city towns' in table shops"):
        parse_domain_spec("shops (shop, 5): shop_id pk, city towns")
    with pytest.raises(ValueError, match="unknown value generator 'planet'"):
        parse_domain_spec("shops (shop, 5): shop_id pk, city cat planet")
    with pytest.raises(ValueError, match="shops.owner_id: unknown parent table 'owners'"):
        parse_domain_spec("shops (shop, 5): shop_id pk, owner_id fk owners")
