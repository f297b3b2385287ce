"""Untrusted SQL on PostgreSQL and DuckDB keeps the SQLite sandbox's promises, on real engines:
a PostgreSQL 15 cluster started here (Unix socket only, as the unprivileged `postgres` user when
the tests run as root) and DuckDB files. Each hostile query ends as a miss within its deadline
plus 0.5 s, the database unchanged, no file created, no backend left running."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import sqlite3
import time
from pathlib import Path
from typing import Iterator

import duckdb
import psycopg
import pytest

from sqltune.sql import engine, pg_local, postgres, sandbox
from sqltune.sql.scoring import score_one

TIMEOUT = 1.0
SINGERS = [(i, f"singer {i}", ["France", "Japan", "Peru"][i % 3], 20 + 3 * i) for i in range(1, 13)]
TABLE = "CREATE TABLE singer (id INTEGER PRIMARY KEY, name TEXT, country TEXT, age INTEGER)"


@pytest.fixture(scope="module")
def pg() -> Iterator[dict[str, str]]:
    """A PostgreSQL cluster of our own (pg_local), a `shop` database with `singer`, a read-only role
    `reader` (SELECT, and SET temp_file_limit) and a role `writer` that may INSERT. Without the
    server's binaries these tests fail, saying how to install them: CI must not skip them."""
    try:
        pg_local.bin_dir()
    except pg_local.Missing as e:
        pytest.fail(str(e))
    with pg_local.cluster() as admin:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute("CREATE DATABASE shop")
            conn.execute("CREATE ROLE reader LOGIN")
            conn.execute("CREATE ROLE writer LOGIN")
        shop = admin.replace("/postgres?", "/shop?")
        with psycopg.connect(shop, autocommit=True) as conn:
            conn.execute(TABLE)
            with conn.cursor() as cur:
                cur.executemany("INSERT INTO singer VALUES (%s, %s, %s, %s)", SINGERS)
            conn.execute("GRANT SELECT ON singer TO reader, writer")
            conn.execute("GRANT INSERT ON singer TO writer")
            conn.execute("GRANT SET ON PARAMETER temp_file_limit TO reader")
        yield {"admin": shop, "reader": shop.replace("user=postgres", "user=reader"),
               "writer": shop.replace("user=postgres", "user=writer")}


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The same table as a SQLite file and a DuckDB file."""
    folder = tmp_path_factory.mktemp("engines")
    lite = sqlite3.connect(folder / "shop.sqlite")
    lite.execute(TABLE)
    lite.executemany("INSERT INTO singer VALUES (?, ?, ?, ?)", SINGERS)
    lite.commit()
    lite.close()
    duck = duckdb.connect(str(folder / "shop.duckdb"))
    duck.execute(TABLE)
    duck.executemany("INSERT INTO singer VALUES (?, ?, ?, ?)", SINGERS)
    duck.close()
    return {"sqlite": folder / "shop.sqlite", "duckdb": folder / "shop.duckdb"}


def test_a_reference_names_its_engine_and_never_shows_a_password() -> None:
    assert engine.kind("runs/x.sqlite") == engine.kind("/data/db.db") == "sqlite"
    assert engine.kind("postgresql://reader@localhost/spider") == engine.kind("postgres://h/db") == "postgres"
    assert engine.kind("dbname=spider user=reader host=/run/pg") == "postgres"
    assert engine.kind("warehouse.duckdb") == engine.kind("duckdb:/data/x.db") == "duckdb"
    assert engine.display("postgresql://reader:s3cret@db.example/spider") == "postgresql://reader:***@db.example/spider"
    assert engine.display("postgresql:///spider?user=r&password=s3cret&host=/x") == "postgresql:///spider?user=r&password=***&host=/x"
    assert engine.display("dbname=spider password='s3 cret' user=r") == "dbname=spider password=*** user=r"


SAME = [
    "SELECT name FROM singer WHERE age > 40 ORDER BY id",
    "SELECT country, COUNT(*), MAX(age) FROM singer GROUP BY country ORDER BY country",
    "SELECT name FROM singer WHERE country = 'Peru' AND age BETWEEN 20 AND 50 ORDER BY name",
    "SELECT AVG(age) FROM singer",
    "WITH old AS (SELECT * FROM singer WHERE age > 30) SELECT COUNT(*) FROM old",
    "SELECT a.name, b.name FROM singer a JOIN singer b ON a.age + 3 = b.age WHERE a.id < 4 ORDER BY a.id",
    "VALUES (1, 'x')",
]


@pytest.mark.parametrize("sql", SAME)
def test_the_same_query_returns_the_same_rows_on_every_engine(sql: str, pg: dict, files: dict) -> None:
    runs = {name: sandbox.execute(db, sql, timeout_s=TIMEOUT) for name, db in
            (("sqlite", files["sqlite"]), ("postgres", pg["reader"]), ("duckdb", files["duckdb"]))}
    assert all(r.ok for r in runs.values()), {k: r.error for k, r in runs.items()}
    rows = {k: [tuple(float(v) if isinstance(v, (int, float)) or hasattr(v, "as_integer_ratio") else v for v in row)
                for row in r.rows] for k, r in runs.items()}
    assert rows["sqlite"] == rows["postgres"] == rows["duckdb"], rows


def _pg_state(pg: dict) -> tuple:
    with psycopg.connect(pg["admin"], autocommit=True) as conn:
        digest = conn.execute("SELECT md5(string_agg(s::text, ',' ORDER BY id)) FROM singer s").fetchone()[0]
        tables = conn.execute("SELECT string_agg(tablename, ',' ORDER BY tablename) FROM pg_tables "
                              "WHERE schemaname NOT IN ('pg_catalog', 'information_schema')").fetchone()[0]
        roles = conn.execute("SELECT string_agg(rolname || rolsuper::text, ',' ORDER BY rolname) FROM pg_roles").fetchone()[0]
        settings = conn.execute("SELECT count(*) FROM pg_file_settings").fetchone()[0]
        objects = conn.execute("SELECT count(*) FROM pg_largeobject_metadata").fetchone()[0]
    return digest, tables, roles, settings, objects


def _running_backends(pg: dict) -> list:
    """Sessions of the sandbox still running a query (not idle), after up to 5 s to end (a backend
    inside one long C call, a 1 GB repeat(), sees its termination only when the call returns)."""
    for _ in range(100):
        with psycopg.connect(pg["admin"], autocommit=True) as conn:
            busy = conn.execute("SELECT pid, state, query FROM pg_stat_activity WHERE application_name LIKE %s "
                                "AND state <> 'idle'", (postgres.APP_PREFIX + "%",)).fetchall()
        if not busy:
            return []
        time.sleep(0.05)
    return busy


POSTGRES_HOSTILE = [
    "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT count(*) FROM r",
    "SELECT count(*) FROM generate_series(1, 1000000000000)",
    "SELECT * FROM generate_series(1, 1000000000000)",
    "SELECT pg_sleep(30)",
    "SELECT count(*) FROM singer a, singer b, singer c, singer d, singer e, singer f, singer g, singer h",
    "SELECT repeat('x', 1000000000)",
    "SELECT length(repeat(repeat('x', 100000000), 10))",
    "COPY singer TO PROGRAM 'touch {marker}'",
    "DO $$ BEGIN EXECUTE 'DROP TABLE singer'; END $$",
    "CREATE TABLE stolen AS SELECT * FROM singer",
    "DROP TABLE singer",
    "DELETE FROM singer",
    "INSERT INTO singer VALUES (99, 'x', 'y', 1)",
    "SET ROLE postgres",
    "ALTER SYSTEM SET work_mem = '1GB'",
    "SELECT pg_read_file('/etc/passwd')",
    "SELECT pg_ls_dir('/')",
    "SELECT lo_import('/etc/passwd')",
    "SELECT * FROM dblink('host=/tmp dbname=shop', 'DELETE FROM singer') AS t(a int)",
    "WITH gone AS (DELETE FROM singer RETURNING *) SELECT count(*) FROM gone",
    "SELECT * INTO stolen FROM singer",
    "SELECT * FROM singer FOR UPDATE",
    "SELECT 1; DROP TABLE singer",
    "SELECT set_config('default_transaction_read_only', 'off', false)",
    "SELECT query_to_xml('DELETE FROM singer', true, true, '')",
    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity",
    "BEGIN; DELETE FROM singer; COMMIT",
    "SELECT nextval('nosuch')",
]


def test_hostile_queries_on_postgres_are_quick_misses_that_change_nothing(pg: dict, tmp_path: Path) -> None:
    marker = tmp_path / "touched"
    os.chmod(tmp_path, 0o777)  # so that a COPY TO PROGRAM run by the server could create it, were it allowed
    before = _pg_state(pg)
    for template in POSTGRES_HOSTILE:
        sql = template.format(marker=marker)
        started = time.monotonic()
        run = sandbox.execute(pg["reader"], sql, timeout_s=TIMEOUT)
        took = time.monotonic() - started
        assert not run.ok, (sql, run.rows[:3])
        assert took <= TIMEOUT + 0.5, (sql, took, run.error)
        assert _pg_state(pg) == before, sql
        assert not marker.exists(), sql
        assert _running_backends(pg) == [], sql
    assert sandbox.execute(pg["reader"], "SELECT count(*) FROM singer").rows == [(12,)]  # still healthy


def test_a_superuser_is_refused_and_a_role_that_may_write_is_warned_about(pg: dict, caplog) -> None:
    run = sandbox.execute(pg["admin"], "SELECT 1")
    assert run.error.startswith("RoleRefused: role postgres on ") and "is a superuser" in run.error, run.error
    with caplog.at_level(logging.WARNING, logger="sqltune.sql.postgres"):
        run = sandbox.execute(pg["writer"], "SELECT count(*) FROM singer")
    assert run.rows == [(12,)]
    assert "role writer may write 1 table privilege(s)" in caplog.text
    assert "temp_file_limit is unlimited for this role" in caplog.text  # writer was not granted SET on it
    assert sandbox.execute(pg["writer"], "INSERT INTO singer VALUES (99, 'x', 'y', 1)").error.startswith("ValueError")
    assert _pg_state(pg)[0] == _pg_state(pg)[0]


DUCKDB_HOSTILE = [
    "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT count(*) FROM r",
    "SELECT count(*) FROM range(1000000000000)",
    "SELECT * FROM range(1000000000000)",
    "SELECT count(*) FROM singer a, singer b, range(100000000000) c",
    "SELECT repeat('x', 1000000000)",
    "SELECT * FROM read_csv('/etc/passwd')",
    "SELECT * FROM '/etc/passwd'",
    "SELECT * FROM read_text('/etc/passwd')",
    "SELECT * FROM glob('/etc/*')",
    "SELECT getenv('HOME')",
    "SELECT * FROM query('DROP TABLE singer')",
    "COPY singer TO '{marker}'",
    "COPY (SELECT * FROM singer) TO '{marker}' (FORMAT csv)",
    "ATTACH '{marker}' AS other",
    "INSTALL httpfs",
    "LOAD httpfs",
    "SET enable_external_access = true",
    "SET threads = 64",
    "PRAGMA enable_profiling",
    "CREATE TABLE stolen AS SELECT * FROM singer",
    "DROP TABLE singer",
    "DELETE FROM singer",
    "WITH gone AS (DELETE FROM singer RETURNING *) SELECT count(*) FROM gone",
    "SELECT 1; DROP TABLE singer",
    "EXPORT DATABASE '{marker}'",
]


def test_hostile_queries_on_duckdb_are_quick_misses_that_change_nothing(files: dict, tmp_path: Path) -> None:
    db = files["duckdb"]
    marker = tmp_path / "written"
    before = hashlib.sha256(db.read_bytes()).hexdigest(), sorted(os.listdir(db.parent))
    for template in DUCKDB_HOSTILE:
        sql = template.format(marker=marker)
        started = time.monotonic()
        run = sandbox.execute(db, sql, timeout_s=TIMEOUT)
        took = time.monotonic() - started
        assert not run.ok, (sql, run.rows[:3])
        assert took <= TIMEOUT + 0.5, (sql, took, run.error)
        assert (hashlib.sha256(db.read_bytes()).hexdigest(), sorted(os.listdir(db.parent))) == before, sql
        assert not marker.exists() and not list(tmp_path.iterdir()), sql
    assert sandbox.execute(db, "SELECT count(*) FROM singer").rows == [(12,)]


def test_a_row_on_postgres_or_duckdb_is_scored_by_execution(pg: dict, files: dict) -> None:
    for db in (pg["reader"], str(files["duckdb"])):
        row = {"instruction": "Names of singers older than 50.", "input": TABLE,
               "response": "SELECT name FROM singer WHERE age > 50", "db_path": db}
        right = score_one({**row, "prediction": "SELECT name FROM singer WHERE 50 < age"})
        wrong = score_one({**row, "prediction": "SELECT name FROM singer WHERE age >= 50"})
        broken = score_one({**row, "prediction": "SELECT nme FROM singer"})
        assert (right["executed"], right["executed_bird"], right["valid"]) == (True, True, True), (db, right)
        assert (wrong["executed"], wrong["valid"]) == (False, True), (db, wrong)
        assert broken["valid"] is False and "nme" in broken["error"], (db, broken)


SQLITE_GOLDS = {
    "Ages or zero.": "SELECT ifnull(age, 0) FROM singer ORDER BY id",
    "Names joined per country.": "SELECT country, group_concat(name, '|') FROM (SELECT * FROM singer ORDER BY id) AS s "
                                 "GROUP BY country ORDER BY country",
    "Name lengths.": "SELECT length(name), substr(name, 1, 3) FROM singer ORDER BY id",
    "Second page.": "SELECT name FROM singer ORDER BY id LIMIT 3 OFFSET 3",
    "Older than average.": "SELECT name FROM singer WHERE age > (SELECT avg(age) FROM singer) ORDER BY id",
    "Upper names.": "SELECT upper(name) FROM singer WHERE name LIKE '%1%' ORDER BY id",
}


def test_gold_written_for_sqlite_is_transpiled_and_returns_the_same_rows(pg: dict, files: dict, tmp_path: Path) -> None:
    """format.dialect: the corpus's SQLite gold, transpiled when the data loads, returns on
    PostgreSQL and DuckDB what the original returns on SQLite; a gold sqlglot can't read is left
    out, counted and named; the system prompt names the dialect."""
    from sqltune import config
    from sqltune.data import splits

    rows = [{"instruction": f"{q} #{k}", "input": TABLE, "response": sql} for q, sql in SQLITE_GOLDS.items() for k in (1, 2)]
    rows.append({"instruction": "Broken gold.", "input": TABLE, "response": "SELECT name FROM singer WHERE"})
    source = tmp_path / "rows.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in rows))
    for target, db in (("postgres", pg["reader"]), ("duckdb", str(files["duckdb"]))):
        fmt = config.FormatSettings(dialect=target)
        assert fmt.system_text().endswith({"postgres": " Write PostgreSQL SQL.", "duckdb": " Write DuckDB SQL."}[target])
        data = config.DataSettings(source=str(source), subset="all", cache_dir=str(tmp_path / "cache"))
        loaded = [r for split in splits.load_splits(data, fmt.dialect).values() for r in split]
        assert sorted(r["instruction"] for r in loaded) == sorted(r["instruction"] for r in rows[:-1])  # the broken one out
        [stats] = [json.loads(p.read_text()) for p in (tmp_path / "cache").glob(f"*-{target}/stats.json")]
        assert stats["untranspiled"] == 1 and "row " in stats["untranspiled_examples"][0], stats
        assert "ParseError: Required keyword: 'this' missing" in stats["untranspiled_examples"][0], stats
        for row in loaded:
            original = sandbox.execute(files["sqlite"], SQLITE_GOLDS[row["instruction"].rsplit(" #", 1)[0]])
            moved = sandbox.execute(db, row["response"])
            assert original.ok and moved.ok, (target, row["response"], moved.error)
            assert [tuple(map(str, r)) for r in moved.rows] == [tuple(map(str, r)) for r in original.rows], (
                target, row["response"])
    assert config.FormatSettings().system_text() == config.FormatSettings().system_prompt  # sqlite: as before


def test_copy_db_puts_a_sqlite_folder_on_duckdb_and_postgres_and_data_database_points_rows_there(
        pg: dict, files: dict, tmp_path: Path, capsys) -> None:
    """`sqltune copy-db` as for a Spider folder (<db_id>/<db_id>.sqlite), into DuckDB files and into
    PostgreSQL schemas; `data.database` with {db_id} then sends each row to its copy."""
    from sqltune import cli, config
    from sqltune.data import splits

    spider = tmp_path / "database"
    (spider / "shop").mkdir(parents=True)
    shutil.copy(files["sqlite"], spider / "shop" / "shop.sqlite")
    lite = sqlite3.connect(spider / "shop" / "shop.sqlite")
    lite.execute("CREATE TABLE odd (n INTEGER, note)")  # '' in an INTEGER column, a column with no type
    lite.executemany("INSERT INTO odd VALUES (?, ?)", [(1, "a"), ("", 2.5), (None, b"\x00\x01")])
    lite.commit()
    lite.close()
    assert cli.main(["copy-db", str(spider), "--to", f"duckdb:{tmp_path / 'duck'}"]) == 0
    assert "data.database: " + str(tmp_path / "duck" / "{db_id}.duckdb") in capsys.readouterr().out
    assert cli.main(["copy-db", str(spider), "--to", pg["admin"]]) == 0
    assert "search_path%3D{db_id}" in capsys.readouterr().out
    reader = pg["reader"] + "&options=-c%20search_path%3D{db_id}"
    rows = [{"instruction": f"How many singers? {i}", "input": TABLE, "response": "SELECT count(*) FROM singer",
             "db_id": "shop"} for i in range(10)]
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    for database in (str(tmp_path / "duck" / "{db_id}.duckdb"), reader):
        data = config.DataSettings(source=str(tmp_path / "rows.jsonl"), subset="all", database=database,
                                   cache_dir=str(tmp_path / "cache"))
        loaded = [r for split in splits.load_splits(data).values() for r in split]
        assert {r["db_path"] for r in loaded} == {database.replace("{db_id}", "shop")}
        db = loaded[0]["db_path"]
        assert sandbox.execute(db, "SELECT count(*) FROM singer").rows == [(12,)]
        odd = sandbox.execute(db, "SELECT n, note FROM odd ORDER BY note")
        assert odd.ok and sorted(map(str, odd.rows)) == sorted(["('1', 'a')", "('', '2.5')", "(None, '0001')"]), odd


def test_rows_without_a_schema_get_it_from_their_postgres_or_duckdb_database(pg: dict, files: dict, tmp_path: Path) -> None:
    """Your own database and your questions, no DDL text: `data.database` (or a row's db_path) is
    asked for its CREATE TABLE statements, keys included, as a SQLite file would be."""
    from sqltune import config
    from sqltune.data import splits

    rows = [{"instruction": f"Singers older than {20 + i}?", "response": f"SELECT name FROM singer WHERE age > {20 + i}"}
            for i in range(10)]
    (tmp_path / "qs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "qs-duck.jsonl").write_text("".join(json.dumps({**r, "db_path": str(files["duckdb"])}) + "\n" for r in rows))
    for source, database in (("qs.jsonl", pg["reader"]), ("qs-duck.jsonl", None)):
        data = config.DataSettings(source=str(tmp_path / source), subset="all", database=database,
                                   cache_dir=str(tmp_path / "cache"))
        loaded = [r for split in splits.load_splits(data).values() for r in split]
        assert len(loaded) == 10
        schema = loaded[0]["input"]
        assert schema.startswith("CREATE TABLE singer (\n  id ") and "PRIMARY KEY" in schema, schema
        assert "country" in schema and schema.endswith(");"), schema
        assert sandbox.execute(loaded[0]["db_path"], loaded[0]["response"]).ok
    from sqltune.errors import DataError

    with pytest.raises(DataError, match=r"could not read its schema") as e:
        splits.load_splits(config.DataSettings(source=str(tmp_path / "qs.jsonl"), subset="all", cache_dir=str(tmp_path / "c2"),
                                               database="postgresql://reader@/shop?host=/nonexistent"))
    assert str(e.value).startswith("postgresql://reader@/shop?host=/nonexistent: could not read its schema"), e.value


def test_sample_rows_come_from_postgres_and_duckdb_too(pg: dict, files: dict) -> None:
    """format.sample_rows on a row whose database is PostgreSQL or DuckDB: the rows the database
    holds, in the comment SQLite rows get; a statement whose table the database lacks stays as is."""
    from sqltune.data import engine_schema, schema

    text = TABLE + ";\nCREATE TABLE ghost (a INTEGER);"
    lite = schema.add_sample_rows(text, files["sqlite"], 2)
    for db in (pg["reader"], str(files["duckdb"])):
        shown = engine_schema.add_sample_rows(text, db, 2)
        assert shown == lite, (db, shown)
    assert "/* 2 rows of singer:\nid | name | country | age\n1 | singer 1 | Japan | 23\n" in lite, lite
    assert lite.endswith("CREATE TABLE ghost (a INTEGER);")


def test_a_password_in_data_database_is_refused_in_one_line_that_does_not_show_it(tmp_path: Path) -> None:
    from conftest import tiny_config
    from sqltune import config
    from sqltune.errors import ConfigError

    cfg = tiny_config(tmp_path, data={"database": "postgresql://reader:s3cret@db.internal/shop"})
    with pytest.raises(ConfigError) as e:
        config.build(cfg)
    assert str(e.value).startswith("hyperparameters.data.database: holds a password") and "s3cret" not in str(e.value)
    assert config.build(tiny_config(tmp_path, data={"database": "postgresql://reader@db.internal/shop"}))


def test_rows_without_a_database_are_fuzzed_on_the_engine_their_sql_is_written_for(pg: dict, tmp_path: Path, caplog
                                                                                   ) -> None:
    """eval.fuzz_on: a schema-only row whose gold is DuckDB's or PostgreSQL's SQL is judged on the
    fuzzed databases copied into that engine. On SQLite such a gold gives no verdict (it doesn't
    run there); on its own engine the right query counts and a near miss doesn't. Copies are made
    once: DuckDB files beside the SQLite ones, PostgreSQL schemas `fuzz_*`; nothing else changes."""
    from sqltune import rewards

    with psycopg.connect(pg["admin"], autocommit=True) as conn:
        conn.execute("CREATE ROLE fuzzer LOGIN")
        conn.execute("GRANT CREATE ON DATABASE shop TO fuzzer")
    fuzzer = pg["admin"].replace("user=postgres", "user=fuzzer")
    before = _pg_state(pg)
    caplog.set_level(logging.WARNING, logger="sqltune.sql.postgres")
    cases = {"duckdb": ("SELECT name FROM singer WHERE age::INTEGER > 30 ORDER BY name", "duckdb"),
             "postgres": ("SELECT name FROM singer WHERE age::int > 30 AND name ILIKE '%a%' ORDER BY name", fuzzer)}
    for dialect, (gold, on) in cases.items():
        row = {"instruction": "Names of singers over 30.", "input": TABLE, "response": gold}
        near = gold.replace("> 30", ">= 30")
        on_sqlite = score_one({**row, "prediction": gold}, fuzz_dir=tmp_path)
        assert on_sqlite["executed_fuzz"] is None, dialect  # SQLite can't run this gold: no verdict
        right = score_one({**row, "prediction": gold.replace("ORDER BY name", "ORDER BY 1")}, fuzz_dir=tmp_path, fuzz_on=on)
        wrong = score_one({**row, "prediction": near}, fuzz_dir=tmp_path, fuzz_on=on)
        assert (right["executed_fuzz"], wrong["executed_fuzz"]) == (True, False), (dialect, right, wrong)
        parts = rewards.score_completion(gold, [gold], schema=TABLE, fuzz_dir=tmp_path, fuzz_on=on)
        assert (parts.execution, parts.runs) == (1.0, 1.0), dialect
    duck = sorted(tmp_path.glob("*.duckdb"))
    assert len(duck) == 3 and all(p.with_suffix(".sqlite").is_file() for p in duck)
    stamps = [p.stat().st_mtime_ns for p in duck]
    gold = cases["duckdb"][0]
    again = score_one({"input": TABLE, "response": gold, "prediction": gold}, fuzz_dir=tmp_path, fuzz_on="duckdb")
    assert again["executed_fuzz"] is True and [p.stat().st_mtime_ns for p in duck] == stamps  # found, not made again
    assert caplog.text.count("role fuzzer may write") == 1, caplog.text  # once, not once per fuzzed schema
    with psycopg.connect(pg["admin"]) as conn:
        schemas = [r[0] for r in conn.execute("SELECT nspname FROM pg_namespace WHERE nspname LIKE 'fuzz_%'")]
    assert len(schemas) == 3, schemas
    after = _pg_state(pg)
    assert (after[0], *after[2:]) == (before[0], *before[2:])  # the user's table, roles, settings untouched


def test_eval_fuzz_on_follows_duckdb_and_must_agree_with_the_dialect(tmp_path: Path) -> None:
    from conftest import tiny_config
    from sqltune import config
    from sqltune.errors import ConfigError

    assert config.build(tiny_config(tmp_path, format={"dialect": "duckdb"})).hparams.eval.fuzz_on == "duckdb"
    assert config.build(tiny_config(tmp_path)).hparams.eval.fuzz_on == "sqlite"
    for ev, fmt, says in [({"fuzz_on": "duckdb"}, {}, "judges duckdb SQL, but format.dialect teaches the model sqlite's"),
                          ({"fuzz_on": "mysql"}, {}, "go on sqlite, duckdb or a PostgreSQL URL, not 'mysql'"),
                          ({"fuzz_on": "postgresql://u:s3cret@h/db"}, {"dialect": "postgres"}, "holds a password")]:
        with pytest.raises(ConfigError) as e:
            config.build(tiny_config(tmp_path, eval=ev, format=fmt))
        assert str(e.value).startswith("hyperparameters.eval.fuzz_on: ") and says in str(e.value), str(e.value)
        assert "s3cret" not in str(e.value)
