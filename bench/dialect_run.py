"""A model taught another engine's SQL, scored on that engine, beside the same job on SQLite (issue 26).

    python bench/dialect_run.py                                   # experiments/local.yaml: sqlite, postgres
    python bench/dialect_run.py --sides sqlite,postgres,duckdb --work /tmp/sqltune-dialect

The config's databases (the generator's SQLite files) are copied by `sqltune copy-db`'s code into
schemas of a throwaway PostgreSQL cluster (pg_local; read as a read-only role) and into DuckDB
files. Each side then runs the config unchanged but for

    --set format.dialect=SIDE --set data.database=<SIDE's copy, {db_id} for each row's database>

so it trains on the generator's gold transpiled to SIDE's SQL (sqlglot; rows it can't transpile are
left out and counted) and scores its validation rows by execution on SIDE. Each side is one
`sqltune train` in its own process; the sides run one after the other. Printed per side: the
validation rows scored, execution accuracy, valid SQL, rows left out by the transpiler (all splits),
and the wall time. bench/sqlexec.py --predictions judges any side's predictions on every engine.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sqltune import config
from sqltune.data import splits
from sqltune.sql import copy_db


@contextlib.contextmanager
def reader_on_postgres(dbs: list[Path]):
    """A throwaway cluster holding each database as a schema named after its file; yields the URL
    of a read-only role with `{db_id}` as its search_path."""
    import psycopg

    from sqltune.sql import pg_local

    with pg_local.cluster() as admin:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute("CREATE DATABASE bench")
            conn.execute("CREATE ROLE reader LOGIN")
            conn.execute("GRANT pg_read_all_data TO reader")
            conn.execute("GRANT SET ON PARAMETER temp_file_limit TO reader")
        bench = admin.replace("/postgres?", "/bench?")
        for db in dbs:
            copy_db.to_postgres(db, bench)
        yield copy_db.search_path_url(bench.replace("user=postgres", "user=reader"), "{db_id}")


def run_side(ns: argparse.Namespace, side: str, database: str) -> dict:
    out = Path(ns.work) / side
    cmd = [sys.executable, "-m", "sqltune", "train", ns.config, "--fresh",
           "--set", f"format.dialect={side}", "--set", f"data.database={database}",
           "--set", f"training_args.output_dir={out}", "--set", f"data.cache_dir={Path(ns.work) / 'data'}",
           *(a for s in ns.set for a in ("--set", s))]
    started = time.perf_counter()
    log = Path(ns.work) / f"{side}.log"
    with open(log, "w") as f:
        subprocess.run(cmd, check=True, stdout=f, stderr=subprocess.STDOUT)
    wall = time.perf_counter() - started
    metrics = json.loads((out / "summary.json").read_text())["validation"]  # the last evaluation
    left_out = re.findall(r"(\d+) rows left out, their gold could not be transpiled", log.read_text())
    preds = sorted((out / "predictions").glob("eval-step-*.jsonl"), key=lambda p: int(p.stem.split("-")[-1]))
    return {"side": side, "wall_s": wall, "left_out": int(left_out[0]) if left_out else 0,
            "accuracy": metrics.get("eval_execution_accuracy"), "valid": metrics.get("eval_valid_sql"),
            "rows": len(preds[-1].read_text().splitlines()) if preds else 0,
            "predictions": str(preds[-1]) if preds else None}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="experiments/local.yaml")
    p.add_argument("--sides", default="sqlite,postgres")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="an override for every side")
    p.add_argument("--work", default="/tmp/sqltune-dialect")
    ns = p.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a kill still stops the cluster (the with block's exit)
    Path(ns.work).mkdir(parents=True, exist_ok=True)
    hp = config.load(ns.config, ns.set).hparams
    rows = [r for part in splits.load_splits(hp.data).values() for r in part]
    dbs = sorted({Path(r["db_path"]) for r in rows if r.get("db_path")})
    duck_folder = Path(tempfile.mkdtemp(prefix="sqltune-dialect-duckdb-"))
    for db in dbs:
        copy_db.to_duckdb(db, duck_folder)
    with reader_on_postgres(dbs) as pg_url:
        where = {"sqlite": str(dbs[0].parent / "{db_id}.sqlite"), "duckdb": str(duck_folder / "{db_id}.duckdb"),
                 "postgres": pg_url}
        print(f"{ns.config} {ns.set}; CPU threads {os.cpu_count()}; {len(dbs)} databases")
        print(f"{'side':<10}{'rows':>5}{'exec acc':>9}{'valid':>7}{'left out':>9}{'wall s':>8}")
        results = []
        for side in ns.sides.split(","):
            r = run_side(ns, side, where[side])
            results.append(r)
            print(f"{side:<10}{r['rows']:5d}{r['accuracy'] or 0:9.3f}{r['valid'] or 0:7.2f}{r['left_out']:9d}{r['wall_s']:8.0f}",
                  flush=True)
        (Path(ns.work) / "results.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
