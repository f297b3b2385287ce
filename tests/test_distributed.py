"""The multi-process paths on CPU (gloo): torchrun and the deepspeed launcher, as real subprocesses.

Each run is the real entry point (`-m sqltune train CFG`) on the tiny Llama of conftest.py,
4 steps, evaluated and checkpointed every 2. Where a run needs a test seam (preemption, a look
at the freshly loaded model) it is launched through tests/sqltune_with_seams.py instead.

Determined's own launchers (`python -m determined.launch.torch_distributed` / `.deepspeed`)
refuse to start off-cluster ("must be run on-cluster"); on a cluster they wrap the same
`torch.distributed.run` (static rendezvous, --master_port 29400) and `deepspeed --no_python
--no_local_rank` commands launched here, and add DET_CHIEF_IP, which core_api.py prefers.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
import torch
from safetensors.torch import load_file

from conftest import TINY_LLAMA, kl_by_step, read_metrics, tiny_config, write_config
from sqltune import core_api

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[1]
SEAMS = Path(__file__).with_name("sqltune_with_seams.py")
DS_CONFIGS = REPO / "ds_configs"
LAUNCHER_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "LOCAL_SIZE", "GROUP_RANK",
                "GROUP_WORLD_SIZE", "CROSS_RANK", "CROSS_SIZE", "MASTER_ADDR", "MASTER_PORT", "DET_CHIEF_IP")
TIMEOUT_S = 300  # a cold 2-rank ZeRO-3 run takes ~50 s here
GRACE_S = 30


# ---- launching -------------------------------------------------------------------------------


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_port() -> int:
    """A MASTER_PORT whose next two ports are free as well (the run's zmq ports are MASTER_PORT + 1
    and + 2, core_api.distributed_context), below Linux's ephemeral range (32768-60999): a port the
    kernel handed out (port 0) has neighbours it hands out next, to gloo's and the store's own
    sockets, and a run once failed on 'Address already in use' for MASTER_PORT + 1."""
    rnd = random.Random()
    for _ in range(1000):
        port = rnd.randrange(20_000, 32_000)
        if all(_bindable(port + i) for i in range(3)):
            return port
    raise RuntimeError("no three free ports in a row between 20000 and 32000")


def config(tmp: Path, **hp: Any) -> Path:
    """The tiny experiment, 4 steps, evaluated and checkpointed every 2."""
    tmp.mkdir(parents=True, exist_ok=True)
    cfg = tiny_config(tmp, **hp)
    cfg["hyperparameters"]["training_args"].update(max_steps=4, eval_steps=2, save_steps=2)
    return write_config(tmp, cfg)


def torchrun(cfg: Path, *launcher: str) -> list[str]:
    launcher = launcher or ("--standalone", "--nproc_per_node", "2")
    return [str(BIN / "torchrun"), *launcher, "-m", "sqltune", "train", str(cfg)]


def deepspeed(cfg: Path, *script: str) -> list[str]:
    """Shaped like determined.launch.deepspeed's command, on a port of its own (the default,
    29500, is shared by every deepspeed job on the host)."""
    script = script or ("-m", "sqltune")
    return [str(BIN / "deepspeed"), "--num_gpus", "2", "--master_port", str(free_port()),
            "--no_python", "--no_local_rank", sys.executable, *script, "train", str(cfg)]


def start(cmd: list[str], log: Path, **env: str) -> subprocess.Popen:
    base = {k: v for k, v in os.environ.items() if k not in LAUNCHER_ENV}
    with open(log, "w") as out:
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                env={**base, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", **env})


def finish(*procs: tuple[subprocess.Popen, Path]) -> list[int]:
    """Exit statuses of (process, log) pairs. Once one fails, the rest get GRACE_S more (a peer
    job or machine may wait on it forever); one still running then is killed with its workers,
    and the test fails."""
    deadline = time.monotonic() + TIMEOUT_S
    while any(p.poll() is None for p, _ in procs) and time.monotonic() < deadline:
        if any(p.poll() not in (None, 0) for p, _ in procs):
            deadline = min(deadline, time.monotonic() + GRACE_S)
        time.sleep(0.5)
    late = [(p, log) for p, log in procs if p.poll() is None]
    for p, _ in late:
        launcher = psutil.Process(p.pid)  # psutil comes with accelerate and deepspeed
        for proc in [*launcher.children(recursive=True), launcher]:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.kill()
        p.wait()
    if late:
        why = {p.pid: "was killed, still running" if (p, log) in late else f"exited {p.returncode}" for p, log in procs}
        pytest.fail("\n\n".join(f"{log} {why[p.pid]}; log tail:\n{tail(log)}" for p, log in procs if p.returncode))
    return [p.returncode for p, _ in procs]


def run(cmd: list[str], log: Path, **env: str) -> int:
    return finish((start(cmd, log, **env), log))[0]


def tail(log: Path, n: int = 4000) -> str:
    return log.read_text(errors="replace")[-n:]


def ok(rc: int, log: Path) -> None:
    assert rc == 0, f"exit status {rc}; log tail:\n{tail(log)}"


def summary(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / "summary.json").read_text())


def stored_checkpoint(run_dir: Path, step: int) -> Path:
    """The `checkpoint-<step>` folder inside the uploaded checkpoint that holds it."""
    found = sorted(run_dir.glob(f"checkpoints/*/checkpoint-{step}"))
    assert len(found) == 1, f"{len(found)} uploaded checkpoints hold checkpoint-{step}"
    return found[0]


def assert_each_report_once(run_dir: Path, steps: int) -> None:
    """Only the chief reports, once per (group, step)."""
    keys = [(m["group"], m["step"]) for m in read_metrics(run_dir)]
    assert len(keys) == len(set(keys)), keys
    assert sorted(keys) == sorted([("training", s) for s in range(1, steps + 1)]
                                  + [("validation", s) for s in range(2, steps + 1, 2)])


# ---- the environment each launcher gives a rank (fast) -------------------------------------------

TORCHRUN = {"RANK": "1", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2",
            "GROUP_RANK": "0", "GROUP_WORLD_SIZE": "2", "MASTER_ADDR": "10.0.0.1", "MASTER_PORT": "40000"}
DEEPSPEED = {"RANK": "1", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "LOCAL_SIZE": "2",
             "CROSS_RANK": "0", "CROSS_SIZE": "2", "MASTER_ADDR": "10.0.0.1", "MASTER_PORT": "40000"}


@pytest.fixture
def made(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """The keyword arguments core_api.distributed_context hands to DistributedContext (which
    itself would block on its zmq peers)."""
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(core_api.det.core, "DistributedContext", lambda **kw: calls.append(kw) or kw)
    for name in LAUNCHER_ENV:
        monkeypatch.delenv(name, raising=False)
    return calls


@pytest.mark.parametrize(("env", "use_deepspeed"), [(TORCHRUN, False), (DEEPSPEED, True), (TORCHRUN, True)],
                         ids=["torchrun", "deepspeed", "deepspeed-config-under-torchrun"])
def test_distributed_context_reads_each_launchers_names(made, monkeypatch, env, use_deepspeed) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    core_api.distributed_context(use_deepspeed=use_deepspeed)
    assert made == [{"rank": 1, "size": 4, "local_rank": 1, "local_size": 2, "cross_rank": 0, "cross_size": 2,
                     "chief_ip": "10.0.0.1", "pub_port": 40001, "pull_port": 40002}]


def test_distributed_context_prefers_det_chief_ip_and_names_missing_variables(made, monkeypatch) -> None:
    for name, value in {**TORCHRUN, "DET_CHIEF_IP": "10.0.0.9"}.items():
        monkeypatch.setenv(name, value)
    core_api.distributed_context(use_deepspeed=False)
    assert made[-1]["chief_ip"] == "10.0.0.9"
    monkeypatch.delenv("GROUP_RANK")
    with pytest.raises(RuntimeError, match="GROUP_RANK unset: use torchrun or deepspeed"):
        core_api.distributed_context(use_deepspeed=False)
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert core_api.distributed_context(use_deepspeed=False) is None


def test_distinct_master_ports_give_distinct_zmq_ports(made, monkeypatch) -> None:
    """Off-cluster, Determined's fixed zmq ports (12360 and up) would make a second run on the
    host fail to bind; each run derives its own from the MASTER_PORT its launcher picked."""
    for name, value in TORCHRUN.items():
        monkeypatch.setenv(name, value)
    for port in ("29500", "29503"):
        monkeypatch.setenv("MASTER_PORT", port)
        core_api.distributed_context(use_deepspeed=False)
    ports = [{kw["pub_port"], kw["pull_port"]} for kw in made]
    assert not ports[0] & ports[1] and not ports[0] & {29503} and not ports[1] & {29500}


# ---- torchrun: DDP + LoRA ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def two_torchrun_jobs(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[int, Path, Path]]:
    """Two 2-rank LoRA jobs started together on this host, each `torchrun --standalone`:
    (exit status, run folder, log) for each."""
    tmps = [tmp_path_factory.mktemp(f"torchrun_{name}") for name in ("a", "b")]
    procs = [(start(torchrun(config(tmp)), tmp / "log.txt"), tmp / "log.txt") for tmp in tmps]
    return [(rc, tmp / "run", tmp / "log.txt") for rc, tmp in zip(finish(*procs), tmps)]


@pytest.mark.slow
def test_torchrun_lora_two_ranks(two_torchrun_jobs) -> None:
    rc, run_dir, log = two_torchrun_jobs[0]
    ok(rc, log)
    assert_each_report_once(run_dir, steps=4)
    done = summary(run_dir)
    assert done["global_step"] == 4 and not done["preempted"]
    assert done["trainable_parameters"] < done["total_parameters"] / 100
    for step in (2, 4):
        files = {p.name for p in stored_checkpoint(run_dir, step).iterdir()}
        # every rank's own file, written and uploaded by each rank (shard=True)
        assert {"rng_state_0.pth", "rng_state_1.pth", "adapter_model.safetensors", "optimizer.pt",
                "trainer_state.json", "sqltune_config.yaml"} <= files
    assert stored_checkpoint(run_dir, 4).parent.name == done["latest_checkpoint"]


@pytest.mark.slow
def test_two_jobs_on_one_host_do_not_collide_on_ports(two_torchrun_jobs) -> None:
    for rc, run_dir, log in two_torchrun_jobs:
        ok(rc, log)
        assert summary(run_dir)["global_step"] == 4


@pytest.mark.slow
def test_two_machines_each_rank_uploads_its_own_shard(tmp_path: Path) -> None:
    """Two single-rank "machines" (torchrun static rendezvous, as Determined launches one per
    container), each with its own output_dir and one shared checkpoint storage. rng_state_1.pth
    exists only on machine 1, so finding it in storage shows rank 1 uploaded its own shard."""
    cfg = tiny_config(tmp_path)
    cfg["hyperparameters"]["training_args"].update(max_steps=2, eval_steps=2, save_steps=2)
    cfg["checkpoint_storage"] = {"type": "shared_fs", "host_path": str(tmp_path / "shared")}
    path, port = write_config(tmp_path, cfg), str(free_port())
    procs = []
    for node in (0, 1):
        launcher = ("--nnodes", "2", "--node_rank", str(node), "--nproc_per_node", "1",
                    "--master_addr", "127.0.0.1", "--master_port", port)
        log = tmp_path / f"node{node}.txt"
        cmd = [*torchrun(path, *launcher), "--set", f"training_args.output_dir={tmp_path / f'node{node}'}"]
        procs.append((start(cmd, log), log))
    for rc, (_, log) in zip(finish(*procs), procs):
        ok(rc, log)

    # Kept once per disk: after the upload neither machine keeps its local checkpoint-2.
    assert not (tmp_path / "node0" / "checkpoint-2").exists() and not (tmp_path / "node1" / "checkpoint-2").exists()
    stored = sorted((tmp_path / "shared").glob("*/checkpoint-2"))
    assert len(stored) == 1
    files = {p.name for p in stored[0].iterdir()}
    assert {"rng_state_0.pth", "rng_state_1.pth", "adapter_model.safetensors", "trainer_state.json"} <= files
    assert_each_report_once(tmp_path / "node0", steps=2)
    assert not (tmp_path / "node1" / "metrics.jsonl").exists()


# ---- DeepSpeed ---------------------------------------------------------------------------------


def zero3(tmp: Path) -> Path:
    return config(tmp, lora=False, training_args={"deepspeed": str(DS_CONFIGS / "ds_config_stage_3.json")})


@pytest.fixture(scope="module")
def zero3_whole(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An uninterrupted 2-rank ZeRO-3 full fine-tune under the deepspeed launcher; its run folder."""
    tmp = tmp_path_factory.mktemp("zero3_whole")
    log = tmp / "log.txt"
    before = shm_buffers()
    ok(run(deepspeed(zero3(tmp)), log), log)
    (tmp / "shm_left.json").write_text(json.dumps(sorted(shm_buffers() - before)))
    return tmp / "run"


def shm_buffers() -> set[str]:
    return {p.name for p in Path("/dev/shm").glob("deepspeed_allreduce_buffer_*")}


@pytest.fixture(scope="module")
def zero3_preempted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same run, preempted at step 3 (between checkpoints; the first was at step 2) with a
    look at the model as loaded, then started again to finish; the test folder."""
    tmp = tmp_path_factory.mktemp("zero3_split")
    cfg = zero3(tmp)
    log = tmp / "first.txt"
    seams = {"SQLTUNE_TEST_PREEMPT_AT": "3", "SQLTUNE_TEST_LOAD_PROBE": str(tmp / "probe")}
    ok(run(deepspeed(cfg, str(SEAMS)), log, **seams), log)
    (tmp / "first_summary.json").write_text((tmp / "run" / "summary.json").read_text())
    log = tmp / "second.txt"
    ok(run(deepspeed(cfg), log), log)
    return tmp


@pytest.mark.slow
def test_deepspeed_zero3_full_finetune(zero3_whole: Path) -> None:
    done = summary(zero3_whole)
    assert done["global_step"] == 4 and done["trainable_parameters"] == done["total_parameters"]
    assert_each_report_once(zero3_whole, steps=4)
    stored = stored_checkpoint(zero3_whole, 4)
    shards = {p.name for p in (stored / "global_step4").iterdir()}
    for rank in (0, 1):  # one ZeRO partition of weights and of optimizer state per rank
        assert {f"zero_pp_rank_{rank}_mp_rank_00_{part}_states.pt" for part in ("model", "optim")} <= shards
    assert {"rng_state_0.pth", "rng_state_1.pth", "latest"} <= {p.name for p in stored.iterdir()}
    # stage3_gather_16bit_weights_on_model_save: whole weights, loadable without DeepSpeed
    weights = load_file(stored / "model.safetensors")
    assert sum(t.numel() for t in weights.values()) == done["total_parameters"]
    q = weights["model.layers.0.self_attn.q_proj.weight"]
    assert q.shape == (32, 32) and q.abs().sum() > 0


@pytest.mark.slow
@pytest.mark.skipif(not Path("/dev/shm").is_dir(), reason="no /dev/shm")
def test_deepspeed_cpu_run_leaves_nothing_in_dev_shm(zero3_whole: Path) -> None:
    """DeepSpeed's CPU all-reduce maps a 66 MB /dev/shm buffer per rank and never removes it."""
    assert json.loads((zero3_whole.parent / "shm_left.json").read_text()) == []


@pytest.mark.slow
def test_zero3_loads_weights_partitioned(zero3_preempted: Path) -> None:
    """TrainingArguments come first in session.run, so zero.Init partitions the model as it is
    built: right after load_model each rank holds no full parameter, only its ZeRO shard."""
    total = json.loads((zero3_preempted / "first_summary.json").read_text())["total_parameters"]
    for rank in (0, 1):
        probe = json.loads((zero3_preempted / "probe" / f"rank{rank}.json").read_text())
        assert probe == {"held": 0, "full": total, "all_partitioned": True}


@pytest.mark.slow
def test_zero3_preempt_then_resume_matches_uninterrupted(zero3_preempted: Path, zero3_whole: Path) -> None:
    first = json.loads((zero3_preempted / "first_summary.json").read_text())
    assert first["preempted"] and first["global_step"] == 3
    assert first["latest_checkpoint"] == stored_checkpoint(zero3_preempted / "run", 3).parent.name
    second = summary(zero3_preempted / "run")
    assert not second["preempted"] and second["global_step"] == 4
    assert_each_report_once(zero3_preempted / "run", steps=4)

    # fp32 on CPU, same world size, same gloo reduction order: a resumed run repeats the
    # uninterrupted one up to float32 rounding (observed: bit-identical).
    def curve(run_dir: Path) -> torch.Tensor:  # training loss at steps 1-4, then eval_loss at 4
        logged = {(m["group"], m["step"]): m for m in read_metrics(run_dir)}
        values = [logged["training", s]["loss"] for s in range(1, 5)] + [logged["validation", 4]["eval_loss"]]
        return torch.tensor(values, dtype=torch.float64)

    torch.testing.assert_close(curve(zero3_preempted / "run"), curve(zero3_whole), rtol=1e-6, atol=0)


@pytest.mark.slow
def test_lora_under_zero2_with_torchrun(tmp_path: Path) -> None:
    """LoRA (trainable adapter only) under ZeRO-2, launched by torchrun with the DeepSpeed config."""
    cfg = config(tmp_path, training_args={"deepspeed": str(DS_CONFIGS / "ds_config_stage_2.json")})
    log = tmp_path / "log.txt"
    ok(run(torchrun(cfg), log), log)
    done = summary(tmp_path / "run")
    assert done["global_step"] == 4 and done["trainable_parameters"] < done["total_parameters"] / 100
    stored = stored_checkpoint(tmp_path / "run", 4)
    adapter = load_file(stored / "adapter_model.safetensors")
    assert all(v.abs().sum() > 0 for k, v in adapter.items() if "lora_B" in k)  # B starts at zero: it moved
    shards = {p.name for p in (stored / "global_step4").iterdir()}
    assert {f"zero_pp_rank_{rank}_mp_rank_00_optim_states.pt" for rank in (0, 1)} <= shards


# ---- generation eval across ranks --------------------------------------------------------------


def saved_tiny_model(folder: Path) -> Path:
    """The tiny from-config model saved as a folder: loaded by name, every layout and a frozen
    reference get the same weights (zero.Init draws a random init differently from one process)."""
    import transformers

    from sqltune import model as sqmodel
    from sqltune.config import ModelSettings

    tokenizer = sqmodel.load_tokenizer(ModelSettings(name="smollm2"))
    seeded = sqmodel.load_model(ModelSettings(from_config=TINY_LLAMA), tokenizer)
    seeded.__dict__.pop("forward", None)  # a plain model again before saving
    seeded.save_pretrained(folder)
    assert isinstance(seeded, transformers.PreTrainedModel)
    return folder


def saved_model_block(folder: Path) -> dict[str, Any]:
    return {"name": str(folder), "tokenizer": "smollm2", "from_config": None}


@pytest.mark.slow
def test_generation_eval_is_the_same_on_one_process_ddp_and_zero3(tmp_path: Path) -> None:
    """Step-0 generation eval of the same saved model: 5 rows (shards of 3 and 2, so ZeRO-3 ranks
    must pad to step together), batch 1 so every row is computed alone on every layout. (Saved, not
    from_config: zero.Init draws a random init differently from a single process.)"""
    base = saved_tiny_model(tmp_path / "base")
    gen = {"generate_samples": 5, "max_new_tokens": 8, "batch_size": 1, "at_start": True}
    ds = {"deepspeed": str(DS_CONFIGS / "ds_config_stage_3.json")}
    layouts = {
        "single": lambda cfg: [sys.executable, "-m", "sqltune", "train", str(cfg)],
        "ddp": torchrun,
        "zero3": deepspeed,
    }
    predictions = {}
    for name, command in layouts.items():
        tmp = tmp_path / name
        cfg = config(tmp, lora=False, eval=gen, model=saved_model_block(base),
                     training_args=ds if name == "zero3" else {})
        ok(run(command(cfg), tmp / "log.txt"), tmp / "log.txt")
        rows = [json.loads(line) for line in (tmp / "run" / "predictions" / "eval-step-0.jsonl").read_text().splitlines()]
        predictions[name] = rows
        step0 = [m for m in json.loads("[" + ",".join((tmp / "run" / "metrics.jsonl").read_text().splitlines()) + "]")
                 if m["group"] == "validation" and m["step"] == 0]
        assert len(step0) == 1 and "eval_bleu" in step0[0]
    assert len(predictions["single"]) == 5
    for name in ("ddp", "zero3"):
        assert [r["question"] for r in predictions[name]] == [r["question"] for r in predictions["single"]]
        assert [r["predicted"] for r in predictions[name]] == [r["predicted"] for r in predictions["single"]], name
        assert [r["bleu"] for r in predictions[name]] == [r["bleu"] for r in predictions["single"]], name


# ---- GRPO, and execution-guided evaluation, across ranks ------------------------------------------

GRPO_REWARDS = ("reward", "rewards/execution/mean", "rewards/runs/mean", "rewards/format/mean")


def grpo(tmp: Path, beta: float = 0.0, **hp: Any) -> Path:
    """The tiny experiment as a GRPO stage from scratch (2 completions per prompt, 4 prompts per
    rank and step), 4 steps; evaluated every 2 with 2 sampled candidates per row, picked on the
    database, and checkpointed every 2."""
    tmp.mkdir(parents=True, exist_ok=True)
    cfg = tiny_config(tmp, grpo={"num_generations": 2, "max_completion_length": 8, "beta": beta},
                      eval={"generate_samples": 4, "max_new_tokens": 8, "candidates": 2, "decoding": "sample"}, **hp)
    cfg["hyperparameters"]["training_args"].update(max_steps=4, eval_steps=2, save_steps=2, learning_rate=1e-2)
    cfg["searcher"].update(metric="eval_fuzz_execution_accuracy", smaller_is_better=False)  # the rows ship no database
    return write_config(tmp, cfg)


def assert_grpo_reports(run_dir: Path) -> None:
    assert_each_report_once(run_dir, steps=4)
    metrics = read_metrics(run_dir)
    training = [m for m in metrics if m["group"] == "training"]
    assert all(k in m for m in training for k in GRPO_REWARDS) and any(m["reward"] > 0 for m in training)
    for m in (m for m in metrics if m["group"] == "validation"):
        assert 0 <= m["eval_fuzz_execution_accuracy"] <= 1 and "eval_valid_sql" in m
    for step in (2, 4):  # every validation row scored once, from 2 candidates
        rows = [json.loads(line) for line in (run_dir / "predictions" / f"eval-step-{step}.jsonl").read_text().splitlines()]
        assert len(rows) == 4 and all(len(r["candidates"]) == 2 and r["predicted"] in r["candidates"] for r in rows)


@pytest.mark.slow
def test_grpo_two_ranks_with_torchrun(tmp_path: Path) -> None:
    log = tmp_path / "log.txt"
    cmd = [str(BIN / "torchrun"), "--standalone", "--nproc_per_node", "2", str(SEAMS), "train", str(grpo(tmp_path))]
    ok(run(cmd, log, SQLTUNE_TEST_VARIED_FORMAT="1"), log)
    assert_grpo_reports(tmp_path / "run")
    done = summary(tmp_path / "run")
    assert done["global_step"] == 4 and done["trainable_parameters"] < done["total_parameters"] / 100
    files = {p.name for p in stored_checkpoint(tmp_path / "run", 4).iterdir()}
    assert {"rng_state_0.pth", "rng_state_1.pth", "adapter_model.safetensors", "sqltune_config.yaml"} <= files


@pytest.mark.slow
def test_grpo_full_model_under_zero3(tmp_path: Path) -> None:
    """Full-model GRPO with a KL term: TRL keeps a frozen reference, itself under ZeRO-3; it equals
    the policy at step 1 (KL 0) and not once the policy has moved."""
    base = saved_tiny_model(tmp_path / "base")
    cfg = grpo(tmp_path, beta=0.1, lora=False, model=saved_model_block(base),
               training_args={"deepspeed": str(DS_CONFIGS / "ds_config_stage_3.json")})
    log = tmp_path / "log.txt"
    ok(run(deepspeed(cfg, str(SEAMS)), log, SQLTUNE_TEST_VARIED_FORMAT="1"), log)
    assert_grpo_reports(tmp_path / "run")
    done = summary(tmp_path / "run")
    assert done["global_step"] == 4 and done["trainable_parameters"] == done["total_parameters"]
    stored = stored_checkpoint(tmp_path / "run", 4)
    shards = {p.name for p in (stored / "global_step4").iterdir()}
    assert {f"zero_pp_rank_{rank}_mp_rank_00_model_states.pt" for rank in (0, 1)} <= shards
    kl = kl_by_step(tmp_path / "run")
    assert kl[1] == pytest.approx(0.0, abs=1e-7) and kl[4] > 1e-6, kl


# ---- the shared prompt start under DDP and ZeRO-3 ------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["ddp", "zero3"])
def test_shared_prefix_under_ddp_and_zero3_gives_the_unshared_loss_and_gradients(tmp_path: Path, engine: str) -> None:
    """Two ranks, each with its own rows sharing a 24-token start: the masked loss runs the start
    once (decoder called on (1, 24), then on the rows' rest) inside one wrapped forward, and the
    loss and reduced gradients (gathered from ZeRO-3's shards) equal the unshared run's."""
    script = str(Path(__file__).with_name("shared_prefix_ranks.py"))
    if engine == "ddp":
        cmd = [str(BIN / "torchrun"), "--standalone", "--nproc_per_node", "2", script, engine, str(tmp_path)]
    else:
        cmd = deepspeed(tmp_path, script)[:-2] + [engine, str(tmp_path)]  # the launcher's line, our script's arguments
    log = tmp_path / "log.txt"
    ok(run(cmd, log), log)
    found = [torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1)]
    assert found[0]["shared"]["loss"] != pytest.approx(found[1]["shared"]["loss"])  # each rank had its own rows
    for rank in found:
        shared, unshared = rank["shared"], rank["unshared"]
        assert shared["calls"] == [(1, 24), (3, 30)] and unshared["calls"] == [(3, 54)]
        assert shared["loss"] == pytest.approx(unshared["loss"], abs=1e-6)
        assert shared["grads"].keys() == unshared["grads"].keys()
        for name, grad in shared["grads"].items():
            torch.testing.assert_close(grad, unshared["grads"][name], rtol=1e-5, atol=1e-7, msg=name)
    for name, grad in found[0]["shared"]["grads"].items():  # reduced across ranks: the same everywhere
        torch.testing.assert_close(grad, found[1]["shared"]["grads"][name], rtol=1e-5, atol=1e-7, msg=name)
