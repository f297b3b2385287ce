"""sql.official against the official scripts, which run unchanged from tests/official/ on the same pairs.

    tests/official/spider/  taoyds/test-suite-sql-eval @ e97acc5 (Apache-2.0): evaluation.py,
                            process_sql.py, exec_eval.py and parse.py (exec_eval imports it)
    tests/official/bird/    AlibabaResearch/DAMO-ConvAI @ 483554e, bird/llm/src/evaluation.py (MIT)

Their imports that requirements.txt lacks: nltk (process_sql), sqlparse (parse.py) and func_timeout
(BIRD). process_sql calls `nltk.word_tokenize`, whose sentence splitter needs punkt data, a download
we cannot make: only `process_sql.word_tokenize` is replaced, by nltk's own word tokenizer without
sentence splitting (`preserve_line=True`) when nltk is installed, else by ours. When sqlparse is
missing, `parse.remove_distinct` is ours; func_timeout, when missing, calls the function directly.
The direct comparisons of our tokenizer and our remove_distinct with nltk and sqlparse skip when
those are missing, and say so. Everything runs on copies of the fixture databases (the official
scripts open them writable).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import random
import re
import shutil
import sqlite3
import sys
import time
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sqltune.sql import official, spider_parse
from sqltune.sql.official import (
    bird_exec_match,
    bird_result_eq,
    exact_set_match,
    spider_exec_match,
    spider_order_matters,
    spider_result_eq,
)
from sqltune.sql.spider_parse import schema_from_db, schema_from_ddl

HERE = Path(__file__).parent
OFFICIAL = HERE / "official"
SPIDER = HERE / "fixtures" / "spider_mini"
HAS_NLTK = importlib.util.find_spec("nltk") is not None
HAS_SQLPARSE = importlib.util.find_spec("sqlparse") is not None

# ----------------------------------------------------------------------------- the pairs

GOLD = [(r["db_id"], r["query"]) for f in ("dev.json", "train_spider.json") for r in json.loads((SPIDER / f).read_text())]


def gold(db: str, start: str) -> str:
    """The fixture's gold query on `db` that starts with `start` (exactly one)."""
    found = [sql for d, sql in GOLD if d == db and sql.startswith(start)]
    assert len(found) == 1, (db, start, found)
    return found[0]


CS, PETS, FL = "concert_singer", "pets_1", "flight_2"
AGES = gold(CS, "SELECT avg(age)")
BY_AGE = gold(CS, "SELECT name ,  country ,  age FROM singer ORDER BY")
OLDEST_SONG = gold(CS, "SELECT song_name ,  song_release_year")
COUNTRIES = gold(CS, "SELECT DISTINCT country")
PER_COUNTRY = gold(CS, "SELECT country ,  count(*)")
PER_STADIUM = gold(CS, "SELECT T2.name ,  count(*)")
ABOVE_AVG = gold(CS, "SELECT song_name FROM singer WHERE age  >")
NO_2014 = gold(CS, "SELECT name FROM stadium EXCEPT")
BETWEEN = gold(CS, "SELECT LOCATION")
BUSIEST = gold(CS, "SELECT count(*) FROM concert WHERE stadium_id  =  (")
HAVING2 = gold(FL, "SELECT T1.Airline FROM AIRLINES AS T1 JOIN FLIGHTS AS T2 ON T1.uid  =  T2.Airline GROUP BY")
ATL_NOT_ABR = gold(FL, "SELECT T1.Airline FROM AIRLINES AS T1 JOIN FLIGHTS AS T2 ON T1.uid  =  T2.Airline WHERE")
UNUSED = gold(FL, "SELECT AirportName")
ABBREV = gold(FL, "SELECT Abbreviation")
TOP_CITY = gold(FL, "SELECT T1.City")
CAT_OR_DOG = gold(PETS, "SELECT DISTINCT T1.Fname")
PET_TYPES = gold(PETS, "SELECT count(DISTINCT")
MAX_WEIGHT = gold(PETS, "SELECT max(weight)")
NO_CAT = gold(PETS, "SELECT major")
NO_PET_AGE = gold(PETS, "SELECT avg(age)")
LIGHTEST = gold(PETS, "SELECT weight FROM pets ORDER BY")

HAND = [  # (db, gold, prediction): what a model may write, and what each metric makes of it
    # different values
    (CS, AGES, "SELECT avg(age) ,  min(age) ,  max(age) FROM singer WHERE country  =  'Netherlands'"),
    (PETS, NO_CAT, ("SELECT major , age FROM student WHERE stuid NOT IN (SELECT T1.stuid FROM student AS T1 "
     "JOIN has_pet AS T2 ON T1.stuid = T2.stuid JOIN pets AS T3 ON T3.petid = T2.petid WHERE T3.pettype = 'dog')")),
    (FL, HAVING2, HAVING2.replace(">=  2", ">=  5")),
    # column order swapped
    (CS, BY_AGE, "SELECT age , name , country FROM singer ORDER BY age DESC"),
    (CS, PER_COUNTRY, "SELECT count(*) , country FROM singer GROUP BY country"),
    (CS, "SELECT * FROM stadium", "SELECT Average, Lowest, Highest, Capacity, Name, Location, Stadium_ID FROM stadium"),
    (CS, "SELECT * FROM stadium", "SELECT Stadium_ID, Location, Name, Capacity, Highest, Average, Lowest FROM stadium"),
    # DISTINCT vs not, and a query returning duplicates
    (CS, COUNTRIES, "SELECT country FROM singer WHERE age > 20"),
    (CS, "SELECT country FROM singer WHERE age > 20", "SELECT DISTINCT country FROM singer WHERE age > 20"),
    (PETS, CAT_OR_DOG, CAT_OR_DOG.replace("DISTINCT ", "")),
    (PETS, PET_TYPES, "SELECT count(pettype) FROM pets"),
    (PETS, PET_TYPES, "SELECT count(DISTINCT petid) FROM pets"),
    (PETS, "SELECT T1.fname FROM student AS T1 JOIN has_pet AS T2 ON T1.stuid = T2.stuid",
     "SELECT DISTINCT T1.fname FROM student AS T1 JOIN has_pet AS T2 ON T1.stuid = T2.stuid"),
    # ORDER BY present / absent / reversed
    (CS, BY_AGE, "SELECT name , country , age FROM singer"),
    (CS, BY_AGE, "SELECT name , country , age FROM singer ORDER BY age ASC"),
    (CS, PER_COUNTRY, "SELECT country , count(*) FROM singer GROUP BY country ORDER BY count(*) DESC"),
    (PETS, LIGHTEST, "SELECT weight FROM pets ORDER BY pet_age DESC LIMIT 1"),
    # different LIMIT
    (CS, OLDEST_SONG, "SELECT song_name , song_release_year FROM singer ORDER BY age LIMIT 3"),
    (CS, OLDEST_SONG, "SELECT song_name , song_release_year FROM singer ORDER BY age"),
    (FL, TOP_CITY, TOP_CITY.replace("LIMIT 1", "LIMIT 2")),
    # aliases
    (CS, PER_STADIUM, ("SELECT s.name , count(*) FROM concert AS c JOIN stadium AS s ON c.stadium_id = s.stadium_id "
     "GROUP BY c.stadium_id")),
    (CS, PER_STADIUM, ("SELECT stadium.name , count(*) FROM concert JOIN stadium ON concert.stadium_id = "
     "stadium.stadium_id GROUP BY concert.stadium_id")),
    (CS, PER_STADIUM, ("SELECT s.name , count(*) FROM concert c JOIN stadium s ON c.stadium_id = s.stadium_id "
     "GROUP BY c.stadium_id")),
    (CS, "SELECT count(*) FROM singer", "SELECT count(*) AS n FROM singer"),
    # JOIN order swapped, ON sides swapped, foreign key instead of key
    (CS, PER_STADIUM, ("SELECT T2.name , count(*) FROM stadium AS T2 JOIN concert AS T1 ON T1.stadium_id = "
     "T2.stadium_id GROUP BY T1.stadium_id")),
    (CS, PER_STADIUM, ("SELECT T2.name , count(*) FROM concert AS T1 JOIN stadium AS T2 ON T2.stadium_id = "
     "T1.stadium_id GROUP BY T1.stadium_id")),
    (CS, PER_STADIUM, ("SELECT T2.name , count(*) FROM concert AS T1 JOIN stadium AS T2 ON T1.stadium_id = "
     "T2.stadium_id GROUP BY T2.stadium_id")),
    (FL, gold(FL, "SELECT count(*) FROM AIRLINES AS T1"), ("SELECT count(*) FROM FLIGHTS AS T2 JOIN AIRLINES AS T1 "
     "ON T2.Airline = T1.uid WHERE T1.Airline = 'United Airlines'")),
    # GROUP BY / HAVING
    (FL, HAVING2, HAVING2.replace(">=  2", ">  2")),
    (FL, HAVING2, HAVING2.replace(" HAVING count(*)  >=  2", "")),
    (PETS, MAX_WEIGHT, "SELECT max(weight) , petType FROM pets GROUP BY petid"),
    (PETS, MAX_WEIGHT, "SELECT max(weight) , petType FROM pets"),
    (CS, PER_COUNTRY, "SELECT country , count(*) FROM singer GROUP BY country HAVING count(*) > 0"),
    # nested queries
    (CS, ABOVE_AVG, "SELECT song_name FROM singer WHERE age > (SELECT max(age) FROM singer)"),
    (CS, ABOVE_AVG, "SELECT song_name FROM singer WHERE age > (SELECT avg(age) FROM singer WHERE age > 0)"),
    (PETS, NO_PET_AGE, "SELECT avg(age) FROM student WHERE stuid NOT IN (SELECT T1.stuid FROM has_pet AS T1)"),
    (PETS, NO_PET_AGE, ("SELECT avg(T1.age) FROM student AS T1 LEFT JOIN has_pet AS T2 ON T1.stuid = T2.stuid "
     "WHERE T2.stuid IS NULL")),
    (CS, BUSIEST, ("SELECT count(*) FROM concert WHERE stadium_id = (SELECT stadium_id FROM stadium ORDER BY "
     "capacity ASC LIMIT 1)")),
    # INTERSECT / EXCEPT / UNION
    (FL, ATL_NOT_ABR, ATL_NOT_ABR.replace("EXCEPT", "INTERSECT")),
    (FL, ATL_NOT_ABR, ATL_NOT_ABR.replace("EXCEPT", "UNION")),
    (CS, NO_2014, "SELECT name FROM stadium WHERE stadium_id NOT IN (SELECT stadium_id FROM concert WHERE year = 2014)"),
    (FL, UNUSED, ("SELECT AirportName FROM Airports WHERE AirportCode NOT IN (SELECT DestAirport FROM Flights UNION "
     "SELECT SourceAirport FROM Flights)")),
    (FL, UNUSED, ("SELECT AirportName FROM Airports EXCEPT SELECT T1.AirportName FROM Airports AS T1 JOIN Flights "
     "AS T2 ON T1.AirportCode = T2.SourceAirport")),
    # wrong column, wrong table
    (FL, ABBREV, "SELECT Country FROM AIRLINES WHERE Airline  =  'JetBlue Airways'"),
    (CS, "SELECT count(*) FROM singer", "SELECT count(*) FROM stadium"),
    (FL, "SELECT count(*) FROM AIRLINES", "SELECT count(*) FROM AIRPORTS"),
    (FL, "SELECT count(*) FROM AIRLINES", "SELECT count(*) FROM airline"),
    (CS, "SELECT count(*) FROM singer", "SELECT count(singer_name) FROM singer"),
    # syntax errors and other unreadable text
    (CS, "SELECT count(*) FROM singer", "SELEC count(*) FROM singer"),
    (CS, "SELECT count(*) FROM singer", "SELECT count(* FROM singer"),
    (CS, AGES, "SELECT avg(age) FROM singer WHERE country = 'France"),
    (CS, "SELECT count(*) FROM singer", "SELECT count(*) FROM singer WHERE"),
    (CS, "SELECT count(*) FROM singer", "How many singers are there?"),
    # case, spacing, punctuation
    (CS, "SELECT count(*) FROM singer", "select COUNT(*) from SINGER"),
    (CS, AGES, "SELECT AVG(Age), MIN(Age), MAX(Age) FROM Singer WHERE Country = 'france'"),
    (FL, HAVING2, HAVING2.replace(">=", "> =")),
    (CS, "SELECT count(*) FROM singer", "SELECT count(*) FROM singer;"),
    (CS, "SELECT count(*) FROM singer", "SELECT count(*) FROM singer; SELECT 1"),
    (CS, "SELECT count(*) FROM singer", "SELECT count(*) FROM singer WHERE name != 'value'"),
    # same rows, other SQL
    (CS, BETWEEN, "SELECT location , name FROM stadium WHERE capacity >= 5000 AND capacity <= 12000"),
    (CS, "SELECT name FROM singer WHERE age > 20 AND age < 40", "SELECT name FROM singer WHERE age < 40 AND age > 20"),
    (CS, "SELECT name FROM singer WHERE age > 20 AND age < 40", "SELECT name FROM singer WHERE age > 20 OR age < 40"),
    (CS, "SELECT avg(age) FROM singer", "SELECT sum(age) * 1.0 / count(*) FROM singer"),
    (CS, "SELECT name FROM singer WHERE age > 40", "SELECT name FROM singer WHERE age > 40 ORDER BY name"),
    (FL, gold(FL, "SELECT count(*) FROM FLIGHTS"), "SELECT count(*) FROM flights WHERE sourceairport LIKE 'ATL'"),
]
PAIRS = [(db, sql, sql) for db, sql in GOLD] + HAND  # every gold query against itself, then HAND


def db_file(root: Path, db: str) -> Path:
    return root / db / f"{db}.sqlite"


# ----------------------------------------------------------------------------- the official scripts


def _load(name: str, path: Path) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # the next script imports it by this name
    spec.loader.exec_module(module)
    return module


def _stub(name: str, **attrs: Any) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__dict__.update(attrs)
    sys.modules[name] = module
    return module


@pytest.fixture(scope="module")
def scripts() -> types.SimpleNamespace:
    """The official modules, imported under private names; sys.modules is restored afterwards."""
    names = ("nltk", "parse", "process_sql", "exec_eval", "func_timeout", "official_spider_evaluation",
             "official_bird_evaluation")
    saved = {n: sys.modules.get(n) for n in names}
    try:
        if not HAS_NLTK:
            _stub("nltk", word_tokenize=spider_parse._word_tokenize)
        if HAS_SQLPARSE:
            _load("parse", OFFICIAL / "spider" / "parse.py")
        else:
            _stub("parse", remove_distinct=official._remove_distinct, get_all_preds_for_execution=None)
        if importlib.util.find_spec("func_timeout") is None:
            _stub("func_timeout", func_timeout=lambda timeout, func, args=(): func(*args),
                  FunctionTimedOut=type("FunctionTimedOut", (Exception,), {}))
        process_sql = _load("process_sql", OFFICIAL / "spider" / "process_sql.py")
        exec_eval = _load("exec_eval", OFFICIAL / "spider" / "exec_eval.py")
        evaluation = _load("official_spider_evaluation", OFFICIAL / "spider" / "evaluation.py")
        bird = _load("official_bird_evaluation", OFFICIAL / "bird" / "evaluation.py")
    finally:
        for n, module in saved.items():
            if module is None:
                sys.modules.pop(n, None)
            else:
                sys.modules[n] = module
    if HAS_NLTK:  # punkt (sentence splitting) needs a download; the word tokenizer is nltk's own
        import nltk

        process_sql.word_tokenize = lambda text: nltk.word_tokenize(text, preserve_line=True)
    return types.SimpleNamespace(process_sql=process_sql, exec_eval=exec_eval, evaluation=evaluation, bird=bird)


@pytest.fixture(scope="module")
def dbs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("spider") / "database"
    shutil.copytree(SPIDER / "database", root)
    return root


def official_exact(s: types.SimpleNamespace, db: Path, db_id: str, pred: str, gold_sql: str) -> bool:
    """evaluate()'s exact-match steps for one pair (evaluation.py, etype 'match')."""
    ev, ps = s.evaluation, s.process_sql
    kmap = ev.build_foreign_key_map_from_json(str(SPIDER / "tables.json"))[db_id]
    schema = ps.Schema(ps.get_schema(str(db)))
    g_sql = ps.get_sql(schema, gold_sql)
    p_str = pred.replace("value", "1")
    try:
        p_sql = ps.get_sql(schema, p_str)
    except Exception:  # noqa: BLE001 - as evaluate(): an empty query stands in
        p_sql = {"except": None, "from": {"conds": [], "table_units": []}, "groupBy": [], "having": [],
                 "intersect": None, "limit": None, "orderBy": [], "select": [False, []], "union": None, "where": []}
    g_valid = ev.build_valid_col_units(g_sql["from"]["table_units"], schema)
    g_sql = ev.rebuild_sql_col(g_valid, ev.rebuild_sql_val(g_sql), kmap)
    p_valid = ev.build_valid_col_units(p_sql["from"]["table_units"], schema)
    p_sql = ev.rebuild_sql_col(p_valid, ev.rebuild_sql_val(p_sql), kmap)
    return bool(ev.Evaluator().eval_exact_match(p_sql, g_sql))


def official_exec(s: types.SimpleNamespace, db: Path, pred: str, gold_sql: str, keep_distinct: bool) -> bool:
    """evaluate()'s execution steps for one pair: the 'value' replace, then eval_exec_match."""
    p_str = pred.replace("value", "1")
    return bool(s.exec_eval.eval_exec_match(db=str(db), p_str=p_str, g_str=gold_sql, plug_value=False,
                                            keep_distinct=keep_distinct, progress_bar_for_each_datapoint=False))


def official_bird(s: types.SimpleNamespace, db: Path, pred: str, gold_sql: str) -> bool:
    return bool(s.bird.execute_model(pred, gold_sql, str(db), 0, 30.0)["res"])


# ----------------------------------------------------------------------------- ours == theirs, pair by pair


def test_every_pair_scores_as_the_official_scripts_score_it(scripts: types.SimpleNamespace, dbs: Path) -> None:
    metrics: dict[str, tuple[Callable[..., bool], Callable[..., bool]]] = {
        "spider_exec": (lambda db, d, p, g: spider_exec_match(db, p, g),
                        lambda db, d, p, g: official_exec(scripts, db, p, g, keep_distinct=False)),
        "spider_exec_keep_distinct": (lambda db, d, p, g: spider_exec_match(db, p, g, keep_distinct=True),
                                      lambda db, d, p, g: official_exec(scripts, db, p, g, keep_distinct=True)),
        "exact_set_match": (lambda db, d, p, g: exact_set_match(p, g, schema_from_db(db)),
                            lambda db, d, p, g: official_exact(scripts, db, d, p, g)),
        "bird_exec": (lambda db, d, p, g: bird_exec_match(db, p, g),
                      lambda db, d, p, g: official_bird(scripts, db, p, g)),
    }
    disagreements, hits = [], dict.fromkeys(metrics, 0)
    started = time.monotonic()
    for db_id, gold_sql, pred in PAIRS:
        db = db_file(dbs, db_id)
        for name, (ours, theirs) in metrics.items():
            mine, official_answer = ours(db, db_id, pred, gold_sql), theirs(db, db_id, pred, gold_sql)
            hits[name] += official_answer
            if mine != official_answer:
                disagreements.append(f"{name}: ours {mine}, official {official_answer}\n  gold {gold_sql}\n  pred {pred}")
    print(f"\n{len(PAIRS)} pairs in {time.monotonic() - started:.1f} s; official hits: {hits}")
    assert not disagreements, f"{len(disagreements)} disagreements:\n" + "\n".join(disagreements)
    # the pairs must tell the metrics apart, or agreeing would prove little
    assert all(len(GOLD) < n < len(PAIRS) for n in hits.values()), hits


REWRITES: list[Callable[[str, random.Random], str]] = [  # what a model changes in a query
    lambda q, r: re.sub(r"'[^']*'", "'zz'", q), lambda q, r: re.sub(r"\b\d+\b", str(r.randint(0, 30)), q),
    lambda q, r: q.replace("T1", "TX").replace("T2", "T1").replace("TX", "T2"), lambda q, r: q.upper(),
    lambda q, r: q.lower(), lambda q, r: q.replace("SELECT ", "SELECT DISTINCT ", 1),
    lambda q, r: q.replace("DISTINCT ", ""), lambda q, r: q.replace(" DESC", " ASC"), lambda q, r: q + ";",
    lambda q, r: re.sub(r"SELECT (\S+) , (\S+) ", r"SELECT \2 , \1 ", q), lambda q, r: q.replace("'", '"'),
    lambda q, r: re.sub(r"WHERE (.+?) AND (.+?)( GROUP| ORDER|$)", r"WHERE \2 AND \1\3", q),
    lambda q, r: q.replace(" AS T1", "").replace("T1.", ""),
]
WORDS = ["DISTINCT", "(", ")", ",", ";", "ORDER BY", "GROUP BY", "LIMIT 2", "AND", "OR", "NOT", "=", ">", "!=",
         "count(*)", "*", "T1", "AS", "JOIN", "ON", "desc", "'x'", "3", "IN", "LIKE", "UNION", "EXCEPT", "SELECT",
         "WHERE", "HAVING", "max(age)", "value"]


def mutate(sql: str, rnd: random.Random) -> str:
    """1-3 rewrites, or 1-3 token edits (drop, insert, swap, replace)."""
    if rnd.random() < 0.5:
        for _ in range(rnd.randint(1, 3)):
            sql = rnd.choice(REWRITES)(sql, rnd)
        return sql
    toks = sql.split()
    for _ in range(rnd.randint(1, 3)):
        i, j, op = rnd.randrange(len(toks)), rnd.randrange(len(toks)), rnd.random()
        if op < 0.3 and len(toks) > 1:
            toks.pop(i)
        elif op < 0.5:
            toks.insert(i, rnd.choice(WORDS + toks))
        elif op < 0.75:
            toks[i], toks[j] = toks[j], toks[i]
        else:
            toks[i] = rnd.choice(WORDS + toks)
    return " ".join(toks)


def test_mutated_pairs_score_as_the_official_scripts_score_them(scripts: types.SimpleNamespace, dbs: Path) -> None:
    """800 seeded mutations of the pairs above: a wider net than hand-written cases."""
    rnd, disagreements, hits = random.Random(0), [], [0, 0, 0, 0]
    for _ in range(800):
        db_id, gold_sql, pred = rnd.choice(PAIRS)
        pred = mutate(pred, rnd)
        db = db_file(dbs, db_id)
        answers = [
            (exact_set_match(pred, gold_sql, schema_from_db(db)), official_exact(scripts, db, db_id, pred, gold_sql)),
            (spider_exec_match(db, pred, gold_sql), official_exec(scripts, db, pred, gold_sql, keep_distinct=False)),
            (spider_exec_match(db, pred, gold_sql, keep_distinct=True),
             official_exec(scripts, db, pred, gold_sql, keep_distinct=True)),
            (bird_exec_match(db, pred, gold_sql), official_bird(scripts, db, pred, gold_sql)),
        ]
        hits = [h + theirs for h, (_, theirs) in zip(hits, answers)]
        if any(ours != theirs for ours, theirs in answers):
            disagreements.append(f"{answers}\n  gold {gold_sql}\n  pred {pred}")
    assert not disagreements, f"{len(disagreements)} disagreements:\n" + "\n".join(disagreements)
    assert all(100 < h < 700 for h in hits), hits


# ----------------------------------------------------------------------------- the pieces


def random_rows(rnd: random.Random) -> tuple[list[tuple], list[tuple], bool]:
    ncols, nrows = rnd.randint(1, 5), rnd.randint(0, 6)
    values = [0, 1, 1.0, 2, "a", "b", None, 2.5]
    gold_rows = [tuple(rnd.choice(values) for _ in range(ncols)) for _ in range(nrows)]
    pred = [list(r) for r in gold_rows]
    perm = rnd.sample(range(ncols), ncols)
    pred = [tuple(r[j] for j in perm) for r in pred] if rnd.random() < 0.5 else [tuple(r) for r in pred]
    if rnd.random() < 0.5:
        rnd.shuffle(pred)
    if pred and rnd.random() < 0.3:  # change, drop or duplicate one row
        i = rnd.randrange(len(pred))
        kind = rnd.choice(("change", "drop", "dup"))
        if kind == "change":
            pred[i] = tuple(rnd.choice(values) for _ in range(ncols))
        elif kind == "drop":
            pred.pop(i)
        else:
            pred.append(pred[i])
    return gold_rows, pred, rnd.random() < 0.5


def test_result_eq_matches_the_official_on_random_tables(scripts: types.SimpleNamespace) -> None:
    rnd = random.Random(0)
    for _ in range(3000):
        gold_rows, pred, ordered = random_rows(rnd)
        expected = scripts.exec_eval.result_eq(gold_rows, pred, order_matters=ordered)
        assert spider_result_eq(gold_rows, pred, ordered) == expected, (gold_rows, pred, ordered)
        assert bird_result_eq(gold_rows, pred) == (set(pred) == set(gold_rows))


def test_result_eq_on_hand_made_tables() -> None:
    assert spider_result_eq([(1, "a"), (2, "b")], [("b", 2), ("a", 1)], order_matters=False)
    assert not spider_result_eq([(1, "a"), (2, "b")], [("b", 2), ("a", 1)], order_matters=True)
    assert not spider_result_eq([(1,), (1,)], [(1,)], order_matters=False)  # bags: duplicates count
    assert bird_result_eq([(1,), (1,)], [(1,)])  # sets: they do not
    assert spider_result_eq([], [], order_matters=True) and bird_result_eq([], [])
    assert not bird_result_eq([(1, "a")], [("a", 1)])  # BIRD keeps the column order
    assert spider_order_matters("SELECT a FROM t ORDER BY a") and not spider_order_matters("SELECT a FROM t")
    assert spider_order_matters("SELECT a FROM t WHERE b = 'order by'")  # a text match, as in exec_eval


SQL_TEXTS = [sql for _, g, p in PAIRS for sql in (g, p)] + [
    "SELECT count(DISTINCT x) FROM t", "SELECT DISTINCT(a) FROM t", "SELECT a.distinct FROM t",
    "SELECT \"distinct\", 'distinct', [distinct], `distinct` FROM t", "SELECT distinct_col FROM t",
    "SELECT 1; SELECT DISTINCT 2", "SELECT 1;  -- c\n SELECT 2", "SELECT (1; SELECT 2",
    "SELECT CASE WHEN a THEN 1 END FROM t; SELECT 2", "SELECT a FROM t -- distinct\n WHERE DISTINCT",
    "SELECT /* distinct; */ DISTINCT a FROM t", "SELECT x::distinct, ?distinct, :distinct, @distinct FROM t",
    "SELECT 1e5distinct, 0xdistinct, \\distinct FROM t", "SELECT 'it''s; distinct' ; SELECT 2",
    "SELECT a FROM t WHERE b = 'x\\' distinct'", "SELECT DiStInCt a FROM t;;", "Select distinct\tname from t",
]


@pytest.mark.skipif(not HAS_SQLPARSE, reason="sqlparse is not installed (pip install sqlparse to compare)")
def test_remove_distinct_equals_sqlparse(scripts: types.SimpleNamespace) -> None:
    reference = scripts.exec_eval.remove_distinct
    assert reference.__module__ == "parse" and "sqlparse" in reference.__globals__
    for sql in SQL_TEXTS:
        assert official._remove_distinct(sql) == reference(sql), sql


def quote_free(sql: str) -> str:
    """What process_sql.tokenize hands word_tokenize: quoted values swapped for placeholders."""
    sql = sql.replace("'", '"')
    quotes = [i for i, ch in enumerate(sql) if ch == '"']
    for i in range(len(quotes) - 1 - len(quotes) % 2, 0, -2):
        sql = sql[:quotes[i - 1]] + f"__val_{quotes[i - 1]}_{quotes[i]}__" + sql[quotes[i] + 1:]
    return sql.replace('"', "")


@pytest.mark.skipif(not HAS_NLTK, reason="nltk is not installed (pip install nltk to compare)")
def test_word_tokenize_equals_nltk_without_sentence_splitting() -> None:
    from nltk.tokenize import NLTKWordTokenizer

    nltk_tokenize = NLTKWordTokenizer().tokenize  # what word_tokenize(text, preserve_line=True) runs
    texts = [quote_free(sql) for sql in SQL_TEXTS]
    rnd = random.Random(0)
    alphabet = list("abcT1 ._,:;()[]{}<>=!?*-+/%$#@&`«»“”‘’„\u2013\t\n0123456789") + [
        "cannot", "gonna", "wanna ", "gimme", "lemme", "gotta", "...", "--", "``", "SELECT", "order by"]
    texts += ["".join(rnd.choice(alphabet) for _ in range(rnd.randint(0, 30))) for _ in range(3000)]
    for text in texts:
        assert spider_parse._word_tokenize(text) == nltk_tokenize(text), text


def test_official_tokenize_is_ours(scripts: types.SimpleNamespace) -> None:
    for sql in SQL_TEXTS:
        try:
            expected = scripts.process_sql.tokenize(sql)
        except AssertionError:  # odd number of quotes
            with pytest.raises(ValueError, match="Unexpected quote"):
                spider_parse._tokenize(sql)
            continue
        assert spider_parse._tokenize(sql) == expected, sql


def test_schema_from_db_has_the_official_schema_and_foreign_keys(scripts: types.SimpleNamespace) -> None:
    kmaps = scripts.evaluation.build_foreign_key_map_from_json(str(SPIDER / "tables.json"))
    for db_id in (CS, PETS, FL):
        schema = schema_from_db(db_file(SPIDER / "database", db_id))
        official_schema = scripts.process_sql.Schema(scripts.process_sql.get_schema(str(db_file(SPIDER / "database", db_id))))
        assert schema.tables == official_schema.schema
        assert schema.id_map == official_schema.idMap
        assert schema.foreign_keys == kmaps[db_id], db_id
    with pytest.raises(ValueError, match="no such database file"):
        schema_from_db(SPIDER / "nowhere.sqlite")


MYSQL_DDL = """
CREATE TABLE `Stadium` (
  `Stadium_ID` int(11) NOT NULL AUTO_INCREMENT,
  `Name` varchar(255) COLLATE utf8mb4_unicode_ci DEFAULT NULL,
  `Capacity` int unsigned DEFAULT '0',
  PRIMARY KEY (`Stadium_ID`)
) ENGINE=InnoDB AUTO_INCREMENT=7 DEFAULT CHARSET=utf8mb4;
CREATE TABLE `concert` (
  `concert_ID` int NOT NULL,
  `Stadium_ID` int DEFAULT NULL,
  `Year` year(4),
  PRIMARY KEY (`concert_ID`),
  KEY `fk_stadium` (`Stadium_ID`),
  CONSTRAINT `fk_stadium` FOREIGN KEY (`Stadium_ID`) REFERENCES `Stadium` (`Stadium_ID`)
) ENGINE=InnoDB;
"""


def test_schema_from_ddl_reads_sqlite_and_mysql_text(dbs: Path, tmp_path: Path) -> None:
    db = db_file(dbs, CS)
    with sqlite3.connect(db) as conn:
        ddl = "\n".join(r[0] + ";" for r in conn.execute("SELECT sql FROM sqlite_master WHERE type = 'table'"))
    assert schema_from_ddl(ddl) == schema_from_db(db)  # the same reader on the same schema
    assert schema_from_ddl(ddl) is schema_from_ddl(ddl)  # cached

    mysql = schema_from_ddl(MYSQL_DDL)
    assert mysql.tables == {"stadium": ["stadium_id", "name", "capacity"],
                            "concert": ["concert_id", "stadium_id", "year"]}
    assert mysql.foreign_keys == {"__stadium.stadium_id__": "__stadium.stadium_id__",
                                  "__concert.stadium_id__": "__stadium.stadium_id__"}
    pred = "SELECT T1.name , count(*) FROM concert AS T2 JOIN stadium AS T1 ON T2.stadium_id = T1.stadium_id GROUP BY T2.stadium_id"
    gold_sql = "SELECT T2.name , count(*) FROM concert AS T1 JOIN stadium AS T2 ON T1.stadium_id = T2.stadium_id GROUP BY T1.stadium_id"
    assert exact_set_match(pred, gold_sql, mysql)

    clinton = schema_from_ddl("CREATE TABLE table_name_61 (nationality VARCHAR, player VARCHAR)")
    assert exact_set_match("SELECT nationality FROM table_name_61 WHERE player = 'x'",
                           'SELECT nationality FROM table_name_61 WHERE player = "Bob"', clinton)
    with pytest.raises(ValueError, match="cannot build a schema from 'CREATE TABLE broken .*no SQL dialect reads it"):
        schema_from_ddl("CREATE TABLE broken (a int ENGINE=InnoDB")
    with pytest.raises(ValueError, match="no CREATE TABLE statement"):
        schema_from_ddl("Show me the singers.")
    hostile = f"CREATE TABLE t (a int); ATTACH DATABASE '{tmp_path / 'x.db'}' AS x; VACUUM INTO '{tmp_path / 'y.db'}'"
    with contextlib.suppress(ValueError):  # SQLite denies both; then sqlglot cannot read ATTACH
        schema_from_ddl(hostile)
    assert not list(tmp_path.iterdir())


def test_bad_input_is_a_miss_or_a_clear_error(dbs: Path) -> None:
    db = db_file(dbs, CS)
    schema = schema_from_db(db)
    assert not exact_set_match("SELECT nonsense FROM nowhere", "SELECT count(*) FROM singer", schema)
    assert not exact_set_match("", "SELECT count(*) FROM singer", schema)
    with pytest.raises(ValueError, match="outside Spider's grammar"):
        exact_set_match("SELECT 1", "SELECT CAST(age AS TEXT) FROM singer", schema)
    assert not spider_exec_match(db, "", "SELECT count(*) FROM singer")
    with pytest.raises(ValueError, match="gold query fails"):
        spider_exec_match(db, "SELECT 1", "SELECT nope FROM singer")
    assert not bird_exec_match(db, "SELECT 1", "SELECT nope FROM singer")  # BIRD: a miss
    assert not spider_exec_match(db, "DELETE FROM singer", "SELECT count(*) FROM singer WHERE age < 0")
