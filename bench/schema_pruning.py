"""Schema pruning (sqltune.prune) on the generator's hard rows: rows dropped before and after, and
schema recall at inference.

    python bench/schema_pruning.py                      # 10,000 generated rows, max_length 512

Target (issue 14): on the hard rows, no row loses its whole answer to truncation (tokens.encode's
drop rule: prompt length >= max_length) once pruned, and the question-only pruning
(`use_gold=False`) keeps every gold table in >= 95% of the pruned rows. The same hard rows are
fitted twice: as training rows (`use_gold=True`) and as validation rows (`use_gold=False`).
Exits 1 if either target is missed.
"""

from __future__ import annotations

import argparse
import logging
import re
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from sqltune import prune, tokens
from sqltune.config import DEFAULT_SYSTEM_PROMPT, ModelSettings
from sqltune.data import synthetic
from sqltune.data.rows import difficulty
from sqltune.model import load_tokenizer

RECALL_TARGET = 0.95


def cpu_flags() -> str:
    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    flags = set(re.findall(r"\b(avx2|avx512f|amx_\w+)\b", text))
    return " ".join(sorted(flags)) or "none of avx2 / avx512f / amx"


def truncation(rows: list[dict[str, Any]], tok: Any, max_length: int) -> tuple[int, int]:
    """(rows tokens.encode drops: whole answer cut, rows that lose part of their answer)."""
    dropped = cut = 0
    for row in rows:
        enc = tokens.encode(row, tok, DEFAULT_SYSTEM_PROMPT, max_length)
        dropped += enc["n_prompt"] >= max_length
        cut += enc["n_prompt"] < max_length < enc["n_full"]
    return dropped, cut


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=10_000, help="rows to generate; about a third are hard")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-length", type=int, default=512)
    ns = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)  # fit_rows' summary line
    print("command:", shlex.join([Path(sys.executable).name, *sys.argv]))
    print("cpu flags:", cpu_flags())

    rows = synthetic.generate(ns.rows, ns.seed, tempfile.mkdtemp(prefix="sqltune-bench-"))
    hard = [r for r in rows if difficulty(r) == "hard"]
    tok = load_tokenizer(ModelSettings(name="smollm2"))
    print(f"{len(hard)} hard rows of {len(rows)}; SmolLM2 tokenizer, max_length={ns.max_length}")

    dropped, cut = truncation(hard, tok, ns.max_length)
    print(f"before pruning: {dropped} rows dropped (whole answer cut), {cut} lose part of their answer")
    failed = False
    for use_gold, name in ((True, "train-like (use_gold=True)"), (False, "valid-like (use_gold=False)")):
        start = time.perf_counter()
        fitted, stats = prune.fit_rows(hard, tok, DEFAULT_SYSTEM_PROMPT, ns.max_length, use_gold=use_gold, name=name)
        seconds = time.perf_counter() - start
        dropped, cut = truncation(fitted, tok, ns.max_length)
        recall = stats["schema_recall"] if stats["schema_recall"] is not None else float("nan")
        print(f"  after pruning: {dropped} rows dropped, {cut} lose part of their answer; "
              f"fit_rows {seconds:.1f} s ({1e3 * seconds / len(hard):.2f} ms/row)")
        print(f"  schema recall {recall:.4f}: {stats['tables_kept']} of {stats['tables_total']} tables kept")
        failed |= dropped > 0
        if not use_gold:
            print(f"  schema recall at inference {recall:.4f}, target >= {RECALL_TARGET}")
            failed |= not recall >= RECALL_TARGET  # nan (nothing pruned) fails too

    start = time.perf_counter()  # the speed a 10k-row training set sees: most rows fit and are only counted
    prune.fit_rows(rows, tok, DEFAULT_SYSTEM_PROMPT, ns.max_length, use_gold=True, name=f"all {len(rows)} rows")
    print(f"  fit_rows {time.perf_counter() - start:.1f} s")
    print("FAILED" if failed else "OK")
    return int(failed)


if __name__ == "__main__":
    sys.exit(main())
