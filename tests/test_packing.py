"""Padding-free batches give the same per-sample loss as padded ones, and the same training."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import transformers

from conftest import TINY_LLAMA, read_metrics, tiny_config, write_config
from sqltune import cli
from sqltune import tokens


def _model() -> transformers.PreTrainedModel:
    torch.manual_seed(0)
    extra = dict(TINY_LLAMA)
    config = transformers.AutoConfig.for_model(extra.pop("model_type"), **extra, vocab_size=300)
    return transformers.AutoModelForCausalLM.from_config(config, attn_implementation="sdpa").eval()


def _samples(n: int = 5) -> list[dict]:
    g = torch.Generator().manual_seed(1)
    out = []
    for i in range(n):
        length = 6 + 5 * i
        ids = torch.randint(1, 300, (length,), generator=g).tolist()
        prompt = length // 2
        out.append({"input_ids": ids, "labels": [-100] * prompt + ids[prompt:]})
    return out


def _per_sample_losses(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits[:-1].float(), labels[1:], ignore_index=-100, reduction="mean")


@torch.no_grad()
def test_padding_free_per_sample_loss_equals_padded() -> None:
    model, samples = _model(), _samples()
    padded = tokens.Collator(pad_id=0)(samples)
    flat = tokens.Collator(pad_id=0, padding_free=True)(samples)
    assert flat["input_ids"].shape == (1, sum(len(s["input_ids"]) for s in samples))  # no padding at all
    logits_p = model(input_ids=padded["input_ids"], attention_mask=padded["attention_mask"]).logits
    logits_f = model(input_ids=flat["input_ids"], position_ids=flat["position_ids"], use_cache=False).logits[0]
    start = 0
    for i, s in enumerate(samples):
        n = len(s["input_ids"])
        lp = _per_sample_losses(logits_p[i, :n], padded["labels"][i, :n])
        lf = _per_sample_losses(logits_f[start:start + n], flat["labels"][0, start:start + n])
        torch.testing.assert_close(lf, lp, atol=1e-5, rtol=0)
        start += n


@torch.no_grad()
def test_padding_free_is_not_attention_across_samples() -> None:
    """Changing sample 0 must not change sample 1's logits when they share a packed row."""
    model, samples = _model(), _samples(2)
    flat = tokens.Collator(pad_id=0, padding_free=True)(samples)
    other = [{**samples[0], "input_ids": [7] * len(samples[0]["input_ids"])}, samples[1]]
    flat2 = tokens.Collator(pad_id=0, padding_free=True)(other)
    n0 = len(samples[0]["input_ids"])
    a = model(input_ids=flat["input_ids"], position_ids=flat["position_ids"], use_cache=False).logits[0, n0:]
    b = model(input_ids=flat2["input_ids"], position_ids=flat2["position_ids"], use_cache=False).logits[0, n0:]
    torch.testing.assert_close(a, b, atol=1e-6, rtol=0)


def test_training_with_and_without_padding_gives_the_same_losses(tmp_path: Path) -> None:
    losses = {}
    for free in (False, True):
        d = tmp_path / str(free)
        d.mkdir()
        cfg = tiny_config(d, format={"max_length": 192, "padding_free": free})
        assert cli.main(["train", str(write_config(d, cfg))]) == 0
        losses[free] = [m["loss"] for m in read_metrics(d / "run") if m["group"] == "training"]
    assert losses[True] == pytest.approx(losses[False], abs=1e-5)
