"""training_args.py: the snapshot of TrainingArguments' (and trl.GRPOConfig's) fields that lets a
config error answer without importing transformers, and the live read when versions differ."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sqltune import training_args


def test_training_args_snapshot_matches_the_installed_transformers() -> None:
    """The snapshot that lets config errors skip importing transformers is that version's fields
    (and trl.GRPOConfig's own, for GRPO runs)."""
    import importlib.metadata

    snapshot = json.loads(training_args.SNAPSHOT.read_text())
    assert snapshot["transformers"] == importlib.metadata.version("transformers")
    assert snapshot["trl"] == importlib.metadata.version("trl")
    assert snapshot == training_args.snapshot_now()
    assert {"loss_type", "epsilon", "num_iterations", "log_completions"} <= set(snapshot["grpo_fields"])
    for block in ("fields", "grpo_fields"):  # what the checks use round-trips
        decoded = {name: training_args.encode(training_args.decode(spec)) for name, spec in snapshot[block].items()}
        assert decoded == snapshot[block]


def test_another_transformers_version_reads_the_fields_live(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    stale = tmp_path / "fields.json"
    stale.write_text(json.dumps({"transformers": "0.0.1", "fields": {"learning_rate": "str"}}))
    monkeypatch.setattr(training_args, "SNAPSHOT", stale)
    training_args.fields.cache_clear()
    try:
        assert training_args.fields()["learning_rate"] is float  # not the stale file's str
        assert "eval_strategy" in training_args.fields()
    finally:
        training_args.fields.cache_clear()
