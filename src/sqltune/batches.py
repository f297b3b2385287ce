"""Batches grouped by database: rows that share a prompt start go through the model together.

In text-to-SQL the schema is most of the prompt, and many questions share one database. With
the `schema_first` layout (prompts.py) the rows of one schema share their prompt up to the
question; a batch of such rows computes that start once (model/loss.py in training,
evaluate.py in generation). Random batches mix databases and share only the system prompt.

`grouped(keys, batch_size, rng)` cuts the rows into batches:
  1. rows of one schema (same database, same schema text: the generator shows a question only
     its tables, so one database has several schema texts) fill whole batches;
  2. each database's remainders, ordered by schema text so that neighbours share the longest
     start, fill whole batches next;
  3. what is left of every database is pooled, in database order, into the last batches; only
     the very last batch may be short, so the batch count is the Trainer's `ceil(n / batch)`.
With `rng` the rows within each schema and the order of the batches are shuffled (a new draw
per epoch); without it the order is fixed (evaluation). Generation passes each row's prompt
length (`lengths`): steps 2 and 3 then order the remainders longest first (schema text breaking
ties, so rows of one schema stay neighbours). A left-padded batch computes every row at its
longest row's length; on the generator's rows, whose schema is a different view of the database
almost row by row (241 schema texts among 320 rows of 10 databases), batches of mixed lengths
made generation slower than the length-sorted batches of the path before grouping.

`GroupedSampler` hands that order to the HF Trainer as a flat index list, which its DataLoader
cuts back into the same batches; under DDP and DeepSpeed accelerate deals whole batches to the
ranks, so each rank's batch comes from one database too.
"""

from __future__ import annotations

import random
from collections import defaultdict
from typing import Any, Iterator, Sequence

import torch

Key = tuple[str, str]  # (database, schema text)


def row_key(row: dict[str, Any]) -> Key:
    """A row's database (its id or file; the schema text where it has neither) and schema text."""
    schema = str(row.get("input") or "")
    return str(row.get("db_id") or row.get("db_path") or schema), schema


def grouped(keys: Sequence[Key], batch_size: int, rng: random.Random | None = None,
            lengths: Sequence[int] | None = None) -> list[list[int]]:
    """Indices of `keys` cut into batches of `batch_size`, grouped as the module says."""
    def ordered(rows: list[int]) -> list[int]:
        return rows if lengths is None else sorted(rows, key=lambda i: (-lengths[i], keys[i][1]))

    by_db: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
    for i, (db, schema) in enumerate(keys):
        by_db[db][schema].append(i)
    full: list[list[int]] = []
    pool: list[int] = []
    for db in sorted(by_db):
        rest: list[int] = []
        for schema in sorted(by_db[db]):
            rows = list(by_db[db][schema])
            if rng is not None:
                rng.shuffle(rows)
            cut = len(rows) - len(rows) % batch_size
            full += [rows[i:i + batch_size] for i in range(0, cut, batch_size)]
            rest += rows[cut:]
        rest = ordered(rest)
        cut = len(rest) - len(rest) % batch_size
        full += [rest[i:i + batch_size] for i in range(0, cut, batch_size)]
        pool += rest[cut:]
    if rng is not None:
        rng.shuffle(full)
    pool = ordered(pool)
    return full + [pool[i:i + batch_size] for i in range(0, len(pool), batch_size)]


class GroupedSampler(torch.utils.data.Sampler[int]):
    """The Trainer's sampler for batches grouped by database; `set_epoch` (called by the Trainer
    at each epoch) draws a new order, the same on every rank (seeded by seed and epoch)."""

    def __init__(self, keys: Sequence[Key], batch_size: int, *, seed: int | None):
        self.keys, self.batch_size, self.seed, self.epoch = list(keys), batch_size, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.keys)

    def __iter__(self) -> Iterator[int]:
        rng = None if self.seed is None else random.Random(f"{self.seed}:{self.epoch}")
        for batch in grouped(self.keys, self.batch_size, rng):
            yield from batch
