"""The `hyperparameters:` block as the trial reads it: one typed block per concern, and the rules
that span blocks."""

from __future__ import annotations

from typing import Any

from pydantic import model_validator

from sqltune.config.base import Strict, check
from sqltune.config.data import DataSettings
from sqltune.config.evaluation import EvalSettings
from sqltune.config.grpo import GRPOSettings
from sqltune.config.lora import LoraSettings
from sqltune.config.model import ModelSettings
from sqltune.config.prompt import FormatSettings
from sqltune.config.quantization import QuantizationSettings
from sqltune.config.train import TrainSettings


class Hyperparameters(Strict):
    model: ModelSettings = ModelSettings()
    data: DataSettings = DataSettings()
    format: FormatSettings = FormatSettings()
    lora: LoraSettings = LoraSettings(enabled=False)
    quantization: QuantizationSettings | None = None
    eval: EvalSettings = EvalSettings()
    train: TrainSettings = TrainSettings()
    grpo: GRPOSettings | None = None
    training_args: dict[str, Any]

    @model_validator(mode="after")
    def _blocks_agree(self) -> Hyperparameters:
        lines = []
        if self.quantization is not None:
            if not self.lora.enabled:
                lines.append("hyperparameters.quantization: quantized weights can't be trained; set lora.enabled: true "
                             "(QLoRA) or remove quantization for a full fine-tune")
            if self.training_args.get("deepspeed"):
                lines.append("hyperparameters.quantization: not supported with training_args.deepspeed "
                             "(ZeRO + bitsandbytes is untested here); use one GPU per trial, or DDP")
        if self.eval.generate_samples and self.eval.max_new_tokens >= self.format.max_length:
            lines.append("hyperparameters.eval.max_new_tokens must be smaller than format.max_length")
        check(lines)
        return self
