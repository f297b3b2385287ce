"""The GRPO reward on known (completion, gold) pairs, on a real SQLite file and on fuzzed databases."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from sqltune import rewards
from sqltune.sql import sandbox

SCHEMA = "CREATE TABLE singer (id INTEGER PRIMARY KEY, name TEXT, country TEXT, age INTEGER)"
GOLD = "SELECT name FROM singer WHERE age > 30"


@pytest.fixture
def db(tmp_path: Path) -> str:
    path = tmp_path / "singer.sqlite"
    with sqlite3.connect(path) as con:
        con.execute(SCHEMA)
        con.executemany("INSERT INTO singer VALUES (?, ?, ?, ?)",
                        [(1, "Ann", "NL", 25), (2, "Bob", "FR", 41), (3, "Cid", "NL", 35)])
    return str(path)


@pytest.mark.parametrize(("completion", "expected"), [
    (GOLD, (1, 1, 1)),
    ("SELECT name FROM singer WHERE 30 < age;", (1, 1, 1)),             # another query, the same result
    ("```sql\nSELECT name FROM singer WHERE age > 30\n```", (1, 1, 0)),  # right, but fenced
    ("SELECT country FROM singer", (0, 1, 1)),                          # runs, wrong result
    ("SELECT nope FROM singer", (0, 0, 1)),                             # a query, but no such column
    ("the answer is", (0, 0, 0)),
    ("", (0, 0, 0)),
])
def test_known_pairs_on_a_database(db: str, completion: str, expected: tuple[int, int, int]) -> None:
    parts = rewards.score_completion(completion, [GOLD], db, SCHEMA, timeout_s=1.0)
    assert (parts.execution, parts.runs, parts.format) == expected


def test_any_gold_counts(db: str) -> None:
    other = "SELECT country FROM singer"
    assert rewards.score_completion(other, [GOLD, other], db).execution == 1


def test_without_a_database_fuzzed_ones_judge(tmp_path: Path) -> None:
    fuzz = tmp_path / "fuzz"
    right = rewards.score_completion("SELECT name FROM singer WHERE 30 < age", [GOLD], None, SCHEMA, fuzz_dir=fuzz)
    wrong = rewards.score_completion("SELECT name FROM singer WHERE age > 31", [GOLD], None, SCHEMA, fuzz_dir=fuzz)
    assert (right.execution, right.runs) == (1, 1)
    assert (wrong.execution, wrong.runs) == (0, 1)  # the fuzzer puts a row at the boundary
    nothing = rewards.score_completion("SELECT name FROM singer", [GOLD], None, None)  # no schema: parse only
    assert (nothing.execution, nothing.runs, nothing.format) == (0, 1, 1)


def test_a_hostile_query_costs_one_deadline(db: str) -> None:
    spin = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c"
    began = time.monotonic()
    parts = rewards.score_completion(spin, [GOLD], db, timeout_s=0.3)
    assert time.monotonic() - began < 0.3 + sandbox.GRACE_S + 1.0
    assert (parts.execution, parts.runs) == (0, 0)


def test_reward_functions_as_trl_calls_them(db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    original = rewards.score_completion

    def counted(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202 - the real scorer, counted
        calls.append(args[0])
        return original(*args, **kwargs)

    scorer = rewards.Scorer(timeout_s=1.0, fuzz_dir=None)
    funcs = rewards.reward_functions(scorer)
    assert [f.__name__ for f in funcs] == list(rewards.PARTS)
    batch = {"completions": [GOLD, "SELECT country FROM singer", "```sql\nSELECT 1\n```"],
             "gold": [[GOLD]] * 3, "db_path": [db] * 3, "schema": [SCHEMA] * 3}
    monkeypatch.setattr(rewards, "score_completion", counted)
    got = [f(prompts=["p"] * 3, trainer_state=None, **batch) for f in funcs]
    assert got == [[1.0, 0.0, 0.0], [1.0, 1.0, 1.0], [1.0, 1.0, 0.0]]
    assert len(calls) == 3  # each completion scored once for all three parts
