"""Training throughput: plain HF Trainer + PEFT (the reference setup) vs sqltune's path, same model,
same data, same optimizer, side by side.

    python bench/train_throughput.py                                   # CPU: tiny Llama, LoRA and full
    python bench/train_throughput.py --arch tinyllama --device cuda --steps 30 --bf16
    python bench/train_throughput.py --arch mistral7b --device cuda --lora-only --grad-ckpt --bf16
    python bench/train_throughput.py --arch mistral7b --device cuda --lora-only --qlora --bf16

Models are built from their architectures' configs with random weights (no hub). Data: random
token ids with lognormal lengths (median --median-len tokens, sigma 0.6, clipped to [32, 2048]),
the last 12% of each sample being the answer (text-to-SQL prompts carry long schemas, answers are
short), so completion-only labels cover ~12% of tokens.

baseline: transformers.Trainer, stock model forward (logits for every position, then the loss),
          batches padded to the longest sample, PEFT LoRA r=16 on q,k,v,o (or full fine-tune).
sqltune:  the same Trainer, with sqltune's masked loss (LM head only where labels are) and
          padding-free batches (samples end to end, block-diagonal attention).

Tokens = non-padding tokens. MFU = tokens/s x flops/token / peak, flops/token = 6N full, 4N LoRA,
+2N with activation recomputation (N = parameters), peak = --peak-tflops (790 bf16 dense H100/H200).
On CPU each variant runs in its own process so its peak RSS is its own; on CUDA both run in one
process with the peak memory counter reset between them.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import time

import torch

ARCHS = {
    "tiny": {"model_type": "llama", "hidden_size": 256, "intermediate_size": 688, "num_hidden_layers": 4,
             "num_attention_heads": 8, "num_key_value_heads": 4, "vocab_size": 49152},
    "tinyllama": {"model_type": "llama", "hidden_size": 2048, "intermediate_size": 5632, "num_hidden_layers": 22,
                  "num_attention_heads": 32, "num_key_value_heads": 4, "vocab_size": 32000,
                  "max_position_embeddings": 2048},
    "mistral7b": {"model_type": "mistral", "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
                  "num_attention_heads": 32, "num_key_value_heads": 8, "vocab_size": 32000,
                  "max_position_embeddings": 32768},
}


def make_data(n: int, median: int, vocab: int, seed: int = 0) -> list[dict]:
    g = torch.Generator().manual_seed(seed)
    lengths = torch.exp(torch.log(torch.tensor(float(median))) + 0.6 * torch.randn(n, generator=g))
    rows = []
    for length in lengths.clamp(32, 2048).long().tolist():
        ids = torch.randint(5, vocab, (length,), generator=g).tolist()
        answer = max(4, int(0.12 * length))
        rows.append({"input_ids": ids, "labels": [-100] * (length - answer) + ids[-answer:]})
    return rows


def run_variant(variant: str, ns: argparse.Namespace) -> dict:
    import peft
    import transformers

    from sqltune import model as sqmodel
    from sqltune import tokenize as tok
    from sqltune.train import SQLTrainer

    arch = dict(ARCHS[ns.arch])
    config = transformers.AutoConfig.for_model(arch.pop("model_type"), **arch)
    dtype = torch.bfloat16 if ns.bf16 else torch.float32
    torch.manual_seed(0)
    kw = {"attn_implementation": "sdpa", "dtype": dtype}
    if ns.qlora:
        import tempfile

        folder = tempfile.mkdtemp()
        transformers.AutoModelForCausalLM.from_config(config, **kw).save_pretrained(folder)
        net = transformers.AutoModelForCausalLM.from_pretrained(
            folder, quantization_config=transformers.BitsAndBytesConfig(
                load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                bnb_4bit_compute_dtype=dtype), device_map={"": 0} if ns.device == "cuda" else "cpu", **kw)
        net = peft.prepare_model_for_kbit_training(net, use_gradient_checkpointing=ns.grad_ckpt)
    else:
        net = transformers.AutoModelForCausalLM.from_config(config, **kw)
    n_params = sum(p.numel() for p in net.parameters())
    if variant.startswith("sqltune"):
        sqmodel.install_masked_loss(net)
    if ns.mode == "lora":
        torch.manual_seed(1)
        net = peft.get_peft_model(net, peft.LoraConfig(task_type="CAUSAL_LM", r=16, lora_alpha=32, lora_dropout=0.0,
                                                       target_modules=["q_proj", "k_proj", "v_proj", "o_proj"]))
    data = make_data(ns.steps * ns.batch, ns.median_len, config.vocab_size)
    collator = tok.Collator(pad_id=0, padding_free=variant.startswith("sqltune"))
    args = transformers.TrainingArguments(
        output_dir="/tmp/sqltune-bench", max_steps=ns.steps, per_device_train_batch_size=ns.batch,
        learning_rate=1e-4, bf16=ns.bf16, use_cpu=ns.device == "cpu", gradient_checkpointing=ns.grad_ckpt,
        logging_steps=1, report_to="none", save_strategy="no", dataloader_num_workers=0, seed=0,
        disable_tqdm=True, remove_unused_columns=False)
    times: list[float] = []

    class Clock(transformers.TrainerCallback):
        def on_step_end(self, *a, **k):
            if ns.device == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter())

    trainer_cls = SQLTrainer if variant.startswith("sqltune") else transformers.Trainer
    trainer = trainer_cls(model=net, args=args, train_dataset=data, data_collator=collator, callbacks=[Clock()])
    if ns.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    trainer.train()
    warm = min(ns.warmup, ns.steps - 2)
    tokens = sum(len(r["input_ids"]) for r in data[warm * ns.batch:])
    tok_s = tokens / (times[-1] - times[warm - 1]) if warm > 0 else tokens / (times[-1] - times[0])
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    flops = (6 if ns.mode == "full" else 4) * n_params + (2 * n_params if ns.grad_ckpt else 0)
    peak = (torch.cuda.max_memory_allocated() / 2**30 if ns.device == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20)
    return {"variant": variant, "tokens_per_s": tok_s, "mfu": tok_s * flops / (ns.peak_tflops * 1e12),
            "peak_gib": peak, "final_loss": losses[-1], "losses": losses}


def _child(variant: str, ns: argparse.Namespace, queue: mp.Queue) -> None:
    queue.put(run_variant(variant, ns))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", choices=list(ARCHS), default="tiny")
    p.add_argument("--device", default="cpu")
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--median-len", type=int, default=350)
    p.add_argument("--bf16", action="store_true")
    p.add_argument("--grad-ckpt", action="store_true")
    p.add_argument("--qlora", action="store_true", help="4-bit NF4 base (bitsandbytes) under the LoRA rows")
    p.add_argument("--lora-only", action="store_true")
    p.add_argument("--peak-tflops", type=float, default=790.0)
    p.add_argument("--json", help="also write the rows here")
    ns = p.parse_args()

    rows = []
    for mode in (["lora"] if ns.lora_only or ns.qlora else ["lora", "full"]):
        ns.mode = mode
        for variant in ("baseline", "sqltune"):
            if ns.device == "cpu":
                queue = mp.get_context("spawn").Queue()
                proc = mp.get_context("spawn").Process(target=_child, args=(variant, ns, queue))
                proc.start()
                result = queue.get()
                proc.join()
            else:
                result = run_variant(variant, ns)
                torch.cuda.empty_cache()
            rows.append({"mode": mode + ("+qlora" if ns.qlora else "") + ("+ckpt" if ns.grad_ckpt else ""), **result})

    print(f"\n{ns.arch} on {ns.device}, batch {ns.batch}, median {ns.median_len} tokens, {ns.steps} steps "
          f"({ns.warmup} warm-up), {'bf16' if ns.bf16 else 'fp32'}")
    print(f"{'mode':<16}{'variant':<10}{'tokens/s':>10}{'MFU':>8}{'peak GiB':>10}{'ratio':>7}{'loss@N':>9}")
    base = {}
    for r in rows:
        if r["variant"] == "baseline":
            base[r["mode"]] = r
        ratio = r["tokens_per_s"] / base[r["mode"]]["tokens_per_s"]
        mfu = f"{100 * r['mfu']:>7.1f}%" if ns.device != "cpu" else f"{'-':>8}"
        print(f"{r['mode']:<16}{r['variant']:<10}{r['tokens_per_s']:>10.0f}{mfu}"
              f"{r['peak_gib']:>10.2f}{ratio:>7.2f}{r['final_loss']:>9.4f}")
    if ns.json:
        with open(ns.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
