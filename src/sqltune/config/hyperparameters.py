"""The `hyperparameters:` block as the trial reads it: one typed block per concern, and the rules
that span blocks."""

from __future__ import annotations

import logging
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
from sqltune.sql.fuzz import engines

log = logging.getLogger(__name__)


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

    @model_validator(mode="before")
    @classmethod
    def _fuzz_on_follows_dialect(cls, data: Any) -> Any:
        """eval.fuzz_on unset and the model taught DuckDB's SQL: rows without a database are judged
        on DuckDB (it needs no server; PostgreSQL needs one, so it must be named)."""
        if isinstance(data, dict) and isinstance(data.get("format"), dict) and data["format"].get("dialect") == "duckdb":
            given = data.get("eval") or {}
            if isinstance(given, dict) and "fuzz_on" not in given:
                data = {**data, "eval": {**given, "fuzz_on": "duckdb"}}
        return data

    @model_validator(mode="after")
    def _blocks_agree(self) -> Hyperparameters:
        lines = []
        fuzz_dialect = engines.dialect(self.eval.fuzz_on)
        if fuzz_dialect != self.format.dialect:
            if "fuzz_on" in self.eval.model_fields_set:
                lines.append(f"hyperparameters.eval.fuzz_on: judges {fuzz_dialect} SQL, but format.dialect teaches the "
                             f"model {self.format.dialect}'s: name an engine of that dialect")
            else:
                log.warning("format.dialect is %s, but rows without a database are judged on databases fuzzed in "
                            "SQLite%s", self.format.dialect,
                            "; set eval.fuzz_on to a PostgreSQL URL to judge them on PostgreSQL"
                            if self.format.dialect == "postgres" else "")
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
