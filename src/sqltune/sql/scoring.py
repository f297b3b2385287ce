"""Scores for generated SQL, per row and summed up overall, per difficulty and per Spider hardness.

No model is involved: `score_rows` takes rows holding a `prediction`, a gold `response` (or
several, `golds`: a prediction matching any counts), optionally a `db_path`, the `input` schema
and a `difficulty`. A prediction that fails to parse or run is a miss with its error kept;
`score_rows` never raises on bad SQL. The metrics, and who defines them:

    bleu                      corpus BLEU against the first gold (sacrebleu defaults)       ours
    exact_match               both queries normalised with sqlglot, compared as text        ours (match.py)
    exact_set_match           Spider's exact set match: components, values ignored          Spider (official.py)
    execution_accuracy        Spider's test-suite execution match on the row's database     Spider (official.py)
    bird_execution_accuracy   BIRD's: the two result sets are equal as sets                 BIRD (official.py)
    fuzz_execution_accuracy   no database ships: Spider's comparison on every database
                              fuzzed from the CREATE TABLE text (fuzz/)                     ours, after Zhong et al. 2020
    pass_at_k                 rows with several candidates (eval.candidates): some candidate
                              is right by Spider's execution rule; the ceiling of the pick    ours
    valid_sql                 runs on the database (without one: sqlglot parses it)        ours

Each is averaged over the rows that have a verdict: execution metrics over rows with a database
(fuzz over rows without one whose schema and gold could be fuzzed), exact set match over rows
whose gold Spider's parser reads. Queries run in `sandbox`, a worker process killed at the deadline.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any, Callable

import sacrebleu

from sqltune.data.rows import BUCKETS, golds as row_golds
from sqltune.sql import engine, fuzz, official, spider_parse
from sqltune.sql.execute import clean_sql
from sqltune.sql.hardness import HARDNESS, hardness
from sqltune.sql.match import bleu, exact_match, parse_query
from sqltune.sql.sandbox import execute

SQL_METRICS = ("bleu", "exact_match", "exact_set_match", "execution_accuracy", "bird_execution_accuracy",
               "fuzz_execution_accuracy", "pass_at_k", "valid_sql")  # what `score_rows` sums up, as `eval_<name>`
PER_ROW = {"exact_match": "exact", "exact_set_match": "exact_set", "execution_accuracy": "executed",
           "bird_execution_accuracy": "executed_bird", "fuzz_execution_accuracy": "executed_fuzz",
           "pass_at_k": "pass_at_k", "valid_sql": "valid"}  # summary name -> per-row field (True / False / None: no verdict)
GROUPS = (*BUCKETS, *(f"hardness_{h}" for h in HARDNESS))  # the per-group suffixes of the summary


def _any_gold(golds: list[str], judge: Callable[[str], bool]) -> bool | None:
    """True if the prediction matches some gold; None when no gold gives a verdict (ValueError)."""
    verdicts = []
    for gold in golds:
        try:
            verdicts.append(judge(gold))
        except ValueError:  # a gold query outside the metric's reach (Spider's grammar, a failing gold)
            continue
        if verdicts[-1]:
            return True
    return False if verdicts else None


def _schema(row: dict[str, Any]) -> spider_parse.SpiderSchema | None:
    try:
        if row.get("db_path") and engine.kind(row["db_path"]) == "sqlite":
            return spider_parse.schema_from_db(row["db_path"])
        return spider_parse.schema_from_ddl(row["input"]) if row.get("input") else None
    except (ValueError, OSError):
        return None


def score_one(row: dict[str, Any], *, timeout_s: float = 1.0, fuzz_dir: Path | None = None,
              fuzz_on: str = "sqlite") -> dict[str, Any]:
    """Every metric of one prediction (see module doc): the per-row fields of PER_ROW, plus `bleu`,
    `error` (why the prediction failed, or "gold: ..." when the gold did) and `hardness`. `fuzz_on`:
    the engine fuzzed databases are judged on (fuzz/engines.py)."""
    pred = clean_sql(row["prediction"])
    golds = [clean_sql(g) for g in row_golds(row)]
    out: dict[str, Any] = {"bleu": sacrebleu.sentence_bleu(pred, golds[:1]).score,
                           "exact": any(exact_match(pred, g) for g in golds), "error": None}
    schema = _schema(row)
    out["exact_set"] = None if schema is None else _any_gold(
        golds, lambda g: official.exact_set_match(pred, g, schema))
    out["executed"] = out["executed_bird"] = out["executed_fuzz"] = None
    db = row.get("db_path")
    if db:
        run = execute(db, pred, timeout_s=timeout_s)
        out["valid"], out["error"] = run.ok, run.error
        if run.ok:  # (a prediction that fails or times out is a miss: not run again for each metric)
            out["executed"] = _any_gold(golds, lambda g: official.spider_exec_match(db, pred, g, timeout_s=timeout_s))
            out["executed_bird"] = _any_gold(golds, lambda g: official.bird_exec_match(db, pred, g, timeout_s=timeout_s))
        else:
            out["executed"] = out["executed_bird"] = False
        gold_run = execute(db, golds[0], timeout_s=timeout_s)
        if not gold_run.ok:
            out["error"] = out["error"] or f"gold: {gold_run.error}"
    else:
        out["valid"] = parse_query(pred) is not None
        out["error"] = None if out["valid"] else "sqlglot cannot parse the prediction"
        if fuzz_dir is not None and row.get("input"):
            fuzzed = [(g, fuzz.fuzz_databases(row["input"], g, cache_dir=fuzz_dir, on=fuzz_on)) for g in golds]
            fuzzed = [(g, dbs) for g, dbs in fuzzed if dbs]
            if fuzzed:
                out["executed_fuzz"] = any(fuzz.fuzz_exec_match(dbs, pred, g, timeout_s=timeout_s) for g, dbs in fuzzed)
    out["pass_at_k"] = None  # with candidates and a database: did any candidate execute right?
    if db and row.get("candidates"):
        out["pass_at_k"] = any(_any_gold(golds, lambda g, c=clean_sql(c): official.spider_exec_match(
            db, c, g, timeout_s=timeout_s)) for c in row["candidates"])
    try:
        out["hardness"] = hardness(golds[0])
    except ValueError:
        out["hardness"] = "unknown"
    return out


def _summary(results: list[dict], preds: list[str], golds: list[str]) -> dict[str, float]:
    out: dict[str, float] = {"n": len(results), "bleu": bleu(preds, golds)}
    for name, field in PER_ROW.items():
        verdicts = [r[field] for r in results if r[field] is not None]
        if verdicts:
            out[name] = sum(verdicts) / len(verdicts)
    return out


def score_rows(rows: list[dict[str, Any]], *, timeout_s: float = 1.0, fuzz_dir: Path | None = None,
               fuzz_on: str = "sqlite") -> dict[str, Any]:
    """Per-row results (`score_one`, plus `difficulty`) and averages, overall and per group
    (`bleu_easy`, `execution_accuracy_hardness_extra`, `n_medium`, ...). `fuzz_dir` caches the
    fuzzed databases of rows without one (None: no fuzz metric).

    Raises:
        ValueError: if a row lacks `prediction` or `response`.
    """
    for i, row in enumerate(rows):
        for field in ("prediction", "response"):
            if not isinstance(row.get(field), str):
                raise ValueError(f"row {i}: missing '{field}' (a string)")
    results = [{**score_one(row, timeout_s=timeout_s, fuzz_dir=fuzz_dir, fuzz_on=fuzz_on), "difficulty": row.get("difficulty")}
               for row in rows]
    if not results:
        return {"summary": {"n": 0}, "rows": []}
    preds = [clean_sql(r["prediction"]) for r in rows]
    golds = [clean_sql(row_golds(r)[0]) for r in rows]
    summary = _summary(results, preds, golds)
    for field, prefix in (("difficulty", ""), ("hardness", "hardness_")):
        groups = defaultdict(list)
        for i, r in enumerate(results):
            if r[field] is not None:
                groups[r[field]].append(i)
        for label, idx in sorted(groups.items(), key=lambda kv: str(kv[0])):
            part = _summary([results[i] for i in idx], [preds[i] for i in idx], [golds[i] for i in idx])
            summary.update({f"{k}_{prefix}{label}": v for k, v in part.items()})
    return {"summary": summary, "rows": results}
