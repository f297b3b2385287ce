"""Fuzzed execution accuracy (sql.fuzz): DDL in several dialects, planted literals, caching, and
agreement with execution on the generator's real databases (issue 15)."""

from __future__ import annotations

import importlib.util
import sqlite3
from pathlib import Path

import pytest
from sqlglot import exp

from sqltune.data import synthetic
from sqltune.sql import fuzz
from sqltune.sql.match import parse_query

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("fuzz_exec_bench", ROOT / "bench" / "fuzz_exec.py")
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)

MYSQL_DDL = """CREATE TABLE `Singer` (
  `Singer_ID` INT(11) NOT NULL AUTO_INCREMENT,
  `Name` VARCHAR(255) DEFAULT NULL,
  `Country` VARCHAR(64),
  `Net_Worth` DECIMAL(10,2),
  `Born` DATETIME,
  PRIMARY KEY (`Singer_ID`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8;
CREATE TABLE `song` (`Song_ID` INT, `Singer_ID` INT, `Title` VARCHAR(100), `Sales` DOUBLE,
  FOREIGN KEY (`Singer_ID`) REFERENCES `Singer` (`Singer_ID`));"""


@pytest.fixture(scope="module")
def rows(tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    """The generator's validation-like rows: a real database each, and its CREATE TABLE text."""
    return synthetic.generate(400, seed=1, db_dir=tmp_path_factory.mktemp("real"))


def _tables(db: Path) -> dict[str, list[tuple]]:
    with sqlite3.connect(db) as conn:
        names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return {n: conn.execute(f'SELECT * FROM "{n}"').fetchall() for n in names}


def test_mysql_ddl_parses_with_types_keys_and_references() -> None:
    tables = fuzz.parse_schema(MYSQL_DDL)
    assert set(tables) == {"singer", "song"}
    singer, song = tables["singer"].columns, tables["song"].columns
    assert [c.kind for c in singer.values()] == ["int", "text", "text", "real", "datetime"]
    assert singer["singer_id"].unique and singer["singer_id"].not_null and not singer["name"].unique
    assert song["singer_id"].ref == ("singer", "singer_id") and song["sales"].kind == "real"
    assert fuzz.parse_schema("this is not DDL") is None


def test_clinton_style_rows_get_a_verdict(tmp_path: Path) -> None:
    """Text-to-sql-v1 rows: one-line DDL, columns typed from usage, WikiSQL's "double-quoted" strings."""
    dbs = fuzz.fuzz_databases("CREATE TABLE head (age INTEGER)", "SELECT COUNT(*) FROM head WHERE age > 56",
                              cache_dir=tmp_path)
    assert dbs is not None and len(dbs) == 3
    assert all(any(age == 56 for (age,) in _tables(db)["head"]) for db in dbs)  # the boundary is planted
    gold = "SELECT COUNT(*) FROM head WHERE age > 56"
    assert fuzz.fuzz_exec_match(dbs, "SELECT count(*) FROM head WHERE 56 < age", gold)
    assert not fuzz.fuzz_exec_match(dbs, "SELECT COUNT(*) FROM head WHERE age >= 56", gold)
    assert not fuzz.fuzz_exec_match(dbs, "SELECT COUNT(*) FROM head WHERE age > 57", gold)
    assert not fuzz.fuzz_exec_match(dbs, "SELECT COUNT(*) FROM nowhere", gold)  # fails to run: wrong

    ddl = "CREATE TABLE city (City_ID VARCHAR, Population INTEGER); CREATE TABLE farm_competition (Theme VARCHAR, Host_city_ID VARCHAR)"
    gold = ('SELECT T2.Theme FROM city AS T1 JOIN farm_competition AS T2 ON T1.City_ID = T2.Host_city_ID '
            'WHERE T1.Population > 1000 AND T2.Theme = "Aliens"')
    dbs = fuzz.fuzz_databases(ddl, gold, cache_dir=tmp_path)
    assert dbs is not None
    for db in dbs:
        themes = [t for t, _ in _tables(db)["farm_competition"]]
        assert themes.count("Aliens") >= 2  # the double-quoted value is a string, planted in rows
    swapped = gold.replace("T1.City_ID = T2.Host_city_ID", "T2.Host_city_ID = T1.City_ID")
    assert fuzz.fuzz_exec_match(dbs, swapped, gold)
    assert not fuzz.fuzz_exec_match(dbs, gold.replace(' AND T2.Theme = "Aliens"', ""), gold)


def test_mysql_schema_builds_sqlite_tables_of_the_declared_types(tmp_path: Path) -> None:
    gold = ("SELECT T1.Name, SUM(T2.Sales) FROM Singer AS T1 JOIN song AS T2 ON T1.Singer_ID = T2.Singer_ID "
            "WHERE T1.Country IN ('France', 'Peru') AND T1.Born >= '2001-05-03 00:00:00' GROUP BY T1.Name")
    dbs = fuzz.fuzz_databases(MYSQL_DDL, gold, cache_dir=tmp_path)
    assert dbs is not None
    with sqlite3.connect(dbs[0]) as conn:
        ddl = conn.execute("SELECT sql FROM sqlite_master WHERE name = 'Singer'").fetchone()[0]
        ids = [r[0] for r in conn.execute('SELECT "Singer_ID" FROM "Singer"')]
        refs = [r[0] for r in conn.execute('SELECT "Singer_ID" FROM "song" WHERE "Singer_ID" IS NOT NULL')]
    assert '"Singer_ID" INTEGER(11)' in ddl and '"Net_Worth" REAL(10, 2)' in ddl
    assert len(ids) == len(set(ids)) and None not in ids  # PRIMARY KEY: unique, never NULL
    assert set(refs) <= set(ids)  # the foreign key always finds its singer
    assert fuzz.fuzz_exec_match(dbs, gold, gold)
    assert not fuzz.fuzz_exec_match(dbs, gold.replace("SUM(", "MAX("), gold)


def test_unusable_rows_get_no_verdict_and_it_is_remembered(tmp_path: Path) -> None:
    assert fuzz.fuzz_databases("CREATE TABLE t (a INT)", "SELECT b FROM t", cache_dir=tmp_path) is None
    assert fuzz.fuzz_databases("nonsense", "SELECT 1", cache_dir=tmp_path) is None
    assert fuzz.fuzz_databases("CREATE TABLE t (a INT)", "SELEC a FRM t", cache_dir=tmp_path) is None
    assert len(list(tmp_path.glob("*.none"))) == 3 and not list(tmp_path.glob("*.sqlite"))
    assert not list(tmp_path.glob("*.tmp"))  # the failed attempt left nothing behind


def _where_count(sql: str) -> str | None:
    """SELECT COUNT(*) over the FROM and WHERE of a query's outermost SELECT, or None without one."""
    tree = parse_query(sql)
    if not isinstance(tree, exp.Select) or tree.args.get("where") is None:
        return None
    probe = tree.copy()
    probe.set("expressions", [exp.Count(this=exp.Star())])
    for arg in ("group", "having", "order", "limit", "distinct"):
        probe.set(arg, None)
    return probe.sql(dialect="sqlite")


def test_the_golds_where_matches_rows_on_every_fuzz_db(rows: list[dict], tmp_path: Path) -> None:
    checked = 0
    for row in rows[:200]:
        probe = _where_count(row["response"])
        if probe is None:
            continue
        dbs = fuzz.fuzz_databases(row["input"], row["response"], cache_dir=tmp_path)
        assert dbs is not None, row["response"]
        for db in dbs:
            with sqlite3.connect(db) as conn:
                assert conn.execute(probe).fetchone()[0] > 0, (row["response"], db)
        checked += 1
    assert checked > 80  # most generator queries filter


def test_fuzzed_verdicts_agree_with_the_real_database(rows: list[dict], tmp_path: Path) -> None:
    """Per row: the gold, equivalent rewrites and usually-wrong mutations (bench.mutations); fuzz sees
    only the CREATE TABLE text. The real database's verdict is the reference.

    Issue 15 asks for >= 0.95 (bench/NOTES.md, section 8: 0.962 on 1,000 rows). Fuzz over-credits
    almost never (`lenient`); the rest is fuzz rejecting mutations that the one real database
    cannot tell from the gold."""
    result = bench.agreement(rows, tmp_path)
    pairs = result["pairs"]
    lenient = sum(p["fuzz"] and not p["real"] for p in pairs) / len(pairs)
    strict = sum(p["real"] and not p["fuzz"] for p in pairs) / len(pairs)
    report = (f"agreement {result['agreement']:.4f} over {len(pairs)} pairs; fuzz right/real wrong {lenient:.4f}, "
              f"fuzz wrong/real right {strict:.4f}; gold right on its fuzz dbs {result['gold_ok']:.4f}")
    print(report)
    assert result["unusable"] == 0, report
    assert {p["name"] for p in pairs} >= {"gold", "same: swap join sides", "literal", "column", "drop condition",
                                          "aggregate", "> vs >=", "no DISTINCT", "LIMIT"}
    assert len(pairs) > 4 * len(rows), report
    assert result["gold_ok"] >= 0.98, report
    assert all(p["fuzz"] for p in pairs if p["name"].startswith("same:")), report
    assert lenient <= 0.01, report
    assert result["agreement"] >= 0.95, report


def test_databases_are_cached_and_reused_without_a_rewrite(tmp_path: Path) -> None:
    schema, gold = "CREATE TABLE head (age INTEGER, name TEXT)", "SELECT name FROM head WHERE age BETWEEN 30 AND 40"
    first = fuzz.fuzz_databases(schema, gold, n=4, cache_dir=tmp_path)
    stamps = {p: p.stat().st_mtime_ns for p in first}
    listing = sorted(tmp_path.iterdir())
    second = fuzz.fuzz_databases(schema, gold, n=4, cache_dir=tmp_path)
    assert second == first and sorted(tmp_path.iterdir()) == listing
    assert {p: p.stat().st_mtime_ns for p in second} == stamps
    assert len({p.read_bytes() for p in first}) == 4  # each database drawn with its own seed
    other = fuzz.fuzz_databases(schema, gold, n=4, seed=1, cache_dir=tmp_path)
    assert set(other).isdisjoint(first)
    rebuilt = fuzz.fuzz_databases(schema, gold, n=4, cache_dir=tmp_path / "again")
    assert [p.read_bytes() for p in rebuilt] == [p.read_bytes() for p in first]  # deterministic
