"""A whole GRPO step, TRL's log-prob passes (every completion recomputes its prompt) against
sqltune's (each group's prompt once, model/group_logps.py), side by side, same seed.

    python bench/grpo_step.py --init-from runs/local       # the SFT default's run folder
    python bench/grpo_step.py                              # from SmolLM2 as shipped

Each side is `sqltune train experiments/local-grpo.yaml` in its own process, for --steps steps
with a log line per step and no evaluation or checkpoint. The `trl` side is TRL's own step:
`group_logps.shared_logps` declines every batch, so the recipe falls back to TRL's
`_get_per_token_logps_and_entropies` (as it does under DeepSpeed or several processes), and
`group_logps.prefilled_generate` calls the stock `generate` (every copy of a prompt prefilled).
LoRA dropout is off on both sides (every `nn.Dropout` is built with p 0, which the fused LoRA branch
reads too), whatever the start checkpoint says: with it, the two paths would draw different masks (the shared
path runs each prompt once), then different completions; without it, the sides draw the same
completions step after step as long as their passes agree. Printed per side: seconds per step in
steady state (step 1 left out; from the metrics' timestamps), peak RSS, and each step's reward
and loss.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from statistics import median


def run_side(ns: argparse.Namespace, side: str) -> dict:
    out = Path(ns.work) / side
    sets = [f"training_args.output_dir={out}", f"training_args.max_steps={ns.steps}", "training_args.logging_steps=1",
            "training_args.eval_strategy=no", "training_args.save_strategy=no", "eval.at_start=false",
            f"grpo.init_from={ns.init_from or 'null'}", *ns.set]
    cmd = [sys.executable, __file__, "--as-side", side, "--", "train", ns.config, "--fresh",
           *(a for s in sets for a in ("--set", s))]
    log = Path(ns.work) / f"{side}.log"
    started = time.perf_counter()
    with open(log, "w") as f:
        proc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT)
    if proc.returncode:
        raise SystemExit(f"{side} side failed ({proc.returncode}); see {log}")
    wall = time.perf_counter() - started
    steps = [m for m in map(json.loads, (out / "metrics.jsonl").read_text().splitlines()) if m.get("group") == "training"]
    times = [b["time"] - a["time"] for a, b in zip(steps, steps[1:])]  # step k's time is stamp k - stamp k-1
    peak = json.loads((Path(ns.work) / f"{side}.peak.json").read_text())["peak_gib"]
    return {"side": side, "wall_s": wall, "s_per_step": median(times) if times else float("nan"),
            "step_s": times, "peak_gib": peak, "rewards": [s.get("reward") for s in steps],
            "losses": [s.get("loss") for s in steps]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="experiments/local-grpo.yaml")
    p.add_argument("--init-from", default=None, help="the SFT run to start from (grpo.init_from); default: none")
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--sides", default="trl,sqltune")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="an override for every side")
    p.add_argument("--work", default="/tmp/sqltune-grpo-step")
    p.add_argument("--as-side", help=argparse.SUPPRESS)
    p.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    ns = p.parse_args()
    if ns.as_side:
        import torch

        from sqltune import cli
        from sqltune.model import group_logps

        stock_init = torch.nn.Dropout.__init__

        def no_dropout(self: torch.nn.Dropout, p: float = 0.5, inplace: bool = False) -> None:
            stock_init(self, 0.0, inplace)  # the fused LoRA branch reads `p` (model/lora.py)

        torch.nn.Dropout.__init__ = no_dropout
        if ns.as_side == "trl":
            group_logps.shared_logps = lambda *a, **k: None
            group_logps.prefilled_generate = lambda model, generate, input_ids, attention_mask, on_shared=None, **kw: \
                generate(input_ids=input_ids, attention_mask=attention_mask, **kw)
        rc = cli.main([a for a in ns.rest if a != "--"])
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB
        out = next(a.split("=", 1)[1] for a in ns.rest if a.startswith("training_args.output_dir="))
        (Path(out).parent / f"{ns.as_side}.peak.json").write_text(json.dumps({"peak_gib": peak}))
        sys.exit(rc)
    Path(ns.work).mkdir(parents=True, exist_ok=True)
    print(f"{ns.config}, {ns.steps} steps, init_from {ns.init_from}; {os.cpu_count()} CPUs; {ns.set}")
    results = [run_side(ns, side) for side in ns.sides.split(",")]
    print(f"{'side':<9}{'s/step':>8}{'peak GiB':>9}{'wall s':>8}  step seconds")
    for r in results:
        print(f"{r['side']:<9}{r['s_per_step']:8.1f}{r['peak_gib']:9.2f}{r['wall_s']:8.0f}  "
              + " ".join(f"{t:.1f}" for t in r["step_s"]))
    if len(results) == 2:
        a, b = results
        print(f"ratio {a['side']}/{b['side']}: {a['s_per_step'] / b['s_per_step']:.2f}x")
    for r in results:
        print(f"{r['side']:<9}rewards " + " ".join(f"{x:.3f}" for x in r["rewards"] if x is not None)
              + "  losses " + " ".join(f"{x:.4f}" for x in r["losses"] if x is not None))
    (Path(ns.work) / "results.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
