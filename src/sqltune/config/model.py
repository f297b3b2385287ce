"""The `model:` block: which model, from where, in what dtype."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from sqltune.config.base import Strict, check


class ModelSettings(Strict):
    name: str = Field("smollm2", description="hub name, local folder, .gguf file, or 'smollm2' (shipped offline)")
    from_config: dict[str, Any] | None = Field(None, description="build a random-init model from this config")
    tokenizer: str | None = Field(None, description="tokenizer source; defaults to `name`")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    attn_implementation: str | None = Field(None, description="eager | sdpa | flash_attention_2 | ...")
    seed: int = Field(0, description="seed for a from_config model's random init")

    @model_validator(mode="after")
    def _one_source(self) -> ModelSettings:
        lines = []
        if self.from_config is not None and "name" in self.model_fields_set:
            lines.append("hyperparameters.model: set name or from_config, not both (from_config builds a "
                         "random-init model)")
        if self.from_config is not None and "model_type" not in self.from_config:
            lines.append("hyperparameters.model.from_config.model_type: required field is missing (e.g. llama)")
        check(lines)
        return self
