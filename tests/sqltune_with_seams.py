"""`python -m sqltune`, plus three test-only seams, each switched on by an environment variable.

The distributed tests launch this file under torchrun or deepspeed in place of `-m sqltune`:
a monkeypatch in the pytest process does not reach the ranks, and product code carries no test
hooks. Everything else is the real entry point (`cli.main`).

    SQLTUNE_TEST_PREEMPT_AT=k    the real DummyPreemptContext answers True on its k-th question
                                 (our callback asks once per step, on every rank), keeping its
                                 chief-broadcast behaviour: every rank stops at step k.
    SQLTUNE_TEST_VARIED_FORMAT=1 the GRPO reward's format part follows the completion's length
                                 (a random tiny model writes no SQL, so every real part would
                                 be 0 and every advantage 0); tests/test_rewards.py checks it.
    SQLTUNE_TEST_LOAD_PROBE=DIR  right after `model.load_model` returns inside the SFT recipe, each
                                 rank writes DIR/rank<R>.json: the parameter elements it holds
                                 (`numel()`) and their full sizes (`ds_numel` under ZeRO-3).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path


def preempt_at(k: int, set_attr=setattr) -> None:  # noqa: ANN001 - pytest's monkeypatch.setattr fits too
    from determined import core

    original = core.DummyPreemptContext.should_preempt
    calls = 0

    def should_preempt(self, auto_ack: bool = True) -> bool:  # noqa: ANN001
        nonlocal calls
        original(self, auto_ack)
        calls += 1
        return calls == k

    set_attr(core.DummyPreemptContext, "should_preempt", should_preempt)


def varied_format(set_attr=setattr) -> None:  # noqa: ANN001 - pytest's monkeypatch.setattr fits too
    from sqltune import rewards

    set_attr(rewards, "format_score", lambda completion: float(len(completion) % 2))


def probe_load(out: Path) -> None:
    from sqltune import model

    original = model.load_model

    def load_model(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        net = original(*args, **kwargs)
        params = list(net.parameters())
        record = {
            "held": sum(p.numel() for p in params),
            "full": sum(getattr(p, "ds_numel", p.numel()) for p in params),
            "all_partitioned": all(hasattr(p, "ds_numel") for p in params),
        }
        out.mkdir(parents=True, exist_ok=True)
        (out / f"rank{os.environ.get('RANK', '0')}.json").write_text(json.dumps(record))
        return net

    model.load_model = load_model


if __name__ == "__main__":
    if os.environ.get("SQLTUNE_TEST_PREEMPT_AT"):
        preempt_at(int(os.environ["SQLTUNE_TEST_PREEMPT_AT"]))
    if os.environ.get("SQLTUNE_TEST_VARIED_FORMAT"):
        varied_format()
    if os.environ.get("SQLTUNE_TEST_LOAD_PROBE"):
        probe_load(Path(os.environ["SQLTUNE_TEST_LOAD_PROBE"]))
    from sqltune.cli import main

    sys.exit(main())
