"""The SFT recipe: data -> prompts -> completion-only tokens -> model -> HF Trainer.

`TrainingArguments(**training_args)` is built from the YAML untouched, and before the model
loads, so that under ZeRO-3 the weights load partitioned. The run around it (Core API session,
resume, summary) is session.py's; `Recipe.build` reads top to bottom in the order it runs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from typing import Any, Callable

import datasets
import torch
import transformers

from sqltune import batches, config, core_api, evaluate, model, rundir, session, tokens
from sqltune.model import memory

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
            out.metrics.update(session.prefixed(self.extra_eval(self.model, prefix, self.state.global_step), prefix))
        return out


def plan_batches(
    net: torch.nn.Module,
    lengths: list[int],
    args: transformers.TrainingArguments,
    cfg: config.TrainSettings,
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


class Recipe:
    """Supervised fine-tuning: rows -> prompts -> completion-only tokens -> the HF Trainer."""

    def __init__(self, exp: config.Experiment):
        self.exp = exp

    def checkpoint_hparams(self) -> dict[str, Any]:
        return self.exp.resolved

    def arguments(self) -> transformers.TrainingArguments:
        # Built before the model loads, so that under ZeRO-3 the weights load partitioned.
        return transformers.TrainingArguments(**self.exp.hparams.training_args)

    def build(self, args: transformers.TrainingArguments, trial: core_api.Trial, run_folder: rundir.RunFolder,
              callbacks: list[transformers.TrainerCallback]) -> session.Built:
        hp = self.exp.hparams
        fmt = hp.format
        tokenizer = model.load_tokenizer(hp.model)
        rows, fits = session.prepared_rows(hp, tokenizer)
        train_ds = tokens.tokenize_split(datasets.Dataset.from_list(rows["train"]), tokenizer, fmt.system_text(),
                                         fmt.max_length, "train", fmt.layout)
        eval_ds = tokens.tokenize_split(datasets.Dataset.from_list(rows["valid"]), tokenizer, fmt.system_text(),
                                        fmt.max_length, "valid", fmt.layout)
        log.info("data: %d train, %d valid samples (%s, %s)", len(train_ds), len(eval_ds), hp.data.source, hp.data.subset)
        groups = {"train": [tuple(g) for g in train_ds["group"]], "eval": [tuple(g) for g in eval_ds["group"]]}
        train_ds, eval_ds = train_ds.remove_columns("group"), eval_ds.remove_columns("group")

        transformers.set_seed(args.seed)  # LoRA's random init happens here, before the Trainer seeds
        net = model.load_model(hp.model, tokenizer, hp.lora, hp.quantization, args.gradient_checkpointing)
        trainable, total = model.count_parameters(net)
        padding_free, plan = plan_batches(net, [len(x) for x in train_ds["input_ids"]], args, hp.train,
                                          fmt.padding_free, hp.training_args.get("gradient_checkpointing"))
        generation = None
        if hp.eval.generate_samples:
            generation = evaluate.GenerationEval(rows["valid"], tokenizer, fmt.system_text(), hp.eval, run_folder,
                                                 fmt.layout, searcher_metric=trial.searcher.get("metric"))
        trainer = SQLTrainer(
            model=net,
            args=args,
            train_dataset=train_ds,
            eval_dataset=eval_ds,
            data_collator=tokens.Collator(pad_id=tokenizer.pad_token_id, padding_free=padding_free),
            processing_class=tokenizer,
            callbacks=callbacks,
            extra_eval=generation,
            micro_batch_tokens=plan.micro_batch_tokens if plan else hp.train.micro_batch_tokens,
            groups=groups if hp.train.group_by_database else None,
        )
        return session.Built(trainer, evaluates=True, summary={
            "memory_plan": dataclasses.asdict(plan) if plan else None,
            "schema_pruning": fits,
            "trainable_parameters": trainable,
            "total_parameters": total,
        })
