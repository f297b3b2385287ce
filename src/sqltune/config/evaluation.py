"""The `eval:` block: generated-SQL scoring during training, and execution-guided decoding."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, PositiveInt, confloat, field_validator, model_validator

from sqltune.config.base import Strict, check, no_password


class EvalSettings(Strict):
    generate_samples: int = Field(0, ge=0, description="rows of the eval split scored by generation; 0 = off")
    max_new_tokens: PositiveInt = 128
    batch_size: PositiveInt = 16
    at_start: bool = Field(False, description="also evaluate the untrained model at step 0")
    sql_timeout_s: confloat(gt=0) = 1.0
    candidates: PositiveInt = Field(1, description="SQL candidates per question; 1 = greedy. More: execution-guided")
    decoding: Literal["beam", "sample"] = Field("beam", description="how candidates are drawn: beam search or sampling")
    temperature: confloat(gt=0) = Field(0.8, description="sampling temperature (decoding: sample)")
    pick: Literal["first_valid", "vote"] = Field(
        "first_valid", description="first_valid: the best-ranked candidate that runs; vote: the most common result")
    pick_needs_rows: bool = Field(False, description="first_valid: a candidate must also return rows")
    repair: bool = Field(False, description="an answer that fails to run goes back to the model with its error, and "
                                            "it writes again (one round; greedy, candidates: 1)")
    fuzz_on: str = Field("sqlite", description="where rows without a database are judged, on databases fuzzed from "
                                               "their schema: sqlite, duckdb, or a PostgreSQL URL whose role may "
                                               "create schemas (password from PGPASSWORD or ~/.pgpass); follows "
                                               "format.dialect: duckdb")

    @model_validator(mode="after")
    def _repair_greedy(self) -> EvalSettings:
        if self.repair and self.candidates > 1:
            check(["hyperparameters.eval.repair: with candidates: 1 only (with several candidates, first_valid "
                   "already picks one that runs)"])
        return self

    @field_validator("fuzz_on")
    @classmethod
    def _an_engine(cls, value: str) -> str:
        from sqltune.sql.fuzz import engines

        try:
            engines.dialect(value)
        except ValueError as e:
            check([f"hyperparameters.eval.fuzz_on: {e}"])
        no_password(value, "hyperparameters.eval.fuzz_on")
        return value
