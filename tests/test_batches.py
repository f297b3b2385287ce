"""Batches grouped by database (batches.py), the schema_first layout (prompts.py), and generation
that prefills a batch's shared prompt start once (evaluate.py)."""

from __future__ import annotations

import math
import random
from collections import Counter

import datasets
import pytest
import torch
import transformers

from conftest import TINY_LLAMA
from sqltune import batches, config, evaluate, model
from sqltune import prompts
from sqltune import tokens
from sqltune.recipes.sft import SQLTrainer


def keys_of(sizes: dict[tuple[str, str], int]) -> list[batches.Key]:
    keys = [k for k, n in sizes.items() for _ in range(n)]
    random.Random(1).shuffle(keys)
    return keys


SIZES = {("a", "s1"): 11, ("a", "s2"): 3, ("b", "s3"): 8, ("c", "s4"): 2, ("c", "s5"): 5, ("d", "s6"): 1}


@pytest.mark.parametrize("batch_size", [1, 3, 4, 8, 40])
def test_grouped_covers_every_row_once_in_the_trainers_batch_count(batch_size: int) -> None:
    keys = keys_of(SIZES)
    for rng in (None, random.Random(0)):
        found = batches.grouped(keys, batch_size, rng)
        assert sorted(i for b in found for i in b) == list(range(len(keys)))
        assert len(found) == math.ceil(len(keys) / batch_size)
        assert all(len(b) == batch_size for b in found[:-1])  # only the last may be short


def test_grouped_fills_batches_from_one_schema_then_one_database() -> None:
    keys = keys_of(SIZES)
    found = batches.grouped(keys, 4, random.Random(0))
    schemas = [Counter(keys[i][1] for i in b) for b in found]
    dbs = [{keys[i][0] for i in b} for b in found]
    # s1 (11 rows) gives two whole batches, s3 (8 rows) two; a's remainder (3 of s1, 3 of s2) one more
    assert sum(c == Counter({"s1": 4}) for c in schemas) == 2 and sum(c == Counter({"s3": 4}) for c in schemas) == 2
    assert sum(len(d) == 1 for d in dbs) >= 6
    # 30 rows, 4 per batch: 8 batches; the 2 pooled ones at the end may mix databases
    assert all(len(d) == 1 for d in dbs[:-2])


def test_grouped_with_lengths_orders_the_remainders_longest_first_and_keeps_whole_schema_batches() -> None:
    """Generation's order: whole batches of one schema as without lengths; each database's
    remainder, and the pool, longest first, rows of one schema (equal length here) together."""
    keys = keys_of(SIZES)
    lengths = [100 + 10 * int(k[1][1:]) + (i % 3) for i, k in enumerate(keys)]
    plain, by_length = batches.grouped(keys, 4), batches.grouped(keys, 4, lengths=lengths)
    whole = [b for b in plain if len({keys[i][1] for i in b}) == 1 and len(b) == 4]
    assert sorted(map(sorted, whole)) == sorted(sorted(b) for b in by_length if len({keys[i][1] for i in b}) == 1
                                                 and len(b) == 4 and sorted(b) in map(sorted, whole))
    assert sorted(i for b in by_length for i in b) == list(range(len(keys)))
    a_rest = [i for b in by_length[len(whole):] for i in b if keys[i][0] == "a"]
    assert [lengths[i] for i in a_rest] == sorted((lengths[i] for i in a_rest), reverse=True)
    pool = [i for b in by_length[-2:] for i in b]  # c's and d's leftovers, pooled
    assert [lengths[i] for i in pool] == sorted((lengths[i] for i in pool), reverse=True)


def test_grouped_reshuffles_per_epoch_and_keeps_a_fixed_order_without_rng() -> None:
    keys = keys_of(SIZES)
    assert batches.grouped(keys, 4) == batches.grouped(keys, 4)
    sampler = batches.GroupedSampler(keys, 4, seed=7)
    first = list(sampler)
    assert list(sampler) == first  # same epoch, same order (every rank draws the same)
    sampler.set_epoch(1)
    assert list(sampler) != first and sorted(list(sampler)) == sorted(first)


def test_the_trainer_gets_one_database_per_batch_in_every_epoch(tmp_path, smol_tokenizer) -> None:
    """The real HF Trainer (with accelerate's dataloader) over SQLTrainer's sampler: every batch
    it trains on holds one schema where the data allows, and epoch 2 deals other batches."""
    net = model.load_model(config.ModelSettings(from_config=TINY_LLAMA), smol_tokenizer)
    keys = keys_of({("a", "s1"): 8, ("b", "s2"): 8, ("c", "s3"): 4})
    ds = datasets.Dataset.from_list([{"input_ids": [5 + i % 7, 6, 7, 8], "labels": [-100, 6, 7, 8], "row": i}
                                     for i in range(len(keys))])
    seen: list[list[int]] = []

    def collate(features: list[dict]) -> dict:
        seen.append([f["row"] for f in features])
        return tokens.Collator(pad_id=0)([{k: f[k] for k in ("input_ids", "labels")} for f in features])

    args = transformers.TrainingArguments(output_dir=str(tmp_path), per_device_train_batch_size=4, num_train_epochs=2,
                                          use_cpu=True, report_to="none", save_strategy="no", logging_strategy="no",
                                          remove_unused_columns=False, disable_tqdm=True, seed=3)
    SQLTrainer(model=net, args=args, train_dataset=ds, data_collator=collate,
               groups={"train": keys, "eval": keys}).train()
    assert len(seen) == 10
    assert all(len({keys[i] for i in b}) == 1 for b in seen)
    assert seen[:5] != seen[5:] and sorted(i for b in seen[:5] for i in b) == list(range(len(keys)))
    assert sorted(i for b in seen[5:] for i in b) == list(range(len(keys)))


ROW = {"instruction": "How many singers?", "input": "CREATE TABLE singer (id INT, name TEXT)",
       "response": "SELECT COUNT(*) FROM singer", "examples": [{"question": "Names?", "sql": "SELECT name FROM singer"}]}


def test_schema_first_puts_the_schema_before_the_examples_and_the_question() -> None:
    ref = prompts.user_text(ROW, "reference")
    first = prompts.user_text(ROW, "schema_first")
    assert ref.index("Task: How many") < ref.index("SQL table:") < ref.index("Example task:") < ref.index("SQL query: ")
    assert first.index("SQL table:") < first.index("Example task:") < first.index("Task: How many") \
        < first.rindex("SQL query: ")
    assert sorted(ref.splitlines()) == sorted(first.splitlines())  # the same lines, in another order


def test_schema_first_rows_of_one_database_share_their_tokens_up_to_the_question(smol_tokenizer) -> None:
    other = {**ROW, "instruction": "Which singer is the oldest?", "examples": []}
    one = {**ROW, "examples": []}
    ids = [tokens.encode(r, smol_tokenizer, config.DEFAULT_SYSTEM_PROMPT, 4096, "schema_first")["input_ids"]
           for r in (one, other)]
    shared = evaluate.common_start(ids)
    schema_end = len(smol_tokenizer(prompts.prompt_text(one, smol_tokenizer, config.DEFAULT_SYSTEM_PROMPT, "schema_first")
                                    .split("Task:")[0], add_special_tokens=False)["input_ids"])
    assert shared >= schema_end - 1
    ref = [tokens.encode(r, smol_tokenizer, config.DEFAULT_SYSTEM_PROMPT, 4096, "reference")["input_ids"]
           for r in (one, other)]
    assert evaluate.common_start(ref) < shared


@pytest.fixture(scope="module")
def smol_tokenizer():
    return model.load_tokenizer(config.ModelSettings(name="smollm2"))


@pytest.fixture(scope="module")
def smol():
    hp = config.ModelSettings(name="smollm2", dtype="float32")
    tokenizer = model.load_tokenizer(hp)
    return model.load_model(hp, tokenizer, None), tokenizer


@pytest.fixture(scope="module")
def rows_of_two_databases(tmp_path_factory) -> list[dict]:
    from sqltune.data import splits, synthetic

    made = synthetic.generate(1200, 0, tmp_path_factory.mktemp("gen"))
    easy = splits.select(made, "easy", 10**6)
    by_db: dict[str, list[dict]] = {}
    for r in easy:
        by_db.setdefault(r["db_id"], []).append(r)
    picked = []
    for db in sorted(by_db)[:2]:  # rows that share a schema, and rows that don't
        rows = by_db[db]
        common = Counter(r["input"] for r in rows).most_common(1)[0][0]
        picked += [r for r in rows if r["input"] == common][:4] + [r for r in rows if r["input"] != common][:1]
    return picked


@pytest.mark.slow
@pytest.mark.parametrize("candidates,decoding", [(1, "beam"), (2, "beam"), (2, "sample")])
def test_prefix_cached_generation_writes_what_left_padded_generation_writes(
        smol, rows_of_two_databases, candidates: int, decoding: str) -> None:
    """Real SmolLM2 weights, rows of two databases (some sharing a schema, some not), batch 4:
    greedy, beam and sampled SQL with each batch's shared start prefilled once and read in place
    (model/prefix_attention.py) equals the SQL of whole left-padded batches, token for token."""
    net, tokenizer = smol
    kw = {"max_new_tokens": 16, "batch_size": 4, "candidates": candidates, "decoding": decoding,
          "layout": "schema_first", "progress": False}
    rows = rows_of_two_databases
    shared_batches = [b for b in batches.grouped([batches.row_key(r) for r in rows], 4)
                      if len({rows[i]["input"] for i in b}) == 1 and len(b) > 1]
    assert shared_batches, "the rows must give at least one batch of one schema"
    torch.manual_seed(3)  # sampling draws the same numbers on both paths
    plain = evaluate.generate_candidates(net, tokenizer, rows, config.DEFAULT_SYSTEM_PROMPT, share_prefix=False, **kw)
    torch.manual_seed(3)
    cached = evaluate.generate_candidates(net, tokenizer, rows, config.DEFAULT_SYSTEM_PROMPT, share_prefix=True, **kw)
    assert cached == plain
    assert any(c[0] for c in cached)  # it wrote something


def test_prefix_cache_is_computed_once_per_shared_start_and_never_copied(smol) -> None:
    net, _ = smol
    calls = []
    hook = net.register_forward_pre_hook(lambda m, a, kw: calls.append(kw["input_ids"].shape), with_kwargs=True)
    try:
        cache = evaluate.PrefixCache(net)
        assert cache.shared  # SmolLM2 (llama) reads the start in place
        start = list(range(100, 140))
        for rows in (2, 3):
            got = cache.get(start, rows, torch.device("cpu"))
            assert got.get_seq_length() == 40 and got.layers[0].prefix_keys.shape[0] == 1
            assert got.layers[0].prefix_keys is cache.cache.layers[0].keys  # the same tensor, not a copy
        cache.get(start[:-1] + [7], 2, torch.device("cpu"))
        assert calls == [(1, 40), (1, 40)]
        cache.shared = False  # a model whose attention can't: each batch gets its own expanded copy
        got = cache.get(start[:-1] + [7], 3, torch.device("cpu"))
        assert got.get_seq_length() == 40 and got.layers[0].keys.shape[0] == 3 and len(calls) == 2
    finally:
        hook.remove()


@pytest.mark.parametrize("world", [2, 3])
def test_accelerates_ddp_sharding_gives_each_rank_whole_batches_of_one_database(world: int) -> None:
    """Under DDP and DeepSpeed, accelerate wraps the DataLoader's batch sampler in BatchSamplerShard,
    which deals whole batches to the ranks: each rank's batch is one of ours."""
    from accelerate.data_loader import BatchSamplerShard

    keys = keys_of({("a", "s1"): 16, ("b", "s2"): 12, ("c", "s3"): 8, ("d", "s4"): 3})
    sampler = batches.GroupedSampler(keys, 4, seed=0)
    ours = batches.grouped(keys, 4, random.Random("0:0"))
    inner = torch.utils.data.BatchSampler(sampler, 4, drop_last=False)
    dealt = [list(BatchSamplerShard(inner, num_processes=world, process_index=r)) for r in range(world)]
    for rank, got in enumerate(dealt):
        # every batch but the last is ours as dealt; the last may be topped up from the start
        # (accelerate's even_batches), and only it may mix databases
        assert got[:-1] == ours[rank::world][:len(got) - 1]
        assert all(len({keys[i][0] for i in b}) == 1 for b in got[:-1])
