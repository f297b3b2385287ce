"""The memory plan (memory.py) and the fused LoRA branch with dropout without a copy (lora.use_fused_lora)."""

from __future__ import annotations

import json
from pathlib import Path

import peft
import pytest
import torch
import transformers

from conftest import TINY_LLAMA, read_metrics, rows_with_shared_start, tiny_config, write_config
from sqltune import cli, model
from sqltune.model import lora, loss, memory


def tiny_lora(dropout: float = 0.0, layers: int = 2) -> torch.nn.Module:
    extra = {**TINY_LLAMA, "num_hidden_layers": layers}
    config = transformers.AutoConfig.for_model(extra.pop("model_type"), **extra, vocab_size=512)
    torch.manual_seed(0)
    net = transformers.AutoModelForCausalLM.from_config(config)
    loss.install_masked_loss(net)
    torch.manual_seed(1)
    net = peft.get_peft_model(net, peft.LoraConfig(task_type="CAUSAL_LM", r=4, lora_alpha=8, lora_dropout=dropout,
                                                   target_modules="all-linear"))
    for name, p in net.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.1)  # B starts at zero; make the adapter matter
    return net


# ---- micro-batches ------------------------------------------------------------------------------


def test_split_batch_keeps_every_row_once_within_the_budget() -> None:
    lengths = [5, 9, 3, 9, 7, 1]
    width = max(lengths)
    ids = torch.zeros(len(lengths), width, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, n in enumerate(lengths):
        ids[i, :n] = torch.arange(1, n + 1) + 100 * i
        mask[i, :n] = 1
    batch = {"input_ids": ids, "labels": ids.clone(), "attention_mask": mask}
    parts = memory.split_batch(batch, 18)
    seen = []
    for part in parts:
        rows, cols = part["input_ids"].shape
        assert rows * cols <= 18 or rows == 1
        assert part["attention_mask"][:, -1].any()  # cut to its own longest row: no all-padding column
        seen += [int(r[0]) // 100 for r in part["input_ids"]]
        assert torch.equal(part["labels"], part["input_ids"])
    assert sorted(seen) == list(range(len(lengths)))
    assert [p["input_ids"].shape for p in parts][0] == (2, 9)  # the two 9-token rows share a pass
    assert len(memory.split_batch(batch, 1)) == len(lengths)  # one row is never split


def passes_loss_and_grads(net: torch.nn.Module, batch: dict, passes: list[dict]) -> tuple[float, list[torch.Tensor]]:
    """The summed loss and the trainable gradients of `passes`, each over the whole batch's label count."""
    n_items = int((batch["labels"][:, 1:] != -100).sum())
    net.zero_grad()
    total = sum(net(**p, num_items_in_batch=n_items)["loss"] for p in passes)
    total.backward()
    return total.item(), [p.grad.clone() for p in net.parameters() if p.requires_grad]


def test_micro_batched_step_equals_the_whole_batch() -> None:
    """Gradients of one batch run as 1-row passes equal the unsplit batch's (masked loss, sum / n)."""
    net = tiny_lora()
    rows = [torch.randint(5, 500, (n,)) for n in (17, 9, 30, 4)]
    ids = torch.zeros(4, 30, dtype=torch.long)
    mask = torch.zeros_like(ids)
    labels = torch.full_like(ids, -100)
    for i, r in enumerate(rows):
        ids[i, :len(r)], mask[i, :len(r)] = r, 1
        labels[i, len(r) // 2:len(r)] = r[len(r) // 2:]
    batch = {"input_ids": ids, "labels": labels, "attention_mask": mask}
    whole_loss, whole = passes_loss_and_grads(net, batch, [batch])
    split_loss, split = passes_loss_and_grads(net, batch, memory.split_batch(batch, 30))
    assert split_loss == pytest.approx(whole_loss, abs=1e-6)
    for a, b in zip(whole, split):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


# ---- the plan -----------------------------------------------------------------------------------


def test_probe_counts_activations_that_grow_with_tokens() -> None:
    net = tiny_lora()
    a, b = memory.measure(net)
    assert a > 0
    assert memory.saved_bytes(net, 200) > 2.5 * memory.saved_bytes(net, 64)
    dropping = tiny_lora(dropout=0.1)
    before = torch.random.get_rng_state()
    memory.saved_bytes(dropping, 32)
    assert torch.equal(before, torch.random.get_rng_state())  # training draws the same numbers, plan or not


def test_plan_picks_the_cheapest_step_that_fits() -> None:
    net = tiny_lora()
    lengths = [100, 90, 80, 70, 60, 50, 40, 30]
    roomy = memory.make_plan(net, lengths, 8, budget_gib=1000.0)
    assert roomy.micro_batch_tokens is None and not roomy.gradient_checkpointing
    assert roomy.batch_tokens == 800 and roomy.fixed_gib > 0.1  # this process, at least

    fixed = 1.0
    per_row = (memory.make_plan(net, lengths, 8, budget_gib=1000.0, fixed_gib=fixed).unplanned_gib - fixed) / 8
    kw = {"fixed_gib": fixed}
    tight = memory.make_plan(net, lengths, 8, budget_gib=fixed + 3.5 * per_row, **kw)
    assert tight.micro_batch_tokens is not None and 100 <= tight.micro_batch_tokens < 800
    assert not tight.gradient_checkpointing and tight.estimate_gib <= fixed + 3.5 * per_row

    hopeless = memory.make_plan(net, lengths, 8, budget_gib=fixed + 0.5 * per_row, **kw)
    assert hopeless.gradient_checkpointing and hopeless.estimate_gib < tight.estimate_gib

    kept = memory.make_plan(net, lengths, 8, budget_gib=fixed + 0.5 * per_row, gradient_checkpointing=False,
                            micro_batch_tokens=300, **kw)
    assert not kept.gradient_checkpointing and kept.micro_batch_tokens == 300 and "set" in kept.line()
    packed = memory.make_plan(net, lengths, 8, budget_gib=fixed + 3.5 * per_row, can_split=False, **kw)
    assert packed.micro_batch_tokens is None and packed.gradient_checkpointing


def _losses(tmp: Path, **hp: dict) -> tuple[list[float], dict]:
    tmp.mkdir()
    cfg = tiny_config(tmp, **hp)
    cfg["hyperparameters"]["training_args"].update(max_steps=20, eval_strategy="no", save_strategy="no",
                                                   per_device_train_batch_size=8)
    assert cli.main(["train", str(write_config(tmp, cfg))]) == 0
    summary = json.loads((tmp / "run" / "summary.json").read_text())
    return [m["loss"] for m in read_metrics(tmp / "run") if m["group"] == "training"], summary


def test_training_losses_with_the_plan_equal_those_without(tmp_path: Path) -> None:
    """A budget nothing fits makes the plan use 1-row passes and gradient checkpointing; the 20
    training losses equal a run without the plan (fp32, LoRA dropout 0: with dropout the masks
    are drawn per pass, the same distribution but other numbers)."""
    off, s_off = _losses(tmp_path / "off", train={"memory_plan": False})
    on, s_on = _losses(tmp_path / "on", train={"memory_budget_gib": 0.01})
    assert s_off["memory_plan"] is None
    assert s_on["memory_plan"]["gradient_checkpointing"] and s_on["memory_plan"]["micro_batch_tokens"]
    assert len(on) == len(off) == 20
    assert max(abs(a - b) for a, b in zip(on, off)) < 1e-4, list(zip(on, off))


# ---- one fused LoRA branch, dropout without a copy ------------------------------------------------------------------


def test_fused_lora_without_dropout_trains_exactly_like_peft() -> None:
    ids = torch.randint(5, 500, (2, 16))
    out = []
    for fuse in (False, True):
        net = tiny_lora()
        if fuse:
            assert lora.use_fused_lora(net) == 14
        loss = net(input_ids=ids, attention_mask=torch.ones_like(ids), labels=ids)["loss"]
        loss.backward()
        out.append((loss.item(), [p.grad for p in net.parameters() if p.requires_grad]))
    assert out[0][0] == pytest.approx(out[1][0], abs=1e-6)
    for a, b in zip(out[0][1], out[1][1]):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_masked_dropout_drops_at_the_rate_asked_and_is_unbiased() -> None:
    for p in (0.05, 0.1, 0.5):
        keep_256 = round((1 - p) * 256)
        mask = lora.dropout_mask(torch.Size([1000, 1000]), keep_256, torch.device("cpu"))
        assert abs((~mask).float().mean().item() - p) < 0.003
    x = torch.ones(4000, 64)
    out = lora.LoraBranch.apply(torch.zeros(4000, 64), x, torch.eye(64), torch.eye(64), 1.0, 230)
    assert abs(out.mean().item() - 1.0) < 0.01  # scaled by the exact inverse keep rate


def test_fused_lora_gradients_and_eval_mode() -> None:
    double = {"dtype": torch.double, "requires_grad": True}
    result, x = torch.randn(3, 5, 4, **double), torch.randn(3, 5, 6, **double)
    a, b = torch.randn(2, 6, **double), torch.randn(4, 2, **double)
    for keep_256 in (200, 256):  # with dropout, and without

        def seeded(result: torch.Tensor, x: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            torch.manual_seed(3)
            return lora.LoraBranch.apply(result, x, a, b, 0.7, keep_256)

        assert torch.autograd.gradcheck(seeded, (result, x, a, b))
    torch.testing.assert_close(lora.LoraBranch.apply(result, x, a, b, 0.7, 256), result + 0.7 * (x @ a.t()) @ b.t())

    net = tiny_lora(dropout=0.1)
    plain = tiny_lora(dropout=0.1)
    assert lora.use_fused_lora(net) == 2 * 7  # every adapted linear of both layers
    assert net.state_dict().keys() == plain.state_dict().keys()
    ids = torch.randint(5, 500, (2, 12))
    net.eval(), plain.eval()
    with torch.no_grad():
        torch.testing.assert_close(net(input_ids=ids).logits, plain(input_ids=ids).logits)


def test_masked_dropout_replays_under_gradient_checkpointing() -> None:
    """Checkpointing recomputes each layer in backward: the masks must be the same draws."""
    ids = torch.randint(5, 500, (2, 16))
    labels = ids.clone()
    results = []
    for ckpt in (False, True):
        net = tiny_lora(dropout=0.3)
        lora.use_fused_lora(net)
        if ckpt:
            model.enable_gradient_checkpointing(net)
        net.train()
        torch.manual_seed(5)
        loss = net(input_ids=ids, attention_mask=torch.ones_like(ids), labels=labels)["loss"]
        loss.backward()
        results.append((loss.item(), [p.grad.clone() for p in net.parameters() if p.requires_grad]))
    assert results[0][0] == pytest.approx(results[1][0], abs=1e-6)
    for a, b in zip(results[0][1], results[1][1]):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


# ---- the shared prompt start, once per batch ----------------------------------------------------------


def test_shared_prefix_stops_at_the_first_difference_padding_or_label() -> None:
    batch = rows_with_shared_start(24)
    ids, mask, labels = batch["input_ids"], batch["attention_mask"], batch["labels"]
    assert loss.shared_prefix(ids, mask, labels) == 24
    labels2 = labels.clone()
    labels2[1, 20] = ids[1, 20]  # a label inside the shared start
    assert loss.shared_prefix(ids, mask, labels2) == 19  # the token before a label is never shared
    assert loss.shared_prefix(ids[:1], mask[:1], labels[:1]) == 0  # one row: nothing to share
    short = rows_with_shared_start(loss.MIN_SHARED_PREFIX - 1)
    assert loss.shared_prefix(short["input_ids"], short["attention_mask"], short["labels"]) == 0


def test_shared_prefix_gives_the_same_loss_and_gradients(monkeypatch) -> None:
    net = tiny_lora()
    lora.use_fused_lora(net)
    batch = rows_with_shared_start(24)
    n_items = int((batch["labels"][:, 1:] != -100).sum())
    calls = []
    net.get_base_model().get_decoder().register_forward_pre_hook(
        lambda m, a, k: calls.append(tuple(k["input_ids"].shape)), with_kwargs=True)
    results = []
    for minimum in (loss.MIN_SHARED_PREFIX, 10**6):
        monkeypatch.setattr(loss, "MIN_SHARED_PREFIX", minimum)
        net.zero_grad()
        out = net(**batch, num_items_in_batch=n_items)
        out["loss"].backward()
        results.append((out["loss"].item(), out["n_correct"].item(), out["n_tokens"].item(),
                        [p.grad.clone() for p in net.parameters() if p.requires_grad]))
    assert calls == [(1, 24), (3, 30), (3, 54)]  # shared start once, then the rows; then unshared
    assert results[0][:3] == pytest.approx(results[1][:3], abs=1e-6)
    for a, b in zip(results[0][3], results[1][3]):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


def test_micro_batches_count_the_shared_start_once_per_pass() -> None:
    """A batch whose rows share a long start computes start + rows x rest tokens, not rows x width:
    it runs whole where its rows x width would have been split, and a split keeps each pass
    within the budget counted that way, with the same loss and gradients as the whole batch."""
    batch = rows_with_shared_start(200)  # rows of 210, 230 and 218 tokens sharing 200
    shared = memory.batch_shared_prefix(batch)
    assert shared == 200
    assert memory.pass_tokens(3, 230, shared) == 200 + 3 * 30 < 3 * 230
    assert len(memory.split_batch(batch, 300)) == 1  # 290 computed tokens: one pass
    parts = memory.split_batch(batch, 270)  # two rows: 260 computed tokens; three: 290
    assert [p["input_ids"].shape[0] for p in parts] == [2, 1]
    for part in parts:
        rows, width = part["input_ids"].shape
        assert memory.pass_tokens(rows, width, memory.batch_shared_prefix(part)) <= 270 or rows == 1
    assert len(memory.split_batch(batch, 270, shared=0)) == 3  # counted as rows x width, nothing pairs
    net = tiny_lora()
    whole_loss, whole = passes_loss_and_grads(net, batch, [batch])
    split_loss, split = passes_loss_and_grads(net, batch, parts)
    assert split_loss == pytest.approx(whole_loss, abs=1e-5)
    for a, b in zip(whole, split):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
