"""Shared fixtures: a tiny from-scratch Llama and a small JSONL data set, written as a real YAML."""

from __future__ import annotations

import json
import os
import random
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml

# No test may lean on what an earlier run left on this machine: each test session starts with
# empty caches (the SmolLM2 conversion and every data build happen again; subprocesses inherit).
_COLD = Path(tempfile.mkdtemp(prefix="sqltune-tests-"))
for _var, _sub in (("SQLTUNE_CACHE", "sqltune"), ("HF_HOME", "hf"), ("XDG_CACHE_HOME", "xdg")):
    os.environ[_var] = str(_COLD / _sub)

TINY_LLAMA = {
    "model_type": "llama",
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 512,
}


def write_rows(path: Path, n: int = 120, seed: int = 0) -> Path:
    rnd = random.Random(seed)
    rows = []
    for _ in range(n):
        age = rnd.randint(18, 70)
        col = rnd.choice(["name", "country", "age"])
        rows.append({
            "instruction": f"Show the {col} of singers older than {age}.",
            "input": "CREATE TABLE singer (id INTEGER PRIMARY KEY, name TEXT, country TEXT, age INTEGER)",
            "response": f"SELECT {col} FROM singer WHERE age > {age}",
        })
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def tiny_config(tmp: Path, **hp_overrides: Any) -> dict[str, Any]:
    """A complete experiment config for a 2-layer Llama on CPU; `hp_overrides` merge one level deep."""
    rows = write_rows(tmp / "rows.jsonl")
    hp: dict[str, Any] = {
        "model": {"from_config": dict(TINY_LLAMA)},
        "data": {"source": str(rows), "subset": "easy", "cache_dir": str(tmp / "cache")},
        "format": {"max_length": 192},
        "lora": {"r": 4, "lora_alpha": 8, "lora_dropout": 0.0},
        "training_args": {
            "output_dir": str(tmp / "run"),
            "max_steps": 6,
            "per_device_train_batch_size": 4,
            "per_device_eval_batch_size": 8,
            "learning_rate": 3e-3,
            "eval_strategy": "steps",
            "eval_steps": 3,
            "save_steps": 3,
            "logging_steps": 1,
            "use_cpu": True,
            "seed": 7,
            "report_to": "none",
            "dataloader_num_workers": 0,
        },
    }
    for key, value in hp_overrides.items():
        if isinstance(value, dict) and isinstance(hp.get(key), dict):
            hp[key] = {**hp[key], **value}
        else:
            hp[key] = value
    return {
        "name": "tiny",
        "entrypoint": "python -m sqltune train",
        "searcher": {"name": "single", "metric": "eval_loss", "smaller_is_better": True},
        "hyperparameters": hp,
    }


def rows_with_shared_start(prefix: int = 24, seed: int = 0) -> dict[str, Any]:
    """Three rows (10, 30 and 18 tokens after it) sharing a `prefix`-token start, right-padded,
    labelled from 4 tokens past the start: a batch the masked loss can share (model/loss.py)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    start = torch.randint(5, 500, (prefix,), generator=g)
    rows = [torch.cat([start, torch.randint(5, 500, (n,), generator=g)]) for n in (10, 30, 18)]
    width = max(len(r) for r in rows)
    ids = torch.zeros(3, width, dtype=torch.long)
    mask = torch.zeros_like(ids)
    labels = torch.full_like(ids, -100)
    for i, r in enumerate(rows):
        ids[i, :len(r)], mask[i, :len(r)] = r, 1
        labels[i, prefix + 4:len(r)] = r[prefix + 4:]
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def write_config(tmp: Path, cfg: dict[str, Any], name: str = "exp.yaml") -> Path:
    path = tmp / name
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def kl_by_step(run_dir: Path) -> dict[int, float]:
    """A GRPO run's logged KL to its reference, by training step."""
    return {m["batches"]: m["kl"] for m in read_metrics(run_dir) if m["group"] == "training"}


@pytest.fixture
def tiny(tmp_path: Path) -> dict[str, Any]:
    return tiny_config(tmp_path)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    import shutil

    shutil.rmtree(_COLD, ignore_errors=True)
