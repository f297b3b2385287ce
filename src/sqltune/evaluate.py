"""Score the SQL the model writes: greedy generation from the prompt, then BLEU, exact match and
execution accuracy (sql.scoring), per difficulty and per Spider hardness.

The reference scored teacher-forced argmax tokens, which never shows what a user would get. Here
each evaluation generates from the prompt alone: batched, prompts sorted by length so a batch
pads little, left padding (decoder-only generation continues from the right edge), KV cache,
greedy, stopping at the end-of-turn token.

Several ranks: rows are dealt round-robin to ranks, each generates its share, the chief gathers,
scores and broadcasts the metrics, so every rank returns the same dict. Under ZeRO-3 every
forward is collective, so all ranks run the same number of batches (short shards are padded
with a repeated row whose output is dropped) and `generate` runs with `synced_gpus`.
"""

from __future__ import annotations

import json
import logging
import random
from typing import Any

import torch
import torch.distributed as dist
from tqdm.auto import tqdm

from sqltune import format as fmt
from sqltune.sql import guided, scoring
from sqltune.config import EvalConfig, cache_root
from sqltune.rundir import RunFolder

log = logging.getLogger(__name__)


def _world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _zero3() -> bool:
    try:
        from transformers.integrations import is_deepspeed_zero3_enabled

        return is_deepspeed_zero3_enabled()
    except ImportError:
        return False


def generate(model: Any, tokenizer: Any, rows: list[dict[str, Any]], system_prompt: str, **kw: Any) -> list[str]:
    """Greedy SQL for each row, in the rows' order (keywords as `generate_candidates`)."""
    return [found[0] for found in generate_candidates(model, tokenizer, rows, system_prompt, **kw)]


@torch.no_grad()
def generate_candidates(
    model: Any,
    tokenizer: Any,
    rows: list[dict[str, Any]],
    system_prompt: str,
    *,
    max_new_tokens: int,
    batch_size: int,
    candidates: int = 1,
    decoding: str = "beam",
    temperature: float = 0.8,
    pad_batches_to: int | None = None,
    progress: bool = True,
) -> list[list[str]]:
    """`candidates` SQL strings per row, best first: greedy for 1; else beam search's top
    sequences in score order, or samples in the order drawn."""
    prompts = [fmt.prompt_text(r, tokenizer, system_prompt) for r in rows]
    encoded = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    order = sorted(range(len(rows)), key=lambda i: len(encoded[i]))
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    if pad_batches_to is not None:  # ZeRO-3: every rank steps through the same number of batches
        batches += [order[:1] or [0]] * (pad_batches_to - len(batches))
    stop = fmt.end_of_turn_ids(tokenizer)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stop[0]
    device = next(model.parameters()).device
    sample = candidates > 1 and decoding == "sample"
    search = {"do_sample": sample, "num_beams": 1 if sample or candidates == 1 else candidates,
              "num_return_sequences": candidates, **({"temperature": temperature, "top_k": 0} if sample else {})}
    was_training = model.training
    model.eval()
    out: dict[int, list[str]] = {}
    for batch in tqdm(batches, desc="generating SQL", disable=not progress, leave=False):
        if not encoded:
            break
        longest = max(len(encoded[i]) for i in batch)
        ids = torch.full((len(batch), longest), pad_id, dtype=torch.long)
        mask = torch.zeros((len(batch), longest), dtype=torch.long)
        for j, i in enumerate(batch):  # left padding
            ids[j, longest - len(encoded[i]):] = torch.as_tensor(encoded[i])
            mask[j, longest - len(encoded[i]):] = 1
        generated = model.generate(
            input_ids=ids.to(device),
            attention_mask=mask.to(device),
            max_new_tokens=max_new_tokens,
            eos_token_id=stop,
            pad_token_id=pad_id,
            use_cache=True,
            synced_gpus=_zero3() and _world()[1] > 1,
            **search,
        )
        for j, i in enumerate(batch):  # sequences come grouped per row, best first
            out.setdefault(i, [tokenizer.decode(generated[j * candidates + c, longest:], skip_special_tokens=True).strip()
                               for c in range(candidates)])
    if was_training:
        model.train()
    return [out.get(i, [""] * candidates) for i in range(len(rows))]


def eval_rows(rows: list[dict[str, Any]], n: int, seed: int = 0) -> list[dict[str, Any]]:
    """A fixed, seeded subset of `n` rows (all when n >= len), in a stable order."""
    if n >= len(rows):
        return list(rows)
    return [rows[i] for i in sorted(random.Random(seed).sample(range(len(rows)), n))]


def score(rows: list[dict[str, Any]], predictions: list[str], timeout_s: float,
          candidates: list[list[str]] | None = None) -> dict[str, Any]:
    """Every SQL metric of the predictions (sql/scoring.py); rows without a database are scored on
    databases fuzzed from their schema, cached under $SQLTUNE_CACHE/fuzz. With `candidates`, also
    pass@k: some candidate of the row is right."""
    scored = scoring.score_rows(
        [{**r, "prediction": p, "db_path": r.get("db_path") or None, **({"candidates": candidates[i]} if candidates else {})}
         for i, (r, p) in enumerate(zip(rows, predictions))],
        timeout_s=timeout_s, fuzz_dir=cache_root() / "fuzz",
    )
    fields = ("bleu", *scoring.PER_ROW.values(), "error", "hardness")
    per_row = [
        {"question": r["instruction"], "gold": r["response"], "predicted": p, "difficulty": r.get("difficulty"),
         **({"golds": r["golds"]} if r.get("golds") else {}),
         **({"candidates": candidates[i]} if candidates else {}), **{k: s[k] for k in fields}}
        for i, (r, p, s) in enumerate(zip(rows, predictions, scored["rows"]))
    ]
    return {"summary": scored["summary"], "rows": per_row}


def generate_and_score(
    model: Any, tokenizer: Any, rows: list[dict[str, Any]], system_prompt: str, cfg: EvalConfig
) -> dict[str, Any]:
    """Generate on every rank (rows sharded), score on the chief, same result on every rank.
    With `cfg.candidates` > 1 each row's answer is picked by execution (sql/guided.py)."""
    rank, world = _world()
    shard = rows[rank::world]
    kw = {"max_new_tokens": cfg.max_new_tokens, "batch_size": cfg.batch_size, "candidates": cfg.candidates,
          "decoding": cfg.decoding, "temperature": cfg.temperature}
    n_batches = None
    if world > 1 and _zero3():
        n_batches = -(-len(rows[0::world]) // cfg.batch_size)  # the longest shard's batch count
        if not shard and rows:  # fewer rows than ranks: step generation on a throwaway row
            generate_candidates(model, tokenizer, rows[:1], system_prompt, pad_batches_to=n_batches, progress=False, **kw)
    found = [] if not shard else generate_candidates(model, tokenizer, shard, system_prompt, pad_batches_to=n_batches,
                                                     progress=rank == 0, **kw)
    if world > 1:
        gathered: list[Any] = [None] * world
        dist.all_gather_object(gathered, found)
        found = [None] * len(rows)
        for r, part in enumerate(gathered):
            found[r::world] = part
    result = score_candidates(rows, found, cfg) if rank == 0 else None
    if world > 1:
        box = [result]
        dist.broadcast_object_list(box, src=0)
        result = box[0]
    return result


def score_candidates(rows: list[dict[str, Any]], found: list[list[str]], cfg: EvalConfig) -> dict[str, Any]:
    """Pick each row's answer from its candidates (the only one when there is one), then score."""
    if cfg.candidates == 1:
        return score(rows, [c[0] for c in found], cfg.sql_timeout_s)
    picks = [guided.pick(c, r.get("db_path") or None, cfg.pick, needs_rows=cfg.pick_needs_rows,
                         timeout_s=cfg.sql_timeout_s) for r, c in zip(rows, found)]
    return score(rows, [c[i] for c, i in zip(found, picks)], cfg.sql_timeout_s, candidates=found)


class GenerationEval:
    """The `extra_eval` hook of SQLTrainer: scores generated SQL at every evaluation and keeps
    each evaluation's per-row predictions in the run folder."""

    def __init__(self, rows: list[dict[str, Any]], tokenizer: Any, system_prompt: str, cfg: EvalConfig,
                 run: RunFolder):
        self.rows = eval_rows(rows, cfg.generate_samples)
        self.tokenizer = tokenizer
        self.system_prompt = system_prompt
        self.cfg = cfg
        self.run = run

    def __call__(self, model: Any, prefix: str, step: int) -> dict[str, float]:
        result = generate_and_score(model, self.tokenizer, self.rows, self.system_prompt, self.cfg)
        if _world()[0] == 0:
            path = self.run.predictions(prefix, step)
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "w") as f:
                for row in result["rows"]:
                    f.write(json.dumps(row) + "\n")
        return {k: float(v) for k, v in result["summary"].items() if k != "n" and not k.startswith("n_")}
