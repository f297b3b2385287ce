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

from sqltune.console import make_console, metrics_table
from sqltune.errors import ConfigError, UserError

# Heavy libraries (torch, transformers, determined) are imported inside the commands that need them,
# so `--help`, `compare` and a config error answer in about a second.


def _setup_logging(verbose: bool) -> None:
    rank = int(os.environ.get("RANK", "0"))
    level = logging.INFO if (rank == 0 or verbose) else logging.WARNING
    logging.basicConfig(level=level, format=f"[rank {rank}] %(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S", force=True)
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)  # "no CPU 4-bit kernel package" noise
    logging.getLogger("determined").setLevel(logging.WARNING if not verbose else logging.INFO)


def _quiet_libraries() -> None:
    """For the commands that load a model: library deprecation chatter and transformers' info lines off."""
    import warnings

    import transformers

    warnings.filterwarnings("ignore", category=FutureWarning)
    transformers.logging.set_verbosity_warning()


def checkpoint_folder(ref: str) -> Path:
    """The HF `checkpoint-N/` that `--checkpoint` names (rundir.checkpoint_folder), fetched from the
    cluster at DET_MASTER when it is no folder or local UUID."""
    from sqltune import rundir

    def download(uuid: str) -> Path:
        from sqltune import core_api

        return core_api.download_checkpoint(uuid)

    return rundir.checkpoint_folder(ref, "--checkpoint", download=download)


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
    valid_fit = (summary.get("schema_pruning") or {}).get("valid")
    if valid_fit and valid_fit["pruned"]:
        recall = "n/a" if valid_fit["schema_recall"] is None else f"{valid_fit['schema_recall']:.3f}"
        console.print(f"schema pruned to fit on {valid_fit['pruned']} of {valid_fit['rows']} validation rows; "
                      f"schema recall {recall}")
    if summary["latest_checkpoint"]:
        where = summary["checkpoint_storage"] or "the experiment's checkpoint storage"
        console.print(f"checkpoint {summary['latest_checkpoint']} in {where}")
    if summary["preempted"]:
        console.print(f"stopped early at step {summary['global_step']}: run the same command again to resume")


def cmd_train(ns: argparse.Namespace) -> int:
    from sqltune import config

    exp = None if ns.config is None else config.load(ns.config, ns.set)  # config errors before heavy imports
    _quiet_libraries()
    from sqltune import core_api, recipes, rundir

    trial = core_api.cluster_trial()
    if trial is not None:
        raw = {"hyperparameters": trial.hparams, "checkpoint_storage": None}
        exp = config.build(raw, ns.set)
    else:
        if ns.config is None:
            raise ConfigError(["no config given and not running on a Determined cluster: sqltune train CONFIG.yaml"])
        trial = core_api.local_trial(exp.raw, rundir.RunFolder(Path(exp.hparams.training_args["output_dir"])), ns.fresh)
    summary = recipes.run(exp, trial, fresh=ns.fresh)
    if int(os.environ.get("RANK", "0")) == 0:
        _print_summary(summary)
    return 0


def _read_eval_rows(ref: str, hp: Any) -> tuple[str, list[dict[str, Any]]]:
    """A split of the checkpoint's own data config (train/valid/test), the dev split of a
    benchmark folder (spider:PATH, bird:PATH), or a data file."""
    from sqltune.data import benchmarks, examples, rows as data_rows, splits as data_splits

    if ref in ("train", "valid", "test"):
        rows = examples.splits_with_examples(data_splits.load_splits(hp.data, hp.format.dialect), hp.format.examples)[ref]
        if not rows:
            raise ConfigError([f"--data {ref}: this checkpoint's data has no {ref} split (try --data valid)"])
        return ref, rows
    if benchmarks.is_benchmark(ref):
        name, rows = f"{ref.partition(':')[0]}-dev", benchmarks.benchmark_splits(ref, evidence=hp.data.evidence)["valid"]
    else:
        rows, skipped = data_splits.read_rows(hp.data.model_copy(update={"source": ref}),
                                              data_splits.data_cache_dir(hp.data))
        if skipped:
            logging.getLogger("sqltune").warning("skipped %d unusable rows, e.g. %s", len(skipped), skipped[0])
        name = Path(ref).stem
    if hp.format.examples:  # solved examples from the checkpoint's own training split, as in training
        rows = examples.attach(rows, list(data_splits.load_splits(hp.data, hp.format.dialect)["train"]), hp.format.examples)
    return name, [{**r, "difficulty": r.get("difficulty") or data_rows.difficulty(r, open_ended=True)} for r in rows]


def cmd_evaluate(ns: argparse.Namespace) -> int:
    import json

    ckpt = checkpoint_folder(ns.checkpoint)
    _quiet_libraries()
    import pydantic

    from sqltune import evaluate, model, prune, rundir
    from sqltune.config.experiment import pydantic_problems

    hp = rundir.checkpoint_hparams(ckpt)
    net, tokenizer = model.load_checkpoint(ckpt, hp)
    name, rows = _read_eval_rows(ns.data, hp)
    rows, _ = prune.prepare(evaluate.eval_rows(rows, ns.samples or len(rows)), tokenizer, hp.format,
                            use_gold=False, name=name)
    given = {k: v for k, v in (("batch_size", ns.batch_size), ("max_new_tokens", ns.max_new_tokens),
                               ("candidates", ns.candidates), ("pick", ns.pick), ("repair", ns.repair)) if v}
    try:  # validated: --repair needs candidates 1
        cfg = type(hp.eval).model_validate({**hp.eval.model_dump(), **given})
    except pydantic.ValidationError as e:
        raise ConfigError(pydantic_problems(e)) from None
    result = evaluate.generate_and_score(net, tokenizer, rows, hp.format.system_text(), cfg, layout=hp.format.layout)
    out = Path(ns.output or f"predictions-{name}.jsonl")
    out.write_text("".join(json.dumps(r) + "\n" for r in result["rows"]))
    metrics = {f"eval_{k}": v for k, v in result["summary"].items()}
    make_console().print(metrics_table(metrics, f"{ckpt} on {name}: {len(rows)} rows"))
    print(f"per-row predictions: {out}")
    return 0


def _read_text(path: str, flag: str) -> str:
    try:
        return Path(path).read_text()
    except OSError as e:
        raise ConfigError([f"{flag}: can't read '{path}' ({e.strerror})"]) from None


def cmd_predict(ns: argparse.Namespace) -> int:
    schema = _read_text(ns.schema, "--schema") if ns.schema else ""
    ckpt = checkpoint_folder(ns.checkpoint)
    _quiet_libraries()
    from sqltune import evaluate, model, rundir
    from sqltune.sql import guided

    hp = rundir.checkpoint_hparams(ckpt)
    net, tokenizer = model.load_checkpoint(ckpt, hp)
    row = {"instruction": ns.question, "input": schema}
    if hp.format.examples:  # solved examples from the checkpoint's own training split, as in training
        from sqltune.data import examples, splits as data_splits

        [row] = examples.attach([row], list(data_splits.load_splits(hp.data, hp.format.dialect)["train"]), hp.format.examples)
    if hp.format.compact_sql:  # the schema (and examples) as training saw them
        from sqltune.sql.compact import compact_row

        row = compact_row({**row, "response": ""})
    k = ns.candidates or hp.eval.candidates
    [found] = evaluate.generate_candidates(
        net, tokenizer, [row], hp.format.system_text(), layout=hp.format.layout,
        max_new_tokens=ns.max_new_tokens or hp.eval.max_new_tokens,
        batch_size=1, candidates=k, decoding=hp.eval.decoding, temperature=hp.eval.temperature, progress=False)
    print(found[guided.pick(found, ns.db, ns.pick or hp.eval.pick, needs_rows=hp.eval.pick_needs_rows)])
    return 0


def cmd_merge(ns: argparse.Namespace) -> int:
    ckpt = checkpoint_folder(ns.checkpoint)
    _quiet_libraries()
    from sqltune import model, rundir

    print(f"merged model written to {model.merge_lora(ckpt, rundir.checkpoint_hparams(ckpt), Path(ns.output))}")
    return 0


def cmd_search(ns: argparse.Namespace) -> int:
    _quiet_libraries()
    from sqltune.study import compare, search, trials

    s = search.load(ns.config, ns.set)
    if ns.dry_run:
        print(search.describe(s))
        return 0
    if ns.worker:
        return trials.run_worker(s)
    code = trials.run(s, ns.parallel)
    compare.print_table(compare.load([s.folder]))
    print(f"report: sqltune compare {s.folder} | dashboard: optuna-dashboard {s.storage_url}")
    return code


def cmd_compare(ns: argparse.Namespace) -> int:
    from sqltune.study import compare

    return compare.main(ns.runs, ns.experiment, ns.output, ns.metric)


def cmd_copy_db(ns: argparse.Namespace) -> int:
    """Copy each SQLite database into the target engine, with a progress bar; print the
    `data.database` value that runs a dataset's questions on the copies."""
    from rich.progress import track

    from sqltune.sql import copy_db, engine

    source = Path(ns.source).expanduser()
    files = [source] if source.is_file() else sorted({*source.glob("*/*.sqlite"), *source.glob("*.sqlite")})
    if not files:
        raise ConfigError([f"copy-db: no SQLite file at {source} (a file, or a folder holding */*.sqlite)"])
    target = engine.kind(ns.to)
    if target == "sqlite" and not ns.to.startswith("duckdb:"):
        raise ConfigError([f"copy-db --to: '{engine.display(ns.to)}' is neither duckdb:FOLDER nor a PostgreSQL URL or DSN"])
    for path in track(files, description=f"copying {len(files)} database(s)"):
        if target == "postgres":
            copy_db.to_postgres(path, ns.to)
        else:
            copy_db.to_duckdb(path, Path(engine.duckdb_path(ns.to)).expanduser())
    if target == "postgres":
        example = copy_db.search_path_url(engine.display(ns.to), "{db_id}")
    else:
        example = str(Path(engine.duckdb_path(ns.to)).expanduser() / "{db_id}.duckdb")
    print(f"copied {len(files)} database(s). Score on them with  data.database: {example}")
    print("(as a read-only role for PostgreSQL: GRANT pg_read_all_data TO <role>, and use that role in the URL)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sqltune", description="Fine-tune causal LMs to write SQL.")
    p.add_argument("-v", "--verbose", action="store_true")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train one trial (locally from a YAML, or as a Determined trial)")
    t.add_argument("config", nargs="?", help="experiment YAML (omit on a cluster)")
    t.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a hyperparameter, e.g. lora.r=16 or training_args.max_steps=20, or the "
                        "searcher's, e.g. searcher.metric=eval_fuzz_execution_accuracy")
    t.add_argument("--fresh", action="store_true", help="ignore the run folder's latest checkpoint")
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("evaluate", help="score a saved checkpoint's generated SQL on a split or a file")
    e.add_argument("--checkpoint", required=True, help="checkpoint-N folder, storage folder, or checkpoint UUID")
    e.add_argument("--data", default="test",
                   help="train | valid | test (the checkpoint's data), spider:PATH or bird:PATH (its dev split), or a data file")
    e.add_argument("--samples", type=int, help="a fixed seeded subset of this many rows")
    e.add_argument("--output", help="per-row JSONL (default predictions-<data>.jsonl)")
    e.add_argument("--batch-size", type=int)
    e.add_argument("--max-new-tokens", type=int)
    e.add_argument("--candidates", type=int, metavar="K", help="execution-guided: K candidates per question (default eval.candidates)")
    e.add_argument("--pick", choices=("first_valid", "vote"), help="how a candidate is chosen (default eval.pick)")
    e.add_argument("--repair", action="store_true", default=None,
                   help="an answer that fails to run goes back to the model with its error, once (eval.repair)")
    e.set_defaults(func=cmd_evaluate)

    pr = sub.add_parser("predict", help="print the SQL a checkpoint writes for one question")
    pr.add_argument("question")
    pr.add_argument("--checkpoint", required=True)
    pr.add_argument("--schema", help="file with the CREATE TABLE statements")
    pr.add_argument("--max-new-tokens", type=int)
    pr.add_argument("--candidates", type=int, metavar="K", help="execution-guided: K candidates (default eval.candidates)")
    pr.add_argument("--pick", choices=("first_valid", "vote"))
    pr.add_argument("--db", help="a SQLite file the candidates run on (without one: the first that parses)")
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

    cp = sub.add_parser("copy-db", help="copy SQLite databases (a file, or a Spider/BIRD folder) into DuckDB or PostgreSQL")
    cp.add_argument("source", help="a SQLite file, or a folder searched for */*.sqlite (Spider's database/, BIRD's dev_databases/)")
    cp.add_argument("--to", required=True, metavar="TARGET",
                    help="duckdb:FOLDER (one <db_id>.duckdb each), or a PostgreSQL URL/DSN of a role that may create "
                         "schemas (one schema per database)")
    cp.set_defaults(func=cmd_copy_db)

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
    try:
        return ns.func(ns)
    except UserError as e:  # anything else is our bug: its traceback helps
        print(f"sqltune: error: {e}", file=sys.stderr)
        return 2
    finally:
        _end_distributed()


def _end_distributed() -> None:
    """Destroy the process group a distributed run started, while the interpreter is whole. Left
    to interpreter teardown, gloo's worker threads can abort the process after a clean run
    ("terminate called without an active exception", exit -6; pytorch/pytorch#190489): seen on
    rank 0 of a 2-rank ZeRO-3 run once in a few fresh-clone CI runs."""
    torch = sys.modules.get("torch")  # never import torch just to find it unused
    if torch is not None and torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main())
