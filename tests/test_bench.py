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
