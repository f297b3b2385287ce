"""Gold queries in the worker process (sql.sandbox) vs in this process (sql.execute): the cost of the
pipe; and, with --engines, the same databases on DuckDB and PostgreSQL.

    python bench/sqlexec.py                                  # 1,000 benign gold queries from the generator
    python bench/sqlexec.py --engines sqlite,duckdb,postgres # the generator's databases copied to each engine
    python bench/sqlexec.py --engines sqlite,duckdb,postgres --config experiments/local.yaml --split valid

Target (issue 12): the worker costs at most 1.2x. Each query runs once to warm both paths and the
OS page cache, then both paths run the same queries in the same order, twice, interleaved.

With --engines (issue 26): the generator's databases are copied (sqltune's copy_db) into DuckDB
files and into schemas of a throwaway PostgreSQL cluster (pg_local; or --pg URL, a role that may
create schemas), and every gold query runs through the sandbox on each engine (as a read-only
role on PostgreSQL). Printed: time per query per engine, the agreement of the gold's results with
SQLite's (same rows as a multiset, numbers compared to 1e-6), each kind of disagreement with an
example, and each engine's slowest miss over a short hostile corpus. With --predictions FILE
(`sqltune evaluate`'s per-row JSONL, or a run's predictions/eval-step-N.jsonl, of generator rows), the verdicts of those predictions by
Spider's rule on each engine, side by side.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import tempfile
import time
from pathlib import Path

from sqltune.data import synthetic
from sqltune.sql import copy_db, dialect, execute as sqlexec, official, sandbox

HOSTILE = {  # each engine's slowest-to-stop queries of the tests' corpora
    "sqlite": ["WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT count(*) FROM r",
               "SELECT printf('%.*c', 1000000000, 'x')", "SELECT count(*) FROM {t} a, {t} b, {t} c, {t} d, {t} e"],
    "duckdb": ["WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT count(*) FROM r",
               "SELECT repeat('x', 1000000000)", "SELECT count(*) FROM {t} a, {t} b, range(100000000000) c"],
    "postgres": ["WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT count(*) FROM r",
                 "SELECT pg_sleep(30)", "SELECT repeat('x', 1000000000)", "SELECT count(*) FROM generate_series(1, 1000000000000)"],
}


def worker_overhead(jobs: list[tuple[str, str]]) -> None:
    for db, sql in jobs:
        sqlexec.execute(db, sql)
        sandbox.execute(db, sql)
    times = {"in process": 0.0, "worker": 0.0}
    for _ in range(2):
        for name, run in (("in process", sqlexec.execute), ("worker", sandbox.execute)):
            start = time.perf_counter()
            results = [run(db, sql) for db, sql in jobs]
            times[name] += time.perf_counter() - start
            assert all(r.ok for r in results), [r.error for r in results if not r.ok][:3]
    base = times["in process"]
    print(f"{len(jobs)} gold queries x 2 runs")
    for name, t in times.items():
        print(f"{name:<12}{t:8.2f} s  {1e3 * t / (2 * len(jobs)):7.3f} ms/query  {t / base:5.2f}x")


def _same(a: list[tuple], b: list[tuple]) -> bool:
    def norm(row: tuple) -> tuple:
        return tuple(round(float(v), 6) if isinstance(v, (int, float)) or hasattr(v, "as_integer_ratio") else v for v in row)
    return collections.Counter(map(norm, a)) == collections.Counter(map(norm, b))


@contextlib.contextmanager
def _postgres(url: str | None):
    if url:
        yield url
        return
    from sqltune.sql import pg_local

    with pg_local.cluster() as admin:
        import psycopg

        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute("CREATE DATABASE bench")
            conn.execute("CREATE ROLE reader LOGIN")
            conn.execute("GRANT SET ON PARAMETER temp_file_limit TO reader")
        yield admin.replace("/postgres?", "/bench?")


def engines(rows: list[dict], names: list[str], pg_url: str | None, predictions: Path | None) -> None:
    dbs = sorted({r["db_path"] for r in rows})
    folder = Path(tempfile.mkdtemp(prefix="sqltune-engines-"))
    with _postgres(pg_url if "postgres" in names else "unused") as admin:
        where: dict[str, dict[str, str]] = {"sqlite": {db: db for db in dbs}}
        if "duckdb" in names:
            where["duckdb"] = {db: str(copy_db.to_duckdb(Path(db), folder)) for db in dbs}
        if "postgres" in names:
            reader = admin if pg_url else admin.replace("user=postgres", "user=reader")
            where["postgres"] = {db: copy_db.search_path_url(reader, Path(db).stem)
                                 for db in dbs if copy_db.to_postgres(Path(db), admin)}
        jobs = [(r["db_path"], r["response"]) for r in rows]
        results: dict[str, list] = {}
        print(f"{len(jobs)} gold queries on {len(dbs)} databases, through the sandbox")
        print(f"{'engine':<10}{'ms/query':>10}{'ok':>7}{'same rows as SQLite':>22}{'gold transpiled: ok':>22}{'same':>7}")
        for name in names:
            for db, sql in jobs[:50]:  # warm: connections, page cache
                sandbox.execute(where[name][db], sql)
            start = time.perf_counter()
            results[name] = [sandbox.execute(where[name][db], sql) for db, sql in jobs]
            took = time.perf_counter() - start
            same = sum(a.ok and b.ok and _same(a.rows, b.rows) for a, b in zip(results["sqlite"], results[name]))
            moved = [sandbox.execute(where[name][db], _transpiled(sql, name)) for db, sql in jobs]
            same_moved = sum(a.ok and b.ok and _same(a.rows, b.rows) for a, b in zip(results["sqlite"], moved))
            print(f"{name:<10}{1e3 * took / len(jobs):10.3f}{sum(r.ok for r in results[name]):7d}{same:22d}"
                  f"{sum(r.ok for r in moved):22d}{same_moved:7d}")
        for name in names[1:]:
            kinds = collections.Counter()
            example: dict[str, str] = {}
            for (db, sql), a, b in zip(jobs, results["sqlite"], results[name]):
                kind = ("same" if a.ok and b.ok and _same(a.rows, b.rows) else "different rows" if a.ok and b.ok
                        else f"fails on {name}: {b.error.split(':')[0]}" if a.ok else "fails on SQLite")
                kinds[kind] += 1
                example.setdefault(kind, f"{sql[:110]} -> {(b.error or '')[:110]}")
            print(f"\nSQLite vs {name}:")
            for kind, n in kinds.most_common():
                print(f"  {n:5d}  {kind}" + ("" if kind == "same" else f"   e.g. {example[kind]}"))
        if predictions is not None:
            verdicts(predictions, names, where, rows)
        print("\nslowest hostile miss (timeout 1 s; a miss must come within 1.5 s):")
        table = Path(dbs[0]).stem
        for name in names:
            worst = 0.0
            for sql in HOSTILE[name]:
                db = where[name][dbs[0]]
                start = time.perf_counter()
                run = sandbox.execute(db, sql.format(t=_first_table(dbs[0]) or table), timeout_s=1.0)
                assert not run.ok, (name, sql)
                worst = max(worst, time.perf_counter() - start)
            print(f"  {name:<10}{worst:6.2f} s over {len(HOSTILE[name])} queries")


def _verdict(db: str, pred: str, gold: str) -> bool | None:
    try:
        return official.spider_exec_match(db, pred, gold)
    except ValueError:  # the gold fails on this engine
        return None


def _transpiled(sql: str, name: str) -> str:
    """The gold as format.dialect would teach it (sql.dialect); unchanged where sqlglot can't."""
    try:
        return dialect.transpile(sql, "sqlite", name)
    except ValueError:
        return sql


def _first_table(db: str) -> str | None:
    from sqltune.data import schema

    tables = schema.read_schema(db)
    return copy_db.quote_name(tables[0].name) if tables else None


def verdicts(path: Path, names: list[str], where: dict[str, dict[str, str]], rows: list[dict]) -> None:
    """Spider's verdict on each engine for each prediction, as written (SQLite's SQL) and with
    prediction and gold transpiled to the engine's; a per-row file written before it carried
    `db_path` finds its database through the question (the config's rows)."""
    by_question = {r["instruction"]: r["db_path"] for r in rows}
    preds = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    preds = [{**r, "db_path": r.get("db_path") or by_question.get(r.get("question"))} for r in preds]
    preds = [r for r in preds if r["db_path"] in where["sqlite"]]  # the rows `engines` copied the databases of
    counts: collections.Counter = collections.Counter()
    right = collections.Counter()
    for r in preds:
        pred, gold = r.get("predicted", r.get("prediction")), r.get("gold", r.get("response"))
        verdict = []
        for n in names:
            db = where[n][r["db_path"]]
            verdict.append(_verdict(db, pred, gold))
            right[n, "as written"] += verdict[-1] is True
            right[n, "transpiled"] += _verdict(db, _transpiled(pred, n), _transpiled(gold, n)) is True
        counts[tuple(verdict)] += 1
    print(f"\npredictions of {path.name} ({len(preds)} rows on these databases), Spider's execution verdict:")
    print(f"{'engine':<10}{'right as written':>18}{'right, both transpiled':>24}")
    for n in names:
        print(f"{n:<10}{right[n, 'as written']:>18d}{right[n, 'transpiled']:>24d}")
    print(f"verdicts as written, per row ({', '.join(names)}; None: the gold fails there):")
    for verdict, k in counts.most_common():
        print(f"  {k:5d}  {verdict}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--queries", type=int, default=1000)
    p.add_argument("--engines", help="e.g. sqlite,duckdb,postgres: compare the engines instead of the worker's cost")
    p.add_argument("--pg", help="PostgreSQL URL of a role that may create schemas (default: a throwaway cluster)")
    p.add_argument("--predictions", type=Path, help="`sqltune evaluate` per-row JSONL to judge on every engine")
    p.add_argument("--config", help="an experiment YAML: its data's --split instead of the generator's first rows")
    p.add_argument("--split", default="valid", choices=("train", "valid", "test"))
    ns = p.parse_args()
    if ns.config:  # the job's own split (its data block; --queries caps it)
        from sqltune import config
        from sqltune.data import splits

        hp = config.load(ns.config).hparams
        rows = [r for r in splits.load_splits(hp.data, hp.format.dialect)[ns.split] if r.get("db_path")][: ns.queries]
    elif ns.predictions:  # its rows, on their own databases
        rows = [json.loads(line) for line in ns.predictions.read_text().splitlines() if line.strip()]
        rows = [{**r, "response": r.get("gold", r.get("response"))} for r in rows if r.get("db_path")][: ns.queries]
    else:
        rows = synthetic.generate(ns.queries, 0, tempfile.mkdtemp(prefix="sqltune-bench-"))
    if ns.engines:
        names = ["sqlite", *[n for n in ns.engines.split(",") if n != "sqlite"]]
        engines(rows, names, ns.pg, ns.predictions)
    else:
        worker_overhead([(r["db_path"], r["response"]) for r in rows])


if __name__ == "__main__":
    main()
