"""Real questions: a plain HF Trainer + PEFT script against sqltune, side by side, on text2sql-data sets.

    python bench/real_questions.py --data ~/text2sql-data/data --sets restaurants scholar
    python bench/real_questions.py --data ... --sets scholar --split query          # unseen SQL structures
    python bench/real_questions.py --data ... --sets restaurants --train-on academic imdb yelp --valid-on scholar
                                                              # leave restaurants out: train on the others
    python bench/real_questions.py --data ... --sets restaurants --sides sqltune --recipe experiments/real-questions.yaml

Both sides train SmolLM2-135M-Instruct on the same rows (sqltune's loader: the set's own question or
query split, every test row) and are scored by the same scorer (`sqltune.sql.scoring`: execution on
the set's SQLite file where the copy has one, else fuzzed execution), greedy decoding:

  plain    transformers.Trainer + PEFT as anyone would write it: the reference prompt through the
           chat template, completion-only labels, padded batches, LoRA r16 alpha 32 dropout 0.1 on
           all linear layers, lr 3e-4 cosine, 2 epochs, batch 8, fp32; then model.generate over
           the test rows in batches of 16, left-padded, up to 256 new tokens (the sets' SQL: ~134)
  sqltune  `sqltune train RECIPE` then `sqltune evaluate --data test`, each its own process, with
           the set given by --set (the recipe holds everything else)

Each side runs in its own process; the table gives execution accuracy over every test row, valid
SQL, training and evaluation wall time, and peak RSS. Run on an idle machine: the two sides run one
after the other, so a busy core slows whichever side it meets. geography is refused: it is kept aside
as an outside check of the recipe, never measured while choosing it.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import transformers

HELD_OUT = "geography"  # the outside check: never train, tune or measure on it while choosing a recipe
SYSTEM = ("You are a helpful programmer assistant that excels at SQL. When prompted with a task and a definition "
          "of an SQL table, you respond with a SQL query to retrieve information from the table. Don't explain "
          "your reasoning, only provide the SQL query.")


def data_overrides(ns: argparse.Namespace, name: str) -> dict[str, Any]:
    """The set's own split; with --train-on, the set left out whole as the test split (the
    --train-on sets whole in training, the --valid-on set's first 100 questions in validation)."""
    def source(s: str) -> str:
        return f"text2sql-data:{Path(ns.data) / f'{s}.json'}"

    if ns.train_on:
        return {"source": [*({"source": source(s), "split": "train"} for s in ns.train_on),
                           {"source": source(ns.valid_on), "split": "valid", "max_rows": 100},  # eval loss: all of it
                           {"source": source(name), "split": "test"}],
                "subset": "all"}
    return {"source": source(name), "split_by": ns.split, "subset": "all", "fold": ns.fold}


def row_name(ns: argparse.Namespace, name: str) -> str:
    return f"{name}-left-out" if ns.train_on else f"{name}-{ns.split}-{ns.fold}"


def cpu_flags() -> str:
    flags = set(Path("/proc/cpuinfo").read_text().split("flags")[1].split("\n")[0].split()) if Path("/proc/cpuinfo").exists() else set()
    return ", ".join(f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f in flags) or "none of avx2/avx512/amx"


def score(rows: list[dict[str, Any]], predictions: list[str], work: Path) -> dict[str, float]:
    from sqltune.sql import scoring

    scored = [scoring.score_one({**r, "prediction": p}, fuzz_dir=work / "fuzz") for r, p in zip(rows, predictions)]
    verdicts = [s["executed"] if s["executed"] is not None else s["executed_fuzz"] for s in scored]
    known = [v for v in verdicts if v is not None]
    return {"n": len(rows), "scored": len(known), "execution_accuracy": sum(known) / max(len(known), 1),
            "valid_sql": sum(bool(s["valid"]) for s in scored) / max(len(scored), 1)}


# ---- plain: HF Trainer + PEFT ------------------------------------------------------------------


def plain(ns: argparse.Namespace, name: str, work: Path) -> dict[str, Any]:
    import peft
    import torch

    from sqltune.config import DataSettings
    from sqltune.data.splits import load_splits
    from sqltune.model.load import smollm2_folder

    torch.set_num_threads(ns.threads)
    splits = load_splits(DataSettings(**data_overrides(ns, name), cache_dir=str(work / "data")))
    folder = str(smollm2_folder())
    tok = transformers.AutoTokenizer.from_pretrained(folder)
    tok.pad_token = tok.pad_token or tok.eos_token

    def prompt(row: dict[str, Any]) -> str:
        user = f"Task: {row['instruction']}\nSQL table: {row['input']}\nSQL query: "
        return tok.apply_chat_template([{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}],
                                       tokenize=False, add_generation_prompt=True)

    def encode(row: dict[str, Any]) -> dict[str, Any]:
        p = tok(prompt(row), add_special_tokens=False)["input_ids"]
        c = tok(row["response"] + tok.eos_token, add_special_tokens=False)["input_ids"]
        return {"input_ids": (p + c)[:1024], "labels": ([-100] * len(p) + c)[:1024]}

    train = [encode(r) for r in splits["train"]]
    net = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    net = peft.get_peft_model(net, peft.LoraConfig(task_type="CAUSAL_LM", r=16, lora_alpha=32, lora_dropout=0.1,
                                                   target_modules="all-linear"))
    args = transformers.TrainingArguments(
        output_dir=str(work / "plain-run"), num_train_epochs=2, per_device_train_batch_size=ns.plain_micro_batch,
        gradient_accumulation_steps=8 // ns.plain_micro_batch, learning_rate=3e-4,
        lr_scheduler_type="cosine", warmup_steps=5, logging_steps=5, report_to="none",
        save_strategy="steps" if ns.plain_save_steps else "no", save_steps=ns.plain_save_steps or 500,
        save_total_limit=1, use_cpu=True, seed=42, dataloader_num_workers=0, remove_unused_columns=False,
        disable_tqdm=True)
    clock = StepClock(work / "plain-steps.jsonl")
    trainer = transformers.Trainer(model=net, args=args, train_dataset=train, callbacks=[clock],
                                   data_collator=transformers.DataCollatorForSeq2Seq(tok, padding=True))
    resume = any((work / "plain-run").glob("checkpoint-*"))  # a run cut short (a session's end): go on from it
    started = time.perf_counter()
    trainer.train(resume_from_checkpoint=resume or None)
    train_s = clock.total_s(time.perf_counter() - started)

    started = time.perf_counter()
    net.eval()
    tok.padding_side = "left"
    test = list(splits["test"])
    preds = []
    for i in range(0, len(test), 16):
        batch = tok([prompt(r) for r in test[i:i + 16]], return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.no_grad():
            out = net.generate(**batch, max_new_tokens=256, do_sample=False, pad_token_id=tok.pad_token_id)
        preds += tok.batch_decode(out[:, batch["input_ids"].shape[1]:], skip_special_tokens=True)
    eval_s = time.perf_counter() - started
    (work / "plain-predictions.jsonl").write_text("".join(json.dumps({"question": r["instruction"], "gold": r["response"],
                                                                      "predicted": p}) + "\n" for r, p in zip(test, preds)))
    return {**score(test, preds, work), "train_s": train_s, "eval_s": eval_s, "steps": trainer.state.global_step,
            "peak_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}


class StepClock(transformers.TrainerCallback):
    """Each step's end time, appended to a file that outlives the process: a plain side cut short
    by a session's end resumes from its checkpoint (--plain-save-steps), and its training time is
    the sum of its segments (each from its Trainer's start to its last step; a restart's model load
    is left out, as the first start's is)."""

    def __init__(self, path: Path):
        self.path = path
        self.segment = time.time()

    def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001
        with open(self.path, "a") as f:
            f.write(json.dumps({"segment": self.segment, "step": state.global_step, "t": time.time()}) + "\n")

    def total_s(self, this_segment_s: float) -> float:
        """This segment's time plus each earlier one's up to the step the next resumed from (the
        steps after its last checkpoint were run again, and count once)."""
        lines = [json.loads(x) for x in self.path.read_text().splitlines()] if self.path.exists() else []
        starts = sorted({x["segment"] for x in lines} - {self.segment})
        total = this_segment_s
        for i, start in enumerate(starts):
            after = starts[i + 1] if i + 1 < len(starts) else self.segment
            resumed_at = min((x["step"] for x in lines if x["segment"] == after), default=1) - 1
            kept = [x["t"] for x in lines if x["segment"] == start and x["step"] <= resumed_at]
            total += (max(kept) - start) if kept else 0.0
        return total


# ---- sqltune: its own commands -------------------------------------------------------------------


def sqltune(ns: argparse.Namespace, name: str, work: Path) -> dict[str, Any]:
    run_dir = work / "sqltune-run"
    sets = [f"data.{k}={json.dumps(v) if isinstance(v, list) else v}" for k, v in data_overrides(ns, name).items()]
    sets += [f"data.cache_dir={work / 'data'}", f"training_args.output_dir={run_dir}", *ns.set]
    validated_on = ns.valid_on or name
    if not any(Path(ns.data).glob(f"{validated_on}-db*.sqlite")):  # no database: validation scored by fuzzed execution
        sets.insert(0, "searcher.metric=eval_fuzz_execution_accuracy")
    log = work / "sqltune.log"
    env = {**os.environ, "OMP_NUM_THREADS": str(ns.threads)}
    cmd = [sys.executable, "-m", "sqltune", "train", ns.recipe, "--fresh", *(a for s in sets for a in ("--set", s))]
    started = time.perf_counter()
    with open(log, "w") as f:
        subprocess.run(cmd, check=True, stdout=f, stderr=subprocess.STDOUT, env=env)
    train_s = time.perf_counter() - started
    preds_file = work / "sqltune-predictions.jsonl"
    started = time.perf_counter()
    with open(log, "a") as f:
        subprocess.run([sys.executable, "-m", "sqltune", "evaluate", "--checkpoint", str(run_dir), "--data", "test",
                        "--output", str(preds_file)], check=True, stdout=f, stderr=subprocess.STDOUT, env=env)
    eval_s = time.perf_counter() - started
    lines = [json.loads(line) for line in preds_file.read_text().splitlines()]
    verdicts = [r["executed"] if r["executed"] is not None else r["executed_fuzz"] for r in lines]
    known = [v for v in verdicts if v is not None]
    summary = json.loads((run_dir / "summary.json").read_text())
    return {"n": len(lines), "scored": len(known), "execution_accuracy": sum(known) / max(len(known), 1),
            "valid_sql": sum(bool(r["valid"]) for r in lines) / max(len(lines), 1), "train_s": train_s,
            "eval_s": eval_s, "steps": summary["global_step"], "peak_gib": summary["peak_rss_gib"]}


def _child(side: str, ns: argparse.Namespace, name: str, work: Path) -> None:
    result = (plain if side == "plain" else sqltune)(ns, name, work)
    (work / f"{side}.json").write_text(json.dumps(result))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="text2sql-data's data/ folder")
    p.add_argument("--sets", nargs="+", default=["restaurants", "scholar"])
    p.add_argument("--split", choices=("question", "query"), default="question")
    p.add_argument("--fold", type=int, default=0, help="the test fold of a 10-fold set")
    p.add_argument("--train-on", nargs="+", default=[], metavar="SET",
                   help="leave each of --sets out: train on these sets whole, validate on --valid-on, test on it whole")
    p.add_argument("--valid-on", metavar="SET", help="with --train-on: the set validated on (its first 100 questions)")
    p.add_argument("--sides", default="plain,sqltune")
    p.add_argument("--recipe", default="experiments/real-questions.yaml")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="sqltune side: an override")
    p.add_argument("--plain-micro-batch", type=int, choices=(1, 2, 4, 8), default=8,
                   help="plain side: rows per forward, the rest of the batch of 8 by gradient accumulation "
                        "(scholar's ~1,000-token rows at 8 a pass need more than 24 GiB)")
    p.add_argument("--plain-save-steps", type=int, default=0,
                   help="plain side: a checkpoint every N steps, and a rerun resumes from it (a run longer than a "
                        "session: scholar's takes ~3 h on 2 cores); its step times go to plain-steps.jsonl")
    p.add_argument("--work", default="/tmp/sqltune-real-questions")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    p.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    ns = p.parse_args()
    if ns.child:
        side, name, work = ns.child
        _child(side, ns, name, Path(work))
        return
    if HELD_OUT in {*ns.sets, *ns.train_on, ns.valid_on}:
        sys.exit(f"{HELD_OUT} is kept aside as an outside check of the recipe: not measured here")
    if bool(ns.train_on) != bool(ns.valid_on):
        sys.exit("--train-on and --valid-on go together")
    print(f"CPU flags: {cpu_flags()}; {ns.threads} threads; split {ns.split}, fold {ns.fold}; recipe {ns.recipe} {ns.set}")
    print(f"{'set':<12} {'side':<8} {'exec acc':>8} {'valid':>6} {'rows':>5} {'steps':>5} {'train s':>8} "
          f"{'eval s':>7} {'total s':>8} {'peak GiB':>8}")
    for name in ns.sets:
        for side in ns.sides.split(","):
            work = Path(ns.work) / row_name(ns, name) / side
            work.mkdir(parents=True, exist_ok=True)
            args = [a for a in sys.argv[1:]]
            subprocess.run([sys.executable, __file__, *args, "--child", side, name, str(work)], check=True)
            r = json.loads((work / f"{side}.json").read_text())
            print(f"{name:<12} {side:<8} {r['execution_accuracy']:>8.3f} {r['valid_sql']:>6.2f} {r['scored']:>5} "
                  f"{r['steps']:>5} {r['train_s']:>8.0f} {r['eval_s']:>7.0f} {r['train_s'] + r['eval_s']:>8.0f} "
                  f"{r['peak_gib']:>8.2f}", flush=True)


if __name__ == "__main__":
    main()
