"""sql.scoring: BLEU, exact match, execution accuracy and Spider hardness on hand-made pairs."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import sacrebleu

from sqltune.sql import scoring
from sqltune.sql.scoring import (
    bleu,
    bleu_signature,
    exact_match,
    hardness,
    has_order_by,
    normalize_sql,
    score_rows,
)

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


def test_has_order_by() -> None:
    assert has_order_by("SELECT a FROM t ORDER BY a")
    assert has_order_by("SELECT a FROM t UNION SELECT b FROM s ORDER BY a")
    assert not has_order_by("SELECT a FROM t WHERE a IN (SELECT b FROM s ORDER BY b LIMIT 1)")
    assert not has_order_by("not sql at all")


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


# (prediction, gold, same result?) on the database above
EXEC_PAIRS = [
    ("SELECT T1.name FROM singer AS T1 WHERE T1.age > 26", "SELECT name FROM singer WHERE age > 26", True),
    ("SELECT name, country FROM singer", "SELECT country, name FROM singer", False),  # columns in SELECT order
    ("SELECT name FROM singer ORDER BY name DESC", "SELECT name FROM singer", True),  # gold unordered
    ("SELECT name FROM singer", "SELECT name FROM singer ORDER BY name DESC", False),
    ("SELECT name FROM singer ORDER BY age", "SELECT name FROM singer ORDER BY age DESC", False),
    ("SELECT age FROM singer", "SELECT age FROM singer WHERE id > 0", True),  # NULL ages on both sides
    ("SELECT age FROM singer WHERE age IS NOT NULL", "SELECT age FROM singer", False),
    ("SELECT country FROM singer", "SELECT DISTINCT country FROM singer", False),  # duplicates count
    ("SELECT count(*) * 1.0 FROM singer", "SELECT count(*) FROM singer", True),  # 4.0 == 4
    ("SELECT name FROM singer WHERE id IN (SELECT singer_id FROM concert)",
     "SELECT DISTINCT T1.name FROM singer AS T1 JOIN concert AS T2 ON T1.id = T2.singer_id", True),
    ("SELECT nme FROM singer", "SELECT name FROM singer", False),
]


@pytest.mark.parametrize("pred, gold, same", EXEC_PAIRS)
def test_execution_match(db: str, pred: str, gold: str, same: bool) -> None:
    row = score_rows([{"prediction": pred, "response": gold, "db_path": db}])["rows"][0]
    assert row["executed"] is same


def test_score_rows(db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real_execute = scoring.execute
    def counting_execute(db_path, sql, **kwargs):
        calls.append(sql)
        return real_execute(db_path, sql, **kwargs)

    monkeypatch.setattr(scoring, "execute", counting_execute)
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
    assert [r["executed"] for r in per_row] == [True, False, False, None]
    assert [r["valid"] for r in per_row] == [True, True, False, True]
    assert per_row[2]["error"].startswith("ValueError: only SELECT")
    assert [r["hardness"] for r in per_row] == ["easy", "easy", "easy", "easy"]
    assert per_row[0]["bleu"] == pytest.approx(sacrebleu.sentence_bleu(
        "SELECT T1.name FROM singer AS T1 WHERE T1.country = 'France'", [gold]).score)
    assert calls.count(gold) == 1  # the gold result is computed once and reused

    assert summary["n"] == 4
    assert summary["exact_match"] == pytest.approx(0.5)
    assert summary["execution_accuracy"] == pytest.approx(1 / 3)  # rows with a db_path only
    assert summary["valid_sql"] == pytest.approx(0.75)
    preds = [scoring.clean_sql(r["prediction"]) for r in rows]
    golds = [r["response"] for r in rows]
    assert summary["bleu"] == pytest.approx(sacrebleu.corpus_bleu(preds, [golds]).score)
    assert summary["execution_accuracy_easy"] == pytest.approx(0.5)
    assert summary["execution_accuracy_medium"] == 0.0
    assert summary["n_easy"] == 2 and summary["n_medium"] == 1
    assert summary["exact_match_hardness_easy"] == pytest.approx(0.5)
    assert summary["n_hardness_easy"] == 4


def test_score_rows_without_databases() -> None:
    out = score_rows([{"prediction": "SELEC x", "response": "SELECT x FROM t ORDER BY x LIMIT 1"}])
    assert "execution_accuracy" not in out["summary"]
    assert out["summary"]["valid_sql"] == 0.0
    assert out["rows"][0]["error"] == "sqlglot cannot parse the prediction"
    assert out["summary"]["n_hardness_medium"] == 1
    assert score_rows([]) == {"summary": {"n": 0}, "rows": []}
    with pytest.raises(ValueError, match="row 0: missing 'response'"):
        score_rows([{"prediction": "SELECT 1"}])
