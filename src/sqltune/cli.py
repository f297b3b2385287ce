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
from typing import Any

from sqltune.config import ConfigError

USER_ERRORS: tuple[type[BaseException], ...] = (ConfigError,)


def _setup_logging(verbose: bool) -> None:
    rank = int(os.environ.get("RANK", "0"))
    level = logging.INFO if (rank == 0 or verbose) else logging.WARNING
    logging.basicConfig(level=level, format=f"[rank {rank}] %(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S", force=True)
    import transformers

    transformers.logging.set_verbosity_warning()
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)  # "no CPU 4-bit kernel package" noise
    logging.getLogger("determined").setLevel(logging.WARNING if not verbose else logging.INFO)


def _print_summary(summary: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"sqltune: step {summary['global_step']}/{summary['max_steps']}"
                  + ("  (preempted: run again to resume)" if summary["preempted"] else ""))
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in sorted(summary["validation"].items()):
        if key not in ("batches", "epochs"):
            table.add_row(key, f"{value:.4f}")
    table.add_row("train_loss", f"{summary['train_loss']:.4f}")
    table.add_row("trainable parameters", f"{summary['trainable_parameters']:,}")
    table.add_row("wall time", f"{summary['wall_time_s']:.0f} s")
    table.add_row("peak RSS", f"{summary['peak_rss_gib']:.2f} GiB")
    console = Console()
    console.print(table)
    if summary["latest_checkpoint"]:
        console.print(f"checkpoint {summary['latest_checkpoint']} in {summary['checkpoint_storage']}")


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
    return p


def main(argv: list[str] | None = None) -> int:
    ns = build_parser().parse_args(argv)
    _setup_logging(ns.verbose)
    from sqltune.data import DataError

    try:
        return ns.func(ns)
    except (*USER_ERRORS, DataError, ImportError) as e:
        print(f"sqltune: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
