"""The GRPO stage: TRL's GRPOTrainer under the same Core API callback, run folder and evaluation.

An experiment with a `grpo:` block in its hyperparameters runs this recipe instead of SFT
(recipes/__init__.py chooses; the run around it is session.py's). It reads in run order: the start checkpoint (resolved before anything loads, so
its model/lora settings go beside every checkpoint of this run), the TRL config, the policy, the
prompts, the reward (rewards.py: execution match, runs, format; weighted), the trainer, resume.

    trl.GRPOConfig(**training_args, num_generations=..., reward_weights=[...], ...)

`training_args` goes in untouched, as in the SFT recipe, and may hold any trl.GRPOConfig field
(loss_type, epsilon, num_iterations, scale_rewards, ...; config.py checks them against that
class); the few our `grpo:` block owns (training_args.GRPO_BLOCK) come from it. Each rank
appends its sampled completions and their rewards to `completions/rank-R.jsonl` in the run folder.
trl.GRPOConfig is a TrainingArguments with other defaults for a few fields (learning_rate 1e-6 where
HF has 5e-5, bf16 and gradient checkpointing on, logging every 10 steps): a field left out of
`training_args` takes HF's default here, as in an SFT run (`hf_defaults`), so one YAML means one
thing in both stages. Evaluation is ours, not TRL's: each evaluation generates SQL for
`eval.generate_samples` validation rows and scores it per difficulty (evaluate.GenerationEval),
the same metrics an SFT run reports. The start model is whatever `grpo.init_from` names (a
checkpoint folder or UUID: an SFT adapter, trained further, or a full model), else the
`model`/`lora` blocks as SFT would build it. With `grpo.beta` > 0 the KL term's reference is that
start, kept frozen by TRL: a copy of the adapter for a LoRA policy, a second model for a full one
(`name_reference`).

Resume is the Trainer's: `trainer.train(resume_from_checkpoint=...)` restores the weights (the
adapter), optimizer, scheduler, RNG states and the data order. The policy samples its own
completions, so a resumed run draws what the uninterrupted one would have (a test checks it).
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import datasets
import torch
import transformers
import trl

from sqltune.cache import cache_root
from sqltune import config, core_api, evaluate, model, prompts, rewards, rundir, session
from sqltune.data import rows as data_rows
from sqltune.errors import CheckpointNotFound, ConfigError
from sqltune.model import group_logps
from sqltune.model.lora import use_fused_lora

log = logging.getLogger(__name__)


class SQLGRPOTrainer(trl.GRPOTrainer):
    """TRL's GRPOTrainer whose evaluation is generated-SQL scoring (evaluate.GenerationEval).

    TRL's own evaluation would sample `num_generations` completions per row and report their
    reward; ours generates greedily, as a user would get, and reports the SFT stage's metrics."""

    def __init__(self, *args: Any, generation: evaluate.GenerationEval | None = None, **kw: Any):
        super().__init__(*args, **kw)
        self.generation = generation
        if not (self.is_deepspeed_enabled or self.accelerator.num_processes > 1):
            # TRL samples through `unwrapped_model.generate`, which is this model here (no wrapper).
            stock = self.model.generate

            def logged(rows: int, prompts: int) -> None:
                if not getattr(self, "_prefill_logged", False):
                    self._prefill_logged = True
                    log.info("GRPO sampling: each group's prompt is prefilled once (%d rows, %d prompts)", rows, prompts)

            def generate(input_ids: torch.Tensor, attention_mask: torch.Tensor, **kw: Any) -> torch.Tensor:
                return group_logps.prefilled_generate(self.model, stock, input_ids, attention_mask, on_shared=logged, **kw)

            self.model.generate = generate

    def evaluate(self, eval_dataset: Any = None, ignore_keys: Any = None,
                 metric_key_prefix: str = "eval") -> dict[str, float]:
        metrics = {}
        if self.generation is not None:
            found = self.generation(self.model, metric_key_prefix, self.state.global_step)
            metrics = session.prefixed(found, metric_key_prefix)
        # HF's log, not GRPOTrainer's: that one would pour the pending training means into this line.
        transformers.Trainer.log(self, metrics)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        return metrics

    def _get_per_token_logps_and_entropies(self, model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                                           logits_to_keep: int, batch_size: int | None = None,
                                           compute_entropy: bool = False, compute_aux_loss: bool = False,
                                           **multimodal: Any) -> tuple[Any, Any, Any]:
        """TRL's, with each group's prompt run once (model/group_logps.py) where that applies."""
        if not (compute_aux_loss or any(v is not None for v in multimodal.values()) or self.is_deepspeed_enabled
                or self.accelerator.num_processes > 1):
            with self.accelerator.autocast():
                found = group_logps.shared_logps(self.accelerator.unwrap_model(model), input_ids, attention_mask,
                                                 logits_to_keep, compute_entropy)
            if found is not None:
                if not getattr(self, "_shared_logged", False):
                    self._shared_logged = True
                    log.info("GRPO log-probs: each group's prompt runs once (%d rows of %d prompts in this batch)",
                             input_ids.size(0), len(group_logps.prompt_groups(input_ids, attention_mask,
                                                                               input_ids.size(1) - logits_to_keep)))
                return (*found, None)
        return super()._get_per_token_logps_and_entropies(model, input_ids, attention_mask, logits_to_keep, batch_size,
                                                          compute_entropy, compute_aux_loss, **multimodal)


def start_checkpoint(ref: str | None) -> Path | None:
    """The HF `checkpoint-N/` folder that `grpo.init_from` names (see `rundir.checkpoint_folder`);
    None when it names none. It must hold sqltune's config copy, to rebuild the model from."""
    if ref is None:
        return None
    inner = rundir.checkpoint_folder(ref, "hyperparameters.grpo.init_from", download=core_api.download_checkpoint)
    if rundir.read_config_copy(inner) is None:
        raise CheckpointNotFound(f"hyperparameters.grpo.init_from: {inner} holds no checkpoint written by sqltune")
    return inner


def checkpoint_hparams(resolved: dict[str, Any], start: Path | None) -> dict[str, Any]:
    """The hyperparameters written beside this run's checkpoints: ours, with the start checkpoint's
    model, lora and quantization, so that `load_checkpoint` rebuilds the model this run trains."""
    if start is None:
        return resolved
    saved = rundir.read_config_copy(start)
    return {**resolved, **{k: saved.get(k) for k in ("model", "lora", "quantization")}}


def hf_defaults() -> dict[str, Any]:
    """TrainingArguments' defaults where TRL's configs change them (TRL 1.16: learning_rate 1e-6,
    logging_steps 10, gradient_checkpointing and bf16 on), so that `training_args` means in a GRPO
    run what it means in an SFT run. Except `remove_unused_columns`, which stays TRL's False: the
    reward reads the dataset's extra columns."""
    hf = {f.name: f.default for f in dataclasses.fields(transformers.TrainingArguments)}
    return {f.name: hf[f.name] for f in dataclasses.fields(trl.GRPOConfig)
            if f.name in hf and f.name != "remove_unused_columns" and f.default != hf[f.name]
            and f.default is not dataclasses.MISSING}


def trl_args(targs: dict[str, Any], cfg: config.GRPOSettings) -> trl.GRPOConfig:
    """`training_args` untouched, plus the GRPO fields of our block.

    Raises:
        ConfigError: TRL refuses the combination (e.g. the batch is no multiple of num_generations),
            or `remove_unused_columns` would drop the columns the reward reads.
    """
    if targs.get("remove_unused_columns"):
        raise ConfigError(["training_args.remove_unused_columns: a GRPO run needs the dataset's gold, db_path and "
                           "schema columns for its reward; remove the field (TRL's default is false)"])
    try:
        return trl.GRPOConfig(
            **{**hf_defaults(), **targs},
            num_generations=cfg.num_generations,
            max_completion_length=cfg.max_completion_length,
            temperature=cfg.temperature,
            beta=cfg.beta,
            num_generations_eval=1,  # TRL's evaluation is replaced by ours; 1 drops its eval-batch constraint
            reward_weights=[getattr(cfg.rewards, p) for p in rewards.PARTS],
        )
    except ValueError as e:  # TRL names its own fields; ours carry the same names under grpo./training_args.
        raise ConfigError([f"hyperparameters.grpo / training_args: TRL's GRPOConfig refuses them: {e} (each step "
                           "samples per_device_train_batch_size x processes x gradient_accumulation_steps completions "
                           "in groups of grpo.num_generations)"]) from None


def check_eval(args: transformers.TrainingArguments, eval_cfg: config.EvalSettings, searcher: dict[str, Any]) -> None:
    """Refuse, before any model loads, evaluation settings a GRPO run can't honour."""
    if searcher.get("metric") in ("eval_loss", "eval_accuracy"):
        raise ConfigError([
            f"searcher.metric: a GRPO run reports no {searcher['metric']} (it evaluates generated SQL only); "
            "use one of its metrics, e.g. eval_execution_accuracy (smaller_is_better: false)"])
    if args.eval_strategy != "no" and not eval_cfg.generate_samples:
        raise ConfigError([
            f"hyperparameters.eval.generate_samples: a GRPO run evaluates by generation only; set it above 0, "
            f"or set training_args.eval_strategy: 'no' (it is {args.eval_strategy.value!r})"])


def load_policy(hp: config.Hyperparameters, start: Path | None,
                args: transformers.TrainingArguments) -> tuple[Any, Any]:
    """(model to train, tokenizer): the start checkpoint with its adapter trainable, or a fresh
    model as SFT builds it. Generation stops at the chat template's end of turn."""
    if start is None:
        tokenizer = model.load_tokenizer(hp.model)
        transformers.set_seed(args.seed)  # LoRA's random init
        net = model.load_model(hp.model, tokenizer, hp.lora, hp.quantization, args.gradient_checkpointing)
        if args.beta and not hasattr(net, "peft_config"):
            name_reference(net, hp.model, tokenizer, args)
    else:
        log.info("GRPO starts from %s", start)
        net, tokenizer = model.load_checkpoint(start, rundir.checkpoint_hparams(start))
        if hasattr(net, "peft_config"):  # loaded for inference: the adapter comes frozen
            net.peft_config["default"].inference_mode = False
            for name, p in net.named_parameters():
                if "lora_" in name:
                    p.requires_grad_(True)
            use_fused_lora(net)  # as an SFT run trains it: one fused node per LoRA layer
        net.train()
    net.generation_config.eos_token_id = prompts.end_of_turn_ids(tokenizer)
    return net, tokenizer


def name_reference(net: Any, cfg: config.ModelSettings, tokenizer: Any, args: trl.GRPOConfig) -> None:
    """Where TRL rebuilds the frozen reference of a full model (beta > 0) from: it calls
    `from_pretrained(config._name_or_path, **args.model_init_kwargs)`, and a model sqltune built
    (the shipped SmolLM2, a GGUF file, a from-config init) names no such source by itself. (A
    start checkpoint's folder does; a LoRA policy's reference is a frozen copy of its adapter.)
    TRL then warns that model_init_kwargs are ignored: they are, for the policy. A from-config
    policy under ZeRO-3 is the one exception: zero.Init draws its own random init, which the
    saved init does not repeat."""
    path, extra = model.pretrained_source(cfg, tokenizer)
    net.config._name_or_path = path
    if extra:
        args.model_init_kwargs = {**extra, **(args.model_init_kwargs or {})}


def prompt_dataset(rows: list[dict[str, Any]], tokenizer: Any, system_prompt: str, layout: str) -> datasets.Dataset:
    """TRL's standard (text) prompt format, with the columns the reward reads."""
    return datasets.Dataset.from_list([
        {"prompt": prompts.prompt_text(r, tokenizer, system_prompt, layout), "gold": data_rows.golds(r),
         "db_path": r.get("db_path") or "", "schema": r.get("input") or "", "question": r["instruction"]}
        for r in rows])


class Recipe:
    """GRPO: prompts -> sampled SQL -> rewards (rewards.py) -> TRL's GRPOTrainer. The start
    checkpoint is resolved here, before anything loads, so that its model/lora settings go beside
    every checkpoint of this run."""

    def __init__(self, exp: config.Experiment):
        self.exp = exp
        self.start = start_checkpoint(exp.hparams.grpo.init_from)

    def checkpoint_hparams(self) -> dict[str, Any]:
        return checkpoint_hparams(self.exp.resolved, self.start)

    def arguments(self) -> trl.GRPOConfig:
        return trl_args(self.exp.hparams.training_args, self.exp.hparams.grpo)

    def build(self, args: trl.GRPOConfig, trial: core_api.Trial, run_folder: rundir.RunFolder,
              callbacks: list[transformers.TrainerCallback]) -> session.Built:
        hp = self.exp.hparams
        check_eval(args, hp.eval, trial.searcher)
        net, tokenizer = load_policy(hp, self.start, args)
        rows, fits = session.prepared_rows(hp, tokenizer)
        train_ds = prompt_dataset(rows["train"], tokenizer, hp.format.system_text(), hp.format.layout)
        log.info("GRPO data: %d train prompts, %d generations each", len(train_ds), hp.grpo.num_generations)
        trainable, total = model.count_parameters(net)

        generation = None
        if hp.eval.generate_samples:
            generation = evaluate.GenerationEval(rows["valid"], tokenizer, hp.format.system_text(), hp.eval, run_folder,
                                                 hp.format.layout, searcher_metric=trial.searcher.get("metric"))
        scorer = rewards.Scorer(timeout_s=hp.grpo.sql_timeout_s, fuzz_dir=cache_root() / "fuzz",
                                results=run_folder, rank=args.process_index, fuzz_on=hp.eval.fuzz_on)
        trainer = SQLGRPOTrainer(
            model=net,
            reward_funcs=rewards.reward_functions(scorer),
            args=args,
            train_dataset=train_ds,
            eval_dataset=prompt_dataset(generation.rows, tokenizer, hp.format.system_text(), hp.format.layout) if generation else None,
            processing_class=tokenizer,
            callbacks=callbacks,
            generation=generation,
        )
        return session.Built(trainer, evaluates=generation is not None, summary={
            "start_checkpoint": str(self.start) if self.start else None,
            "memory_plan": None,
            "schema_pruning": fits,
            "trainable_parameters": trainable,
            "total_parameters": total,
        })
