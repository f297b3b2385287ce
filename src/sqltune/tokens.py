"""Chat text -> token ids and completion-only labels; a collator that only pads.

Labels are built here, once: the prompt (system + user turn + generation prompt) is masked to
-100, the answer and its end-of-turn token are learned. We tokenize the prompt and the completion
separately and concatenate, so the prompt ids are exactly what inference will feed the model and
the mask boundary is exact (TRL tokenizes both and warns on a mismatch; this cannot mismatch).

Right truncation at `max_length`. Counted and logged: samples truncated at all, samples whose
answer lost tokens, and samples whose whole answer was cut (dropped from training: they would
contribute no loss and only cost compute).
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import datasets
import torch

from sqltune import prompts
from sqltune.batches import row_key

log = logging.getLogger(__name__)
IGNORE = -100


def encode(row: dict[str, Any], tokenizer: Any, system_prompt: str, max_length: int,
           layout: str = prompts.DEFAULT_LAYOUT) -> dict[str, Any]:
    prompt, completion = prompts.render(row, tokenizer, system_prompt, layout)
    p_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    c_ids = tokenizer(completion, add_special_tokens=False)["input_ids"]
    ids = (p_ids + c_ids)[:max_length]
    labels = ([IGNORE] * len(p_ids) + c_ids)[:max_length]
    return {"input_ids": ids, "labels": labels, "n_prompt": len(p_ids), "n_full": len(p_ids) + len(c_ids),
            "group": list(row_key(row))}


def tokenize_split(
    ds: datasets.Dataset, tokenizer: Any, system_prompt: str, max_length: int, name: str,
    layout: str = prompts.DEFAULT_LAYOUT,
) -> datasets.Dataset:
    """Tokenize one split, log truncation counts, drop samples with no answer token left. Each
    sample keeps its `group` (database, schema text) for batches grouped by database (batches.py)."""
    out = ds.map(
        encode,
        fn_kwargs={"tokenizer": tokenizer, "system_prompt": system_prompt, "max_length": max_length, "layout": layout},
        remove_columns=ds.column_names,
        desc=f"tokenizing {name}",
    )
    n_prompt, n_full = out["n_prompt"], out["n_full"]
    truncated = sum(f > max_length for f in n_full)
    answer_cut = sum(p < max_length < f for p, f in zip(n_prompt, n_full))
    dropped = [i for i, p in enumerate(n_prompt) if p >= max_length]
    if truncated:
        log.warning(
            "%s: %d of %d samples truncated at max_length=%d; %d lost part of their answer, "
            "%d lost all of it and are dropped",
            name, truncated, len(out), max_length, answer_cut, len(dropped),
        )
    if dropped:
        keep = sorted(set(range(len(out))) - set(dropped))
        out = out.select(keep)
    return out.remove_columns(["n_prompt", "n_full"])


@dataclasses.dataclass
class Collator:
    """Pads a list of samples to the longest one (right padding); nothing else.

    >>> batch = Collator(pad_id=0)([{"input_ids": [5, 6, 7], "labels": [-100, 6, 7]}, {"input_ids": [5], "labels": [5]}])
    >>> {k: v.tolist() for k, v in batch.items()}
    {'input_ids': [[5, 6, 7], [5, 0, 0]],
     'labels': [[-100, 6, 7], [5, -100, -100]],
     'attention_mask': [[1, 1, 1], [1, 0, 0]]}

    With `padding_free`, the samples are laid end to end in one row instead, with position ids
    restarting at each sample and no attention mask: transformers then builds a block-diagonal
    causal mask from the position ids (sdpa, eager, flex) or runs varlen flash attention, so no
    token attends across samples and no compute is spent on padding. Each sample's first label is
    -100, so no token learns to predict the next sample. The model must run with `use_cache=False`
    (as `masked_loss_forward` does): transformers skips packed-sequence detection when a KV cache exists.

    >>> batch = Collator(pad_id=0, padding_free=True)([{"input_ids": [5, 6, 7], "labels": [-100, 6, 7]},
    ...                                                 {"input_ids": [5, 8], "labels": [5, 8]}])
    >>> {k: v.tolist() for k, v in batch.items()}
    {'input_ids': [[5, 6, 7, 5, 8]],
     'labels': [[-100, 6, 7, -100, 8]],
     'position_ids': [[0, 1, 2, 0, 1]]}
    """

    pad_id: int
    padding_free: bool = False

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        if self.padding_free:
            return self._flatten(features)
        longest = max(len(f["input_ids"]) for f in features)
        ids = torch.full((len(features), longest), self.pad_id, dtype=torch.long)
        labels = torch.full((len(features), longest), IGNORE, dtype=torch.long)
        mask = torch.zeros((len(features), longest), dtype=torch.long)
        for i, f in enumerate(features):
            n = len(f["input_ids"])
            ids[i, :n] = torch.as_tensor(f["input_ids"])
            labels[i, :n] = torch.as_tensor(f["labels"])
            mask[i, :n] = 1
        return {"input_ids": ids, "labels": labels, "attention_mask": mask}

    @staticmethod
    def _flatten(features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        ids, labels, positions = [], [], []
        for f in features:
            ids.extend(f["input_ids"])
            labels.extend([IGNORE, *f["labels"][1:]])
            positions.extend(range(len(f["input_ids"])))
        as_row = lambda xs: torch.tensor([xs], dtype=torch.long)  # noqa: E731
        return {"input_ids": as_row(ids), "labels": as_row(labels), "position_ids": as_row(positions)}
