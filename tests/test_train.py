"""The real pipeline on a tiny from-scratch Llama: HF Trainer, peft, the off-cluster Core API."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import read_metrics, tiny_config, write_config
from sqltune_with_seams import preempt_at
from sqltune import cli, model


def train(tmp: Path, cfg: dict, *extra: str) -> int:
    return cli.main(["train", str(write_config(tmp, cfg)), *extra])


def test_lora_run_learns_and_checkpoints(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    loaded, original = [], model.load_model

    def keep(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202 - the real loader; we keep its model to look at
        net = original(*args, **kwargs)
        loaded.append((net, {n: p.detach().clone() for n, p in net.named_parameters()}))
        return net

    monkeypatch.setattr(model, "load_model", keep)
    cfg = tiny_config(tmp_path)
    assert train(tmp_path, cfg) == 0
    [(net, before)] = loaded
    after = dict(net.named_parameters())
    frozen = [n for n in before if "lora_" not in n]
    assert frozen and all(not after[n].requires_grad and torch.equal(after[n], before[n]) for n in frozen)
    assert any(not torch.equal(after[n], before[n]) for n in before if "lora_B" in n)  # the adapter moved
    run = tmp_path / "run"
    metrics = read_metrics(run)
    train_losses = [m["loss"] for m in metrics if m["group"] == "training"]
    evals = [m for m in metrics if m["group"] == "validation"]
    assert len(train_losses) == 6 and train_losses[-1] < train_losses[0]
    assert [m["batches"] for m in evals] == [3, 6]
    assert 0.0 <= evals[-1]["eval_accuracy"] <= 1.0 and evals[-1]["eval_loss"] < evals[0]["eval_loss"] + 1e-3

    summary = json.loads((run / "summary.json").read_text())
    stored = run / "checkpoints" / summary["latest_checkpoint"] / "checkpoint-6"
    files = {p.name for p in stored.iterdir()}
    assert {"adapter_model.safetensors", "adapter_config.json", "sqltune_config.yaml", "optimizer.pt"} <= files
    assert "model.safetensors" not in files  # LoRA checkpoints hold the adapter only
    adapter = load_file(stored / "adapter_model.safetensors")
    lora_b = [v for k, v in adapter.items() if "lora_B" in k]
    assert lora_b and all(v.abs().sum() > 0 for v in lora_b)  # B starts at zero: it moved
    assert summary["trainable_parameters"] < summary["total_parameters"] / 100
    assert not list(run.glob("checkpoint-*"))  # kept once per disk: only the stored copy remains

    elsewhere = tmp_path / "elsewhere"  # the UUID `train` printed works from any folder
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert cli.main(["predict", "Show the names.", "--checkpoint", summary["latest_checkpoint"],
                     "--max-new-tokens", "4"]) == 0


def test_full_finetune_moves_base_weights(tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path, lora=False)
    assert train(tmp_path, cfg) == 0
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["trainable_parameters"] == summary["total_parameters"]
    stored = tmp_path / "run" / "checkpoints" / summary["latest_checkpoint"] / "checkpoint-6"
    trained = load_file(stored / "model.safetensors")
    from transformers import AutoConfig, AutoModelForCausalLM

    from conftest import TINY_LLAMA

    torch.manual_seed(0)  # model.seed defaults to 0: the same random init as the run
    extra = dict(TINY_LLAMA)
    init = AutoModelForCausalLM.from_config(AutoConfig.for_model(extra.pop("model_type"), **extra, vocab_size=49152))
    key = "model.layers.0.self_attn.q_proj.weight"
    assert not torch.allclose(trained[key], init.state_dict()[key])


def _preempt_on_call(monkeypatch: pytest.MonkeyPatch, k: int) -> None:
    """The smallest seam: the real DummyPreemptContext answers True on its k-th question
    (our callback asks once per step), keeping its chief-broadcast behaviour."""
    preempt_at(k, monkeypatch.setattr)


def test_preempt_then_resume_matches_uninterrupted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    whole, split = tmp_path / "whole", tmp_path / "split"
    whole.mkdir(), split.mkdir()
    assert train(whole, tiny_config(whole)) == 0

    cfg = tiny_config(split)
    cfg["hyperparameters"]["training_args"]["save_steps"] = 100  # only the preemption saves
    with monkeypatch.context() as m:
        _preempt_on_call(m, 2)
        assert train(split, cfg) == 0
    first = json.loads((split / "run" / "summary.json").read_text())
    assert first["preempted"] and first["global_step"] == 2
    pointer = json.loads((split / "run" / "latest_checkpoint.json").read_text())
    assert pointer["steps_completed"] == 2

    assert train(split, cfg) == 0  # the run folder's latest checkpoint is picked up
    second = json.loads((split / "run" / "summary.json").read_text())
    assert not second["preempted"] and second["global_step"] == 6

    def losses(run: Path) -> dict[int, float]:
        return {m["batches"]: m["loss"] for m in read_metrics(run) if m["group"] == "training"}

    a, b = losses(whole / "run"), losses(split / "run")
    assert sorted(b) == list(range(1, 7))
    for step in range(1, 7):
        assert a[step] == pytest.approx(b[step], abs=1e-6), step
    eval_a = [m["eval_loss"] for m in read_metrics(whole / "run") if m["group"] == "validation"][-1]
    eval_b = [m["eval_loss"] for m in read_metrics(split / "run") if m["group"] == "validation"][-1]
    assert eval_a == pytest.approx(eval_b, abs=1e-6)


def test_searcher_that_disagrees_with_max_steps_is_one_clear_message(tmp_path: Path, capsys) -> None:
    cfg = tiny_config(tmp_path)
    cfg["searcher"] = {"name": "adaptive_asha", "metric": "eval_loss", "smaller_is_better": True,
                       "time_metric": "batches", "max_time": 999, "max_trials": 4}
    assert train(tmp_path, cfg) == 2
    err = capsys.readouterr().err
    assert "searcher.max_time (999 batches) must equal training_args.max_steps (6)" in err and "Traceback" not in err
