"""`sqltune` / `python -m sqltune`: train, and the tools around it.

    sqltune train experiments/local.yaml                 # one machine, no cluster
    sqltune train experiments/local.yaml --set lora.r=16 --set training_args.max_steps=20
    python -m determined.launch.torch_distributed python -m sqltune train   # on a cluster

A user's mistake (config, data, missing package) ends with one message and exit code 2, no traceback.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Any

from sqltune.errors import ConfigError
from sqltune.evaluate import GROUPS, SQL_METRICS

USER_ERRORS: tuple[type[BaseException], ...] = (ConfigError,)


def _setup_logging(verbose: bool) -> None:
    import warnings

    warnings.filterwarnings("ignore", category=FutureWarning)  # library deprecation chatter
    rank = int(os.environ.get("RANK", "0"))
    level = logging.INFO if (rank == 0 or verbose) else logging.WARNING
    logging.basicConfig(level=level, format=f"[rank {rank}] %(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S", force=True)
    import transformers

    transformers.logging.set_verbosity_warning()
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)  # "no CPU 4-bit kernel package" noise
    logging.getLogger("determined").setLevel(logging.WARNING if not verbose else logging.INFO)




def metrics_table(metrics: dict[str, float], title: str) -> Any:
    """Rows: metrics; columns: all rows, then per difficulty and per Spider hardness when present."""
    from rich.table import Table

    groups = [g for g in GROUPS if any(f"eval_{m}_{g}" in metrics for m in SQL_METRICS)]
    table = Table(title=title)
    table.add_column("metric")
    for col in ("all", *groups):
        table.add_column(col.replace("hardness_", "spider "), justify="right")
    for key in ("eval_loss", "eval_accuracy"):
        if key in metrics:
            table.add_row(key, f"{metrics[key]:.4f}", *[""] * len(groups))
    for m in SQL_METRICS:
        if f"eval_{m}" in metrics:
            cells = [metrics.get(f"eval_{m}_{g}") for g in groups]
            table.add_row(f"eval_{m}", f"{metrics[f'eval_{m}']:.3f}", *["" if c is None else f"{c:.3f}" for c in cells])
    return table


def make_console() -> Any:
    """rich's Console, 120 columns wide when output is a file or a CI log (rich assumes 80)."""
    from rich.console import Console

    c = Console()
    return c if c.is_terminal else Console(width=120)


def _print_summary(summary: dict[str, Any]) -> None:
    console = make_console()
    title = f"sqltune: step {summary['global_step']}/{summary['max_steps']}"
    first = summary.get("first_validation") or {}
    if first.get("batches") == 0 and summary["validation"] is not first:
        gains = [f"{k} {first[k]:.3f} -> {summary['validation'][k]:.3f}" for k in
                 ("eval_loss", "eval_bleu", "eval_exact_match", "eval_execution_accuracy") if k in first]
        console.print("since step 0 (the model as it came): " + ", ".join(gains))
    console.print(metrics_table(summary["validation"], title))
    console.print(
        f"train_loss {summary['train_loss']:.4f} | trainable parameters {summary['trainable_parameters']:,} "
        f"of {summary['total_parameters']:,} | wall time {summary['wall_time_s']:.0f} s | "
        f"peak RSS {summary['peak_rss_gib']:.2f} GiB"
    )
    if summary["latest_checkpoint"]:
        console.print(f"checkpoint {summary['latest_checkpoint']} in {summary['checkpoint_storage']}")
    if summary["preempted"]:
        console.print(f"stopped early at step {summary['global_step']}: run the same command again to resume")


def cmd_train(ns: argparse.Namespace) -> int:
    from sqltune import config, platform, train

    trial = platform.cluster_trial()
    if trial is not None:
        raw = {"hyperparameters": trial.hparams, "checkpoint_storage": None}
        exp = config.build(raw, ns.set)
    else:
        if ns.config is None:
            raise ConfigError(["no config given and not running on a Determined cluster: sqltune train CONFIG.yaml"])
        exp = config.load(ns.config, ns.set)
        trial = platform.local_trial(exp.raw, exp.hparams.training_args["output_dir"], ns.fresh)
    summary = train.run(exp, trial, fresh=ns.fresh)
    if int(os.environ.get("RANK", "0")) == 0:
        _print_summary(summary)
    return 0


def _read_eval_rows(ref: str, hp: Any) -> tuple[str, list[dict[str, Any]]]:
    """A split of the checkpoint's own data config (train/valid/test), or a data file."""
    from sqltune import data

    if ref in ("train", "valid", "test"):
        return ref, list(data.load_splits(hp.data)[ref])
    rows, skipped = data.read_rows(hp.data.model_copy(update={"source": ref}), data.data_cache_dir(hp.data))
    if skipped:
        logging.getLogger("sqltune").warning("skipped %d unusable rows, e.g. %s", len(skipped), skipped[0])
    return Path(ref).stem, [{**r, "difficulty": r.get("difficulty") or data.difficulty(r)} for r in rows]


def cmd_evaluate(ns: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from sqltune import evaluate, model, platform

    ckpt = platform.find_checkpoint(ns.checkpoint)
    net, tokenizer, hp = model.load_checkpoint(ckpt)
    name, rows = _read_eval_rows(ns.data, hp)
    rows = evaluate.eval_rows(rows, ns.samples or len(rows))
    cfg = hp.eval.model_copy(update={k: v for k, v in (("batch_size", ns.batch_size),
                                                        ("max_new_tokens", ns.max_new_tokens)) if v})
    preds = evaluate.generate(net, tokenizer, rows, hp.format.system_prompt,
                              max_new_tokens=cfg.max_new_tokens, batch_size=cfg.batch_size)
    result = evaluate.score(rows, preds, cfg.sql_timeout_s)
    out = Path(ns.output or f"predictions-{name}.jsonl")
    out.write_text("".join(json.dumps(r) + "\n" for r in result["rows"]))
    metrics = {f"eval_{k}": v for k, v in result["summary"].items()}
    make_console().print(metrics_table(metrics, f"{ckpt} on {name}: {len(rows)} rows"))
    print(f"per-row predictions: {out}")
    return 0


def cmd_predict(ns: argparse.Namespace) -> int:
    from pathlib import Path

    from sqltune import evaluate, model, platform

    schema = Path(ns.schema).read_text() if ns.schema else ""
    net, tokenizer, hp = model.load_checkpoint(platform.find_checkpoint(ns.checkpoint))
    row = {"instruction": ns.question, "input": schema}
    [sql] = evaluate.generate(net, tokenizer, [row], hp.format.system_prompt,
                              max_new_tokens=ns.max_new_tokens or hp.eval.max_new_tokens, batch_size=1, progress=False)
    print(sql)
    return 0


def cmd_merge(ns: argparse.Namespace) -> int:
    from pathlib import Path

    from sqltune import model, platform

    print(f"merged model written to {model.merge_lora(platform.find_checkpoint(ns.checkpoint), Path(ns.output))}")
    return 0


def cmd_search(ns: argparse.Namespace) -> int:
    from sqltune.study import compare, search

    s = search.load(ns.config, ns.set)
    if ns.dry_run:
        print(search.describe(s))
        return 0
    if ns.worker:
        return search.run_worker(s)
    code = search.run(s, ns.parallel)
    compare.print_table(compare.load([s.folder]))
    print(f"report: sqltune compare {s.folder} | dashboard: optuna-dashboard {s.storage_url}")
    return code


def cmd_compare(ns: argparse.Namespace) -> int:
    from sqltune.study import compare

    return compare.main(ns.runs, ns.experiment, ns.output, ns.metric)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sqltune", description="Fine-tune causal LMs to write SQL.")
    p.add_argument("-v", "--verbose", action="store_true")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train one trial (locally from a YAML, or as a Determined trial)")
    t.add_argument("config", nargs="?", help="experiment YAML (omit on a cluster)")
    t.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a hyperparameter, e.g. lora.r=16 or training_args.max_steps=20")
    t.add_argument("--fresh", action="store_true", help="ignore the run folder's latest checkpoint")
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("evaluate", help="score a saved checkpoint's generated SQL on a split or a file")
    e.add_argument("--checkpoint", required=True, help="checkpoint-N folder, storage folder, or checkpoint UUID")
    e.add_argument("--data", default="test", help="train | valid | test (the checkpoint's data) or a data file")
    e.add_argument("--samples", type=int, help="a fixed seeded subset of this many rows")
    e.add_argument("--output", help="per-row JSONL (default predictions-<data>.jsonl)")
    e.add_argument("--batch-size", type=int)
    e.add_argument("--max-new-tokens", type=int)
    e.set_defaults(func=cmd_evaluate)

    pr = sub.add_parser("predict", help="print the SQL a checkpoint writes for one question")
    pr.add_argument("question")
    pr.add_argument("--checkpoint", required=True)
    pr.add_argument("--schema", help="file with the CREATE TABLE statements")
    pr.add_argument("--max-new-tokens", type=int)
    pr.set_defaults(func=cmd_predict)

    mg = sub.add_parser("merge", help="fold a LoRA adapter into its base model for serving")
    mg.add_argument("--checkpoint", required=True)
    mg.add_argument("--output", required=True, help="folder for the merged model")
    mg.set_defaults(func=cmd_merge)

    s = sub.add_parser("search", help="run a search YAML's trials here with Optuna (grid, random, adaptive_asha)")
    s.add_argument("config", help="experiment YAML with a grid / random / adaptive_asha searcher")
    s.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override for every trial")
    s.add_argument("--parallel", type=int, default=1, metavar="N", help="trials at once, one process each")
    s.add_argument("--dry-run", action="store_true", help="list the trials and where they go; train nothing")
    s.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)  # one of --parallel's processes
    s.set_defaults(func=cmd_search)

    c = sub.add_parser("compare", help="HTML report, plots, TensorBoard HParams and a table of runs or searches")
    c.add_argument("runs", nargs="*", help="run folders, search folders, or folders holding them")
    c.add_argument("--experiment", type=int, nargs="+", default=[], metavar="ID",
                   help="Determined experiment IDs, read from the master (DET_MASTER, `det user login`)")
    c.add_argument("--output", default="sqltune-compare", help="report folder (default ./sqltune-compare)")
    c.add_argument("--metric", help="rank by this metric (default: the searcher's, else eval_loss)")
    c.set_defaults(func=cmd_compare)
    return p


def main(argv: list[str] | None = None) -> int:
    ns = build_parser().parse_args(argv)
    _setup_logging(ns.verbose)
    from sqltune.errors import DataError

    try:
        return ns.func(ns)
    except (*USER_ERRORS, DataError, ImportError, FileNotFoundError) as e:
        print(f"sqltune: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
