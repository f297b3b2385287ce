"""Mistakes that only loading can reveal end in one line too, and fast (issue 12)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from conftest import tiny_config, write_config
from sqltune import cli
from sqltune.model import load


def run_train(capsys: pytest.CaptureFixture[str], path: Path, *extra: str) -> str:
    code = cli.main(["train", str(path), *extra])
    err = capsys.readouterr().err
    assert code == 2, err
    last = err.rstrip("\n").splitlines()[-1]  # after the run's own log lines
    assert "Traceback" not in err and last.startswith("sqltune: error: "), err
    return last


def test_unknown_target_module_lists_the_ones_the_model_has(tmp_path: Path, capsys) -> None:
    cfg = tiny_config(tmp_path, lora={"target_modules": ["q_proj", "no_such_proj"]})
    err = run_train(capsys, write_config(tmp_path, cfg))
    assert ("hyperparameters.lora.target_modules: no_such_proj not in this model; its linear layers are: "
            "down_proj, gate_proj, k_proj, o_proj, q_proj, up_proj, v_proj (or write all-linear)") in err
    assert not (tmp_path / "run" / "metrics.jsonl").exists()


def test_hub_model_without_network_or_cache_fails_in_seconds(tmp_path: Path, capsys, monkeypatch) -> None:
    """The hub endpoint is a closed port on this machine (the tests start with an empty HF cache):
    no minute of retries, one line that says what to do."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")
    load.hub_reachable.cache_clear()
    cfg = tiny_config(tmp_path)
    cfg["hyperparameters"]["model"] = {"name": "TinyLlama/TinyLlama-1.1B-Chat-v1.0"}
    started = time.monotonic()
    try:
        err = run_train(capsys, write_config(tmp_path, cfg))
    finally:
        load.hub_reachable.cache_clear()
    assert time.monotonic() - started < 10
    assert "hyperparameters.model.name: 'TinyLlama/TinyLlama-1.1B-Chat-v1.0' is not in the Hugging Face cache" in err
    assert "huggingface-cli download TinyLlama/TinyLlama-1.1B-Chat-v1.0" in err
