"""The `lora:` block: LoRA adapters (or a full fine-tune), PEFT's variants under PEFT's names."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, PositiveInt, confloat, model_validator

from sqltune.config.base import Strict, check


class LoraSettings(Strict):
    enabled: bool = True
    r: PositiveInt = 8
    lora_alpha: PositiveInt = 32
    lora_dropout: confloat(ge=0.0, lt=1.0) = 0.1
    target_modules: list[str] | Literal["all-linear"] = "all-linear"
    # PEFT's variants, under PEFT's names, passed to peft.LoraConfig as they are
    use_rslora: bool = Field(False, description="scale by lora_alpha / sqrt(r) (rsLoRA): high ranks stay stable in a search over r")
    use_dora: bool = Field(False, description="weight-decomposed LoRA (DoRA); runs PEFT's own forward, not the fused branch")
    init_lora_weights: bool | str = Field(
        True, description="PEFT's init of A (B is zero): true (Kaiming), gaussian, false (a non-zero B: tests only)")

    @model_validator(mode="after")
    def _adapter_only_inits(self) -> LoraSettings:
        init = self.init_lora_weights
        if isinstance(init, str) and init != "gaussian":
            check([f"hyperparameters.lora.init_lora_weights: {init!r} is not supported: true, false or gaussian. "
                   "PEFT's data-driven inits (pissa, olora, corda, eva, loftq) rewrite the base weights, and a "
                   "checkpoint holds the adapter alone, so it would load onto a base it was not trained against"])
        return self
