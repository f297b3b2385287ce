"""QLoRA on CPU: a tiny from-config Llama loaded in 4-bit NF4 by bitsandbytes, LoRA on top."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import TINY_LLAMA, read_metrics, tiny_config, write_config
from sqltune import cli, model, rundir

QUANT = {"bits": 4, "quant_type": "nf4", "double_quant": True, "compute_dtype": "float32"}


def qlora_config(tmp: Path, **kw) -> dict:
    # bitsandbytes' CPU inference kernel needs rows of at least one 64-weight quantisation block
    model = {"from_config": {**TINY_LLAMA, "hidden_size": 64, "intermediate_size": 128}}
    cfg = tiny_config(tmp, quantization=dict(QUANT), model=model, **kw)
    cfg["hyperparameters"]["eval"] = {"generate_samples": 4, "max_new_tokens": 8, "batch_size": 4}
    return cfg


def test_qlora_trains_checkpoints_adapter_only_and_scores_generation(tmp_path: Path) -> None:
    assert cli.main(["train", str(write_config(tmp_path, qlora_config(tmp_path)))]) == 0
    run = tmp_path / "run"
    losses = [m["loss"] for m in read_metrics(run) if m["group"] == "training"]
    assert losses[-1] < losses[0]
    evals = [m for m in read_metrics(run) if m["group"] == "validation"]
    assert "eval_bleu" in evals[-1] and "eval_valid_sql" in evals[-1]  # generation ran on the 4-bit model
    summary = json.loads((run / "summary.json").read_text())
    ckpt = cli.checkpoint_folder(str(run / "checkpoints" / summary["latest_checkpoint"]))
    files = {p.name for p in ckpt.iterdir()}
    assert "adapter_model.safetensors" in files and "model.safetensors" not in files
    assert (ckpt / "adapter_model.safetensors").stat().st_size < 200_000  # the adapter alone

    hp = rundir.checkpoint_hparams(ckpt)
    net, _ = model.load_checkpoint(ckpt, hp)
    assert hp.quantization.quant_type == "nf4"
    assert type(net.base_model.model.model.layers[0].self_attn.q_proj.base_layer).__name__ == "Linear4bit"
    merged = model.merge_lora(ckpt, hp, tmp_path / "merged")
    assert (merged / "model.safetensors").exists()


def test_qlora_resume_matches_uninterrupted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from test_train import _preempt_on_call

    whole, split = tmp_path / "whole", tmp_path / "split"
    whole.mkdir(), split.mkdir()
    assert cli.main(["train", str(write_config(whole, qlora_config(whole)))]) == 0
    cfg = qlora_config(split)
    with monkeypatch.context() as m:
        _preempt_on_call(m, 2)
        assert cli.main(["train", str(write_config(split, cfg))]) == 0
    assert cli.main(["train", str(write_config(split, cfg))]) == 0
    a = {m["batches"]: m["loss"] for m in read_metrics(whole / "run") if m["group"] == "training"}
    b = {m["batches"]: m["loss"] for m in read_metrics(split / "run") if m["group"] == "training"}
    assert sorted(b) == sorted(a) == list(range(1, 7))
    for step in a:
        assert a[step] == pytest.approx(b[step], abs=1e-5), step


@pytest.mark.parametrize("change,message", [
    ({"quantization": {"bits": 4, "quant_type": "int3"}}, "hyperparameters.quantization.quant_type"),
    ({"quantization": dict(QUANT), "lora": False}, "quantized weights can't be trained"),
    ({"quantization": {"bits": 5}}, "hyperparameters.quantization.bits"),
])
def test_bad_quantization_is_one_clear_message(tmp_path: Path, capsys, change: dict, message: str) -> None:
    cfg = tiny_config(tmp_path, **change)
    assert cli.main(["train", str(write_config(tmp_path, cfg))]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_missing_bitsandbytes_is_one_clear_message(tmp_path: Path, capsys, monkeypatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "bitsandbytes" else real(name, *a))
    cfg = tiny_config(tmp_path, quantization=dict(QUANT))
    assert cli.main(["train", str(write_config(tmp_path, cfg))]) == 2
    assert "needs the bitsandbytes package" in capsys.readouterr().err
