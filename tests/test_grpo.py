"""The GRPO stage on a tiny from-scratch Llama: TRL's GRPOTrainer, our callback, the off-cluster Core API."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import kl_by_step, read_metrics, tiny_config, write_config
import sqltune_with_seams
from sqltune_with_seams import preempt_at
from sqltune import cli, config, model, rundir

REWARD_KEYS = ("reward", "rewards/execution/mean", "rewards/runs/mean", "rewards/format/mean")


def train(tmp: Path, cfg: dict) -> int:
    return cli.main(["train", str(write_config(tmp, cfg))])


def sft_checkpoint(tmp: Path) -> str:
    """A one-step SFT LoRA run; the UUID of its checkpoint."""
    cfg = tiny_config(tmp, train={"memory_plan": False})
    cfg["hyperparameters"]["training_args"].update(max_steps=1, save_steps=1, eval_strategy="no")
    assert train(tmp, cfg) == 0
    return json.loads((tmp / "run" / "summary.json").read_text())["latest_checkpoint"]


def grpo_config(tmp: Path, init_from: str | None) -> dict:
    cfg = tiny_config(tmp)
    hp = cfg["hyperparameters"]
    hp["grpo"] = {"init_from": init_from, "num_generations": 2, "max_completion_length": 8}
    hp["eval"] = {"generate_samples": 2, "max_new_tokens": 8}
    hp["training_args"].update(max_steps=2, eval_steps=2, save_steps=2, learning_rate=1e-2)
    cfg["searcher"]["metric"] = "eval_valid_sql"
    cfg["searcher"]["smaller_is_better"] = False
    return cfg


@pytest.fixture
def varied_format(monkeypatch: pytest.MonkeyPatch) -> None:
    """A random 2-layer model writes no SQL, so every real part would be 0 and every advantage 0:
    the format part here follows the completion's length, so rewards differ and the policy moves.
    tests/test_rewards.py checks the real parts."""
    sqltune_with_seams.varied_format(monkeypatch.setattr)


def test_grpo_from_sft_adapter_reports_rewards_checkpoints_and_resumes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, varied_format: None, capfd: pytest.CaptureFixture) -> None:
    (tmp_path / "sft").mkdir()
    start = sft_checkpoint(tmp_path / "sft")
    whole, split = tmp_path / "whole", tmp_path / "split"
    whole.mkdir(), split.mkdir()

    assert train(whole, grpo_config(whole, start)) == 0
    logged = capfd.readouterr().err
    assert "GRPO sampling: each group's prompt is prefilled once (4 rows, 2 prompts)" in logged
    assert "GRPO log-probs: each group's prompt runs once" in logged
    metrics = read_metrics(whole / "run")
    steps = [m for m in metrics if m["group"] == "training"]
    assert [m["batches"] for m in steps] == [1, 2]
    assert all(k in m for m in steps for k in REWARD_KEYS)
    assert any(m["reward"] > 0 for m in steps)
    [valid] = [m for m in metrics if m["group"] == "validation"]
    assert valid["batches"] == 2 and "eval_valid_sql" in valid and "eval_bleu" in valid
    sampled = [json.loads(line) for line in (whole / "run" / "completions" / "rank-0.jsonl").read_text().splitlines()]
    assert [r["step"] for r in sampled] == [1] * 4 + [2] * 4  # 2 prompts x 2 completions a step
    logged = {1: steps[0]["rewards/format/mean"], 2: steps[1]["rewards/format/mean"]}
    assert all(sum(r["format"] for r in sampled if r["step"] == s) / 4 == logged[s] for s in (1, 2))
    assert all(r["question"] and r["gold"] and {"execution", "runs"} <= r.keys() for r in sampled)

    summary = json.loads((whole / "run" / "summary.json").read_text())
    stored = whole / "run" / "checkpoints" / summary["latest_checkpoint"] / "checkpoint-2"
    assert {"adapter_model.safetensors", "sqltune_config.yaml", "optimizer.pt"} <= {p.name for p in stored.iterdir()}
    first = cli.checkpoint_folder(start)
    before, after = load_file(first / "adapter_model.safetensors"), load_file(stored / "adapter_model.safetensors")
    assert before.keys() == after.keys()
    assert any(not torch.equal(before[k], after[k]) for k in before)  # the SFT adapter trained on
    hp = rundir.checkpoint_hparams(stored)
    model.load_checkpoint(stored, hp)  # the GRPO checkpoint loads as any other
    assert hp.lora.enabled and hp.grpo is not None

    cfg = grpo_config(split, start)
    cfg["hyperparameters"]["training_args"]["save_steps"] = 100  # only the preemption saves
    with monkeypatch.context() as m:
        preempt_at(1, m.setattr)
        assert train(split, cfg) == 0
    first_half = json.loads((split / "run" / "summary.json").read_text())
    assert first_half["preempted"] and first_half["global_step"] == 1
    assert train(split, cfg) == 0
    second_half = json.loads((split / "run" / "summary.json").read_text())
    assert not second_half["preempted"] and second_half["global_step"] == 2

    def by_step(run: Path) -> dict[int, dict]:
        return {m["batches"]: m for m in read_metrics(run) if m["group"] == "training"}

    a, b = by_step(whole / "run"), by_step(split / "run")
    assert sorted(b) == [1, 2]
    for step in (1, 2):
        for key in ("loss", "grad_norm", "entropy", *REWARD_KEYS):
            assert a[step][key] == pytest.approx(b[step][key], abs=1e-6), (step, key)
    resumed = load_file(split / "run" / "checkpoints" / second_half["latest_checkpoint"] / "checkpoint-2"
                        / "adapter_model.safetensors")
    for k in after:
        torch.testing.assert_close(resumed[k], after[k])


def test_init_from_that_names_nothing_is_one_clear_message(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert train(tmp_path, grpo_config(tmp_path, str(tmp_path / "nowhere"))) != 0
    err = capsys.readouterr().err
    assert "hyperparameters.grpo.init_from" in err and "Traceback" not in err


def test_grpo_from_a_full_model_folder_moves_its_weights(tmp_path: Path, varied_format: None) -> None:
    (tmp_path / "sft").mkdir()
    cfg = tiny_config(tmp_path / "sft", lora=False, train={"memory_plan": False})
    cfg["hyperparameters"]["training_args"].update(max_steps=1, save_steps=1, eval_strategy="no")
    assert train(tmp_path / "sft", cfg) == 0
    uuid = json.loads((tmp_path / "sft" / "run" / "summary.json").read_text())["latest_checkpoint"]
    folder = cli.checkpoint_folder(uuid)  # init_from as a path this time

    cfg = grpo_config(tmp_path, str(folder))
    cfg["hyperparameters"]["eval"] = {"generate_samples": 0}
    cfg["hyperparameters"]["training_args"].update(max_steps=1, save_steps=1, eval_strategy="no")
    cfg["searcher"]["metric"] = "loss"
    assert train(tmp_path, cfg) == 0
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["trainable_parameters"] == summary["total_parameters"]
    stored = tmp_path / "run" / "checkpoints" / summary["latest_checkpoint"] / "checkpoint-1"
    before, after = load_file(folder / "model.safetensors"), load_file(stored / "model.safetensors")
    key = "model.layers.0.self_attn.q_proj.weight"
    assert not torch.equal(before[key], after[key])


def test_a_batch_that_does_not_split_into_groups_is_one_clear_message(tmp_path: Path, capsys) -> None:
    cfg = grpo_config(tmp_path, None)
    cfg["hyperparameters"]["grpo"]["num_generations"] = 3  # 4 completions per step: no whole groups of 3
    assert train(tmp_path, cfg) != 0
    err = capsys.readouterr().err
    assert "hyperparameters.grpo / training_args" in err and "num_generations (3)" in err and "Traceback" not in err


def test_a_searcher_metric_grpo_never_reports_is_refused_at_start(tmp_path: Path, capsys) -> None:
    cfg = grpo_config(tmp_path, None)
    cfg["searcher"]["metric"] = "eval_loss"
    assert train(tmp_path, cfg) != 0
    err = capsys.readouterr().err
    assert "searcher.metric: a GRPO run reports no eval_loss" in err and "Traceback" not in err


def test_grpo_training_args_are_trl_grpoconfig_fields(tmp_path: Path) -> None:
    """A GRPO run's training_args go to trl.GRPOConfig untouched: its own fields are accepted,
    the few our grpo block sets are refused with the place to set them, and an SFT run still
    takes TrainingArguments' fields only."""
    cfg = grpo_config(tmp_path, None)
    cfg["hyperparameters"]["training_args"].update(loss_type="grpo", epsilon=0.3, log_completions=True)
    exp = config.load(write_config(tmp_path, cfg))
    assert exp.hparams.training_args["loss_type"] == "grpo"

    cfg["hyperparameters"]["training_args"].update(num_generations=8, epsilon="wide")
    with pytest.raises(config.ConfigError) as e:
        config.load(write_config(tmp_path, cfg))
    assert "hyperparameters.training_args.num_generations: set it as hyperparameters.grpo.num_generations" in str(e.value)
    assert "hyperparameters.training_args.epsilon: input should be a valid number" in str(e.value)

    sft = tiny_config(tmp_path)
    sft["hyperparameters"]["training_args"]["loss_type"] = "grpo"
    with pytest.raises(config.ConfigError, match="training_args.loss_type: not a transformers.TrainingArguments field"):
        config.load(write_config(tmp_path, sft))


def test_beta_pulls_toward_the_sft_adapter_not_the_base_model(tmp_path: Path, varied_format: None) -> None:
    """beta > 0 from an SFT adapter: the reference is a frozen copy of that adapter (TRL's "ref"
    adapter), so the KL is 0 at step 1 (policy = start) and grows once the policy moves; the
    checkpoint's trained adapter is the "default" one and loads as any other."""
    (tmp_path / "sft").mkdir()
    start = sft_checkpoint(tmp_path / "sft")
    cfg = grpo_config(tmp_path, start)
    cfg["hyperparameters"]["grpo"]["beta"] = 0.1
    assert train(tmp_path, cfg) == 0
    kl = kl_by_step(tmp_path / "run")
    assert kl[1] == pytest.approx(0.0, abs=1e-7) and kl[2] > 1e-6, kl
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    stored = tmp_path / "run" / "checkpoints" / summary["latest_checkpoint"] / "checkpoint-2"
    net, _ = model.load_checkpoint(stored, rundir.checkpoint_hparams(stored))
    trained = load_file(stored / "adapter_model.safetensors")
    first = load_file(cli.checkpoint_folder(start) / "adapter_model.safetensors")
    assert any(not torch.equal(first[k], trained[k]) for k in first)
    assert list(net.peft_config) == ["default"]
    # the reference beside it (PEFT saves every adapter) is the SFT start, unchanged
    ref = load_file(stored / "ref" / "adapter_model.safetensors")
    assert ref.keys() == first.keys() and all(torch.equal(first[k], ref[k]) for k in first)


def test_beta_with_a_full_model_keeps_a_frozen_copy_of_the_start(tmp_path: Path, varied_format: None) -> None:
    cfg = grpo_config(tmp_path, None)
    cfg["hyperparameters"]["lora"] = {"enabled": False}
    cfg["hyperparameters"]["grpo"]["beta"] = 0.1
    assert train(tmp_path, cfg) == 0
    kl = kl_by_step(tmp_path / "run")
    assert kl[1] == pytest.approx(0.0, abs=1e-7) and kl[2] > 1e-6, kl


def test_each_groups_prompt_runs_once_with_trls_log_probs_and_gradients() -> None:
    """model/group_logps.shared_logps against TRL's own path (prompt + completion per row through
    TRL's fused LM head at a temperature), on a tiny LoRA Llama: two prompts of different lengths
    (left-padded), three completions each (right-padded): the same log-probs, entropies and LoRA
    gradients to float rounding, from one prompt pass per group."""
    import peft
    import transformers
    from trl.trainer.utils import add_fused_lm_head

    from conftest import TINY_LLAMA
    from sqltune.model import group_logps

    torch.manual_seed(0)
    net = transformers.LlamaForCausalLM(transformers.LlamaConfig(**TINY_LLAMA, vocab_size=97))
    net = peft.get_peft_model(net, peft.LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules="all-linear"))
    add_fused_lm_head(net.get_base_model(), temperature=0.7, outputs=("log_probs", "entropy"))
    pad = 0
    prompts = [[5, 6, 7, 8, 9, 10, 11], [12, 13, 14, 15]]
    completions = [[[20, 21, 22], [23, 24, pad], [25, pad, pad]], [[30, 31, 32], [33, pad, pad], [34, 35, 36]]]
    width = max(map(len, prompts))
    ids, mask = [], []
    for prompt, group in zip(prompts, completions):
        for completion in group:
            ids.append([pad] * (width - len(prompt)) + prompt + completion)
            mask.append([0] * (width - len(prompt)) + [1] * len(prompt) + [int(t != pad) for t in completion])
    ids, mask = torch.tensor(ids), torch.tensor(mask)
    keep = 3
    assert group_logps.prompt_groups(ids, mask, width) == [[0, 1, 2], [3, 4, 5]]

    def stock() -> tuple[torch.Tensor, torch.Tensor]:  # TRL 1.16's _get_per_token_logps_and_entropies, one chunk
        labels = ids.masked_fill(mask == 0, -100)
        labels[:, :-keep] = -100
        out = net(input_ids=ids, attention_mask=mask, labels=labels, fused_lm_head=True)
        return out.log_probs[:, -keep:], out.entropy[:, -keep:]

    results = {}
    for name, run in (("stock", stock), ("shared", lambda: group_logps.shared_logps(net, ids, mask, keep, True))):
        net.zero_grad()
        logps, entropy = run()
        (logps * (mask[:, -keep:] == 1)).sum().backward()
        grads = {n: p.grad.clone() for n, p in net.named_parameters() if p.requires_grad}
        results[name] = (logps.detach(), entropy.detach(), grads)
    valid = mask[:, -keep:] == 1
    for i in (0, 1):
        torch.testing.assert_close(results["shared"][i][valid], results["stock"][i][valid], rtol=1e-5, atol=1e-6)
    for n, g in results["stock"][2].items():
        torch.testing.assert_close(results["shared"][2][n], g, rtol=1e-4, atol=1e-6, msg=n)
    assert group_logps.shared_logps(net, ids[[0, 3]], mask[[0, 3]], keep, False) is None  # nothing shared


def test_sampling_prefills_each_groups_prompt_once_with_the_same_tokens() -> None:
    """model/group_logps.prefilled_generate against the stock `generate` on TRL's generation batch
    shape (two prompts of different lengths, left-padded, three copies each, in a row): the same
    greedy tokens, and the same sampled tokens from the same seed; the backbone sees each prompt's
    all-but-last tokens once (a batch of 2), not six times."""
    import peft
    import transformers

    from conftest import TINY_LLAMA
    from sqltune.model import group_logps

    torch.manual_seed(0)
    net = transformers.LlamaForCausalLM(transformers.LlamaConfig(**TINY_LLAMA, vocab_size=97))
    net = peft.get_peft_model(net, peft.LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules="all-linear"))
    for name, p in net.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.5)  # B starts at zero; make the adapter matter
    net.eval()
    pad = 0
    prompts = [[5, 6, 7, 8, 9, 10, 11], [12, 13, 14, 15]]
    width = max(map(len, prompts))
    ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts for _ in range(3)])
    mask = (torch.arange(width) >= torch.tensor([width - len(p) for p in prompts for _ in range(3)])[:, None]).long()
    calls = []
    net.get_base_model().get_decoder().register_forward_pre_hook(
        lambda m, a, k: calls.append(tuple(k["input_ids"].shape)), with_kwargs=True)
    caches = []

    def generate(**kw):  # noqa: ANN003, ANN202
        caches.append(kw["past_key_values"])
        return net.generate(**kw)

    for sampling in ({"do_sample": False}, {"do_sample": True, "temperature": 1.0, "top_k": 0}):
        found = {}
        for name in ("stock", "prefilled"):
            calls.clear()
            torch.manual_seed(7)
            kw = {"max_new_tokens": 6, "min_new_tokens": 6, "pad_token_id": pad, **sampling}
            out = net.generate(input_ids=ids, attention_mask=mask, **kw) if name == "stock" else \
                group_logps.prefilled_generate(net, generate, ids, mask, **kw)
            found[name] = (out, list(calls))
        assert torch.equal(found["prefilled"][0], found["stock"][0]), sampling
        # the prompts' keys are read from one copy per group (a copy per row would hold batch 6)
        assert [type(c).__name__ for c in caches] == ["SharedPrefixCache"] and caches[0].layers[0].prefix_keys.shape[0] == 2
        caches.clear()
        assert found["stock"][1][0] == (6, width) and found["prefilled"][1][:2] == [(2, width - 1), (6, 1)]
    singles = ids[[0, 3]], mask[[0, 3]]  # no prompt repeated: the stock call, unchanged
    calls.clear()
    group_logps.prefilled_generate(net, net.generate, *singles, max_new_tokens=2, do_sample=False, pad_token_id=pad)
    assert calls[0] == (2, width)
