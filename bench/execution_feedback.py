"""The database as a teacher (issue 16): execution-guided decoding and a GRPO stage, measured on
SmolLM2 from the local default's SFT checkpoint, on 100 held-out generator rows.

    python bench/execution_feedback.py                        # SFT, decoding, GRPO: ~1 h on 2 cores
    python bench/execution_feedback.py --sft runs/local       # reuse an SFT run folder
    python bench/execution_feedback.py --sft runs/local --grpo runs/local-grpo   # score finished runs only
    python bench/execution_feedback.py --skip-decoding        # the GRPO part alone

Held-out rows: `synthetic.generate(3000, seed=7)`, easy bucket, every question that appears in
the local default's train/valid/test splits removed, the first 100. Their databases are the same
ten domains, written into the work folder. Every step runs the product's own commands:

    sqltune train experiments/local.yaml                                    # SFT (unless --sft)
    sqltune evaluate --checkpoint SFT --data heldout.jsonl --candidates 1   # greedy
    sqltune evaluate ... --candidates 4 --pick first_valid | vote           # execution-guided
    sqltune train experiments/local-grpo.yaml --set grpo.init_from=SFT     # GRPO (unless --grpo)
    sqltune evaluate --checkpoint GRPO --data heldout.jsonl --candidates 1  # greedy after GRPO

and reads their per-row predictions files, so the figures are the ones a user gets. Prints the
table, the GRPO run's reward curve (metrics.jsonl) and each step's wall time.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SQLTUNE = [sys.executable, "-m", "sqltune"]


def heldout_rows(work: Path, n: int = 100) -> Path:
    """Write the held-out rows (and their databases) into `work`; returns the JSONL file."""
    from sqltune import config
    from sqltune.data import splits, synthetic

    out = work / "heldout.jsonl"
    if out.exists():
        return out
    local = config.load(ROOT / "experiments" / "local.yaml")
    seen = {r["instruction"] for split in splits.load_splits(local.hparams.data).values() for r in split}
    rows = splits.select(synthetic.generate(3000, seed=7, db_dir=work / "heldout-dbs"), "easy", 10**9)
    held = [r for r in rows if r["instruction"] not in seen][:n]
    keep = ("instruction", "input", "response", "db_path")
    out.write_text("".join(json.dumps({k: r[k] for k in keep}) + "\n" for r in held))
    return out


def run(cmd: list[str], log: Path) -> float:
    """Run one sqltune command, its output into `log`; returns its wall time in seconds."""
    print("$", " ".join(cmd[2:]), flush=True)
    started = time.time()
    with log.open("w") as f:
        done = subprocess.run(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT)
    if done.returncode:
        sys.exit(f"failed ({done.returncode}): see {log}")
    return time.time() - started


def score(predictions: Path) -> dict[str, float]:
    rows = [json.loads(line) for line in predictions.read_text().splitlines()]
    mean = lambda key: sum(bool(r.get(key)) for r in rows) / len(rows)  # noqa: E731
    return {"rows": len(rows), "execution": mean("executed"), "pass_at_k": mean("pass_at_k"), "valid": mean("valid")}


def evaluate(checkpoint: str, data: Path, work: Path, name: str, k: int, pick: str) -> dict[str, Any]:
    out = work / f"pred-{name}.jsonl"
    wall = run([*SQLTUNE, "evaluate", "--checkpoint", checkpoint, "--data", str(data), "--candidates", str(k),
                "--pick", pick, "--output", str(out)], work / f"evaluate-{name}.log")
    return {**score(out), "wall_s": wall}


def train(config: str, out_dir: Path, work: Path, name: str, extra: list[str]) -> float:
    return run([*SQLTUNE, "train", config, "--set", f"training_args.output_dir={out_dir}", *extra],
               work / f"train-{name}.log")


def curve(run_dir: Path) -> list[str]:
    """The GRPO run's reward by logged step and its validation execution accuracy."""
    lines = []
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        m = json.loads(line)
        if m["group"] == "training" and "reward" in m:
            lines.append(f"  step {m['step']:>4}  reward {m['reward']:.3f}  execution {m['rewards/execution/mean']:.3f}"
                         f"  runs {m['rewards/runs/mean']:.3f}  format {m['rewards/format/mean']:.3f}")
        elif m["group"] == "validation" and "eval_execution_accuracy" in m:
            lines.append(f"  step {m['step']:>4}  valid execution accuracy {m['eval_execution_accuracy']:.3f}"
                         f"  valid SQL {m.get('eval_valid_sql', float('nan')):.3f}")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", default="bench-execution-feedback", help="folder for rows, runs and predictions")
    ap.add_argument("--sft", help="an SFT run folder or checkpoint (default: train experiments/local.yaml)")
    ap.add_argument("--grpo", help="a finished GRPO run folder (default: train experiments/local-grpo.yaml)")
    ap.add_argument("--grpo-set", action="append", default=[], metavar="KEY=VALUE", help="override for the GRPO run")
    ap.add_argument("--skip-decoding", action="store_true", help="no candidates-4 evaluations")
    ns = ap.parse_args()
    work = Path(ns.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    data = heldout_rows(work)
    table: list[tuple[str, dict[str, Any]]] = []

    sft = ns.sft
    if sft is None:
        sft = str(work / "sft")
        table.append(("SFT training (experiments/local.yaml)", {"wall_s": train(
            "experiments/local.yaml", work / "sft", work, "sft", [])}))
    table.append(("SFT, greedy", evaluate(sft, data, work, "sft-greedy", 1, "first_valid")))
    if not ns.skip_decoding:
        for pick in ("first_valid", "vote"):
            table.append((f"SFT, beam 4, {pick}", evaluate(sft, data, work, f"sft-4-{pick}", 4, pick)))

    grpo = ns.grpo
    if grpo is None:
        grpo = str(work / "grpo")
        sets = [f"--set=grpo.init_from={Path(sft).resolve()}", *(f"--set={s}" for s in ns.grpo_set)]
        table.append(("GRPO training (experiments/local-grpo.yaml)", {"wall_s": train(
            "experiments/local-grpo.yaml", work / "grpo", work, "grpo", sets)}))
    table.append(("GRPO, greedy", evaluate(grpo, data, work, "grpo-greedy", 1, "first_valid")))

    print(f"\n{data}: 100 held-out rows; execution accuracy by Spider's rule\n")
    print(f"| {'step':<44} | execution | pass@k | valid SQL | wall |")
    print(f"|{'-' * 46}|-----------|--------|-----------|------|")
    for name, r in table:
        cells = [f"{r[k]:.3f}" if k in r else "" for k in ("execution", "pass_at_k", "valid")]
        print(f"| {name:<44} | {cells[0]:>9} | {cells[1]:>6} | {cells[2]:>9} | {r['wall_s']:.0f} s |")
    if (Path(grpo) / "metrics.jsonl").exists():
        print("\nGRPO curve (training: mean reward and its parts per logged step; validation: 40 rows)")
        print("\n".join(curve(Path(grpo))))


if __name__ == "__main__":
    main()
