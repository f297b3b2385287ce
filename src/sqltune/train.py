"""The trial: config -> data -> format -> tokenize -> model -> HF Trainer, under the Core API.

Reads top to bottom in the order it runs. `TrainingArguments(**training_args)` is built from the
YAML untouched, and before the model loads, so that under ZeRO-3 the weights load partitioned.
The resume path goes to `trainer.train(resume_from_checkpoint=...)` explicitly: the Trainer
ignores a callback's `args.resume_from_checkpoint`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import resource
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import datasets
import torch
import transformers

from sqltune import batches, config, evaluate, model, platform, prune, rundir
from sqltune.data import examples
from sqltune.data import splits as data_splits
from sqltune.model import memory
from sqltune import tokenize as tok

log = logging.getLogger(__name__)


class SQLTrainer(transformers.Trainer):
    """The HF Trainer, plus `eval_accuracy` (teacher-forced, on answer tokens) counted during its
    own loss evaluation, plus any extra evaluation (generated SQL) added to the same metrics.

    `extra_eval(model, prefix, step)` runs inside every evaluation, on every rank, and returns metrics.
    `groups` ({"train": keys, "eval": keys}, one (database, schema) per sample): batches grouped
    by database (batches.py) for training and loss evaluation; None = the Trainer's own batches.
    """

    def __init__(
        self,
        *args: Any,
        extra_eval: Callable[[Any, str, int], dict[str, float]] | None = None,
        micro_batch_tokens: int | None = None,
        groups: dict[str, list[batches.Key]] | None = None,
        **kw: Any,
    ):
        super().__init__(*args, **kw)
        self.extra_eval = extra_eval
        self.micro_batch_tokens = micro_batch_tokens
        self.groups = groups or {}
        self._counts = torch.zeros(2, dtype=torch.long)

    def _get_train_sampler(self, train_dataset=None):  # noqa: ANN001, ANN202
        keys = self.groups.get("train")
        if keys is None or len(keys) != len(train_dataset if train_dataset is not None else self.train_dataset):
            return super()._get_train_sampler(train_dataset)
        seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
        return batches.GroupedSampler(keys, self._train_batch_size, seed=seed)

    def _get_eval_sampler(self, eval_dataset):  # noqa: ANN001, ANN202
        keys = self.groups.get("eval")
        if keys is None or eval_dataset is None or len(keys) != len(eval_dataset):
            return super()._get_eval_sampler(eval_dataset)
        return batches.GroupedSampler(keys, self.args.eval_batch_size, seed=None)

    def training_step(self, model, inputs, num_items_in_batch=None):  # noqa: ANN001, ANN201
        """With `micro_batch_tokens`, one batch runs as several forward/backward passes (memory.py)
        when it computes more tokens than that (its shared prompt start counted once). Each pass's
        loss is its token sum over the whole batch's `num_items_in_batch`, so the gradients add up
        to the unsplit batch's; DDP syncs on the last pass only."""
        if self.micro_batch_tokens is None or num_items_in_batch is None or "attention_mask" not in inputs:
            return super().training_step(model, inputs, num_items_in_batch)
        shared = memory.batch_shared_prefix(inputs, self.model)
        if memory.pass_tokens(*inputs["input_ids"].shape, shared) <= self.micro_batch_tokens:
            return super().training_step(model, inputs, num_items_in_batch)
        parts = memory.split_batch(inputs, self.micro_batch_tokens, shared)
        total = None
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            with contextlib.nullcontext() if last else self.accelerator.no_sync(model):
                loss = super().training_step(model, part, num_items_in_batch)
            total = loss if total is None else total + loss
        return total

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):  # noqa: ANN001
        loss, outputs = super().compute_loss(model, inputs, return_outputs=True, num_items_in_batch=num_items_in_batch)
        if not model.training and isinstance(outputs, dict) and "n_correct" in outputs:
            self._counts += torch.stack([outputs["n_correct"], outputs["n_tokens"]]).cpu()
        return (loss, outputs) if return_outputs else loss

    def evaluation_loop(self, *args: Any, **kwargs: Any):  # noqa: ANN201
        self._counts.zero_()
        out = super().evaluation_loop(*args, **kwargs)
        prefix = kwargs.get("metric_key_prefix", "eval")
        counts = self.accelerator.reduce(self._counts.to(self.args.device), reduction="sum").cpu()
        if counts[1] > 0:
            out.metrics[f"{prefix}_accuracy"] = counts[0].item() / counts[1].item()
        if self.extra_eval is not None:
            out.metrics.update({f"{prefix}_{k}": v for k, v in self.extra_eval(self.model, prefix, self.state.global_step).items()})
        return out


class EvaluateAtStart(transformers.TrainerCallback):
    """Step 0: score the model as it came, so the gain is visible. Inside `train()` (not before
    it) so that under DeepSpeed the engine is built once, for training: an `evaluate()` before
    `train()` builds an inference engine whose "auto" scheduler length (0) then clashes."""

    def __init__(self, trainer: transformers.Trainer):
        self.trainer = trainer

    def on_train_begin(self, args, state, control, **kwargs):  # noqa: ANN001
        if state.global_step == 0:
            self.trainer.evaluate()


def plan_batches(
    net: torch.nn.Module,
    lengths: list[int],
    args: transformers.TrainingArguments,
    cfg: config.TrainConfig,
    padding_free: bool | None,
    gradient_checkpointing: bool | None,
) -> tuple[bool, memory.Plan | None]:
    """(padding-free?, the memory plan), with the plan's gradient checkpointing applied to `net`.
    Settings the user wrote (`format.padding_free`, `train.micro_batch_tokens`, and
    `gradient_checkpointing` when training_args has it) are kept as written; None = not written."""
    if padding_free is None:
        padding_free = pays_to_pack(net)
    plan = None
    if cfg.memory_plan and not args.deepspeed:
        if args.device.type == "cuda" and not getattr(net, "hf_device_map", None):
            net.to(args.device)  # the Trainer would move it next; the probe must run where training will
        plan = memory.make_plan(
            net, lengths, args.per_device_train_batch_size,
            budget_gib=cfg.memory_budget_gib or memory.default_budget_gib(args.device),
            micro_batch_tokens=cfg.micro_batch_tokens,
            gradient_checkpointing=gradient_checkpointing,
            can_split=not padding_free,
        )
        log.info(plan.line())
        if plan.gradient_checkpointing and not args.gradient_checkpointing:
            model.enable_gradient_checkpointing(net)
    log.info("batches: %s", "padding-free (samples end to end, varlen attention)" if padding_free
             else "padded; each pass pads to its own longest row" if plan and plan.micro_batch_tokens else "padded")
    return padding_free, plan


def pays_to_pack(net: torch.nn.Module) -> bool:
    """Padding-free batches pay where attention runs varlen (flash-attention kernels): each sample
    attends within itself at its own length. Elsewhere (sdpa, eager: every CPU) a packed row of
    B samples pays dense attention over B x its length behind a block-diagonal mask; measured on
    CPU that made the default 0.70x a padded script (issue 11), so there we pad instead."""
    impl = str(getattr(net.config, "_attn_implementation", None) or "")
    return "flash" in impl


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def run(
    exp: config.Experiment,
    trial: platform.Trial,
    *,
    fresh: bool = False,
    callbacks: list[transformers.TrainerCallback] = (),
) -> dict[str, Any]:
    """Train one trial; returns the summary, which the run folder also keeps (rundir.py).

    `callbacks` run after our CoreCallback (`sqltune search` feeds Optuna and prunes through one).
    """
    if exp.hparams.grpo is not None:  # the GRPO stage: TRL's GRPOTrainer (grpo.py)
        from sqltune import grpo

        return grpo.run(exp, trial, fresh=fresh, callbacks=callbacks)
    started = time.time()
    hp = exp.hparams
    targs = hp.training_args
    out_dir = Path(targs["output_dir"])
    out_dir.mkdir(parents=True, exist_ok=True)
    run_folder = rundir.RunFolder(out_dir, hparams=exp.resolved)

    with core_session(exp, trial, run_folder, fresh) as (core, storage):
        args = transformers.TrainingArguments(**targs)
        start_deepspeed_comm(args)
        platform.check_searcher(trial.searcher, args)

        tokenizer = model.load_tokenizer(hp.model)
        splits = data_splits.load_splits(hp.data)
        fmt = hp.format
        # Schemas that don't fit lose tables, not answers: training may look at the gold query,
        # validation may not (it stands for a user's question).
        rows = examples.splits_with_examples(splits, fmt.examples)
        train_rows, train_fit = prune.prepare(rows["train"], tokenizer, fmt, use_gold=True, name="train")
        valid_rows, valid_fit = prune.prepare(rows["valid"], tokenizer, fmt, use_gold=False, name="valid")
        train_ds = tok.tokenize_split(datasets.Dataset.from_list(train_rows), tokenizer, fmt.system_prompt,
                                      fmt.max_length, "train", fmt.layout)
        eval_ds = tok.tokenize_split(datasets.Dataset.from_list(valid_rows), tokenizer, fmt.system_prompt,
                                     fmt.max_length, "valid", fmt.layout)
        log.info("data: %d train, %d valid samples (%s, %s)", len(train_ds), len(eval_ds), hp.data.source, hp.data.subset)
        groups = {"train": [tuple(g) for g in train_ds["group"]], "eval": [tuple(g) for g in eval_ds["group"]]}
        train_ds, eval_ds = train_ds.remove_columns("group"), eval_ds.remove_columns("group")

        transformers.set_seed(args.seed)  # LoRA's random init happens here, before the Trainer seeds
        net = model.load_model(hp.model, tokenizer, hp.lora, hp.quantization, args.gradient_checkpointing)
        trainable, total = model.count_parameters(net)
        padding_free, plan = plan_batches(net, [len(x) for x in train_ds["input_ids"]], args, hp.train,
                                          fmt.padding_free, targs.get("gradient_checkpointing"))
        generation = None
        if hp.eval.generate_samples:
            generation = evaluate.GenerationEval(valid_rows, tokenizer, fmt.system_prompt, hp.eval, run_folder, fmt.layout)
        callback = platform.CoreCallback(core, trial=trial, run=run_folder)
        trainer = SQLTrainer(
            model=net,
            args=args,
            train_dataset=train_ds,
            eval_dataset=eval_ds,
            data_collator=tok.Collator(pad_id=tokenizer.pad_token_id, padding_free=padding_free),
            processing_class=tokenizer,
            callbacks=[callback, *callbacks],
            extra_eval=generation,
            micro_batch_tokens=plan.micro_batch_tokens if plan else hp.train.micro_batch_tokens,
            groups=groups if hp.train.group_by_database else None,
        )

        if hp.eval.at_start and trial.latest_checkpoint is None:
            trainer.add_callback(EvaluateAtStart(trainer))
        result = fit(trainer, core, trial)

    return summarize(trainer, callback, result, run_folder, storage, started, trial, {
        "memory_plan": dataclasses.asdict(plan) if plan else None,
        "schema_pruning": {"train": train_fit, "valid": valid_fit},
        "trainable_parameters": trainable,
        "total_parameters": total,
    })


def start_deepspeed_comm(args: transformers.TrainingArguments) -> None:
    """Start deepspeed.comm beside torch.distributed when the run uses DeepSpeed. With `use_cpu`
    HF starts torch.distributed but not deepspeed.comm, and ZeRO-3's zero.Init (and the DeepSpeed
    config's "auto" batch) would then be sized for a world of 1. A no-op on GPUs."""
    if args.deepspeed and torch.distributed.is_initialized():
        import deepspeed

        deepspeed.init_distributed()


@contextlib.contextmanager
def core_session(exp: config.Experiment, trial: platform.Trial, run_folder: rundir.RunFolder,
                 fresh: bool) -> Iterator[tuple[Any, Path | None]]:
    """The Core API context of a run, and where its checkpoints go: a local folder off-cluster
    (indexed, so its UUIDs are found from anywhere), None on a cluster (the master's storage).
    `fresh` forgets the run folder's earlier run; TensorBoard writes where Determined looks."""
    dist = platform.distributed_context(use_deepspeed=bool(exp.hparams.training_args.get("deepspeed")))
    storage = None if trial.on_cluster else rundir.storage_dir(exp.raw.get("checkpoint_storage"), run_folder.path)
    with platform.init(dist, storage) as core:
        if tb := platform.tensorboard_dir(core):
            os.environ.setdefault("TENSORBOARD_LOGGING_DIR", tb)
        if core.distributed.rank == 0:
            if fresh:
                run_folder.clear()
            if storage is not None:
                rundir.remember_storage(storage)
        yield core, storage


def fit(trainer: transformers.Trainer, core: Any, trial: platform.Trial) -> Any:
    """`trainer.train()`, from the trial's latest checkpoint when it has one (restored through the
    Core API and passed explicitly: the Trainer ignores a callback's resume path)."""
    if trial.latest_checkpoint is None:
        return trainer.train()
    with platform.restore(core, trial.latest_checkpoint) as ckpt:
        log.info("resuming from checkpoint %s (%s)", trial.latest_checkpoint, ckpt.name)
        return trainer.train(resume_from_checkpoint=str(ckpt))


def summarize(trainer: transformers.Trainer, callback: platform.CoreCallback, result: Any, run_folder: rundir.RunFolder,
              storage: Path | None, started: float, trial: platform.Trial, extra: dict[str, Any]) -> dict[str, Any]:
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
