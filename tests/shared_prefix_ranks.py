"""One rank of tests/test_distributed.py's shared-prefix check, under torchrun (DDP) or the
deepspeed launcher (ZeRO-3): `python shared_prefix_ranks.py ddp|zero3 OUT`.

Each rank builds the same tiny Llama with the masked loss, wraps it as a real run would (DDP, or a
DeepSpeed ZeRO-3 engine that partitions every parameter), and runs one forward and backward on its
own rows (conftest.rows_with_shared_start, seeded by rank) twice: with the start run
once, then with sharing off (MIN_SHARED_PREFIX raised). It writes OUT/rank<R>.pt: per mode the
loss, the shapes the decoder was called with, and every parameter's full gradient after the
ranks' reduction (gathered from the shards under ZeRO-3).
"""

from __future__ import annotations

import faulthandler
import os
import signal
import sys
from pathlib import Path

import torch
import torch.distributed as dist
import transformers

from conftest import TINY_LLAMA, rows_with_shared_start
from sqltune.model import loss


def main(engine: str, out: Path) -> None:
    faulthandler.register(signal.SIGUSR1)  # a hung rank shows where: kill -USR1 PID
    extra = dict(TINY_LLAMA)
    config = transformers.AutoConfig.for_model(extra.pop("model_type"), **extra, vocab_size=512)
    torch.manual_seed(0)
    net = transformers.AutoModelForCausalLM.from_config(config)
    loss.install_masked_loss(net)
    calls: list[tuple[int, ...]] = []
    net.get_decoder().register_forward_pre_hook(lambda m, a, k: calls.append(tuple(k["input_ids"].shape)),
                                                with_kwargs=True)
    if engine == "zero3":
        import deepspeed
        from deepspeed.utils import safe_get_full_grad

        deepspeed.init_distributed(dist_backend="gloo")
        wrapped, *_ = deepspeed.initialize(model=net, model_parameters=net.parameters(), config={
            "train_micro_batch_size_per_gpu": 3, "gradient_accumulation_steps": 1,
            "optimizer": {"type": "AdamW", "params": {"lr": 1e-3, "torch_adam": True}},
            "zero_optimization": {"stage": 3, "stage3_param_persistence_threshold": 0}})
        backward, full_grad = wrapped.backward, safe_get_full_grad
    else:
        dist.init_process_group("gloo")
        wrapped = torch.nn.parallel.DistributedDataParallel(net)
        backward, full_grad = (lambda x: x.backward()), (lambda p: p.grad)
    rank = dist.get_rank()
    batch = rows_with_shared_start(24, seed=100 + rank)
    found = {}
    for mode, minimum in (("shared", loss.MIN_SHARED_PREFIX), ("unshared", 10**6)):
        loss.MIN_SHARED_PREFIX = minimum
        calls.clear()
        result = wrapped(**batch)
        backward(result["loss"])
        grads = {name: full_grad(p).detach().clone() for name, p in net.named_parameters()}
        found[mode] = {"loss": result["loss"].item(), "calls": list(calls), "grads": grads}
        if engine == "zero3":
            wrapped.optimizer.zero_grad()
        else:
            net.zero_grad()
    torch.save(found, out / f"rank{rank}.pt")
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]))
    sys.stdout.flush()
    os._exit(0)  # gloo's threads can abort a clean exit at teardown (see cli.main)
