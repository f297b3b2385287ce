"""Schema text rendered from SQLite files, and the Spider / BIRD folders as data sources.

Everything runs on tests/fixtures/spider_mini and bird_mini: real layouts, real SQLite files, built
by tests/fixtures/make_benchmarks.py (which a test below reruns to check the committed files).
"""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from sqltune.data import benchmarks, schema
from sqltune.errors import DataError

FIXTURES = Path(__file__).parent / "fixtures"
SPIDER = FIXTURES / "spider_mini"
BIRD = FIXTURES / "bird_mini"
CONCERT = SPIDER / "database" / "concert_singer" / "concert_singer.sqlite"
PETS = SPIDER / "database" / "pets_1" / "pets_1.sqlite"
FLIGHTS = SPIDER / "database" / "flight_2" / "flight_2.sqlite"
SCHOOLS = BIRD / "dev" / "dev_databases" / "california_schools" / "california_schools.sqlite"
RETAIL = BIRD / "train" / "train_databases" / "retail_world" / "retail_world.sqlite"
ALL_DBS = sorted([*SPIDER.glob("database/*/*.sqlite"), *BIRD.glob("*/*_databases/*/*.sqlite")])
ROW_KEYS = {"instruction", "input", "response", "db_id", "db_path"}


def make_db(path: Path, script: str) -> Path:
    conn = sqlite3.connect(path)
    conn.executescript(script)
    conn.commit()
    conn.close()
    return path


def run_gold(db_path: str, sql: str) -> list[tuple]:
    conn = sqlite3.connect(Path(db_path).as_uri() + "?mode=ro", uri=True)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


# ---- schema.py: the renderer --------------------------------------------------------------------


def test_render_writes_types_composite_keys_and_foreign_keys() -> None:
    tables = {t.name: t for t in schema.read_schema(CONCERT)}
    assert list(tables) == ["stadium", "singer", "concert", "singer_in_concert"]  # sqlite_master order
    assert tables["singer_in_concert"].ddl == (
        "CREATE TABLE singer_in_concert (\n"
        "  concert_ID INT,\n"
        "  Singer_ID TEXT,\n"
        "  PRIMARY KEY (concert_ID, Singer_ID),\n"
        "  FOREIGN KEY (concert_ID) REFERENCES concert(concert_ID),\n"
        "  FOREIGN KEY (Singer_ID) REFERENCES singer(Singer_ID)\n"
        ");"
    )
    assert tables["singer_in_concert"].references == ("concert", "singer")
    assert tables["singer"].columns == ("Singer_ID", "Name", "Country", "Song_Name", "Song_release_year", "Age", "Is_male")
    assert "  Is_male bool,\n" in tables["singer"].ddl  # the declared type, whatever it is
    assert "LName VARCHAR(12)" in schema.render(PETS)
    flights = schema.read_schema(FLIGHTS)[2]
    assert flights.references == ("airports",)  # two keys to one table: named once
    assert "PRIMARY KEY (Airline, FlightNo)" in flights.ddl


def test_render_quotes_names_with_spaces_and_reserved_words(tmp_path: Path) -> None:
    text = schema.render(SCHOOLS)
    assert '  "Free Meal Count (K-12)" REAL,\n' in text
    assert '  "Percent (%) Eligible Free (K-12)" REAL,\n' in text
    assert "  CDSCode TEXT,\n" in text  # plain names stay bare
    retail = schema.render(RETAIL)
    assert 'CREATE TABLE "Order Details" (\n' in retail
    assert 'PRIMARY KEY (OrderID, ProductID)' in retail
    odd = make_db(tmp_path / "odd.sqlite", 'CREATE TABLE "order" ("group" INT, "say ""hi""" TEXT, "2nd" INT, key INT);')
    assert schema.read_schema(odd)[0].ddl == (
        'CREATE TABLE "order" (\n  "group" INT,\n  "say ""hi""" TEXT,\n  "2nd" INT,\n  key INT\n);'
    )


@pytest.mark.parametrize("db", ALL_DBS, ids=lambda p: p.stem)
def test_rendered_schema_is_valid_sqlite_that_renders_the_same(db: Path, tmp_path: Path) -> None:
    text = schema.render(db)
    assert text.count("CREATE TABLE") == len(schema.read_schema(db)) > 0
    copy = make_db(tmp_path / "copy.sqlite", text)
    assert schema.render(copy) == text


def test_render_omits_empty_types_resolves_bare_references_and_skips_internal_tables(tmp_path: Path) -> None:
    db = make_db(tmp_path / "t.sqlite", """
        CREATE TABLE parent (a INTEGER, b INTEGER, PRIMARY KEY (a, b));
        CREATE TABLE child (id INTEGER PRIMARY KEY AUTOINCREMENT, note, x INT, y INT,
                            FOREIGN KEY (x, y) REFERENCES parent);
        INSERT INTO child (note) VALUES ('n');
    """)
    assert [t.name for t in schema.read_schema(db)] == ["parent", "child"]  # no sqlite_sequence
    child = schema.read_schema(db)[1]
    assert "  note,\n" in child.ddl
    assert "FOREIGN KEY (x, y) REFERENCES parent(a, b)" in child.ddl


def test_render_named_tables_in_schema_order_with_sample_rows() -> None:
    text = schema.render(CONCERT, sample_rows=2, tables=["SINGER", "stadium"])
    assert text.index("CREATE TABLE stadium") < text.index("CREATE TABLE singer (")
    assert "CREATE TABLE concert" not in text
    assert text.count("/* 2 rows of") == 2
    assert text.startswith(schema.read_schema(CONCERT)[0].ddl + "\n/* 2 rows of stadium:\n")
    with pytest.raises(DataError, match=r"concert_singer.sqlite: no table 'band' \(has: stadium, singer"):
        schema.render(CONCERT, tables=["band"])


def test_sample_rows_is_a_comment_with_header_and_cut_cells(tmp_path: Path) -> None:
    assert schema.sample_rows(PETS, "Pets", 2) == (
        "/* 2 rows of Pets:\nPetID | PetType | pet_age | weight\n2001 | cat | 3 | 12.0\n2002 | dog | 2 | 13.4\n*/"
    )
    assert schema.sample_rows(PETS, "pets", 10).startswith("/* 4 rows of Pets:")  # all there are
    assert schema.sample_rows(PETS, "Pets", 0) == ""
    db = make_db(tmp_path / "t.sqlite", """
        CREATE TABLE "my notes" (id INT, body TEXT, blob BLOB);
        INSERT INTO "my notes" VALUES (1, 'x' || printf('%.60c', 'y') || ' */ end', NULL), (2, 'two
        lines', x'0102'), (3, 'a */ b', 1.5);
    """)
    text = schema.sample_rows(db, "my notes", 5)
    header, one, two, three, end = text.split("\n")[1:]
    assert text.startswith('/* 3 rows of "my notes":\n') and header == "id | body | blob" and end == "*/"
    assert three == "3 | a * / b | 1.5"  # a cell never closes the comment
    cell = one.split(" | ")[1]
    assert len(cell) == schema.CELL_CHARS and cell.endswith("…") and one.endswith(" | NULL")
    assert two == "2 | two lines | <2 bytes>"
    assert schema.sample_rows(db, "my notes", 1, columns=["body"]).split("\n")[1] == "body"
    with pytest.raises(DataError, match="no table 'nope'"):
        schema.sample_rows(db, "nope", 1)


def test_add_sample_rows_to_partial_schema_text() -> None:
    text = ("CREATE TABLE singer (Singer_ID INTEGER PRIMARY KEY, Name TEXT);\n"
            "CREATE TABLE unknown (x INT);\n"
            "CREATE TABLE stadium (Stadium_ID int, Name text)\n")
    out = schema.add_sample_rows(text, CONCERT, 2)
    assert out == (
        "CREATE TABLE singer (Singer_ID INTEGER PRIMARY KEY, Name TEXT);\n"
        "/* 2 rows of singer:\nSinger_ID | Name\n1 | Joe Sharp\n2 | Timbaland\n*/\n"  # only the columns shown
        "CREATE TABLE unknown (x INT);\n"
        "CREATE TABLE stadium (Stadium_ID int, Name text)\n"
        "/* 2 rows of stadium:\nStadium_ID | Name\n1 | Stark's Park\n2 | Somerset Park\n*/\n"
    )
    assert schema.add_sample_rows(text, CONCERT, 0) == text
    assert schema.add_sample_rows("not sql at all; CREATE TABLE (", CONCERT, 2) == "not sql at all; CREATE TABLE ("
    # a ';' inside a string or comment does not end a statement
    tricky = "CREATE TABLE pets (PetID INT DEFAULT ';', PetType TEXT /* ; */);"
    assert schema.add_sample_rows(tricky, PETS, 1) == tricky + "\n/* 1 row of Pets:\nPetID | PetType\n2001 | cat\n*/"


def test_add_sample_rows_on_generator_prompts(tmp_path: Path) -> None:
    from sqltune.data import synthetic

    for row in synthetic.generate(4, 0, tmp_path):
        statements = row["input"].count("CREATE TABLE")
        out = schema.add_sample_rows(row["input"], row["db_path"], 3)
        assert out.count("/* 3 rows of ") == statements > 0
        assert re.sub(r"\n/\*.*?\*/", "", out, flags=re.DOTALL) == row["input"]  # nothing else changed


def test_read_schema_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"missing.sqlite: no such database file"):
        schema.read_schema(tmp_path / "missing.sqlite")
    junk = tmp_path / "junk.sqlite"
    junk.write_text("this is not a database " * 100)
    with pytest.raises(DataError, match=r"junk.sqlite: not a readable SQLite database \(file is not a database\)"):
        schema.render(junk)


def test_read_schema_is_read_only_and_cached_by_file_state(tmp_path: Path) -> None:
    db = make_db(tmp_path / "t.sqlite", "CREATE TABLE a (x INT);")
    before = db.read_bytes()
    first = schema.read_schema(db)
    hits = schema._read_schema.cache_info().hits
    assert schema.read_schema(db) == first and schema._read_schema.cache_info().hits == hits + 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.sqlite"] and db.read_bytes() == before
    make_db(db, "CREATE TABLE b (y INT);")  # the file changes: read again
    assert [t.name for t in schema.read_schema(db)] == ["a", "b"]


# ---- benchmarks.py: Spider ----------------------------------------------------------------------


def test_is_benchmark() -> None:
    assert benchmarks.is_benchmark("spider:data/spider") and benchmarks.is_benchmark("bird:/x")
    for source in ("spider:", "synthetic", "rows.jsonl", "Clinton/Text-to-sql-v1", "wikisql:x"):
        assert not benchmarks.is_benchmark(source)


def test_spider_splits(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real_render = schema.render
    monkeypatch.setattr(schema, "render", lambda db, **kw: calls.append(db) or real_render(db, **kw))
    splits = benchmarks.benchmark_splits(f"spider:{SPIDER}")
    assert {k: len(v) for k, v in splits.items()} == {"train": 27, "valid": 10, "test": 0}
    assert len(calls) == 3  # once per database, not per question
    dev = json.loads((SPIDER / "dev.json").read_text())
    for row, entry in zip(splits["valid"], dev):
        assert set(row) == ROW_KEYS
        assert row["instruction"] == entry["question"] and row["response"] == entry["query"]
        assert row["db_path"] == str(FLIGHTS.resolve()) and row["input"] == real_render(FLIGHTS)
    assert {r["db_id"] for r in splits["train"]} == {"concert_singer", "pets_1"}
    sqls = [r["response"] for r in splits["train"] + splits["valid"]]
    for marker in (" JOIN ", "GROUP BY", "(SELECT", "EXCEPT", "HAVING"):  # hardness varies
        assert any(marker in sql for sql in sqls), marker


@pytest.mark.parametrize("source", [f"spider:{SPIDER}", f"bird:{BIRD}"])
def test_every_gold_query_runs_on_its_database(source: str) -> None:
    rows = [r for split in benchmarks.benchmark_splits(source).values() for r in split]
    assert rows
    for r in rows:
        assert Path(r["db_path"]).is_absolute()
        assert run_gold(r["db_path"], r["response"]), r["response"]


def test_spider_train_others_and_test_split(tmp_path: Path) -> None:
    root = shutil.copytree(SPIDER, tmp_path / "spider")
    others = [{"db_id": "pets_1", "question": "How many pets are there?", "query": "SELECT count(*) FROM pets "}]
    (root / "train_others.json").write_text(json.dumps(others))
    (root / "test_database" / "flight_3").mkdir(parents=True)
    shutil.copy(FLIGHTS, root / "test_database" / "flight_3" / "flight_3.sqlite")
    test = [{"db_id": "flight_3", "question": "How many airports?", "query": "SELECT count(*) FROM airports"},
            {"db_id": "pets_1", "question": "How many students?", "query": "SELECT count(*) FROM student"}]
    (root / "test.json").write_text(json.dumps(test))
    splits = benchmarks.benchmark_splits(f"spider:{root}")
    assert {k: len(v) for k, v in splits.items()} == {"train": 28, "valid": 10, "test": 2}
    assert splits["train"][-1]["response"] == "SELECT count(*) FROM pets"  # stripped
    assert [Path(r["db_path"]).parent.parent.name for r in splits["test"]] == ["test_database", "database"]


def test_spider_errors_name_the_file_and_row(tmp_path: Path) -> None:
    root = shutil.copytree(SPIDER, tmp_path / "spider")
    (root / "dev.json").rename(root / "dev.json.bak")
    with pytest.raises(DataError, match=re.escape(
        f"spider:{root}: no dev.json (expected the Spider layout: tables.json, train_spider.json, dev.json, "
        "database/<db_id>/<db_id>.sqlite)"
    )):
        benchmarks.benchmark_splits(f"spider:{root}")
    (root / "dev.json.bak").rename(root / "dev.json")

    dev = json.loads((root / "dev.json").read_text())
    del dev[2]["query"]
    (root / "dev.json").write_text(json.dumps(dev))
    with pytest.raises(DataError, match=r"dev\.json row 3: missing 'query' \(a spider row has db_id, question, query\)"):
        benchmarks.benchmark_splits(f"spider:{root}")

    dev[2]["query"], dev[2]["db_id"] = "SELECT 1", "x"
    (root / "dev.json").write_text(json.dumps(dev))
    with pytest.raises(DataError, match=r"dev\.json row 3: database 'x' not found at .*database/x/x\.sqlite"):
        benchmarks.benchmark_splits(f"spider:{root}")

    shutil.copy(SPIDER / "dev.json", root / "dev.json")
    (root / "database" / "pets_1" / "pets_1.sqlite").write_text("not a database " * 100)
    with pytest.raises(DataError, match=r"train_spider\.json row 15: .*pets_1\.sqlite: not a readable SQLite"):
        benchmarks.benchmark_splits(f"spider:{root}")

    with pytest.raises(DataError, match="no such folder"):
        benchmarks.benchmark_splits(f"spider:{tmp_path / 'nowhere'}")


# ---- benchmarks.py: BIRD ------------------------------------------------------------------------


def test_bird_splits_with_and_without_evidence() -> None:
    splits = benchmarks.benchmark_splits(f"bird:{BIRD}")
    assert {k: len(v) for k, v in splits.items()} == {"train": 24, "valid": 11, "test": 0}
    dev = json.loads((BIRD / "dev" / "dev.json").read_text())
    for row, entry in zip(splits["valid"], dev):
        assert set(row) == ROW_KEYS | {"bird_difficulty"} and "difficulty" not in row
        assert row["bird_difficulty"] == entry["difficulty"]
        if entry["evidence"]:
            assert row["instruction"] == entry["question"] + "\nHint: " + entry["evidence"]
        else:
            assert row["instruction"] == entry["question"]
    assert '"Free Meal Count (K-12)" REAL' in splits["valid"][0]["input"]
    assert {r["db_id"] for r in splits["train"]} == {"movie_platform", "retail_world"}
    assert all("bird_difficulty" not in r for r in splits["train"])  # train.json has no label
    assert sum("\nHint: " in r["instruction"] for r in splits["train"]) == 18

    plain = benchmarks.benchmark_splits(f"bird:{BIRD}", evidence=False)
    assert not any("Hint" in r["instruction"] for split in plain.values() for r in split)
    assert [r["instruction"] for r in plain["valid"]] == [e["question"] for e in dev]


def test_bird_accepts_the_dated_dev_folder(tmp_path: Path) -> None:
    root = shutil.copytree(BIRD, tmp_path / "bird")
    (root / "dev").rename(root / "dev_20240627")
    splits = benchmarks.benchmark_splits(f"bird:{root}")
    assert len(splits["valid"]) == 11
    assert "/dev_20240627/dev_databases/california_schools/" in splits["valid"][0]["db_path"]


def test_bird_errors_name_the_file_and_row(tmp_path: Path) -> None:
    root = shutil.copytree(BIRD, tmp_path / "bird")
    (root / "dev" / "dev.json").unlink()
    with pytest.raises(DataError, match=r"no dev/dev\.json \(expected the BIRD layout: train/train\.json"):
        benchmarks.benchmark_splits(f"bird:{root}")
    shutil.copy(BIRD / "dev" / "dev.json", root / "dev" / "dev.json")
    shutil.rmtree(root / "train" / "train_databases" / "retail_world")
    with pytest.raises(DataError, match=r"train\.json row 13: database 'retail_world' not found at .*"
                                        r"train_databases/retail_world/retail_world\.sqlite"):
        benchmarks.benchmark_splits(f"bird:{root}")


# ---- the fixtures themselves --------------------------------------------------------------------


def test_make_benchmarks_reproduces_the_committed_fixtures(tmp_path: Path) -> None:
    subprocess.run([sys.executable, str(FIXTURES / "make_benchmarks.py"), str(tmp_path)], check=True,
                   capture_output=True)
    for name in ("spider_mini", "bird_mini"):
        committed = sorted(p.relative_to(FIXTURES / name) for p in (FIXTURES / name).rglob("*") if p.is_file())
        built = sorted(p.relative_to(tmp_path / name) for p in (tmp_path / name).rglob("*") if p.is_file())
        assert built == committed
        for rel in committed:
            if rel.suffix == ".json":
                assert (tmp_path / name / rel).read_bytes() == (FIXTURES / name / rel).read_bytes(), rel
            else:  # SQLite files may differ by SQLite version in their header; compare what they hold
                new, old = tmp_path / name / rel, FIXTURES / name / rel
                assert schema.render(new, sample_rows=100) == schema.render(old, sample_rows=100), rel
    total = sum(p.stat().st_size for n in ("spider_mini", "bird_mini") for p in (FIXTURES / n).rglob("*") if p.is_file())
    assert total < 200_000
