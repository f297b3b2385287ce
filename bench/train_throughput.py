"""Training throughput: plain HF Trainer + PEFT (the reference setup) vs sqltune's path, same model,
same data, same optimizer, side by side.

    python bench/train_throughput.py --workload realistic              # CPU: real SmolLM2, 400-500-token rows
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
sqltune:  the same Trainer, with sqltune's masked loss (LM head only where labels are), and
          padding-free batches where attention runs varlen (flash-attention: --attn flash_attention_2).

--workload realistic (issues 11, 23): the real SmolLM2-135M-Instruct weights (the shipped GGUF),
the generator's hard rows whose chat-formatted length is 400-500 tokens (multi-table schemas, joins
and subqueries), batch 8, LoRA r16 alpha 32 on all linear layers (dropout --dropout, 0.1 by
default), fp32, --threads 2. The rows are taken as sqltune's sampler deals them (batches.py: one
database's schema per batch where the data allows; the first --steps batches of a seeded epoch
over the whole pool), and every variant gets the same rows in the same batches. Variants:
  plain          transformers.Trainer + PEFT as anyone would write it: the reference layout (question
                 before schema), stock loss, padded batches;
  plain-sf       the same script on schema_first prompts (with --dropout 0 its losses are sqltune's);
  sqltune-noplan sqltune's model path (masked loss, LoRA dropout without a copy), no memory plan,
                 the reference layout;
  sqltune-ref    sqltune with the memory plan, the reference layout (the default before issue 23);
  sqltune        sqltune's default: the schema_first layout, so each batch computes its schema once.
Each variant runs in its own process (peak RSS is its own).

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

    from sqltune.model import loss as sqloss
    from sqltune import tokens
    from sqltune.recipes.sft import SQLTrainer

    arch = dict(ARCHS[ns.arch])
    config = transformers.AutoConfig.for_model(arch.pop("model_type"), **arch)
    dtype = torch.bfloat16 if ns.bf16 else torch.float32
    torch.manual_seed(0)
    kw = {"attn_implementation": ns.attn, "dtype": dtype}
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
        sqloss.install_masked_loss(net)
    if ns.mode == "lora":
        torch.manual_seed(1)
        net = peft.get_peft_model(net, peft.LoraConfig(task_type="CAUSAL_LM", r=16, lora_alpha=32, lora_dropout=0.0,
                                                       target_modules=["q_proj", "k_proj", "v_proj", "o_proj"]))
    data = make_data(ns.steps * ns.batch, ns.median_len, config.vocab_size)
    from sqltune.recipes.sft import pays_to_pack

    collator = tokens.Collator(pad_id=0, padding_free=variant.startswith("sqltune") and pays_to_pack(net))
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
    n_tokens = sum(len(r["input_ids"]) for r in data[warm * ns.batch:])
    tok_s = n_tokens / (times[-1] - times[warm - 1]) if warm > 0 else n_tokens / (times[-1] - times[0])
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    flops = (6 if ns.mode == "full" else 4) * n_params + (2 * n_params if ns.grad_ckpt else 0)
    peak = (torch.cuda.max_memory_allocated() / 2**30 if ns.device == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20)
    return {"variant": variant, "tokens_per_s": tok_s, "mfu": tok_s * flops / (ns.peak_tflops * 1e12),
            "peak_gib": peak, "final_loss": losses[-1], "losses": losses}


def realistic_rows(steps: int, batch: int, tokenizer, layout: str, source: str) -> tuple[list[dict], float]:  # noqa: ANN001
    """The first `steps` batches of a seeded epoch of sqltune's grouped sampler, tokenized in
    `layout` as sqltune does, and the share of those batches that hold one schema. Rows: the
    generator's hard rows whose chat-formatted length (reference layout) is 400-500 tokens
    (`source` "generator"; the generator shows each question only its tables, so one database
    has several schema texts), or the training split of any `data.source` (a text2sql-data set:
    one whole schema per database, as real corpora give it)."""
    import random
    import tempfile

    from sqltune import batches
    from sqltune import tokens
    from sqltune.config import DEFAULT_SYSTEM_PROMPT, DataSettings
    from sqltune.data import splits, synthetic

    pool = []
    if source != "generator":
        pool = list(splits.load_splits(DataSettings(source=source, subset="all", split_by="question"))["train"])
    for seed in range(3) if source == "generator" else ():  # 3 x 10 databases
        made = synthetic.generate(3000, seed, tempfile.mkdtemp(prefix="sqltune-bench-"))
        for row in splits.select(made, "hard", 10**6):
            if 400 <= len(tokens.encode(row, tokenizer, DEFAULT_SYSTEM_PROMPT, 4096)["input_ids"]) <= 500:
                pool.append({**row, "db_id": f"{seed}:{row['db_id']}"})
    dealt = batches.grouped([batches.row_key(r) for r in pool], batch, random.Random(0))[:steps]
    if len(dealt) < steps or len(dealt[-1]) < batch:
        raise RuntimeError(f"only {len(pool)} rows of 400-500 tokens")
    one_schema = sum(len({pool[i]["input"] for i in b}) == 1 for b in dealt) / steps
    rows = []
    for i in (i for b in dealt for i in b):
        enc = tokens.encode(pool[i], tokenizer, DEFAULT_SYSTEM_PROMPT, 4096, layout)
        rows.append({"input_ids": enc["input_ids"], "labels": enc["labels"]})
    return rows, one_schema


class CountingCollator:
    """Wraps a collator; remembers the non-padding tokens of every batch it builds."""

    def __init__(self, inner) -> None:  # noqa: ANN001
        self.inner, self.tokens = inner, []

    def __call__(self, features: list[dict]) -> dict:
        self.tokens.append(sum(len(f["input_ids"]) for f in features))
        return self.inner(features)


def run_realistic(variant: str, ns: argparse.Namespace) -> dict:
    import peft
    import transformers

    from sqltune import config, model
    from sqltune.recipes import sft
    from sqltune import tokens

    torch.set_num_threads(ns.threads)
    hp = config.Hyperparameters(
        model=config.ModelSettings(name="smollm2", dtype="float32"),
        lora=config.LoraSettings(r=16, lora_alpha=32, lora_dropout=ns.dropout, target_modules="all-linear"),
        train=config.TrainSettings(memory_plan=variant != "sqltune-noplan"),
        training_args={"output_dir": "/tmp/sqltune-bench"},
    )
    tokenizer = model.load_tokenizer(hp.model)
    layout = "schema_first" if variant in ("sqltune", "plain-sf") else "reference"
    rows, one_schema = realistic_rows(ns.steps, ns.batch, tokenizer, layout, ns.source)
    args = transformers.TrainingArguments(
        output_dir="/tmp/sqltune-bench", max_steps=ns.steps, per_device_train_batch_size=ns.batch,
        learning_rate=1e-4, use_cpu=True, logging_steps=1, report_to="none", save_strategy="no",
        dataloader_num_workers=0, seed=0, disable_tqdm=True, remove_unused_columns=False,
        train_sampling_strategy="sequential")  # the rows come in the sampler's batches already
    transformers.set_seed(0)
    plan, trainer_cls, extra = None, transformers.Trainer, {}
    if variant.startswith("plain"):
        net = transformers.AutoModelForCausalLM.from_pretrained(str(model.smollm2_folder()), dtype=torch.float32)
        net = peft.get_peft_model(net, peft.LoraConfig(task_type="CAUSAL_LM", r=16, lora_alpha=32, lora_dropout=ns.dropout,
                                                       target_modules="all-linear"))
        collator = tokens.Collator(pad_id=tokenizer.pad_token_id)
    else:
        net = model.load_model(hp.model, tokenizer, hp.lora)
        padding_free, plan = sft.plan_batches(net, [len(r["input_ids"]) for r in rows], args, hp.train,
                                                hp.format.padding_free, None)
        collator = tokens.Collator(pad_id=tokenizer.pad_token_id, padding_free=padding_free)
        trainer_cls, extra = sft.SQLTrainer, {"micro_batch_tokens": plan.micro_batch_tokens if plan else None}
    counting = CountingCollator(collator)
    times: list[float] = []

    class Clock(transformers.TrainerCallback):
        def on_step_end(self, *a, **k):
            times.append(time.perf_counter())

    trainer = trainer_cls(model=net, args=args, train_dataset=rows, data_collator=counting, callbacks=[Clock()], **extra)
    started = time.perf_counter()
    trainer.train()
    warm = min(ns.warmup, ns.steps - 1)
    span = times[-1] - (times[warm - 1] if warm > 0 else started)
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    return {"variant": variant, "s_per_step": span / (ns.steps - warm), "tokens_per_s": sum(counting.tokens[warm:]) / span,
            "peak_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, "losses": losses,
            "final_loss": losses[-1], "plan": plan.line() if plan else "-", "one_schema": one_schema}


def _child(variant: str, ns: argparse.Namespace, queue: mp.Queue) -> None:
    queue.put((run_realistic if ns.workload == "realistic" else run_variant)(variant, ns))


def _in_own_process(variant: str, ns: argparse.Namespace) -> dict:
    queue = mp.get_context("spawn").Queue()
    proc = mp.get_context("spawn").Process(target=_child, args=(variant, ns, queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def main_realistic(ns: argparse.Namespace) -> list[dict]:
    import os
    import platform

    rows = [_in_own_process(v, ns) for v in ns.variants.split(",")]
    flags = " ".join(f for f in ("avx2", "avx512f", "avx512_bf16", "amx_tile")
                     if f in open("/proc/cpuinfo").read().split()) if os.path.exists("/proc/cpuinfo") else "?"
    isa = os.environ.get("ATEN_CPU_CAPABILITY", "default")
    print(f"\nrealistic: SmolLM2-135M-Instruct, LoRA r16 all-linear (dropout {ns.dropout}), batch {ns.batch}"
          f"{' x 400-500 tokens' if ns.source == 'generator' else ''}, fp32, {ns.threads} threads, {ns.steps} steps ({ns.warmup} warm-up); "
          f"rows: {ns.source}; {rows[0]['one_schema']:.0%} of the batches hold one schema")
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, CPU flags: {flags}; "
          f"ATEN_CPU_CAPABILITY={isa}")
    print(f"{'variant':<16}{'s/step':>8}{'tokens/s':>10}{'peak GiB':>10}{'ratio':>7}  losses")
    base = rows[0]["tokens_per_s"]
    for r in rows:
        losses = " ".join(f"{x:.3f}" for x in r["losses"])
        print(f"{r['variant']:<16}{r['s_per_step']:>8.1f}{r['tokens_per_s']:>10.0f}{r['peak_gib']:>10.2f}"
              f"{r['tokens_per_s'] / base:>7.2f}  {losses}")
    print(rows[-1]["plan"])
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workload", choices=["arch", "realistic"], default="arch",
                   help="arch: random weights of --arch, random tokens; realistic: real SmolLM2 on text-to-SQL rows")
    p.add_argument("--threads", type=int, default=2, help="realistic: torch threads")
    p.add_argument("--arch", choices=list(ARCHS), default="tiny")
    p.add_argument("--device", default="cpu")
    p.add_argument("--steps", type=int, help="default 12 (arch), 5 (realistic)")
    p.add_argument("--warmup", type=int, help="steps left out of the timing; default 3 (arch), 1 (realistic)")
    p.add_argument("--batch", type=int, help="default 4 (arch), 8 (realistic)")
    p.add_argument("--attn", default="sdpa", help="arch: attention kernel (flash_attention_2 on a GPU)")
    p.add_argument("--median-len", type=int, default=350)
    p.add_argument("--dropout", type=float, default=0.1, help="realistic: LoRA dropout (0: losses comparable per step)")
    p.add_argument("--source", default="generator",
                   help="realistic: generator, or a data.source such as text2sql-data:text2sql-data/restaurants.json")
    p.add_argument("--variants", default="plain,plain-sf,sqltune-noplan,sqltune-ref,sqltune", help="realistic: which rows")
    p.add_argument("--bf16", action="store_true")
    p.add_argument("--grad-ckpt", action="store_true")
    p.add_argument("--qlora", action="store_true", help="4-bit NF4 base (bitsandbytes) under the LoRA rows")
    p.add_argument("--lora-only", action="store_true")
    p.add_argument("--peak-tflops", type=float, default=790.0)
    p.add_argument("--json", help="also write the rows here")
    ns = p.parse_args()
    for key, arch, realistic in (("steps", 12, 5), ("warmup", 3, 1), ("batch", 4, 8)):
        if getattr(ns, key) is None:
            setattr(ns, key, realistic if ns.workload == "realistic" else arch)
    if ns.workload == "realistic":
        rows = main_realistic(ns)
        if ns.json:
            with open(ns.json, "w") as f:
                json.dump(rows, f, indent=1)
        return

    rows = []
    for mode in (["lora"] if ns.lora_only or ns.qlora else ["lora", "full"]):
        ns.mode = mode
        for variant in ("baseline", "sqltune"):
            if ns.device == "cpu":
                result = _in_own_process(variant, ns)
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
