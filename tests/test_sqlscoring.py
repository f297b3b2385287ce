"""sql.scoring: BLEU, exact match, execution accuracy and Spider hardness on hand-made pairs."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import sacrebleu

from sqltune.sql.execute import clean_sql
from sqltune.sql.hardness import hardness
from sqltune.sql.match import bleu, bleu_signature, exact_match, normalize_sql
from sqltune.sql.scoring import score_rows

# ----------------------------------------------------------------------------- BLEU

PREDS = [
    "SELECT name FROM singer WHERE age > 30",
    "SELECT count(*) FROM concert",
    "SELECT country FROM singer ORDER BY age",
    "SELECT T1.name FROM singer AS T1 JOIN concert AS T2 ON T1.id = T2.singer_id",
]
REFS = [
    "SELECT name FROM singer WHERE age > 30",
    "SELECT count(*) FROM singer",
    "SELECT DISTINCT country FROM singer",
    "SELECT T1.name FROM singer AS T1 JOIN concert AS T2 ON T1.id = T2.singer_id WHERE T2.year = 2014",
]
BLEU_FIXTURE = 79.61424302193423  # sacrebleu 2.6.0, nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp


def test_bleu_is_sacrebleu_corpus_bleu() -> None:
    assert bleu(PREDS, REFS) == pytest.approx(sacrebleu.corpus_bleu(PREDS, [REFS]).score, abs=1e-6)
    assert bleu(PREDS, REFS) == pytest.approx(BLEU_FIXTURE, abs=1e-6)
    assert bleu(REFS, REFS) == pytest.approx(100.0)
    assert bleu_signature().startswith("nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:")
    with pytest.raises(ValueError, match="2 predictions but 1 references"):
        bleu(PREDS[:2], REFS[:1])


# ----------------------------------------------------------------------------- exact match

SAME = [
    ("SELECT T1.name FROM singer AS T1", "SELECT name FROM singer"),
    ("select NAME from Singer", 'SELECT "name"  FROM\n  "SINGER";'),
    ("SELECT `name` FROM [singer]", "SELECT name FROM singer"),
    (
        "SELECT T2.year FROM singer AS T1 JOIN concert AS T2 ON T1.id = T2.singer_id "
        "WHERE T1.country = 'France'",
        "select concert.year from singer join concert on singer.id = concert.singer_id "
        'where singer.country = "France"',  # Spider writes strings in double quotes
    ),
    (
        "SELECT a.name FROM singer AS a WHERE a.age > (SELECT avg(b.age) FROM singer AS b)",
        "SELECT T1.name FROM singer AS T1 WHERE T1.age > (SELECT AVG(T2.age) FROM singer AS T2)",
    ),
    ("SELECT name FROM singer ORDER BY age ASC", "SELECT name FROM singer ORDER BY age"),
    ("SELECT s.name FROM singer s INNER JOIN concert c ON s.id = c.singer_id",
     "SELECT singer.name FROM singer JOIN concert ON singer.id = concert.singer_id"),
    ("SELECT name FROM singer WHERE age != 3", "SELECT name FROM singer WHERE age <> 3"),
    ("```sql\nSELECT count(*) FROM singer;\n```", "SELECT COUNT(*) FROM singer"),
]
DIFFERENT = [
    ("SELECT name, age FROM singer", "SELECT age, name FROM singer"),  # column order
    ("SELECT name FROM singer ORDER BY age", "SELECT name FROM singer"),
    ("SELECT name FROM singer ORDER BY age DESC", "SELECT name FROM singer ORDER BY age"),
    ("SELECT DISTINCT country FROM singer", "SELECT country FROM singer"),
    ("SELECT name FROM singer WHERE country = 'France'", "SELECT name FROM singer WHERE country = 'france'"),
    ("SELECT name FROM singer WHERE age > 3", "SELECT name FROM singer WHERE age > 4"),
    ("SELECT name FROM singer", "SELECT name FROM singer; SELECT 1"),
    ("SELEC name FROM singer", "SELECT name FROM singer"),
    # a correlated reference must keep pointing at the outer table
    (
        "SELECT T1.name FROM singer AS T1 WHERE EXISTS (SELECT 1 FROM singer AS T2 WHERE T2.age = T1.id)",
        "SELECT T1.name FROM singer AS T1 WHERE EXISTS (SELECT 1 FROM singer AS T2 WHERE T2.age = T2.id)",
    ),
    # ORDER BY a binds to the SELECT alias, t.a to the column: the qualifier must stay
    ("SELECT b AS a FROM t ORDER BY t.a", "SELECT b AS a FROM t ORDER BY a"),
]


@pytest.mark.parametrize("pred, gold", SAME)
def test_exact_match_agrees(pred: str, gold: str) -> None:
    assert exact_match(pred, gold), (normalize_sql(pred), normalize_sql(gold))


@pytest.mark.parametrize("pred, gold", DIFFERENT)
def test_exact_match_disagrees(pred: str, gold: str) -> None:
    assert not exact_match(pred, gold)


def test_normalize_sql() -> None:
    assert normalize_sql("select T1.name from Singer as T1 where T1.age>3") == (
        'SELECT "name" FROM "singer" WHERE "age" > 3'
    )
    assert normalize_sql("SELECT T1.a FROM t AS T1 JOIN t AS T2 ON T1.p = T2.id") == (
        'SELECT "t_1"."a" FROM "t" AS "t_1" JOIN "t" AS "t_2" ON "t_1"."p" = "t_2"."id"'
    )
    for bad in ["", "```sql\n```", "hello world, not sql", "SELECT", "x", "SELECT 1; SELECT 2",
                "DROP TABLE t"]:
        assert normalize_sql(bad) is None, bad
    assert not exact_match("garbage", "garbage")


# ----------------------------------------------------------------------------- hardness

# Labels computed by Spider's own evaluation.py (taoyds/spider, Evaluator.eval_hardness).
SPIDER_LABELS = [
    ("SELECT count(*) FROM singer", "easy"),
    ("SELECT name , country , age FROM singer ORDER BY age DESC", "medium"),
    ("SELECT DISTINCT country FROM singer WHERE age > 20", "easy"),
    ("SELECT country , count(*) FROM singer GROUP BY country", "medium"),
    ("SELECT song_name FROM singer WHERE age > (SELECT avg(age) FROM singer)", "hard"),
    ("SELECT name FROM stadium WHERE stadium_id NOT IN (SELECT stadium_id FROM concert)", "hard"),
    ("SELECT country FROM singer WHERE age > 40 INTERSECT SELECT country FROM singer WHERE age < 30", "hard"),
    ("SELECT T2.name , count(*) FROM concert AS T1 JOIN stadium AS T2 ON T1.stadium_id = T2.stadium_id "
     "GROUP BY T1.stadium_id", "medium"),
    ("SELECT T2.name , T2.capacity FROM concert AS T1 JOIN stadium AS T2 ON T1.stadium_id = T2.stadium_id "
     "WHERE T1.year >= 2014 GROUP BY T2.stadium_id ORDER BY count(*) DESC LIMIT 1", "extra"),
    ("SELECT name FROM stadium EXCEPT SELECT T2.name FROM concert AS T1 JOIN stadium AS T2 "
     "ON T1.stadium_id = T2.stadium_id WHERE T1.year = 2014", "hard"),
    ("SELECT count(*) FROM stadium WHERE capacity > 1000 OR location = 'x' OR name LIKE 'a%'", "extra"),
    # HAVING adds no component; its AND counts as the one aggregate (the real ones do not)
    ("SELECT country FROM singer GROUP BY country HAVING count(*) > 2 AND max(age) > 30", "easy"),
    ("SELECT name FROM singer WHERE name LIKE '%a%' AND song_name LIKE '%b%'", "hard"),
    ("SELECT count(*) FROM (SELECT country FROM singer GROUP BY country)", "easy"),
    # evaluation.py counts the NOT of NOT IN as an aggregate: extra, not hard
    ("SELECT avg(age) FROM singer WHERE name NOT IN (SELECT T1.name FROM singer AS T1 JOIN "
     "singer_in_concert AS T2 ON T1.singer_id = T2.singer_id WHERE T1.country = \"English\")", "extra"),
    ("SELECT name FROM stadium WHERE capacity > 10 UNION SELECT name FROM stadium WHERE average > 5 "
     "UNION SELECT name FROM stadium WHERE highest < 3", "hard"),
]


@pytest.mark.parametrize("sql, label", SPIDER_LABELS)
def test_hardness_matches_spider(sql: str, label: str) -> None:
    assert hardness(sql) == label


def test_hardness_rejects_unparsable_sql() -> None:
    with pytest.raises(ValueError, match="cannot parse SQL"):
        hardness("SELEC * FROM")


# ----------------------------------------------------------------------------- score_rows


@pytest.fixture
def db(tmp_path: Path) -> str:
    path = tmp_path / "music.sqlite"
    conn = sqlite3.connect(path)
    conn.executescript(
        """
        CREATE TABLE singer (id INTEGER PRIMARY KEY, name TEXT, country TEXT, age INTEGER);
        INSERT INTO singer VALUES (1, 'Ann', 'France', 30), (2, 'Bob', 'Spain', 25),
                                  (3, 'Cid', 'France', NULL), (4, 'Dee', NULL, 41);
        CREATE TABLE concert (id INTEGER PRIMARY KEY, singer_id INTEGER, year INTEGER);
        INSERT INTO concert VALUES (1, 1, 2014), (2, 1, 2015), (3, 2, 2014);
        """
    )
    conn.commit()
    conn.close()
    return str(path)


# (prediction, gold, Spider's execution match?, BIRD's?) on the database above
EXEC_PAIRS = [
    ("SELECT T1.name FROM singer AS T1 WHERE T1.age > 26", "SELECT name FROM singer WHERE age > 26", True, True),
    ("SELECT name, country FROM singer", "SELECT country, name FROM singer", True, False),  # Spider permutes columns
    ("SELECT name FROM singer ORDER BY name DESC", "SELECT name FROM singer", True, True),  # gold unordered
    ("SELECT name FROM singer", "SELECT name FROM singer ORDER BY name DESC", False, True),  # BIRD: sets
    ("SELECT name FROM singer ORDER BY age", "SELECT name FROM singer ORDER BY age DESC", False, True),
    ("SELECT age FROM singer", "SELECT age FROM singer WHERE id > 0", True, True),  # NULL ages on both sides
    ("SELECT age FROM singer WHERE age IS NOT NULL", "SELECT age FROM singer", False, False),
    ("SELECT country FROM singer", "SELECT DISTINCT country FROM singer", True, True),  # Spider drops DISTINCT
    ("SELECT count(*) * 1.0 FROM singer", "SELECT count(*) FROM singer", True, True),  # 4.0 == 4
    ("SELECT name FROM singer WHERE id IN (SELECT singer_id FROM concert)",
     "SELECT DISTINCT T1.name FROM singer AS T1 JOIN concert AS T2 ON T1.id = T2.singer_id", False, True),
    ("SELECT nme FROM singer", "SELECT name FROM singer", False, False),
]


@pytest.mark.parametrize("pred, gold, spider, bird", EXEC_PAIRS)
def test_execution_match(db: str, pred: str, gold: str, spider: bool, bird: bool) -> None:
    row = score_rows([{"prediction": pred, "response": gold, "db_path": db}])["rows"][0]
    assert (row["executed"], row["executed_bird"]) == (spider, bird)


def test_score_rows(db: str) -> None:
    gold = "SELECT name FROM singer WHERE country = 'France'"
    rows = [
        {"prediction": "```sql\nSELECT T1.name FROM singer AS T1 WHERE T1.country = 'France';\n```",
         "response": gold, "db_path": db, "difficulty": "easy"},
        {"prediction": "SELECT name FROM singer", "response": gold, "db_path": db, "difficulty": "easy"},
        {"prediction": "DROP TABLE singer", "response": gold, "db_path": db, "difficulty": "medium"},
        {"prediction": "SELECT count(*) FROM singer", "response": "SELECT count(*) FROM singer"},
    ]
    out = score_rows(rows)
    summary, per_row = out["summary"], out["rows"]

    assert [r["exact"] for r in per_row] == [True, False, False, True]
    assert [r["exact_set"] for r in per_row] == [True, False, False, None]  # no schema for the last row
    assert [r["executed"] for r in per_row] == [True, False, False, None]
    assert [r["executed_fuzz"] for r in per_row] == [None] * 4  # no fuzz_dir given
    assert [r["valid"] for r in per_row] == [True, True, False, True]
    assert per_row[2]["error"].startswith("ValueError: only SELECT")
    assert [r["hardness"] for r in per_row] == ["easy", "easy", "easy", "easy"]
    assert per_row[0]["bleu"] == pytest.approx(sacrebleu.sentence_bleu(
        "SELECT T1.name FROM singer AS T1 WHERE T1.country = 'France'", [gold]).score)

    assert summary["n"] == 4
    assert summary["exact_match"] == pytest.approx(0.5)
    assert summary["exact_set_match"] == pytest.approx(1 / 3)
    assert summary["execution_accuracy"] == pytest.approx(1 / 3)  # rows with a db_path only
    assert summary["bird_execution_accuracy"] == pytest.approx(1 / 3)
    assert "fuzz_execution_accuracy" not in summary
    assert summary["valid_sql"] == pytest.approx(0.75)
    preds = [clean_sql(r["prediction"]) for r in rows]
    golds = [r["response"] for r in rows]
    assert summary["bleu"] == pytest.approx(sacrebleu.corpus_bleu(preds, [golds]).score)
    assert summary["execution_accuracy_easy"] == pytest.approx(0.5)
    assert summary["execution_accuracy_medium"] == 0.0
    assert summary["n_easy"] == 2 and summary["n_medium"] == 1
    assert summary["exact_match_hardness_easy"] == pytest.approx(0.5)
    assert summary["n_hardness_easy"] == 4


def test_a_prediction_matching_any_of_several_golds_counts(db: str) -> None:
    golds = ["SELECT name FROM singer WHERE age > 26", "SELECT name FROM singer WHERE age >= 30"]
    row = {"response": golds[0], "golds": golds, "db_path": db}
    second = score_rows([{**row, "prediction": "SELECT name FROM singer WHERE age >= 30"}])["rows"][0]
    assert second["exact"] and second["exact_set"] and second["executed"] and second["executed_bird"]
    neither = score_rows([{**row, "prediction": "SELECT name FROM singer"}])["rows"][0]
    assert not (neither["exact"] or neither["exact_set"] or neither["executed"] or neither["executed_bird"])
    only_first = score_rows([{"response": golds[0], "db_path": db,
                              "prediction": "SELECT name FROM singer WHERE age >= 30"}])["rows"][0]
    assert not only_first["exact"]  # without the second gold the same prediction is a string miss


def test_rows_without_a_database_get_fuzzed_execution_accuracy(tmp_path: Path) -> None:
    schema = "CREATE TABLE head (head_id INTEGER, name TEXT, age INTEGER)"
    gold = "SELECT count(*) FROM head WHERE age > 56"
    rows = [{"prediction": p, "response": gold, "input": schema} for p in
            (gold, "SELECT count(*) FROM head WHERE 56 < age", "SELECT count(*) FROM head WHERE age >= 56",
             "SELECT count(*) FROM head")]
    out = score_rows(rows, fuzz_dir=tmp_path)
    assert [r["executed_fuzz"] for r in out["rows"]] == [True, True, False, False]
    assert out["summary"]["fuzz_execution_accuracy"] == pytest.approx(0.5)
    assert [r["exact_set"] for r in out["rows"]] == [True, False, False, False]  # schema from the DDL
    assert "execution_accuracy" not in out["summary"]


def test_score_rows_without_databases() -> None:
    out = score_rows([{"prediction": "SELEC x", "response": "SELECT x FROM t ORDER BY x LIMIT 1"}])
    assert "execution_accuracy" not in out["summary"]
    assert out["summary"]["valid_sql"] == 0.0
    assert out["rows"][0]["error"] == "sqlglot cannot parse the prediction"
    assert out["summary"]["n_hardness_medium"] == 1
    assert score_rows([]) == {"summary": {"n": 0}, "rows": []}
    with pytest.raises(ValueError, match="row 0: missing 'response'"):
        score_rows([{"prediction": "SELECT 1"}])
