"""Batched vs one-at-a-time SQL generation: rows/s for the same rows, same model, same settings.

    python bench/generation.py                          # SmolLM2-135M-Instruct, 200 synthetic rows, CPU
    python bench/generation.py --rows 1000 --batch-size 64 --device cuda --model smollm2

Prints both timings and their ratio, and checks that both produce the same SQL for the same rows
(greedy decoding; batching only changes padding). Target (issue 5): batch 16 >= 4x batch 1 on CPU.
"""

from __future__ import annotations

import argparse
import time

import torch

from sqltune import evaluate, model
from sqltune.data import splits as data_splits
from sqltune.config import DEFAULT_SYSTEM_PROMPT, DataSettings, ModelSettings


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="smollm2")
    p.add_argument("--rows", type=int, default=200)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--subset", default="easy")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default=None, help="float32 | bfloat16 (default: float32 on CPU, bfloat16 on CUDA)")
    p.add_argument("--skip-single", action="store_true", help="time the batched run only")
    ns = p.parse_args()

    cfg = ModelSettings(name=ns.model, dtype=ns.dtype or ("float32" if ns.device == "cpu" else "bfloat16"))
    tokenizer = model.load_tokenizer(cfg)
    net = model.load_model(cfg, tokenizer).to(ns.device).eval()
    splits = data_splits.load_splits(DataSettings(source="synthetic", subset=ns.subset, max_rows=max(10 * ns.rows, 100)))
    rows = list(splits["train"].select(range(ns.rows)))

    def timed(batch_size: int) -> tuple[float, list[str]]:
        start = time.perf_counter()
        preds = evaluate.generate(net, tokenizer, rows, DEFAULT_SYSTEM_PROMPT,
                                  max_new_tokens=ns.max_new_tokens, batch_size=batch_size)
        if ns.device.startswith("cuda"):
            torch.cuda.synchronize()
        return time.perf_counter() - start, preds

    batched_s, batched = timed(ns.batch_size)
    print(f"{ns.model} ({cfg.dtype}): {ns.rows} rows, max_new_tokens={ns.max_new_tokens}, "
          f"torch threads={torch.get_num_threads()}")
    print(f"batch {ns.batch_size:>3}: {batched_s:8.1f} s  {ns.rows / batched_s:7.2f} rows/s")
    if not ns.skip_single:
        single_s, single = timed(1)
        same = sum(a == b for a, b in zip(batched, single))
        print(f"batch   1: {single_s:8.1f} s  {ns.rows / single_s:7.2f} rows/s")
        print(f"speed-up {single_s / batched_s:.1f}x; identical outputs {same}/{ns.rows}")


if __name__ == "__main__":
    main()
