"""What every recipe shares: the run folder under a Core API session, DeepSpeed's comm start, the
fit loop with its resume, the evaluate-at-start callback, metric naming and the summary.

A recipe (recipes/sft.py, recipes/grpo.py) says what its run writes beside its checkpoints, builds
its TrainingArguments and then its Trainer; `run` does the rest, in this order:

    run folder -> Core API session -> TrainingArguments -> DeepSpeed comm -> searcher check
      -> recipe.build (data, model, Trainer) -> evaluate at step 0 -> train (or resume) -> summary

Recipes import this module and never each other; `recipes.run` picks one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import logging
import os
import resource
import shutil
import time
from pathlib import Path
from typing import Any, Iterator, Protocol

import torch
import transformers

from sqltune import config, core_api, manifest, prune, rundir
from sqltune.data import examples
from sqltune.data import splits as data_splits
from sqltune.errors import CheckpointDamaged, CheckpointNotFound, CheckpointStoreFailed

log = logging.getLogger(__name__)


@dataclasses.dataclass
class Built:
    """What a recipe hands back: its Trainer, whether an evaluation at step 0 means anything for
    it, and the recipe's own fields for the summary."""

    trainer: transformers.Trainer
    evaluates: bool
    summary: dict[str, Any]


class Recipe(Protocol):
    def checkpoint_hparams(self) -> dict[str, Any]:
        """The hyperparameters written beside every checkpoint (what `load_checkpoint` rebuilds from)."""

    def arguments(self) -> transformers.TrainingArguments:
        """`training_args`, untouched, as the recipe's TrainingArguments class."""

    def build(self, args: transformers.TrainingArguments, trial: core_api.Trial, run_folder: rundir.RunFolder,
              callbacks: list[transformers.TrainerCallback]) -> Built:
        """Data, model and Trainer (with `callbacks`), refusing what the recipe can't honour first."""


def run(exp: config.Experiment, trial: core_api.Trial, recipe: Recipe, *, fresh: bool = False,
        callbacks: list[transformers.TrainerCallback] = ()) -> dict[str, Any]:
    """Train one trial with `recipe`; returns the summary, which the run folder also keeps.

    `callbacks` run after our CoreCallback (`sqltune search` feeds Optuna and prunes through one)."""
    started = time.time()
    out_dir = Path(exp.hparams.training_args["output_dir"])
    out_dir.mkdir(parents=True, exist_ok=True)
    run_folder = rundir.RunFolder(out_dir, hparams=recipe.checkpoint_hparams(), run_id=trial.run_id)

    with core_session(exp, trial, run_folder, fresh) as (core, storage):
        args = recipe.arguments()
        start_deepspeed_comm(args)
        core_api.check_searcher(trial.searcher, args)
        callback = core_api.CoreCallback(core, trial=trial, results=run_folder, storage=storage, run_folder=out_dir)
        built = recipe.build(args, trial, run_folder, [callback, *callbacks])
        if exp.hparams.eval.at_start and built.evaluates and trial.latest_checkpoint is None:
            built.trainer.add_callback(EvaluateAtStart(built.trainer))
        result = fit(built.trainer, core, trial)

    return summarize(built.trainer, callback, result, run_folder, storage, started, trial, built.summary)


def prepared_rows(hp: config.Hyperparameters, tokenizer: Any) -> tuple[dict[str, list[dict[str, Any]]], dict[str, Any]]:
    """The train and valid rows as the model will read them: with their solved examples
    (format.examples) and their schemas fitted to format.max_length; and what the fitting did.
    Schemas that don't fit lose tables, not answers: training may look at the gold query,
    validation may not (it stands for a user's question)."""
    rows = examples.splits_with_examples(data_splits.load_splits(hp.data, hp.format.dialect), hp.format.examples)
    train, train_fit = prune.prepare(rows["train"], tokenizer, hp.format, use_gold=True, name="train")
    valid, valid_fit = prune.prepare(rows["valid"], tokenizer, hp.format, use_gold=False, name="valid")
    return {"train": train, "valid": valid}, {"train": train_fit, "valid": valid_fit}


def prefixed(metrics: dict[str, float], prefix: str) -> dict[str, float]:
    """HF's metric names: `eval_execution_accuracy` for `execution_accuracy` under prefix `eval`."""
    return {f"{prefix}_{k}": v for k, v in metrics.items()}


class EvaluateAtStart(transformers.TrainerCallback):
    """Step 0: score the model as it came, so the gain is visible. Inside `train()` (not before
    it) so that under DeepSpeed the engine is built once, for training: an `evaluate()` before
    `train()` builds an inference engine whose "auto" scheduler length (0) then clashes."""

    def __init__(self, trainer: transformers.Trainer):
        self.trainer = trainer

    def on_train_begin(self, args, state, control, **kwargs):  # noqa: ANN001
        if state.global_step == 0:
            self.trainer.evaluate()


def start_deepspeed_comm(args: transformers.TrainingArguments) -> None:
    """Start deepspeed.comm beside torch.distributed when the run uses DeepSpeed. With `use_cpu`
    HF starts torch.distributed but not deepspeed.comm, and ZeRO-3's zero.Init (and the DeepSpeed
    config's "auto" batch) would then be sized for a world of 1. A no-op on GPUs."""
    if args.deepspeed and torch.distributed.is_initialized():
        import deepspeed  # only DeepSpeed runs pay its import

        deepspeed.init_distributed()
        unlink_shm_buffer()


def unlink_shm_buffer() -> None:
    """Remove this rank's name for DeepSpeed's CPU all-reduce buffer (its shm op maps a 66 MB
    `/dev/shm/deepspeed_allreduce_buffer_<uid>_<addr>_<port>_<rank>` per rank and never unlinks it,
    so every CPU run left 132 MB there for good: ~90 runs filled a 24 GiB machine's /dev/shm).
    After the barrier every rank has mapped every other rank's buffer; the mappings outlive the
    names, as with any unlinked file, so a kill -9 after this point leaks nothing."""
    torch.distributed.barrier()
    name = "_".join(["deepspeed_allreduce_buffer", str(os.getuid()), os.environ.get("MASTER_ADDR", ""),
                     os.environ.get("MASTER_PORT", ""), str(torch.distributed.get_rank())])
    Path("/dev/shm", name).unlink(missing_ok=True)


@contextlib.contextmanager
def core_session(exp: config.Experiment, trial: core_api.Trial, run_folder: rundir.RunFolder,
                 fresh: bool) -> Iterator[tuple[Any, Path | None]]:
    """The Core API context of a run, and where its checkpoints go: a local folder off-cluster
    (indexed, so its UUIDs are found from anywhere), None on a cluster (the master's storage).
    `fresh` forgets the run folder's earlier run; TensorBoard writes where Determined looks."""
    dist = core_api.distributed_context(use_deepspeed=bool(exp.hparams.training_args.get("deepspeed")))
    storage = None if trial.on_cluster else rundir.storage_dir(exp.raw.get("checkpoint_storage"), run_folder.path)
    with core_api.init(dist, storage) as core, contextlib.ExitStack() as owner:
        if tb := core_api.tensorboard_dir(core):
            os.environ.setdefault("TENSORBOARD_LOGGING_DIR", tb)
        if core.distributed.rank == 0:
            owner.enter_context(run_folder.owned())  # one writer per run folder, for the whole run
            if fresh:
                run_folder.clear()
            if storage is not None:
                rundir.remember_storage(storage)
        yield core, storage


def fit(trainer: transformers.Trainer, core: Any, trial: core_api.Trial) -> Any:
    """`trainer.train()`, from the trial's newest complete checkpoint when it has one (restored
    through the Core API and passed explicitly: the Trainer ignores a callback's resume path).
    The checkpoint is checked against its manifest first; a damaged or cut one is skipped for
    the next older one of the run, with one warning line saying what was wrong and what is used."""
    with stored_checkpoint_errors(trainer, trial):
        skipped: list[str] = []
        candidates = ([trial.latest_checkpoint] if trial.latest_checkpoint else []) + trial.fallbacks
        if core.distributed.size > 1:  # restores are collective: every rank tries the chief's list, in order
            candidates = core.distributed.broadcast(candidates)
        for storage_id in candidates:
            with contextlib.ExitStack() as stack:
                try:
                    ckpt = stack.enter_context(core_api.restore(core, storage_id))
                    problem = core_api.damage(core, ckpt)
                except CheckpointNotFound as e:
                    ckpt, problem = None, str(e)
                if problem is None:
                    if skipped:
                        log.warning("checkpoint %s: resuming from checkpoint %s (%s) instead", "; ".join(skipped),
                                    storage_id, ckpt.name)
                    else:
                        log.info("resuming from checkpoint %s (%s)", storage_id, ckpt.name)
                    return trainer.train(resume_from_checkpoint=str(ckpt))
                if trial.on_cluster:  # the master names the checkpoint; it alone may pick another
                    raise CheckpointDamaged(f"checkpoint {storage_id}, which the master handed over to resume "
                                            f"from, is incomplete or damaged: {problem}")
                skipped.append(f"{storage_id} is incomplete or damaged: {problem}")
        if skipped:
            log.warning("checkpoint %s; no complete checkpoint of this run is left: starting from scratch",
                        "; ".join(skipped))
        return trainer.train()


@contextlib.contextmanager
def stored_checkpoint_errors(trainer: transformers.Trainer, trial: core_api.Trial) -> Iterator[None]:
    """The Trainer's own save of `checkpoint-N/` failing for lack of space (or quota, or a file
    size limit) ends in one line, and the unsealed local folder it left is removed; a failed
    store through the Core API is CoreCallback's (it raises CheckpointStoreFailed already)."""
    try:
        yield
    except CheckpointStoreFailed:
        raise
    except Exception as e:
        out = Path(trainer.args.output_dir)
        reason = disk_error(e, out)
        if reason is None:
            raise
        left = [p for p in out.glob("checkpoint-*") if p.is_dir() and manifest.problem(p)]
        written = sum(f.stat().st_size for p in left for f in p.rglob("*") if f.is_file())
        for p in left:
            shutil.rmtree(p, ignore_errors=True)
        last = trial.latest_checkpoint
        raise CheckpointStoreFailed(
            f"saving a checkpoint in {out} failed: {reason}; it needs more than the {written / 2**20:,.1f} MiB written "
            f"before it failed (removed again: {shutil.disk_usage(out).free / 2**20:,.1f} MiB are free there now); the next "
            + (f"run resumes from the last stored checkpoint ({last})" if last else "run starts from scratch")
        ) from None


DISK_FULL_TEXTS = ("No space left", "Disk quota exceeded", "File too large", "file write failed",
                   "iostream error", "unexpected pos")  # the last three: torch.save's zip writer on ENOSPC


def disk_error(error: BaseException, folder: Path) -> str | None:
    """The reason, when `error` (or what caused it) is a write failing for lack of space, quota or
    file size: an OSError saying so, or torch's zip writer (which drops the errno) failing on a
    disk with less than 1 MiB left."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            return seen.strerror
        if any(s in str(seen) for s in DISK_FULL_TEXTS):
            free = shutil.disk_usage(folder).free if folder.exists() else 0
            return "no space left on device" if free < 2**20 else str(seen).splitlines()[0][:200]
        seen = seen.__cause__ or seen.__context__
    return None


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def summarize(trainer: transformers.Trainer, callback: core_api.CoreCallback, result: Any, run_folder: rundir.RunFolder,
              storage: Path | None, started: float, trial: core_api.Trial, extra: dict[str, Any]) -> dict[str, Any]:
    """The run's summary (written by the chief into the run folder): the last and the first
    evaluation of the run folder, across resumes (step 0 included), the figures, and `extra`."""
    validations = run_folder.curves()["validation"] if trainer.is_world_process_zero() else {}
    summary = {
        "output_dir": str(run_folder.path),
        "checkpoint_storage": str(storage) if storage else None,  # None: the cluster's storage
        "latest_checkpoint": callback.latest_storage_id or trial.latest_checkpoint,
        "global_step": trainer.state.global_step,
        "max_steps": trainer.state.max_steps,
        "preempted": callback.preempted,
        "train_loss": result.training_loss,
        "validation": validations[max(validations)] if validations else callback.last_validation,
        "first_validation": validations[min(validations)] if validations else {},
        **extra,
        "wall_time_s": time.time() - started,
        "peak_rss_gib": peak_rss_gib(),
        "peak_gpu_gib": torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else 0.0,
        "hparams": run_folder.hparams,
        "searcher": {k: trial.searcher[k] for k in ("name", "metric", "smaller_is_better") if k in trial.searcher},
    }
    if trainer.is_world_process_zero():
        run_folder.write_summary(summary)
    return summary
