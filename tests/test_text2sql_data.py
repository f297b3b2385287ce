"""text2sql-data sets as a source (text2sql-data:PATH), and several sources mixed in one run."""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
from collections import Counter
from pathlib import Path

import pytest

import text2sql_fixture
from conftest import read_metrics, tiny_config, write_config
from sqltune import cli, config
from sqltune.config import DataSettings
from sqltune.data import splits as data_splits
from sqltune.data import text2sql_data as t2s
from sqltune.errors import DataError
from sqltune.sql import fuzz, scoring


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return text2sql_fixture.write(tmp_path / "text2sql-data" / "data")


def test_variables_are_filled_as_sql_literals() -> None:
    values = {"name0": "o'brien's", "name1": "x", "number0": "519", "city_name0": "san francisco"}
    sql = ('SELECT * FROM T WHERE T.NAME = "name0" AND T.N = number0 AND T.C = city_name0 '
           'AND T.D LIKE "%name1%" AND T.NAME10 = 1 ;')
    assert t2s.fill_sql(sql, values) == (
        "SELECT * FROM T WHERE T.NAME = 'o''brien''s' AND T.N = 519 AND T.C = 'san francisco' "
        "AND T.D LIKE '%x%' AND T.NAME10 = 1 ;")
    assert t2s.fill_question("is name0 in city_name0 , name10 ?", values) == "is o'brien's in san francisco , name10 ?"


def test_schema_csv_in_both_layouts_is_create_table_text_with_keys(folder: Path) -> None:
    rest = t2s.create_tables(t2s.read_schema_csv(folder / "minirest-schema.csv"))
    assert "RATING decimal(1,1)" in rest and "PRIMARY KEY (ID)" in rest
    assert "FOREIGN KEY (RESTAURANT_ID) REFERENCES RESTAURANT(ID)" in rest  # <table>_ID -> that table's ID
    assert "FOREIGN KEY (CITY_NAME) REFERENCES GEOGRAPHIC(CITY_NAME)" in rest  # another table's one-column key
    adv = t2s.create_tables(t2s.read_schema_csv(folder / "miniadv-schema.csv"))
    assert "COURSE_ID int(11),\n  NAME varchar(255)" in adv and "PRIMARY KEY (OFFERING_ID)" in adv
    assert "FOREIGN KEY (COURSE_ID) REFERENCES COURSE(COURSE_ID)" in adv and "MUL" not in adv
    for text in (rest, adv):  # valid SQLite, and what the fuzzer reads
        sqlite3.connect(":memory:").executescript(text)
        assert fuzz.parse_schema(text) is not None
    bad = folder / "bad-schema.csv"
    bad.write_text("Name, Thing\nA, b\n")
    with pytest.raises(DataError, match="bad-schema.csv: expected the header"):
        t2s.read_schema_csv(bad)


def test_rows_with_a_database_run_on_a_reconciled_copy(folder: Path, tmp_path: Path) -> None:
    db = folder / "minirest-db.added-in-2020.sqlite"
    before = hashlib.sha256(db.read_bytes()).hexdigest()
    rows, dropped = t2s.read(f"text2sql-data:{folder / 'minirest.json'}", tmp_path / "cache")
    assert len(rows) == 30 and len(dropped) == 1
    assert "minirest.json entry 9 sentence 1: no gold query runs" in dropped[0] and "stars" in dropped[0]
    assert hashlib.sha256(db.read_bytes()).hexdigest() == before  # the user's file is never written
    copy = Path(rows[0]["db_path"])
    assert copy.parent == tmp_path / "cache" / "text2sql-data"
    assert [r[1] for r in sqlite3.connect(copy).execute("PRAGMA table_info(RESTAURANT)")][0] == "ID"
    first = rows[0]
    assert first["instruction"] == "how many jamaican restaurants are there in san francisco ?"
    assert "= 'san francisco'" in first["response"] and first["db_id"] == "minirest"
    quoted = [r for r in rows if r["instruction"] == "where is o'brien's ?"][0]
    assert len(quoted["golds"]) == 2 and "'o''brien''s'" in quoted["response"]
    assert [r["instruction"] for r in rows].count("where is la taqueria ?") == 1  # empty value: the example
    for row in rows:  # every gold is right on the database, and wrong SQL is not
        scored = scoring.score_one({**row, "prediction": row["response"]})
        assert scored["executed"] is True, row
    wrong = scoring.score_one({**quoted, "prediction": quoted["response"].replace("HOUSE_NUMBER", "STREET_NAME")})
    assert wrong["executed"] is False


def test_without_a_database_one_line_says_so_and_fuzz_scores(folder: Path, tmp_path: Path,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        rows, dropped = t2s.read(f"text2sql-data:{folder / 'miniadv.json'}", tmp_path / "cache")
    lines = [r.getMessage() for r in caplog.records if "miniadv" in r.getMessage()]
    assert len(lines) == 1 and "no miniadv-db*.sqlite beside it" in lines[0] and "fuzzed execution" in lines[0]
    assert len(rows) == 20 and len(dropped) == 4 and all("labelled 'exclude'" in d for d in dropped)
    assert all("db_path" not in r for r in rows)
    assert rows[0]["response"].endswith("COURSEalias0.DEPARTMENT = 'EECS' AND COURSEalias0.NUMBER = 400 ;")
    right = scoring.score_one({**rows[0], "prediction": rows[0]["response"]}, fuzz_dir=tmp_path / "fuzz")
    wrong = scoring.score_one({**rows[0], "prediction": rows[0]["response"].replace("= 400", "= 401")},
                              fuzz_dir=tmp_path / "fuzz")
    assert right["executed_fuzz"] is True and wrong["executed_fuzz"] is False


def test_question_and_query_splits_and_folds(folder: Path, tmp_path: Path) -> None:
    rows, _ = t2s.read(f"text2sql-data:{folder / 'minirest.json'}", tmp_path / "cache")
    by_q = t2s.splits(rows, "question", 0)
    assert {k: len(v) for k, v in by_q.items()} == {
        "train": sum(r["question_split"] not in "01" for r in rows),
        "valid": sum(r["question_split"] == "1" for r in rows),
        "test": sum(r["question_split"] == "0" for r in rows)}
    assert all(r["question_split"] == "3" for r in t2s.splits(rows, "question", 3)["test"])
    assert all(r["question_split"] == "0" for r in t2s.splits(rows, "question", 9)["valid"])  # the next fold, mod 10
    by_query = t2s.splits(rows, "query", 5)
    assert {r["query_split"] for r in by_query["test"]} == {"5"} and {r["query_split"] for r in by_query["valid"]} == {"6"}
    with pytest.raises(DataError, match="unknown split label 'holdout'"):
        t2s.split_of("holdout", 0)


def test_load_splits_by_question(folder: Path, tmp_path: Path) -> None:
    cfg = DataSettings(source=f"text2sql-data:{folder / 'miniadv.json'}", split_by="question", subset="all",
                     cache_dir=str(tmp_path / "cache"))
    splits = data_splits.load_splits(cfg)
    assert {k: len(v) for k, v in splits.items()} == {"train": 10, "valid": 5, "test": 5}
    assert Counter(splits["test"]["question_split"]) == {"test": 5}


def test_several_sources_with_caps_weights_and_a_held_out_source(folder: Path, tmp_path: Path) -> None:
    rest, adv = f"text2sql-data:{folder / 'minirest.json'}", f"text2sql-data:{folder / 'miniadv.json'}"
    base = {"split_by": "question", "subset": "all", "cache_dir": str(tmp_path / "cache")}
    mixed = data_splits.load_splits(DataSettings(source=[rest, {"source": adv, "weight": 2}], **base))
    alone = {s: data_splits.load_splits(DataSettings(source=s, **base)) for s in (rest, adv)}
    assert Counter(mixed["train"]["db_id"]) == {"minirest": len(alone[rest]["train"]), "miniadv": 2 * len(alone[adv]["train"])}
    assert len(mixed["test"]) == len(alone[rest]["test"]) + len(alone[adv]["test"])
    assert set(mixed["train"].column_names) >= {"db_path", "golds", "question_split"}
    assert sum(p is None for p in mixed["train"]["db_path"]) == 2 * len(alone[adv]["train"])  # no db: None, not dropped

    capped = data_splits.load_splits(DataSettings(source=[{"source": rest, "max_rows": 3}, adv], **base))
    assert Counter(capped["train"]["db_id"])["minirest"] == 3
    half = data_splits.load_splits(DataSettings(source=[rest, {"source": adv, "weight": 0.5}], **base))
    assert Counter(half["train"]["db_id"])["miniadv"] == round(0.5 * len(alone[adv]["train"]))

    out = data_splits.load_splits(DataSettings(source=[rest, {"source": adv, "split": "test"}], **base))
    assert "miniadv" not in out["train"]["db_id"] and Counter(out["test"]["db_id"])["miniadv"] == 20


def test_split_by_db_over_a_list_holds_whole_databases_out(folder: Path, tmp_path: Path) -> None:
    files = tmp_path / "more"
    files.mkdir()
    for name in ("a", "b", "c"):  # three more databases, from plain files with a db_id each
        (files / f"{name}.jsonl").write_text("\n".join(
            f'{{"instruction": "q {i} of {name}", "input": "CREATE TABLE {name} (x INT)", '
            f'"response": "SELECT x FROM {name} WHERE x = {i}", "db_id": "{name}"}}' for i in range(10)))
    src = [f"text2sql-data:{folder / 'minirest.json'}", f"text2sql-data:{folder / 'miniadv.json'}",
           *(str(files / f"{n}.jsonl") for n in "abc")]
    out = data_splits.load_splits(DataSettings(source=src, split_by="db", subset="all", cache_dir=str(tmp_path / "c")))
    dbs = {k: set(v["db_id"]) for k, v in out.items()}
    assert len(dbs["valid"]) == len(dbs["test"]) == 1 and len(dbs["train"]) == 3
    assert not (dbs["train"] & dbs["valid"]) and not (dbs["train"] & dbs["test"]) and not (dbs["valid"] & dbs["test"])


def test_config_problems_name_the_field(folder: Path, tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path, data={"source": "synthetic", "split_by": "query"})
    with pytest.raises(config.ConfigError, match="split_by: query is a text2sql-data set's own split"):
        config.build(cfg)
    cfg = tiny_config(tmp_path, data={"source": ["synthetic", f"text2sql-data:{folder / 'nope.json'}"]})
    with pytest.raises(config.ConfigError, match=r"data.source\[1\]: no such file .*nope.json"):
        config.build(cfg)
    cfg = tiny_config(tmp_path, data={"source": [{"source": "synthetic", "weight": 0}]})
    with pytest.raises(config.ConfigError, match=r"data.source.0.*weight: input should be greater than 0"):
        config.build(cfg)


def test_train_and_evaluate_on_a_text2sql_data_set(folder: Path, tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path, data={"source": f"text2sql-data:{folder / 'minirest.json'}", "split_by": "question",
                                      "subset": "all", "cache_dir": str(tmp_path / "cache")},
                      format={"max_length": 512}, eval={"generate_samples": 3, "max_new_tokens": 8})
    cfg["hyperparameters"]["training_args"].update(max_steps=2, eval_steps=2, save_steps=2)
    assert cli.main(["train", str(write_config(tmp_path, cfg))]) == 0
    run = tmp_path / "run"
    out = tmp_path / "preds.jsonl"
    evals = [m for m in read_metrics(run) if m["group"] == "validation"]
    assert "eval_execution_accuracy" in evals[-1] and "eval_fuzz_execution_accuracy" not in evals[-1]  # on its database
    assert cli.main(["evaluate", "--checkpoint", str(run), "--data", "test", "--output", str(out)]) == 0
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) == len(data_splits.load_splits(DataSettings(**cfg["hyperparameters"]["data"]))["test"])
    assert all(line["executed"] is not None and line["executed_fuzz"] is None for line in lines)  # on the database


def test_examples_are_the_nearest_training_questions_never_the_row_itself() -> None:
    from sqltune.data import examples

    pool = [{"instruction": q, "response": f"SELECT {i}", "db_id": db} for i, (q, db) in enumerate([
        ("how many restaurants in palo alto", "r"), ("how many restaurants in fresno", "r"),
        ("where is la taqueria", "r"), ("how many restaurants in fresno", "other")])]
    got = examples.attach(pool, pool, 2, rows_are_pool=True)
    assert [e["sql"] for e in got[0]["examples"]] == ["SELECT 2", "SELECT 1"]  # same database first, closest last
    assert all({"question": r["instruction"], "sql": r["response"]} not in r2["examples"] for r, r2 in zip(pool, got))
    [asked] = examples.attach([{"instruction": "where is la taqueria ?", "db_id": "r"}], pool, 1)
    assert asked["examples"] == [{"question": "where is la taqueria", "sql": "SELECT 2"}]
    [alone] = examples.attach([{"instruction": "how many restaurants in fresno", "db_id": "new"}], pool, 1)
    assert alone["examples"][0]["question"] == "how many restaurants in fresno"  # no such database: any


def test_examples_in_the_prompt_for_training_and_evaluation(folder: Path, tmp_path: Path) -> None:
    from sqltune import prompts

    row = {"instruction": "q?", "input": "CREATE TABLE t (a INT);", "response": "SELECT a FROM t",
           "examples": [{"question": "e?", "sql": "SELECT 1"}]}
    assert prompts.user_text(row, "reference") == ("Task: q?\nSQL table: CREATE TABLE t (a INT);\nExample task: e?\n"
                                               "Example SQL query: SELECT 1\nSQL query: ")
    assert prompts.user_text(row) == ("SQL table: CREATE TABLE t (a INT);\nExample task: e?\n"
                                  "Example SQL query: SELECT 1\nTask: q?\nSQL query: ")
    cfg = tiny_config(tmp_path, data={"source": f"text2sql-data:{folder / 'minirest.json'}", "split_by": "question",
                                      "subset": "all", "cache_dir": str(tmp_path / "cache")},
                      format={"max_length": 512, "examples": 2, "compact_sql": True})
    cfg["hyperparameters"]["training_args"].update(max_steps=1, eval_strategy="no", save_steps=1)
    assert cli.main(["train", str(write_config(tmp_path, cfg))]) == 0
    out = tmp_path / "preds.jsonl"
    assert cli.main(["evaluate", "--checkpoint", str(tmp_path / "run"), "--data", "test", "--output", str(out),
                     "--max-new-tokens", "4"]) == 0
    splits = data_splits.load_splits(DataSettings(**cfg["hyperparameters"]["data"]))
    train_questions = set(splits["train"]["instruction"])
    from sqltune.data import examples

    rows = examples.splits_with_examples(splits, 2)
    assert all(len(r["examples"]) == 2 and {e["question"] for e in r["examples"]} <= train_questions for r in rows["test"])
    assert len(out.read_text().splitlines()) == len(rows["test"])


def test_compact_sql_means_the_same_on_the_database_in_fewer_tokens(folder: Path, tmp_path: Path) -> None:
    from sqltune.sql import compact, execute

    rows, _ = t2s.read(f"text2sql-data:{folder / 'minirest.json'}", tmp_path / "cache")
    sql = rows[0]["response"]
    short = compact.compact_sql(sql)
    assert short == ("select count(*) from location as location0, restaurant as restaurant0 where "
                     "location0.city_name = 'san francisco' and restaurant0.id = location0.restaurant_id and "
                     "restaurant0.food_type = 'jamaican'")
    for row in rows:  # every gold, compacted, returns what the gold returns
        for gold in row["golds"]:
            want, got = (execute.execute(row["db_path"], q) for q in (gold, compact.compact_sql(gold)))
            assert want.ok and got.ok and sorted(want.rows) == sorted(got.rows), gold
    assert compact.compact_sql("SELECT \"Name\" FROM T WHERE T.A = 'Mi  X''d' ;") == "select \"Name\" from t where t.a = 'Mi  X''d'"
    schema = "CREATE TABLE T (\"Free Meal\" INT, B TEXT);\n/* 1 row of T:\nB\nKeep Case\n*/"
    assert compact.compact_schema(schema) == "create table t (\"Free Meal\" int, b text);\n/* 1 row of T:\nB\nKeep Case\n*/"
    row = compact.compact_row({**rows[0], "examples": [{"question": "q", "sql": sql}]})
    assert row["response"] == short and row["examples"][0]["sql"] == short and row["golds"] == [sql]
    assert "create table restaurant" in row["input"]


def test_a_searcher_metric_the_evaluation_cannot_report_is_refused_before_training(folder: Path, tmp_path: Path,
                                                                                    capsys) -> None:
    """Validation rows without a database report fuzzed execution accuracy only: a searcher ranked
    by eval_execution_accuracy would stop the run at its first evaluation, so it is refused first."""
    for source, metric, say in [("miniadv", "eval_execution_accuracy", "set searcher.metric: eval_fuzz_execution_accuracy"),
                                ("minirest", "eval_fuzz_execution_accuracy", "set searcher.metric: eval_execution_accuracy")]:
        cfg = tiny_config(tmp_path, data={"source": f"text2sql-data:{folder / f'{source}.json'}", "split_by": "question",
                                          "subset": "all", "cache_dir": str(tmp_path / "cache")},
                          format={"max_length": 512}, eval={"generate_samples": 3, "max_new_tokens": 8})
        cfg["searcher"].update(metric=metric, smaller_is_better=False)
        assert cli.main(["train", str(write_config(tmp_path, cfg)), "--fresh"]) != 0
        err = capsys.readouterr().err
        assert f"searcher.metric '{metric}' will not be reported" in err and say in err, err
        assert not (tmp_path / "run" / "metrics.jsonl").exists() or not read_metrics(tmp_path / "run")
    right = config.build(cfg, ["searcher.metric=eval_execution_accuracy"])  # --set reaches a local run's searcher
    assert right.raw["searcher"]["metric"] == "eval_execution_accuracy" and cfg["searcher"]["metric"] != right.raw["searcher"]["metric"]
