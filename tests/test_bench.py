"""The benchmarks run on CPU and print their tables (figures are read by people, not asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_train_throughput_bench_prints_table_and_same_losses(tmp_path: Path) -> None:
    out = tmp_path / "rows.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "train_throughput.py"), "--steps", "4", "--warmup", "1",
         "--median-len", "64", "--batch", "2", "--lora-only", "--json", str(out)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "tokens/s" in proc.stdout and "sqltune" in proc.stdout
    rows = {r["variant"]: r for r in json.loads(out.read_text())}
    # only the batching and the loss's shape change: the same data must give the same losses
    assert rows["sqltune"]["losses"] == pytest.approx(rows["baseline"]["losses"], abs=1e-4)


def test_engines_bench_copies_the_generator_to_duckdb_and_postgres_and_prints_agreement() -> None:
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "sqlexec.py"), "--engines", "sqlite,duckdb,postgres",
                           "--queries", "40"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert "40 gold queries on" in out and "SQLite vs duckdb:" in out and "SQLite vs postgres:" in out, out
    rows = {line.split()[0]: line.split() for line in out.splitlines()
            if line.split()[:1] in (["sqlite"], ["duckdb"], ["postgres"]) and line.split()[2].isdigit()}  # the table
    assert rows["sqlite"][2:] == ["40", "40", "40", "40"], out  # SQLite against itself: all run, all agree
    assert 20 <= int(rows["postgres"][2]) <= 40 and 20 <= int(rows["duckdb"][2]) <= 40, out
    assert "slowest hostile miss" in out
    for line in out.splitlines()[-3:]:
        assert float(line.split()[1]) <= 1.5, line  # each engine's slowest miss within deadline + 0.5 s
