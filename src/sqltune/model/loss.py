"""The loss only where labels are.

A stock causal LM materialises logits for every position of the batch (batch x length x 49k
vocabulary, in fp32 on CPU: gigabytes) and then throws most of them away, since completion-only
labels mask the prompt. `masked_loss_forward` runs the decoder, keeps the hidden states at label
positions, and applies the LM head to those alone. It is bound on the model instance, so DDP,
DeepSpeed and PEFT wrappers call it as they would call the stock forward; without labels
(generation) the stock forward runs.
"""

from __future__ import annotations

import logging
import types
from typing import Any

import torch
import torch.nn.functional as F
import transformers

log = logging.getLogger(__name__)


def install_masked_loss(model: torch.nn.Module) -> None:
    """Bind `masked_loss_forward` on a causal LM that exposes its decoder and LM head."""
    if getattr(model, "get_decoder", None) is None or model.get_output_embeddings() is None:
        log.warning("%s exposes no decoder/LM head: using its stock loss", type(model).__name__)
        return
    if getattr(model.config, "final_logit_softcapping", None):
        log.warning("%s soft-caps its logits: using its stock loss", type(model).__name__)
        return
    model._stock_forward = model.forward
    model.forward = types.MethodType(masked_loss_forward, model)


# A shared prompt start shorter than this isn't worth a second decoder call.
MIN_SHARED_PREFIX = 16


def shared_prefix(input_ids: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor) -> int:
    """Length of the prompt start every row of the batch shares (the system prompt and the chat
    template's opening: ~70 of SmolLM2's tokens), or 0 when it is too short to pay.

    Causal attention means those positions compute the same thing in every row, so the masked loss
    runs them once and lets each row continue from their keys and values: the same loss and
    gradients (to float rounding) for ~1/6 less compute on 450-token rows, ~1/3 on 200-token rows.
    The prefix must be unpadded and carry no label, nor may the token right after it (its
    prediction comes from the prefix's last position, which is not scored). LoRA dropout then
    draws one mask for the shared positions instead of one per row.
    """
    rows, width = input_ids.shape
    if rows < 2 or width < MIN_SHARED_PREFIX + 2:
        return 0
    unlabelled = (labels == -100).all(dim=0)
    ok = (input_ids == input_ids[:1]).all(dim=0) & (attention_mask == 1).all(dim=0) & unlabelled
    ok = ok[:-1] & unlabelled[1:]
    n = int(ok.long().cumprod(dim=0).sum())
    n = min(n, int(attention_mask.sum(dim=1).min()) - 1)
    return n if n >= MIN_SHARED_PREFIX else 0


def masked_loss_forward(
    self: Any,
    input_ids: torch.Tensor | None = None,
    attention_mask: torch.Tensor | None = None,
    labels: torch.Tensor | None = None,
    num_items_in_batch: torch.Tensor | int | None = None,
    **kwargs: Any,
) -> Any:
    """Causal-LM loss over label positions only. Returns a dict: `loss`, and the teacher-forced
    counts `n_correct`/`n_tokens` (argmax == label) that evaluation turns into `eval_accuracy`.

    The loss is the token-summed cross entropy divided by `num_items_in_batch` when the Trainer
    passes it (so gradient accumulation and multi-rank averaging match HF's own loss), else the mean.
    """
    if labels is None:
        return self._stock_forward(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
    kwargs.pop("use_cache", None)
    kwargs = {k: v for k, v in kwargs.items() if v is not None}  # PEFT passes inputs_embeds=None and the like
    decoder = self.get_decoder()
    prefix = 0 if set(kwargs) - {"return_dict"} or attention_mask is None or (self.training and getattr(decoder, "gradient_checkpointing", False)) \
        else shared_prefix(input_ids, attention_mask, labels)
    if prefix:
        # The rows' common prompt start runs once; every row then continues from its keys and values.
        cache = transformers.DynamicCache(config=self.config)
        decoder(input_ids=input_ids[:1, :prefix], attention_mask=attention_mask[:1, :prefix],
                past_key_values=cache, use_cache=True)
        cache.batch_repeat_interleave(input_ids.shape[0])
        hidden = decoder(input_ids=input_ids[:, prefix:], attention_mask=attention_mask,
                         past_key_values=cache, use_cache=True)[0]
        labels = labels[:, prefix:]  # labels[:, :prefix + 1] are all -100: nothing is lost
    else:
        hidden = decoder(input_ids=input_ids, attention_mask=attention_mask, use_cache=False, **kwargs)[0]
    shift_labels = labels[:, 1:]
    keep = shift_labels != -100
    selected = hidden[:, :-1][keep]  # (n_label_tokens, hidden)
    targets = shift_labels[keep]
    logits = self.get_output_embeddings()(selected).float()
    loss_sum = F.cross_entropy(logits, targets, reduction="sum")
    if num_items_in_batch is not None:
        loss = loss_sum / num_items_in_batch
    else:
        loss = loss_sum / max(targets.numel(), 1)
    with torch.no_grad():
        n_correct = (logits.argmax(-1) == targets).sum()
    return {"loss": loss, "n_correct": n_correct, "n_tokens": torch.tensor(targets.numel(), device=loss.device)}
