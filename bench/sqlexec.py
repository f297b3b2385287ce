"""Gold queries in the worker process (sql.sandbox) vs in this process (sql.execute): the cost of the pipe.

    python bench/sqlexec.py                 # 1,000 benign gold queries from the generator

Target (issue 12): the worker costs at most 1.2x. Each query runs once to warm both paths and the
OS page cache, then both paths run the same queries in the same order, twice, interleaved.
"""

from __future__ import annotations

import argparse
import tempfile
import time

from sqltune.data import synthetic
from sqltune.sql import execute as sqlexec, sandbox


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--queries", type=int, default=1000)
    ns = p.parse_args()
    rows = synthetic.generate(ns.queries, 0, tempfile.mkdtemp(prefix="sqltune-bench-"))
    jobs = [(r["db_path"], r["response"]) for r in rows]
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


if __name__ == "__main__":
    main()
