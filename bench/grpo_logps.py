"""GRPO's log-prob passes: TRL's path (every completion recomputes its prompt) against sqltune's
(each group's prompt once, model/group_logps.py), on the real SmolLM2, side by side in one process.

    python bench/grpo_logps.py                      # 2 prompts x 4 completions, the generator's hard rows

A batch is what GRPOTrainer scores: `--prompts` prompts of the generator's hard rows (chat-formatted,
~400-500 tokens, left-padded to the longest) times `--generations` completions each (the gold SQL
plus random tokens up to --completion tokens, right-padded). LoRA r16 on all linear layers, fp32,
TRL's fused LM head at temperature 0.7, --threads 2. Timed: the loss pass (forward + backward,
with gradients) and a no-grad pass (the old and reference policies' log-probs), each over --repeats
runs after one warm-up, both paths alternating. Printed: seconds per pass, the ratio, and the
largest log-prob difference between the paths.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import peft
import torch
import transformers
from trl.trainer.utils import add_fused_lm_head

from sqltune import prompts
from sqltune.config import DEFAULT_SYSTEM_PROMPT
from sqltune.data import synthetic
from sqltune.data.rows import difficulty
from sqltune.model import group_logps
from sqltune.model.load import smollm2_folder


def batch(tok: transformers.PreTrainedTokenizerBase, n_prompts: int, generations: int, completion: int,
          seed: int) -> tuple[torch.Tensor, torch.Tensor, int]:
    rows = [r for r in synthetic.generate(2000, 0, tempfile.mkdtemp(prefix="sqltune-bench-")) if difficulty(r) == "hard"]
    chosen = rows[:n_prompts]
    gen = torch.Generator().manual_seed(seed)
    prompt_ids = [tok(prompts.prompt_text(r, tok, DEFAULT_SYSTEM_PROMPT), add_special_tokens=False)["input_ids"]
                  for r in chosen]
    width = max(map(len, prompt_ids))
    pad = tok.pad_token_id or 0
    ids, mask = [], []
    for row, p in zip(chosen, prompt_ids):
        gold = tok(row["response"], add_special_tokens=False)["input_ids"]
        for _ in range(generations):
            length = int(torch.randint(len(gold) // 2, completion + 1, (1,), generator=gen))
            c = (gold + torch.randint(100, 40000, (completion,), generator=gen).tolist())[:length]
            ids.append([pad] * (width - len(p)) + p + c + [pad] * (completion - len(c)))
            mask.append([0] * (width - len(p)) + [1] * (len(p) + len(c)) + [0] * (completion - len(c)))
    return torch.tensor(ids), torch.tensor(mask), completion


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--prompts", type=int, default=2)
    p.add_argument("--generations", type=int, default=4)
    p.add_argument("--completion", type=int, default=64)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    ns = p.parse_args()
    torch.set_num_threads(ns.threads)
    folder = str(smollm2_folder())
    tok = transformers.AutoTokenizer.from_pretrained(folder)
    net = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    net = peft.get_peft_model(net, peft.LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules="all-linear"))
    add_fused_lm_head(net.get_base_model(), temperature=0.7, outputs=("log_probs", "entropy"))
    ids, mask, keep = batch(tok, ns.prompts, ns.generations, ns.completion, 0)

    def trl_path() -> torch.Tensor:
        labels = ids.masked_fill(mask == 0, -100)
        labels[:, :-keep] = -100
        return net(input_ids=ids, attention_mask=mask, labels=labels, fused_lm_head=True).log_probs[:, -keep:]

    def shared_path() -> torch.Tensor:
        return group_logps.shared_logps(net, ids, mask, keep, False)[0]

    valid = mask[:, -keep:] == 1
    times = {(name, grad): [] for name in ("TRL", "sqltune") for grad in (True, False)}
    found = {}
    for rep in range(ns.repeats + 1):
        for name, run in (("TRL", trl_path), ("sqltune", shared_path)):
            for grad in (True, False):
                net.zero_grad()
                start = time.perf_counter()
                with torch.set_grad_enabled(grad):
                    logps = run()
                    if grad:
                        (logps * valid).sum().backward()
                if rep:  # the first round warms both paths
                    times[(name, grad)].append(time.perf_counter() - start)
                found[name] = logps.detach()
    diff = (found["TRL"] - found["sqltune"])[valid].abs().max().item()
    print(f"{ns.prompts} prompts x {ns.generations} completions: {ids.shape[1]} positions per row "
          f"({ids.shape[1] - keep} prompt, {keep} completion); {ns.repeats} timed runs each")
    print(f"{'pass':<28}{'TRL s':>8}{'sqltune s':>11}{'ratio':>8}")
    for grad, label in ((True, "loss (forward + backward)"), (False, "log-probs (no grad)")):
        a = sum(times[("TRL", grad)]) / ns.repeats
        b = sum(times[("sqltune", grad)]) / ns.repeats
        print(f"{label:<28}{a:8.2f}{b:11.2f}{a / b:7.2f}x")
    print(f"largest log-prob difference: {diff:.2e}")


if __name__ == "__main__":
    main()
