"""Rewards for sampled SQL (the GRPO recipe, recipes/grpo.py): execution against the gold, runs at all, format.

    parts = score_completion(completion, golds, db_path, schema)     # Parts(execution, runs, format)
    funcs = reward_functions(Scorer(timeout_s=1.0, fuzz_dir=None))   # [execution, runs, format] for TRL

Each part is 0.0 or 1.0; the reward is their weighted sum, with the weights of `grpo.rewards`
(TRL's `reward_weights`, so TRL logs each part's mean as `rewards/<part>/mean` and the weighted
total as `reward`):

    execution  the completion matches some gold by Spider's execution rule (official.py) on the
               row's database; a row without one is judged on databases fuzzed from its CREATE
               TABLE text (sql/fuzz, as `fuzz_execution_accuracy` is). No database and no fuzzing
               possible: 0.0.
    runs       the completion runs without error on that database (the first fuzzed one); with
               none, sqlglot parses it as one query. The small partial credit of the issue.
    format     the completion is the bare query the prompt asks for: no code fence, no prose
               around it, one statement that parses.

Every query runs in `sql.sandbox` (a worker process killed at its deadline), so a sampled query
that would spin or allocate wildly costs at most `timeout_s + sandbox.GRACE_S` per run and never
stalls training. TRL calls the three functions one after another on the same completions; the
scores of the last batch are kept, so each query runs once per batch, not once per part.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any, Callable

from sqltune.rundir import Results
from sqltune.sql import fuzz, official
from sqltune.sql.execute import clean_sql
from sqltune.sql.match import parse_query
from sqltune.sql.sandbox import execute

log = logging.getLogger(__name__)

PARTS = ("execution", "runs", "format")  # the order of `reward_functions` and of TRL's reward_weights


@dataclasses.dataclass(frozen=True)
class Parts:
    execution: float
    runs: float
    format: float


def format_score(completion: str) -> float:
    """1.0 when the completion is one bare query: nothing for `clean_sql` to strip but spaces and a
    trailing ';' (no ``` fence, no prose after a fence), and sqlglot reads one query."""
    bare = completion.strip().rstrip(";").strip()
    return float(bool(bare) and clean_sql(completion) == bare and parse_query(bare) is not None)


def _databases(golds: list[str], db_path: str | None, schema: str | None,
               fuzz_dir: Path | None, fuzz_on: str = "sqlite") -> list[tuple[str, list[Path] | list[str]]]:
    """(gold, databases to judge it on) for each gold that has some: the row's database, else fuzzed ones."""
    if db_path:
        return [(g, [Path(db_path)]) for g in golds]
    if not schema or fuzz_dir is None:
        return []
    found = [(g, fuzz.fuzz_databases(schema, g, cache_dir=fuzz_dir, on=fuzz_on)) for g in golds]
    return [(g, dbs) for g, dbs in found if dbs]


def _matches(dbs: list[Path] | list[str], pred: str, gold: str, timeout_s: float) -> bool:
    try:
        return all(official.spider_exec_match(db, pred, gold, timeout_s=timeout_s) for db in dbs)
    except ValueError:  # the gold fails there: no credit, and the same for every completion of the row
        log.warning("reward: gold query fails on %s: %.200s", dbs[0], gold)
        return False


def score_completion(
    completion: str,
    golds: list[str],
    db_path: str | None = None,
    schema: str | None = None,
    *,
    timeout_s: float = 1.0,
    fuzz_dir: Path | None = None,
    fuzz_on: str = "sqlite",
) -> Parts:
    """The three parts for one completion (see module doc); never raises on bad SQL."""
    pred = clean_sql(completion)
    golds = [clean_sql(g) for g in golds]
    judged = _databases(golds, db_path, schema, fuzz_dir, fuzz_on)
    if judged:
        ran = execute(judged[0][1][0], pred, timeout_s=timeout_s).ok if pred else False
        executed = ran and any(_matches(dbs, pred, g, timeout_s) for g, dbs in judged)
    else:
        ran, executed = parse_query(pred) is not None, False
    return Parts(execution=float(executed), runs=float(ran), format=format_score(completion))


class Scorer:
    """`score_completion` over a batch, remembering the last batch's answers for the next part.

    `results`, when given, receives each newly scored batch from this `rank`: one dict per
    completion (step, question, completion, its parts, gold)."""

    def __init__(self, *, timeout_s: float, fuzz_dir: Path | None, results: Results | None = None,
                 rank: int = 0, fuzz_on: str = "sqlite") -> None:
        self.timeout_s = timeout_s
        self.fuzz_dir = fuzz_dir
        self.fuzz_on = fuzz_on
        self.results = results
        self.rank = rank
        self._last: tuple[tuple, list[Parts]] | None = None

    def __call__(self, completions: list[Any], gold: list[list[str]], db_path: list[str | None],
                 schema: list[str | None], step: int = 0, question: list[str] | None = None) -> list[Parts]:
        texts = [_text(c) for c in completions]
        key = (tuple(texts), tuple(map(tuple, gold)), tuple(db_path), tuple(schema))
        if self._last is None or self._last[0] != key:
            parts = [score_completion(t, list(g), d or None, s or None,
                                      timeout_s=self.timeout_s, fuzz_dir=self.fuzz_dir, fuzz_on=self.fuzz_on)
                     for t, g, d, s in zip(texts, gold, db_path, schema)]
            self._last = (key, parts)
            if self.results is not None:
                self.results.log_completions(self.rank, [{"step": step, "question": q, "completion": t, **dataclasses.asdict(p), "gold": g}
                             for q, t, p, g in zip(question or [""] * len(texts), texts, parts, gold)])
        return self._last[1]


def _text(completion: Any) -> str:
    """A completion as TRL hands it: text, or (conversational data) a list with one assistant message."""
    if isinstance(completion, list):
        return "".join(str(m.get("content", "")) for m in completion)
    return str(completion)


def reward_functions(scorer: Scorer) -> list[Callable[..., list[float]]]:
    """One TRL reward function per part, in PARTS order, each named after its part (TRL logs
    `rewards/<name>/mean`). They read the dataset columns `gold`, `db_path` and `schema`."""
    def make(part: str) -> Callable[..., list[float]]:
        def reward(completions: list[Any], gold: list[list[str]], db_path: list[str | None],
                   schema: list[str | None], question: list[str] | None = None, trainer_state: Any = None,
                   **_: Any) -> list[float]:
            # the optimizer step these train (the first, when steps_per_generation > gradient_accumulation_steps)
            step = trainer_state.global_step + 1 if trainer_state is not None else 0
            return [getattr(p, part) for p in scorer(completions, gold, db_path, schema, step, question)]

        reward.__name__ = reward.__qualname__ = part
        return reward

    return [make(part) for part in PARTS]
