"""model/prefix_attention.py: generation that reads a shared prompt start in place gives what the
stock path gives over a cache copied for every sequence."""

from __future__ import annotations

import copy

import pytest
import torch
import transformers

from conftest import TINY_LLAMA
from sqltune.model import prefix_attention


@pytest.fixture(scope="module")
def net() -> transformers.LlamaForCausalLM:
    torch.manual_seed(0)
    return transformers.LlamaForCausalLM(transformers.LlamaConfig(**TINY_LLAMA, vocab_size=100)).eval()


def _batch(starts: torch.Tensor, rests: list[list[int]], per: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Each start (a row of `starts`) then `per` left-padded rests, as evaluate.py lays a batch out."""
    width = max(map(len, rests))
    ids = torch.zeros(len(rests), starts.shape[1] + width, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for j, rest in enumerate(rests):
        ids[j, :starts.shape[1]] = starts[j // per]
        mask[j, :starts.shape[1]] = 1
        ids[j, ids.shape[1] - len(rest):] = torch.tensor(rest)
        mask[j, ids.shape[1] - len(rest):] = 1
    return ids, mask


GREEDY, BEAMS, SAMPLES = {}, {"num_beams": 3, "num_return_sequences": 3}, {"do_sample": True, "top_k": 0, "num_return_sequences": 2}


# evaluate.py shares one start per batch (any search); GRPO one start per group (greedy or samples)
@pytest.mark.parametrize("groups,search", [(1, GREEDY), (1, BEAMS), (1, SAMPLES), (2, GREEDY), (2, SAMPLES)],
                         ids=["greedy", "beams", "samples", "greedy-2-starts", "samples-2-starts"])
def test_generation_reading_the_start_in_place_equals_generation_over_copies(net, groups: int, search: dict) -> None:
    """G distinct starts (30 tokens) and rests of 5, 9 and 2 tokens (so the rest part is padded),
    greedy, beam search (reordering each step) and samples from one seed: the same tokens."""
    g = torch.Generator().manual_seed(groups)
    starts = torch.randint(3, 100, (groups, 30), generator=g)
    per = 3 if groups == 1 else 2
    rests = [torch.randint(3, 100, (n,), generator=g).tolist() for n in (5, 9, 2, 4, 7, 3)[:groups * per]]
    ids, mask = _batch(starts, rests, per)
    position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        start_cache = net(input_ids=starts, use_cache=True).past_key_values
    copies = search.get("num_return_sequences", 1)
    kw = {"max_new_tokens": 12, "min_new_tokens": 12, "pad_token_id": 0, **search}
    copied = copy.deepcopy(start_cache)
    copied.batch_repeat_interleave(per * copies)
    torch.manual_seed(5)
    stock = net.generate(input_ids=ids, attention_mask=mask, position_ids=position_ids, past_key_values=copied, **kw)
    shared = prefix_attention.SharedPrefixCache(start_cache)
    torch.manual_seed(5)
    with prefix_attention.active(net, shared):
        ours = net.generate(input_ids=ids, attention_mask=mask, position_ids=position_ids, past_key_values=shared, **kw)
    assert torch.equal(ours, stock)
    assert net.config._attn_implementation == "sdpa"  # restored on leaving
    # the start was held once per group, never grown; the own parts hold the rests and the new tokens
    assert shared.layers[0].prefix_keys.shape[:3] == (groups, TINY_LLAMA["num_key_value_heads"], 30)
    assert shared.layers[0].keys.shape[0] == len(rests) * copies
    assert shared.layers[0].keys.shape[2] == ids.shape[1] - 30 + 11  # the last token is not cached


def test_logits_equal_the_stock_attention_to_float_rounding(net) -> None:
    starts = torch.randint(3, 100, (2, 20), generator=torch.Generator().manual_seed(1))
    ids, mask = _batch(starts, [[5, 6, 7], [8], [9, 10], [11, 12, 13, 14]], per=2)
    position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        start_cache = net(input_ids=starts, use_cache=True).past_key_values
        copied = copy.deepcopy(start_cache)
        copied.batch_repeat_interleave(2)
        stock = net(input_ids=ids[:, 20:], attention_mask=mask, position_ids=position_ids[:, 20:],
                    past_key_values=copied).logits
        shared = prefix_attention.SharedPrefixCache(start_cache)
        with prefix_attention.active(net, shared):
            ours = net(input_ids=ids[:, 20:], attention_mask=mask, position_ids=position_ids[:, 20:],
                       past_key_values=shared).logits
    real = mask[:, 20:].bool()  # padded positions' logits are never read
    torch.testing.assert_close(ours[real], stock[real], rtol=1e-5, atol=1e-5)


def test_beam_reordering_across_starts_is_refused(net) -> None:
    with torch.no_grad():
        start_cache = net(input_ids=torch.randint(3, 100, (2, 8)), use_cache=True).past_key_values
    shared = prefix_attention.SharedPrefixCache(start_cache)
    with prefix_attention.active(net, shared), torch.no_grad():
        net(input_ids=torch.randint(3, 100, (4, 2)), past_key_values=shared)
    shared.reorder_cache(torch.tensor([1, 1, 2, 3]))  # within each start's pair: fine
    with pytest.raises(ValueError, match="another group"):
        shared.reorder_cache(torch.tensor([2, 1, 2, 3]))


@pytest.mark.parametrize("model_type,extra,expected", [
    ("llama", {}, True),
    ("mistral", {"sliding_window": 16}, False),  # a window the start could fall out of
    ("mistral", {"sliding_window": None}, True),
    ("gemma2", {"attn_logit_softcapping": 50.0, "head_dim": 8}, False),
    ("gpt2", {}, False),
])
def test_supported_only_for_the_standard_attention(model_type: str, extra: dict, expected: bool) -> None:
    config = transformers.AutoConfig.for_model(model_type, **({k: v for k, v in TINY_LLAMA.items() if k != "model_type"}
                                                              if model_type != "gpt2" else {}), **extra)
    config._attn_implementation = "eager" if model_type == "gemma2" else "sdpa"
    assert prefix_attention.supported(transformers.AutoModelForCausalLM.from_config(config)) is expected
