"""Execution-guided decoding (issue 16, part 1): k candidates, a pick by the database, pass@k."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from conftest import read_metrics, tiny_config, write_config
from sqltune import cli
from sqltune.sql.guided import pick

SPIDER = Path(__file__).resolve().parent / "fixtures" / "spider_mini"


@pytest.fixture
def db(tmp_path: Path) -> str:
    path = tmp_path / "music.sqlite"
    with sqlite3.connect(path) as conn:
        conn.executescript("""
            CREATE TABLE singer (id INTEGER PRIMARY KEY, name TEXT, age INTEGER);
            INSERT INTO singer VALUES (1, 'Ann', 30), (2, 'Bob', 25), (3, 'Cid', 41);
        """)
    return str(path)


def test_first_valid_skips_what_fails_to_run(db: str) -> None:
    greedy_fails = ["SELECT name FROM singer WHERE mean_age > 30",  # no such column
                    "SELECT name FROM singer WHERE age > 99",  # runs, no rows
                    "SELECT name FROM singer WHERE age > 26"]
    assert pick(greedy_fails, db, "first_valid") == 1
    assert pick(greedy_fails, db, "first_valid", needs_rows=True) == 2
    assert pick(["SELEC x", "DROP TABLE singer"], db, "first_valid") == 0  # none valid: the first
    assert pick(["SELEC name FROM", "SELECT name FROM singer"], None) == 1  # no database: the first that parses


def test_vote_takes_the_most_common_result(db: str) -> None:
    candidates = ["SELECT name FROM singer WHERE age > 40",  # {Cid}
                  "SELECT name FROM singer WHERE age >= 30",  # {Ann, Cid}
                  "SELECT nme FROM singer",  # fails: no vote
                  "SELECT name FROM singer WHERE age > 26",  # {Ann, Cid}
                  "SELECT name FROM singer WHERE age > 35"]  # {Cid}
    assert pick(candidates, db, "vote") == 0  # a tie: the better-ranked result wins
    assert pick(candidates[1:], db, "vote") == 0  # {Ann, Cid} twice against {Cid} once
    assert pick(["SELECT nme FROM singer"], db, "vote") == 0


def test_training_with_candidates_reports_pass_at_k(tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path, eval={"generate_samples": 6, "max_new_tokens": 12, "batch_size": 3,
                                      "candidates": 3, "decoding": "sample", "pick": "first_valid"},
                      format={"max_length": 160})
    cfg["hyperparameters"]["data"] = {"source": f"spider:{SPIDER}", "subset": "all", "cache_dir": str(tmp_path / "c")}
    assert cli.main(["train", str(write_config(tmp_path, cfg))]) == 0
    final = [m for m in read_metrics(tmp_path / "run") if m["group"] == "validation"][-1]
    assert 0.0 <= final["eval_execution_accuracy"] <= final["eval_pass_at_k"] <= 1.0
    rows = [json.loads(line) for line in (tmp_path / "run" / "predictions" / "eval-step-6.jsonl").open()]
    assert len(rows) == 6 and all(len(r["candidates"]) == 3 and r["predicted"] in r["candidates"] for r in rows)
    assert all(r["pass_at_k"] or not r["executed"] for r in rows)  # the pick is one of the candidates


def test_repair_sends_a_failed_answer_back_with_its_error(tmp_path: Path) -> None:
    """eval.repair: every answer that fails to run goes back to the model once, with its error;
    the row keeps the first query and its error, and the answer is replaced only by one that runs."""
    cfg = tiny_config(tmp_path, eval={"generate_samples": 6, "max_new_tokens": 12, "batch_size": 3, "repair": True},
                      format={"max_length": 160})
    cfg["hyperparameters"]["data"] = {"source": f"spider:{SPIDER}", "subset": "all", "cache_dir": str(tmp_path / "c")}
    assert cli.main(["train", str(write_config(tmp_path, cfg))]) == 0
    final = [m for m in read_metrics(tmp_path / "run") if m["group"] == "validation"][-1]
    rows = [json.loads(line) for line in (tmp_path / "run" / "predictions" / "eval-step-6.jsonl").open()]
    sent = [r for r in rows if "repair" in r]
    assert sent and final["eval_repaired"] == len(sent)  # a 2-layer random model's SQL fails to run
    assert all(r["repair"]["error"] and r["repair"]["sql"] for r in sent)
    assert all(r["valid"] or r["predicted"] == r["repair"]["sql"] for r in sent)  # replaced only by what runs
    assert final["eval_repaired_runs"] == sum(r["valid"] for r in sent)
    assert all(r["valid"] for r in rows if "repair" not in r)


def test_a_row_without_a_database_finds_its_error_on_one_drawn_from_its_schema(tmp_path: Path, monkeypatch) -> None:
    from sqltune import evaluate
    from sqltune.config import EvalSettings

    monkeypatch.setenv("SQLTUNE_CACHE", str(tmp_path))
    row = {"instruction": "Names?", "input": "CREATE TABLE singer (id INTEGER PRIMARY KEY, name TEXT, age INTEGER);",
           "response": "SELECT name FROM singer"}
    cfg = EvalSettings()
    assert "no such column: nme" in evaluate.run_error(row, "SELECT nme FROM singer", cfg)
    assert evaluate.run_error(row, "SELECT name FROM singer WHERE age > 3", cfg) is None
    assert evaluate.run_error({**row, "input": ""}, "SELECT nme FROM singer", cfg) is None  # nowhere to run it
    assert len(list((tmp_path / "fuzz").glob("*-schema.sqlite"))) == 1  # drawn once, from the schema alone
