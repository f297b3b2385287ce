"""The `grpo:` block: the GRPO recipe's sampling, KL term and reward weights."""

from __future__ import annotations

from pydantic import Field, PositiveInt, confloat

from sqltune.config.base import Strict


class RewardWeights(Strict):
    """Weights of the GRPO reward's parts (rewards.py); the reward is their weighted sum."""

    execution: confloat(ge=0) = Field(1.0, description="the result matches the gold's (Spider's execution rule)")
    runs: confloat(ge=0) = Field(0.1, description="partial credit: runs without error on the database")
    format: confloat(ge=0) = Field(0.1, description="a bare query: no code fence, no prose, one statement that parses")


class GRPOSettings(Strict):
    """The GRPO recipe (recipes/grpo.py): present = this experiment trains with TRL's GRPOTrainer, not SFT."""

    init_from: str | None = Field(None, description="start checkpoint: a checkpoint folder or UUID (SFT adapter or "
                                                    "full model); None = the model/lora blocks, as SFT starts")
    num_generations: int = Field(4, ge=2, description="completions sampled per prompt (the group)")
    max_completion_length: PositiveInt = Field(128, description="tokens sampled per completion")
    temperature: confloat(gt=0) = Field(1.0, description="sampling temperature")
    beta: confloat(ge=0) = Field(0.0, description="KL coefficient to the start model (LoRA: a frozen copy of "
                                                   "the start adapter; full model: a second frozen model); "
                                                   "0 = no reference model")
    sql_timeout_s: confloat(gt=0) = Field(1.0, description="per query, in the sandbox's worker process")
    rewards: RewardWeights = RewardWeights()
