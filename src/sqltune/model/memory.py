"""The memory plan: before training, estimate the peak and choose what keeps it under a budget.

    plan = memory.make_plan(net, lengths, batch_size, budget_gib=6.0, ...)
    log.info(plan.line())

The peak of a training step is roughly

    fixed (weights, runtime, grads + optimizer state of the trainable parameters)
    + activations saved for backward, which grow with the tokens of one forward pass
    + the LM head's logits at the label positions (masked loss: only those exist).

Activations are *measured*, not guessed from a table of architectures: a probe runs one
forward pass of the real model (adapters, dropout and attention kernel as they will train) on
two short dummy rows under `torch.autograd.graph.saved_tensors_hooks` and counts the bytes
autograd keeps; two lengths give the linear and the quadratic (attention scores) parts. The
probe runs under `torch.random.fork_rng`, so training draws the same random numbers with the
plan on or off.

The plan then picks, in order, the first that fits:
  1. the whole batch in one pass (nothing changes);
  2. micro-batches: the batch's rows, longest first, split into passes of at most T tokens
     (padding included), gradients summed over the passes. The loss is the token sum over the
     whole batch divided by its label count, so the step is the same step: losses equal an
     unsplit run to float rounding. On CPU this costs nothing measurable (a 450-token row
     already fills the matrix units) and each pass pads only to its own longest row;
  3. gradient checkpointing (only the decoder layers' inputs are kept, each layer is recomputed
     in backward: ~1/3 more compute), with micro-batches if still needed.
A knob the user set explicitly (`train.micro_batch_tokens`, `training_args.gradient_checkpointing`)
is kept as set. Under DeepSpeed there is no plan: ZeRO partitions the state and its configs offload.

Why a probe and not a formula: what autograd keeps depends on the attention kernel (sdpa
keeps no scores; eager keeps heads x length^2), on PEFT's dropout (a copy of each adapted
layer's input), on 4-bit bases and on the model's own code. Counting it is exact for the
saved tensors; a fixed factor (`TRANSIENT`) covers gradients alive during backward and the
allocator, calibrated on CPU against peak RSS (bench/NOTES.md).
"""

from __future__ import annotations

import dataclasses
import resource

import torch

from sqltune.model.loss import shared_prefix

GIB = 2**30
TRANSIENT = 2.0  # peak activation memory / bytes saved for backward (gradients in flight, allocator)
PROBE_LENGTHS = (64, 128)


@dataclasses.dataclass(frozen=True)
class Plan:
    budget_gib: float
    fixed_gib: float  # weights, runtime, grads and optimizer state
    per_token_bytes: float  # activations saved per token (linear part), measured
    per_token2_bytes: float  # per token^2 within one row (attention scores), measured
    batch_tokens: int  # the largest batch: rows x longest row
    micro_batch_tokens: int | None  # None: the whole batch in one pass
    gradient_checkpointing: bool
    estimate_gib: float  # peak with this plan
    unplanned_gib: float  # peak with the whole batch, no checkpointing
    why: str = ""

    def line(self) -> str:
        if self.micro_batch_tokens is None:
            split = "whole batches"
        else:
            split = f"micro-batches of <= {self.micro_batch_tokens:,} tokens"
        ckpt = "gradient checkpointing on" if self.gradient_checkpointing else "no gradient checkpointing"
        return (f"memory plan: budget {self.budget_gib:.1f} GiB; the largest batch ({self.batch_tokens:,} tokens) "
                f"would peak at ~{self.unplanned_gib:.1f} GiB -> {split}, {ckpt}: ~{self.estimate_gib:.1f} GiB"
                + (f" ({self.why})" if self.why else ""))


def default_budget_gib(device: torch.device) -> float:
    """6 GiB on CPU (a laptop); the GPU's memory on a GPU."""
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory / GIB
    return 6.0


def fixed_bytes(model: torch.nn.Module) -> float:
    """What doesn't grow with tokens: on CPU the process as it stands (weights, libraries, data)
    plus the gradients and optimizer state the trainable parameters will get."""
    trainable = sum(p.numel() * 4 for p in model.parameters() if p.requires_grad)  # fp32 states
    grads = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    if torch.cuda.is_available() and next(model.parameters()).is_cuda:
        now = torch.cuda.memory_allocated()
    else:
        now = current_rss_bytes()
    return now + grads + 2 * trainable  # AdamW: two fp32 states per trainable parameter


def current_rss_bytes() -> float:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * resource.getpagesize()
    except OSError:  # not Linux: the high-water mark is the best we have
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def saved_bytes(model: torch.nn.Module, length: int, rows: int = 1) -> int:
    """Bytes autograd saves for backward in one training forward of `rows` x `length` tokens."""
    seen: dict[int, int] = {}
    # weights saved for backward are the parameters themselves: counted once, in fixed_bytes
    params = {t.untyped_storage().data_ptr() for t in (*model.parameters(), *model.buffers())}

    def pack(t: torch.Tensor) -> torch.Tensor:
        if t.device.type != "meta":
            storage = t.untyped_storage()
            if storage.data_ptr() not in params:
                seen[storage.data_ptr()] = max(seen.get(storage.data_ptr(), 0), storage.nbytes())
        return t

    device = next(model.parameters()).device
    vocab = model.get_input_embeddings().num_embeddings
    was_training = model.training
    model.train()
    try:
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            ids = torch.randint(10, max(11, vocab - 1), (rows, length), device=device)
            labels = torch.full_like(ids, -100)
            labels[:, -max(1, length // 8):] = ids[:, -max(1, length // 8):]  # like a text-to-SQL answer
            with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
                out = model(input_ids=ids, attention_mask=torch.ones_like(ids), labels=labels)
            del out
    finally:
        model.train(was_training)
    return sum(seen.values())


def measure(model: torch.nn.Module) -> tuple[float, float]:
    """(bytes per token, bytes per token^2 within a row) saved for backward, from two probes."""
    (n1, n2) = PROBE_LENGTHS
    s1, s2 = saved_bytes(model, n1), saved_bytes(model, n2)
    # s(n) = a n + b n^2  ->  two equations
    b = max(0.0, (s2 / n2 - s1 / n1) / (n2 - n1))
    a = max(1.0, s1 / n1 - b * n1)
    return a, b


def make_plan(
    model: torch.nn.Module,
    lengths: list[int],
    batch_size: int,
    *,
    budget_gib: float,
    micro_batch_tokens: int | None = None,
    gradient_checkpointing: bool | None = None,
    can_split: bool = True,
    fixed_gib: float | None = None,
) -> Plan:
    """Choose micro-batches and gradient checkpointing for the longest batch of `lengths`.

    `micro_batch_tokens` / `gradient_checkpointing` not None: the user set them; they are kept.
    `can_split` False (padding-free batches are one packed row): only checkpointing is chosen.
    `fixed_gib`: what doesn't grow with tokens; None = measured now (`fixed_bytes`).
    """
    per_token, per_token2 = measure(model)
    fixed = fixed_bytes(model) if fixed_gib is None else fixed_gib * GIB
    longest = sorted(lengths, reverse=True)[:batch_size] or [1]
    batch_tokens = len(longest) * longest[0]
    vocab = model.get_output_embeddings().weight.shape[0] if model.get_output_embeddings() is not None else 0
    head_per_token = vocab * 4 * 3 / 8  # fp32 logits, softmax and its grad, at ~1 in 8 positions (answers)
    cfg = getattr(model, "config", None)
    cfg = cfg.get_text_config() if hasattr(cfg, "get_text_config") else cfg
    layers = getattr(cfg, "num_hidden_layers", 1) or 1
    hidden = getattr(cfg, "hidden_size", 0) or 0
    act_bytes = next(model.parameters()).element_size() if next(model.parameters()).is_floating_point() else 4

    def peak(tokens: int, row: int, ckpt: bool) -> float:
        rows = max(1, tokens // max(row, 1))
        saved = per_token * tokens + per_token2 * rows * row * row
        if ckpt:  # layer inputs for all layers, one layer's activations live at a time
            saved = tokens * layers * hidden * act_bytes + saved / layers
        return fixed + TRANSIENT * saved + head_per_token * tokens

    budget = budget_gib * GIB
    unplanned = peak(batch_tokens, longest[0], bool(gradient_checkpointing))

    def fits(tokens: int, ckpt: bool) -> bool:
        return peak(tokens, longest[0], ckpt) <= budget

    def largest_fitting(ckpt: bool) -> int:
        lo, hi = longest[0], batch_tokens  # at least one row; at most the whole batch
        while lo < hi:
            mid = (lo + hi + 1) // 2
            lo, hi = (mid, hi) if fits(mid, ckpt) else (lo, mid - 1)
        return lo

    why = ""
    ckpt_choices = [gradient_checkpointing] if gradient_checkpointing is not None else [False, True]
    chosen_tokens, chosen_ckpt = None, ckpt_choices[-1]
    if micro_batch_tokens is not None:
        chosen_ckpt = next((c for c in ckpt_choices if fits(min(micro_batch_tokens, batch_tokens), c)), ckpt_choices[-1])
        chosen_tokens = micro_batch_tokens
        why = "micro_batch_tokens set by you"
    else:
        for ckpt in ckpt_choices:
            if fits(batch_tokens, ckpt) or (not can_split and ckpt == ckpt_choices[-1]):
                chosen_tokens, chosen_ckpt = None, ckpt
                break
            if can_split and fits(longest[0], ckpt):
                chosen_tokens, chosen_ckpt = largest_fitting(ckpt), ckpt
                break
        else:
            chosen_tokens = longest[0]
            why = "even one row of the longest length exceeds the budget: raise train.memory_budget_gib or cut format.max_length"
    if gradient_checkpointing is not None and not why:
        why = f"gradient_checkpointing {'on' if gradient_checkpointing else 'off'} as you set it"
    tokens = batch_tokens if chosen_tokens is None else min(chosen_tokens, batch_tokens)
    return Plan(
        budget_gib=budget_gib,
        fixed_gib=fixed / GIB,
        per_token_bytes=per_token,
        per_token2_bytes=per_token2,
        batch_tokens=batch_tokens,
        micro_batch_tokens=None if chosen_tokens is None or chosen_tokens >= batch_tokens else chosen_tokens,
        gradient_checkpointing=bool(chosen_ckpt),
        estimate_gib=peak(tokens, longest[0], bool(chosen_ckpt)) / GIB,
        unplanned_gib=unplanned / GIB,
        why=why,
    )


def batch_shared_prefix(inputs: dict[str, torch.Tensor], model: torch.nn.Module | None = None) -> int:
    """The prompt start every row of the batch shares, as the masked loss will run it once (not
    under gradient checkpointing, which drops the cache that sharing needs)."""
    decoder = model.get_decoder() if model is not None and hasattr(model, "get_decoder") else None
    if "labels" not in inputs or "attention_mask" not in inputs or getattr(decoder, "gradient_checkpointing", False):
        return 0
    return shared_prefix(inputs["input_ids"], inputs["attention_mask"], inputs["labels"])


def pass_tokens(rows: int, width: int, shared: int) -> int:
    """Tokens one forward pass computes: the shared start once, then each row's rest (padded to
    `width`). The activations a pass keeps grow with these, not with rows x width."""
    return width if rows == 1 else shared + rows * (width - shared)


def split_batch(inputs: dict[str, torch.Tensor], max_tokens: int, shared: int | None = None) -> list[dict[str, torch.Tensor]]:
    """A right-padded batch -> micro-batches of at most `max_tokens` computed tokens
    (`pass_tokens`: the batch's shared prompt start counts once per pass), rows longest first,
    each cut to its own longest row. One row is never split. Every pass shares at least the
    batch's shared start, so the plan's budget holds per pass.

    Once per pass, not once per step: keeping the start's keys and values (and their graph)
    alive across passes would hold them through every pass's backward, and a batch is split only
    when it does not fit; rows of one schema mostly fit in one pass once the start counts once.

    >>> b = {"input_ids": torch.tensor([[1, 2, 0], [3, 4, 5]]), "attention_mask": torch.tensor([[1, 1, 0], [1, 1, 1]])}
    >>> [m["input_ids"].tolist() for m in split_batch(b, 3)]
    [[[3, 4, 5]], [[1, 2]]]
    """
    lengths = inputs["attention_mask"].sum(dim=1)
    shared = batch_shared_prefix(inputs) if shared is None else shared
    order = torch.argsort(lengths, descending=True, stable=True).tolist()
    groups: list[list[int]] = []
    for i in order:
        if groups and pass_tokens(len(groups[-1]) + 1, int(lengths[groups[-1][0]]), shared) <= max_tokens:
            groups[-1].append(i)
        else:
            groups.append([i])
    out = []
    for rows in groups:
        width = int(lengths[rows[0]])
        index = torch.tensor(rows, device=inputs["input_ids"].device)
        out.append({k: v.index_select(0, index)[:, :width] if v.dim() == 2 else v.index_select(0, index)
                    for k, v in inputs.items()})
    return out
