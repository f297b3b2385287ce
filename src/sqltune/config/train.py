"""The `train:` block: the memory plan, batches by database."""

from __future__ import annotations

from pydantic import Field, PositiveInt, confloat

from sqltune.config.base import Strict


class TrainSettings(Strict):
    """The memory plan (memory.py): what keeps a training step under a memory budget."""

    memory_plan: bool = Field(True, description="estimate the peak before training and keep it under the budget")
    memory_budget_gib: confloat(gt=0) | None = Field(
        None, description="peak memory to stay under; None = 6 GiB on CPU, the GPU's memory on GPU")
    micro_batch_tokens: PositiveInt | None = Field(
        None, description="split each batch into passes of at most this many tokens; None = the plan decides")
    group_by_database: bool = Field(
        False, description="fill each batch from one database (and one schema) where the split allows, so the batch "
                           "computes its shared prompt once; false = the Trainer's random batches (on the generator's "
                           "data grouped batches cost accuracy: bench/NOTES.md section 12)")
