"""Generation over a shared prompt start without copying it: the start's keys and values are held
once per distinct start, and attention reads them once for every sequence that continues from it.

Generation with a prefilled start (evaluate.py: one database's schema for a whole batch; GRPO: each
prompt for its group of completions) used to repeat the start's cache once per sequence (rows x
beams or samples), so every decoding step read every copy, and beam search copied the whole cache
again each step to reorder it. On a CPU, decoding a batch is bound by memory traffic, and the
copies were most of it: scholar's ~950-token schema is ~44 MB of keys and values per sequence in
SmolLM2, 2.8 GB for 16 rows x 4 beams.

Here a `SharedPrefixCache` keeps the start's keys and values as G groups (one per distinct start)
and grows only each sequence's own part (its question, then what it generates); sequence i
continues group i // (sequences / G). Beam search reorders only the own parts. The attention
(registered with transformers' AttentionInterface under `NAME`, in force only inside `active`)
splits each query's scores in two, one matmul of all the group's queries against the start
(read once) and one of each sequence against its own part, and takes one softmax over both: the
same attention to float rounding (the tests compare greedy and sampled tokens with the stock path).

Why not a library: transformers 5 has no attention over a shared prefix (cascade attention, as
FlashInfer and vLLM have it on GPUs), and those are CUDA kernels. `supported` says where this
applies (the standard decoder attention, no sliding window, no soft-capping, sdpa or eager); the
callers keep the copying path elsewhere.
"""

from __future__ import annotations

import contextlib
import contextvars
from typing import Any, Iterator

import torch
import transformers
from transformers.cache_utils import DynamicLayer
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask
from transformers.modeling_utils import AttentionInterface

NAME = "sqltune_shared_prefix"
_ACTIVE: contextvars.ContextVar["SharedPrefixCache | None"] = contextvars.ContextVar("sqltune_shared_prefix", default=None)
_STOCK = ("sdpa", "eager")
# Model families whose attention is the standard one (q/k/v projections, rotary, a softmax over
# scaled scores); others keep the copying path.
_FAMILIES = {"llama", "mistral", "qwen2", "qwen3", "smollm3", "granite", "olmo", "olmo2", "phi3", "stablelm"}


class SharedPrefixLayer(DynamicLayer):
    """One layer's cache: the shared start (`prefix_keys`: groups x heads x P x dim, never copied)
    and each sequence's own keys and values after it (`keys`, `values`: views of the first `length`
    positions of a buffer that grows by `GROW` positions at a time, so a step writes one position
    instead of copying the whole own part, as DynamicLayer's concatenation does)."""

    GROW = 64

    def __init__(self, prefix_keys: torch.Tensor, prefix_values: torch.Tensor):
        super().__init__()
        self.prefix_keys, self.prefix_values = prefix_keys, prefix_values
        self.length = 0
        self._k = self._v = None

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
               ) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        end = self.length + key_states.shape[-2]
        if self._k is None or end > self._k.shape[-2]:
            shape = (*key_states.shape[:2], end + self.GROW, key_states.shape[-1])
            k, v = key_states.new_empty(shape), value_states.new_empty(shape)
            if self._k is not None:
                k[:, :, :self.length], v[:, :, :self.length] = self.keys, self.values
            self._k, self._v = k, v
        self._k[:, :, self.length:end] = key_states
        self._v[:, :, self.length:end] = value_states
        self._view(end)
        return self.keys, self.values

    def _view(self, length: int) -> None:
        self.length = length
        self.keys, self.values = self._k[:, :, :length], self._v[:, :, :length]

    def get_seq_length(self) -> int:
        return self.prefix_keys.shape[-2] + self.length

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        if self.length:  # only the own part moves: the start is the same for every beam of a row
            self._k, self._v = self._k.index_select(0, beam_idx), self._v.index_select(0, beam_idx)
            self._view(self.length)

    def batch_repeat_interleave(self, repeats: int) -> None:
        if self.length:  # before the first update the own part has no batch yet
            self._k, self._v = self._k.repeat_interleave(repeats, 0), self._v.repeat_interleave(repeats, 0)
            self._view(self.length)

    def crop(self, tokens_to_remove: int) -> None:
        if tokens_to_remove > 0:
            raise ValueError(f"crop takes a negative count, not {tokens_to_remove}")
        self._view(max(self.length + tokens_to_remove, 0))

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        raise NotImplementedError("a shared-prefix cache cannot drop sequences from its groups")


class SharedPrefixCache(transformers.DynamicCache):
    """A cache continuing from `prefix` (a DynamicCache over G distinct starts, batch G, unchanged
    and shared: its tensors are not copied). The sequences generated from it come G groups of the
    same size in a row, as `batch_repeat_interleave` would have laid them out."""

    def __init__(self, prefix: transformers.DynamicCache):
        layers = [SharedPrefixLayer(layer.keys, layer.values) for layer in prefix.layers]
        transformers.cache_utils.Cache.__init__(self, layers=layers)
        self.groups = layers[0].prefix_keys.shape[0]

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        if self.layers[0].length:
            per_group = self.layers[0].keys.shape[0] // self.groups
            rows = torch.arange(beam_idx.numel(), device=beam_idx.device)
            if not torch.equal(beam_idx // per_group, rows // per_group):
                raise ValueError("beam search moved a sequence to another group's prompt start")
        super().reorder_cache(beam_idx)


def supported(model: Any) -> bool:
    """Whether `model`'s attention can read a shared start this way."""
    config = _config(model)
    text = config.get_text_config(decoder=True)
    return (getattr(text, "model_type", None) in _FAMILIES and config._attn_implementation in _STOCK
            and not getattr(text, "attn_logit_softcapping", None)
            and not (getattr(text, "sliding_window", None) and getattr(text, "use_sliding_window", True)))


@contextlib.contextmanager
def active(model: Any, cache: SharedPrefixCache) -> Iterator[None]:
    """Within: `model`'s attention reads `cache`'s shared start (any other forward, e.g. on
    another thread, keeps the stock attention)."""
    config = _config(model)
    stock = config._attn_implementation
    token = _ACTIVE.set(cache)
    config._attn_implementation = NAME
    try:
        yield
    finally:
        config._attn_implementation = stock
        _ACTIVE.reset(token)


def _config(model: Any) -> Any:
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return base.config


def shared_prefix_attention(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                            attention_mask: torch.Tensor | None, scaling: float | None = None, dropout: float = 0.0,
                            **kwargs: Any) -> tuple[torch.Tensor, None]:
    """Attention over [the group's shared start ; the sequence's own keys], as sdpa computes it.
    query: B x H x L x d; key, value: the own part, B x Hkv x T x d; returns B x L x H x d."""
    cache = _ACTIVE.get()
    if cache is None:  # a forward outside `active` that met the swapped config (another thread)
        return transformers.integrations.sdpa_attention.sdpa_attention_forward(
            module, query, key, value, attention_mask, scaling=scaling, dropout=dropout, **kwargs)
    layer = cache.layers[module.layer_idx]
    pk, pv = layer.prefix_keys, layer.prefix_values
    batch, heads, length, dim = query.shape
    groups, kv_heads, start, _ = pk.shape
    per, rep, own = batch // groups, heads // kv_heads, key.shape[-2]
    scaling = dim ** -0.5 if scaling is None else scaling

    def by_group(x: torch.Tensor, last: int) -> torch.Tensor:  # B x H x L x n -> G x Hkv x (per*rep*L) x n
        return x.reshape(groups, per, kv_heads, rep, length, last).transpose(1, 2).reshape(groups, kv_heads, -1, last)

    def from_group(x: torch.Tensor, last: int) -> torch.Tensor:  # the inverse
        return x.reshape(groups, kv_heads, per, rep, length, last).transpose(1, 2).reshape(batch, heads, length, last)

    query = query * scaling
    on_start = from_group(torch.matmul(by_group(query, dim), pk.transpose(-1, -2)), start)
    on_own = torch.matmul(query.reshape(batch, kv_heads, rep * length, dim), key.transpose(-1, -2))
    on_own = on_own.reshape(batch, heads, length, own)
    if attention_mask is not None:  # the start is masked only where it has padding (GRPO's left-padded prompts)
        if attention_mask.dtype == torch.bool:
            if not bool(attention_mask[..., :start].all()):
                on_start = on_start.masked_fill(~attention_mask[..., :start], float("-inf"))
            on_own = on_own.masked_fill(~attention_mask[..., start:start + own], float("-inf"))
        else:
            on_start, on_own = on_start + attention_mask[..., :start], on_own + attention_mask[..., start:start + own]
    scores = torch.cat([on_start, on_own], dim=-1)
    probs = torch.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)
    p_start, p_own = probs.split([start, own], dim=-1)
    out = from_group(torch.matmul(by_group(p_start, start), pv), dim)
    out = out + torch.matmul(p_own.reshape(batch, kv_heads, rep * length, own), value).reshape(batch, heads, length, dim)
    return out.transpose(1, 2).contiguous(), None


def _mask(*args: Any, **kwargs: Any) -> torch.Tensor | None:
    """sdpa's boolean mask, always built (the attention above has no `is_causal` shortcut)."""
    return sdpa_mask(*args, **{**kwargs, "allow_is_causal_skip": False})


AttentionInterface.register(NAME, shared_prefix_attention)
AttentionMaskInterface.register(NAME, _mask)
