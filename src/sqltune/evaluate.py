"""Score the SQL the model writes: greedy generation from the prompt, then BLEU, exact match and
execution accuracy (sql.scoring), per difficulty and per Spider hardness.

The reference scored teacher-forced argmax tokens, which never shows what a user would get. Here
each evaluation generates from the prompt alone: batched, KV cache, greedy (or beams, or samples),
stopping at the end-of-turn token. Batches are grouped by database (batches.py), so rows that
share a prompt start (one database's schema, in the `schema_first` layout) land together; that start
runs once, as a batch of one, and every row (and every beam or sample) continues from its keys
and values: prefix caching, as inference servers do it. The rest of each row is left-padded after
the shared start (decoder-only generation continues from the right edge; the attention mask hides
the padding and the position ids skip it). A batch that shares less than `MIN_SHARED_PREFIX`
tokens is left-padded whole, as before.

Several ranks: rows are dealt round-robin to ranks, each generates its share, the chief gathers,
scores and broadcasts the metrics, so every rank returns the same dict. Under ZeRO-3 every
forward is collective, so all ranks run the same number of batches (short shards are padded
with a repeated row whose output is dropped) and `generate` runs with `synced_gpus`.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import random
from typing import Any

import torch
import torch.distributed as dist
from tqdm.auto import tqdm

from sqltune import prompts
from sqltune.batches import grouped, row_key
from sqltune.model import prefix_attention
from sqltune.model.loss import MIN_SHARED_PREFIX
from sqltune.sql import fuzz, guided, sandbox, scoring
from sqltune.sql.execute import clean_sql
from sqltune.cache import cache_root
from sqltune.config import EvalSettings
from sqltune.errors import ConfigError
from sqltune.rundir import Results

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
    layout: str = prompts.DEFAULT_LAYOUT,
    share_prefix: bool = True,
    pad_batches_to: int | None = None,
    progress: bool = True,
) -> list[list[str]]:
    """`candidates` SQL strings per row, best first: greedy for 1; else beam search's top
    sequences in score order, or samples in the order drawn. `share_prefix` False: every batch
    left-padded whole (the path before prefix caching; the tests compare the two)."""
    texts = [prompts.prompt_text(r, tokenizer, system_prompt, layout) for r in rows]
    encoded = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in texts]
    # one database's questions together; what is left, by length
    batches = grouped([row_key(r) for r in rows], batch_size, lengths=[len(e) for e in encoded])
    if pad_batches_to is not None:  # ZeRO-3: every rank steps through the same number of batches
        batches += [[0]] * (pad_batches_to - len(batches))
    # Under ZeRO-3 on several ranks every forward is collective: a prefix pass on one rank only would hang.
    share_prefix = share_prefix and not (_zero3() and _world()[1] > 1)
    stop = prompts.end_of_turn_ids(tokenizer)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stop[0]
    device = next(model.parameters()).device
    sample = candidates > 1 and decoding == "sample"
    search = {"do_sample": sample, "num_beams": 1 if sample or candidates == 1 else candidates,
              "num_return_sequences": candidates, **({"temperature": temperature, "top_k": 0} if sample else {})}
    was_training = model.training
    model.eval()
    out: dict[int, list[str]] = {}
    prefixes = PrefixCache(model)
    for batch in tqdm(batches, desc="generating SQL", disable=not progress, leave=False):
        if not encoded:
            break
        seqs = [encoded[i] for i in batch]
        shared = common_start(seqs) if share_prefix else 0
        ids, mask = _left_padded(seqs, shared, pad_id)
        ids, mask = ids.to(device), mask.to(device)
        # Given, not left to generate: it derives them from the mask only for a model whose forward
        # names `position_ids`, and padding after the shared start must not count as distance.
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        extra = {}
        # The start is read in place where that pays: for candidates (each row's copies would
        # multiply), or a start at least as long as the rest. A short start is cheaper copied:
        # the stock attention runs the rest's prefill in one fused kernel (NOTES section 21).
        in_place = prefixes.shared and shared > 0 and (candidates > 1 or 2 * shared >= ids.shape[1])
        if shared:
            extra["past_key_values"] = prefixes.get(seqs[0][:shared], len(batch) * candidates, device, in_place)
        reading = prefix_attention.active(model, extra["past_key_values"]) if in_place else contextlib.nullcontext()
        with reading:
            if in_place and candidates > 1 and ids.shape[1] - shared > 1:
                # Each row's question runs once, not once per beam or sample: all but its last token
                # into the row's own part of the cache, repeated for its candidates; `generate` runs
                # the last token (it starts where the cache ends).
                prefixes.backbone(input_ids=ids[:, shared:-1], attention_mask=mask[:, :-1],
                                  position_ids=positions[:, shared:-1], past_key_values=extra["past_key_values"],
                                  use_cache=True)
                extra["past_key_values"].batch_repeat_interleave(candidates)
            generated = model.generate(
                input_ids=ids,
                attention_mask=mask,
                position_ids=positions,
                max_new_tokens=max_new_tokens,
                eos_token_id=stop,
                pad_token_id=pad_id,
                use_cache=True,
                synced_gpus=_zero3() and _world()[1] > 1,
                **search,
                **extra,
            )
        width = ids.shape[1]
        for j, i in enumerate(batch):  # sequences come grouped per row, best first
            out.setdefault(i, [tokenizer.decode(generated[j * candidates + c, width:], skip_special_tokens=True).strip()
                               for c in range(candidates)])
    if was_training:
        model.train()
    return [out.get(i, [""] * candidates) for i in range(len(rows))]


def common_start(seqs: list[list[int]]) -> int:
    """How many leading tokens every sequence shares, or 0 when too few to pay for a prefix pass.
    At least one token of each sequence is left after it (generation needs a token to run).

    >>> common_start([list(range(40)) + [1], list(range(40)) + [2, 3]])
    40
    """
    if len(seqs) < 2:
        return 0
    n = 0
    for column in zip(*seqs):
        if any(t != column[0] for t in column):
            break
        n += 1
    n = min(n, min(len(s) for s in seqs) - 1)
    return n if n >= MIN_SHARED_PREFIX else 0


def _left_padded(seqs: list[list[int]], shared: int, pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, attention mask): the shared start, then each row's rest left-padded to the longest
    rest. With `shared` 0 that is plain left padding."""
    rest = max(len(s) for s in seqs) - shared
    ids = torch.full((len(seqs), shared + rest), pad_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for j, s in enumerate(seqs):
        at = shared + rest - (len(s) - shared)
        ids[j, :shared] = torch.as_tensor(s[:shared])
        ids[j, at:] = torch.as_tensor(s[shared:])
        mask[j, :shared] = 1
        mask[j, at:] = 1
    return ids, mask


class PrefixCache:
    """The keys and values of the last shared prompt start, kept while the next batches share it
    (a database's questions span several batches). Where the model's attention allows
    (`prefix_attention.supported`: `shared` is True), each batch gets a SharedPrefixCache over them,
    read once per step for all its sequences and never copied; elsewhere its own copy, expanded to
    its rows, since generation appends to the cache it is handed."""

    def __init__(self, model: Any):
        self.model = model
        self.key: tuple[int, ...] | None = None
        self.cache: Any = None
        self.shared = prefix_attention.supported(model)
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        self.backbone = base.get_decoder() if self.shared else None  # the decoder, without the LM head

    @torch.no_grad()
    def get(self, start: list[int], rows: int, device: torch.device, in_place: bool = True) -> Any:
        if tuple(start) != self.key:
            ids = torch.as_tensor([start], device=device)
            self.cache = self.model(input_ids=ids, attention_mask=torch.ones_like(ids), use_cache=True).past_key_values
            self.key = tuple(start)
        if self.shared and in_place:
            return prefix_attention.SharedPrefixCache(self.cache)
        cache = copy.deepcopy(self.cache)
        cache.batch_repeat_interleave(rows)
        return cache


def eval_rows(rows: list[dict[str, Any]], n: int, seed: int = 0) -> list[dict[str, Any]]:
    """A fixed, seeded subset of `n` rows (all when n >= len), in a stable order."""
    if n >= len(rows):
        return list(rows)
    return [rows[i] for i in sorted(random.Random(seed).sample(range(len(rows)), n))]


def score(rows: list[dict[str, Any]], predictions: list[str], timeout_s: float,
          candidates: list[list[str]] | None = None, fuzz_on: str = "sqlite",
          repairs: list[dict[str, str] | None] | None = None) -> dict[str, Any]:
    """Every SQL metric of the predictions (sql/scoring.py); rows without a database are scored on
    databases fuzzed from their schema, cached under $SQLTUNE_CACHE/fuzz, on engine `fuzz_on`.
    With `candidates`, also pass@k: some candidate of the row is right."""
    scored = scoring.score_rows(
        [{**r, "prediction": p, "db_path": r.get("db_path") or None, **({"candidates": candidates[i]} if candidates else {})}
         for i, (r, p) in enumerate(zip(rows, predictions))],
        timeout_s=timeout_s, fuzz_dir=cache_root() / "fuzz", fuzz_on=fuzz_on,
    )
    fields = ("bleu", *scoring.PER_ROW.values(), "error", "hardness")
    per_row = [
        {"question": r["instruction"], "gold": r["response"], "predicted": p, "difficulty": r.get("difficulty"),
         **({"golds": r["golds"]} if r.get("golds") else {}), **({"db_path": r["db_path"]} if r.get("db_path") else {}),
         **({"candidates": candidates[i]} if candidates else {}), **{k: s[k] for k in fields},
         **({"repair": repairs[i]} if repairs and repairs[i] else {})}
        for i, (r, p, s) in enumerate(zip(rows, predictions, scored["rows"]))
    ]
    summary = scored["summary"]
    if repairs is not None:  # rows sent back to the model with their error, and how many of those now run
        summary = {**summary, "repaired": sum(x is not None for x in repairs),
                   "repaired_runs": sum(x is not None and bool(s["valid"]) for x, s in zip(repairs, scored["rows"]))}
    return {"summary": summary, "rows": per_row}


def generate_and_score(
    model: Any, tokenizer: Any, rows: list[dict[str, Any]], system_prompt: str, cfg: EvalSettings,
    layout: str = prompts.DEFAULT_LAYOUT,
) -> dict[str, Any]:
    """Generate on every rank (rows sharded), score on the chief, same result on every rank.
    With `cfg.candidates` > 1 each row's answer is picked by execution (sql/guided.py)."""
    kw = {"max_new_tokens": cfg.max_new_tokens, "batch_size": cfg.batch_size, "candidates": cfg.candidates,
          "decoding": cfg.decoding, "temperature": cfg.temperature, "layout": layout}
    found = _generate_everywhere(model, tokenizer, rows, system_prompt, kw)
    repairs = _repair_round(model, tokenizer, rows, found, system_prompt, cfg, kw) if cfg.repair else None
    rank, world = _world()
    result = score_candidates(rows, found, cfg, repairs) if rank == 0 else None
    if world > 1:
        box = [result]
        dist.broadcast_object_list(box, src=0)
        result = box[0]
    return result


def _generate_everywhere(model: Any, tokenizer: Any, rows: list[dict[str, Any]], system_prompt: str,
                         kw: dict[str, Any]) -> list[list[str]]:
    """`generate_candidates` over `rows`, dealt round-robin to the ranks; every rank gets all."""
    rank, world = _world()
    shard = rows[rank::world]
    n_batches = None
    if world > 1 and _zero3():
        n_batches = -(-len(rows[0::world]) // kw["batch_size"])  # the longest shard's batch count
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
    return found


def _repair_round(model: Any, tokenizer: Any, rows: list[dict[str, Any]], found: list[list[str]],
                  system_prompt: str, cfg: EvalSettings, kw: dict[str, Any]) -> list[dict[str, str] | None]:
    """eval.repair: each answer that fails to run (on its row's database; without one, on a
    database drawn from its schema text alone, never from the gold) goes back to the model with its
    error (prompts.REPAIR_TEMPLATE), and the model writes again. A new query that runs replaces it
    in `found` (in place); the first query and its error are returned for the row (None: it ran).
    The chief runs the queries and tells the other ranks, so every rank regenerates the same rows."""
    rank, world = _world()
    failed = [(i, run_error(r, found[i][0], cfg)) for i, r in enumerate(rows)] if rank == 0 else None
    if world > 1:
        box = [failed]
        dist.broadcast_object_list(box, src=0)
        failed = box[0]
    failed = [(i, err) for i, err in failed if err]
    repairs: list[dict[str, str] | None] = [None] * len(rows)
    if not failed:
        return repairs
    retry = [{**rows[i], "repair": {"sql": found[i][0], "error": err}} for i, err in failed]
    again = _generate_everywhere(model, tokenizer, retry, system_prompt, kw)
    checked = [run_error(r, a[0], cfg) for r, a in zip(retry, again)] if rank == 0 else [None] * len(retry)
    if world > 1:
        box = [checked]
        dist.broadcast_object_list(box, src=0)
        checked = box[0]
    for (i, err), answer, new_err in zip(failed, again, checked):
        repairs[i] = {"sql": found[i][0], "error": err}
        if not new_err:
            found[i] = answer
    return repairs


def run_error(row: dict[str, Any], sql: str, cfg: EvalSettings) -> str | None:
    """Why `sql` fails on the row's database, or on one drawn from its schema text; None if it
    runs, or if there is nowhere to run it."""
    db = row.get("db_path") or fuzz.schema_database(row.get("input") or "", cache_dir=cache_root() / "fuzz",
                                                        on=cfg.fuzz_on)
    if not db:
        return None
    return sandbox.execute(db, clean_sql(sql), timeout_s=cfg.sql_timeout_s).error


def score_candidates(rows: list[dict[str, Any]], found: list[list[str]], cfg: EvalSettings,
                     repairs: list[dict[str, str] | None] | None = None) -> dict[str, Any]:
    """Pick each row's answer from its candidates (the only one when there is one), then score."""
    if cfg.candidates == 1:
        return score(rows, [c[0] for c in found], cfg.sql_timeout_s, fuzz_on=cfg.fuzz_on, repairs=repairs)
    picks = [guided.pick(c, r.get("db_path") or None, cfg.pick, needs_rows=cfg.pick_needs_rows,
                         timeout_s=cfg.sql_timeout_s) for r, c in zip(rows, found)]
    return score(rows, [c[i] for c, i in zip(found, picks)], cfg.sql_timeout_s, candidates=found, fuzz_on=cfg.fuzz_on)


class GenerationEval:
    """The `extra_eval` hook of SQLTrainer: scores generated SQL at every evaluation and hands
    each evaluation's per-row predictions to `results` (the run folder)."""

    def __init__(self, rows: list[dict[str, Any]], tokenizer: Any, system_prompt: str, cfg: EvalSettings,
                 results: Results, layout: str = prompts.DEFAULT_LAYOUT, searcher_metric: str | None = None):
        self.rows = eval_rows(rows, cfg.generate_samples)
        self.tokenizer = tokenizer
        self.system_prompt = system_prompt
        self.layout = layout
        self.cfg = cfg
        self.results = results
        if problem := self.searcher_problem(searcher_metric):
            raise ConfigError([problem])

    def searcher_problem(self, metric: str | None) -> str | None:
        """Why this evaluation would never report the searcher's `metric`, found before training
        (else the run would stop at its first evaluation): execution accuracy needs validation
        rows with a database, fuzzed execution accuracy rows without one."""
        with_db = [bool(r.get("db_path")) for r in self.rows]
        if metric in ("eval_execution_accuracy", "eval_bird_execution_accuracy") and not any(with_db):
            return (f"searcher.metric '{metric}' will not be reported: no validation row has a database, so "
                    "they are scored by fuzzed execution; set searcher.metric: eval_fuzz_execution_accuracy")
        if metric == "eval_fuzz_execution_accuracy" and all(with_db):
            return (f"searcher.metric '{metric}' will not be reported: every validation row has a database; "
                    "set searcher.metric: eval_execution_accuracy")
        return None

    def __call__(self, model: Any, prefix: str, step: int) -> dict[str, float]:
        result = generate_and_score(model, self.tokenizer, self.rows, self.system_prompt, self.cfg, self.layout)
        if _world()[0] == 0:
            self.results.write_predictions(prefix, step, result["rows"])
        return {k: float(v) for k, v in result["summary"].items() if k != "n" and not k.startswith("n_")}
