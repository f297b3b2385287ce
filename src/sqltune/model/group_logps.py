"""GRPO's per-token log-probabilities, and its sampling, with each group's prompt run once.

TRL's GRPOTrainer scores every completion by running the policy (and the reference) over prompt +
completion, row by row: a group of `num_generations` completions of one prompt computes the same
prompt `num_generations` times, in the loss and in each log-prob pass. Here rows whose prompt
tokens and mask are the same run that prompt once, all but its last token, through the backbone
into a key/value cache. The cache is repeated for the group, and the model (with TRL's fused LM
head, so temperature, logit scaling and soft-capping are TRL's own) runs the prompt's last token
plus the completions on it. Positions are those of the stock call (the cache continues at P-1), so
the log-probs equal TRL's to float rounding. The gradient reaches the prompt's computation through
the cache, once per group, summed over its rows: the same gradient. LoRA dropout draws one mask
for the shared prompt instead of one per row.

`shared_logps` returns None where it does not apply, and the caller then keeps TRL's path:
- multimodal inputs or an MoE auxiliary loss;
- gradient checkpointing (the cache would cross its recomputation);
- DeepSpeed, and more than one process (the prompt's pass runs outside the wrapper's forward,
  where DDP and ZeRO-3 prepare their gradient reduction and parameter gathering; checked by the
  caller);
- a batch where no two rows share a prompt.

Sampling (`prefilled_generate`): TRL's generation batch holds each prompt `num_generations` times,
left-padded, and `generate` prefills every copy. Here each distinct prompt, all but its last token,
is prefilled once (positions from the mask, as `generate` derives them), and `generate` continues
from it, each group's sequences reading their prompt's keys and values once per step without
copies (model/prefix_attention.py; where that does not apply, the cache is repeated for the
copies): the same logits at every step to float rounding, so the same greedy tokens, and the same
draws from the same seed (a test checks both).
"""

from __future__ import annotations

from typing import Any, Callable

import torch
import transformers

from sqltune.model import prefix_attention


def prompt_groups(input_ids: torch.Tensor, attention_mask: torch.Tensor, prompt_len: int) -> list[list[int]]:
    """Row indices grouped by identical prompt (ids and mask over the first `prompt_len` positions)."""
    groups: dict[bytes, list[int]] = {}
    ids, mask = input_ids[:, :prompt_len].cpu(), attention_mask[:, :prompt_len].cpu()
    for row in range(input_ids.size(0)):
        key = ids[row].numpy().tobytes() + mask[row].numpy().tobytes()
        groups.setdefault(key, []).append(row)
    return list(groups.values())


def shared_logps(model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor, logits_to_keep: int,
                 compute_entropy: bool) -> tuple[torch.Tensor, torch.Tensor | None] | None:
    """(log-probs, entropies or None) of the last `logits_to_keep` tokens of each row, as TRL's
    `_get_per_token_logps_and_entropies` computes them, or None where sharing does not apply."""
    prompt_len = input_ids.size(1) - logits_to_keep
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    backbone = base.get_decoder()
    if prompt_len < 2 or (model.training and getattr(backbone, "gradient_checkpointing", False)):
        return None
    groups = prompt_groups(input_ids, attention_mask, prompt_len)
    if len(groups) == input_ids.size(0):
        return None
    logps = input_ids.new_zeros(input_ids.shape[0], logits_to_keep, dtype=torch.float32)
    entropies = torch.zeros_like(logps) if compute_entropy else None
    out_logps, out_entropies = [], []
    for rows in groups:
        first = rows[0]
        cache = transformers.DynamicCache(config=base.config)
        backbone(input_ids=input_ids[first:first + 1, :prompt_len - 1],
                 attention_mask=attention_mask[first:first + 1, :prompt_len - 1],
                 past_key_values=cache, use_cache=True)
        if len(rows) > 1:
            cache.batch_repeat_interleave(len(rows))
        index = torch.tensor(rows, device=input_ids.device)
        tail_ids = input_ids[index, prompt_len - 1:]  # the prompt's last token, then the completion
        mask = attention_mask[index]
        labels = tail_ids.masked_fill(mask[:, prompt_len - 1:] == 0, -100)
        labels[:, 0] = -100
        out = model(input_ids=tail_ids, attention_mask=mask, past_key_values=cache, labels=labels, fused_lm_head=True)
        out_logps.append((index, out.log_probs[:, -logits_to_keep:]))
        if compute_entropy:
            out_entropies.append((index, out.entropy[:, -logits_to_keep:]))
    logps = logps.index_put((torch.cat([i for i, _ in out_logps]),), torch.cat([v.float() for _, v in out_logps]))
    if compute_entropy:
        entropies = entropies.index_put((torch.cat([i for i, _ in out_entropies]),),
                                        torch.cat([v.float() for _, v in out_entropies]))
    return logps, entropies


def prefilled_generate(model: Any, generate: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                       on_shared: Callable[[int, int], None] | None = None, **kw: Any) -> torch.Tensor:
    """`generate(input_ids=..., attention_mask=..., **kw)` with each run of identical prompts
    prefilled once (then `on_shared(rows, prompts)` is called). Falls back to the plain call where
    the batch is not whole groups of one size in a row (TRL's RepeatSampler deals them so), where a
    cache is already given, or under gradient checkpointing in training mode (which would drop the
    cache)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    backbone = base.get_decoder()
    width = input_ids.size(1)
    groups = prompt_groups(input_ids, attention_mask, width)
    size = len(groups[0])
    whole = all(len(g) == size and g == list(range(g[0], g[0] + size)) for g in groups)
    if (size < 2 or not whole or width < 2 or kw.get("past_key_values") is not None
            or (model.training and getattr(backbone, "gradient_checkpointing", False))):
        return generate(input_ids=input_ids, attention_mask=attention_mask, **kw)
    firsts = [g[0] for g in groups]
    ids, mask = input_ids[firsts, :-1], attention_mask[firsts, :-1]
    cache = transformers.DynamicCache(config=base.config)
    with torch.no_grad():
        backbone(input_ids=ids, attention_mask=mask, position_ids=(mask.long().cumsum(-1) - 1).masked_fill(mask == 0, 1),
                 past_key_values=cache, use_cache=True)
    if on_shared is not None:
        on_shared(input_ids.size(0), len(groups))
    if not prefix_attention.supported(model):
        cache.batch_repeat_interleave(size)
        return generate(input_ids=input_ids, attention_mask=attention_mask, past_key_values=cache, **kw)
    shared = prefix_attention.SharedPrefixCache(cache)  # each prompt's keys read once for its group
    with prefix_attention.active(model, shared):
        return generate(input_ids=input_ids, attention_mask=attention_mask, past_key_values=shared, **kw)
