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
    SQLTUNE_TEST_KILL_AT=POINT   SIGKILL at one moment of the first checkpoint save (kill_at below):
                                 the fault-injection test's hooks, placed on the real functions.
    SQLTUNE_TEST_LOAD_PROBE=DIR  right after `model.load_model` returns inside the SFT recipe, each
                                 rank writes DIR/rank<R>.json: the parameter elements it holds
                                 (`numel()`) and their full sizes (`ds_numel` under ZeRO-3).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
from pathlib import Path

KILL_POINTS = (
    "save",            # the Trainer has written checkpoint-N/; our callback has done nothing yet
    "stamped",         # the config copy is in checkpoint-N/, the manifest is not
    "rename:sqltune_manifest.json",   # the manifest's temporary file is written, not yet renamed
    "sealed",          # the manifest is in place; nothing is stored yet
    "copy:1",          # the first file copied into storage is half written
    "copy:7",          # the seventh is half written (the six before it are whole)
    "stored",          # the upload returned, the local copy is gone; the pointer still names the older one
    "rename:latest_checkpoint.json",  # the new pointer's temporary file is written, not yet renamed
    "recorded",        # the pointer names the new checkpoint
)


def kill_at(point: str, nth: int = 2) -> None:
    """SIGKILL this process at `point` (one of KILL_POINTS) of its `nth` checkpoint save (the
    default, 2, leaves one complete checkpoint of this process before the one it breaks)."""
    from sqltune import core_api, rundir

    name, _, arg = point.partition(":")
    if point not in KILL_POINTS and name != "copy":
        raise ValueError(f"unknown kill point {point!r}; one of {KILL_POINTS}")
    saves = 0
    on_save = core_api.CoreCallback.on_save

    def counting_on_save(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        nonlocal saves
        saves += 1
        if name == "save":
            die()
        return on_save(*args, **kwargs)

    core_api.CoreCallback.on_save = counting_on_save

    def die() -> None:
        if saves == nth:
            sys.stdout.flush()
            os.kill(os.getpid(), signal.SIGKILL)

    def around(owner, attr: str, before: bool) -> None:  # noqa: ANN001
        original = getattr(owner, attr)

        def hooked(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            if before:
                die()
            result = original(*args, **kwargs)
            die()
            return result

        setattr(owner, attr, hooked)

    if name == "stamped":
        around(rundir.RunFolder, "stamp_checkpoint", before=False)
    elif name == "sealed":
        around(rundir.RunFolder, "seal_checkpoint", before=False)
    elif name == "stored":
        around(rundir.RunFolder, "record_checkpoint", before=True)
    elif name == "recorded":
        around(rundir.RunFolder, "record_checkpoint", before=False)
    elif name == "rename":
        replace = os.replace

        def hooked_replace(src, dst, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
            if Path(dst).name == arg:
                die()
            return replace(src, dst, *args, **kwargs)

        os.replace = hooked_replace
    elif name == "copy":  # Determined's shared_fs storage copies file by file with shutil.copy2
        copied = 0
        copy2 = shutil.copy2

        def hooked_copy2(src, dst, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
            nonlocal copied
            copied += saves == nth and "/checkpoints/" in str(dst)
            if copied == int(arg) and saves == nth:
                data = Path(src).read_bytes()
                Path(dst).write_bytes(data[: len(data) // 2])
                die()
            return copy2(src, dst, *args, **kwargs)

        shutil.copy2 = hooked_copy2


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
    if os.environ.get("SQLTUNE_TEST_KILL_AT"):
        kill_at(os.environ["SQLTUNE_TEST_KILL_AT"])
    if os.environ.get("SQLTUNE_TEST_LOAD_PROBE"):
        probe_load(Path(os.environ["SQLTUNE_TEST_LOAD_PROBE"]))
    from sqltune.cli import main

    sys.exit(main())
