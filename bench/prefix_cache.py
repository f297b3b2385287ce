"""Generation with each batch's shared prompt start prefilled once (issue 23) against the path
before it (844cdc8: batches sorted by length, left-padded whole), same model, same rows.

    python bench/prefix_cache.py --checkpoint runs/local/checkpoints/UUID     # a trained adapter
    python bench/prefix_cache.py                                             # SmolLM2 as shipped

Rows: the generator's medium rows from its 10 databases (--rows of them; it shows each question
only its tables, so they hold many schema texts), or with --source the rows of any data.source
(e.g. text2sql-data:text2sql-data/data/restaurants.json: one database, one schema). Each variant writes
the SQL of every row; the bench prints seconds, peak memory (RSS high-water mark of this process,
which grows monotonically, so the variants run in the order old -> new and each figure is the
peak so far), and whether the greedy SQL is identical row for row.
  old            844cdc8's `generate_candidates` (its source, loaded from git), reference layout
  old-sf         the same old code on schema_first prompts (isolates the layout from the cache)
  new            today's path: batches grouped by database, shared start prefilled once, schema_first
  new-k          today's path with --candidates beams (execution-guided decoding's draw)
  new-s          today's path with --candidates samples (`eval.decoding: sample`, temperature 0.8)
  copy, copy-k, copy-s   new, new-k, new-s as of 1638b05: the shared start prefilled once but then
                 copied for every sequence (no model/prefix_attention.py), for a side-by-side baseline
The k variants print their time against new's (greedy): the issue's `candidates: 4` target.
"""

from __future__ import annotations

import argparse
import importlib.util
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from sqltune import config, evaluate, model, rundir
from sqltune import prompts
from sqltune.data import splits, synthetic
from sqltune.model import prefix_attention

ROOT = Path(__file__).resolve().parents[1]


OLD_LAYOUT = {"layout": "reference"}  # the prompts 844cdc8's code renders: reference (old), schema_first (old-sf)


def _old_prompt_text(row, tokenizer, system_prompt):  # noqa: ANN001, ANN202
    return prompts.prompt_text(row, tokenizer, system_prompt, OLD_LAYOUT["layout"])


def old_generate_candidates():  # noqa: ANN201
    """844cdc8's evaluate.generate_candidates, from git. Its imports are mapped to today's names
    (the house moved them): `sqltune.format` was `prompts` (prompt_text, end_of_turn_ids),
    `config.EvalConfig` is `EvalSettings`, `config.cache_root` is `cache.cache_root`."""
    source = subprocess.run(["git", "-C", str(ROOT), "show", "844cdc8:src/sqltune/evaluate.py"],
                            check=True, capture_output=True, text=True).stdout
    source = source.replace("from sqltune import format as fmt\n",
                            "import types\nfrom sqltune import prompts as _prompts\n"
                            "fmt = types.SimpleNamespace(prompt_text=None, end_of_turn_ids=_prompts.end_of_turn_ids)\n")
    source = source.replace("from sqltune.config import EvalConfig, cache_root\n",
                            "from sqltune.config import EvalSettings as EvalConfig\nfrom sqltune.cache import cache_root\n")
    path = Path(tempfile.mkdtemp()) / "old_evaluate.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("old_evaluate", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    mod.fmt.prompt_text = _old_prompt_text
    return mod.generate_candidates


def copying(run):  # noqa: ANN001, ANN201
    """`run` with each batch's shared start copied for every sequence, as before prefix_attention."""
    def run_copying():  # noqa: ANN202
        real = prefix_attention.supported
        prefix_attention.supported = lambda model: False
        try:
            return run()
        finally:
            prefix_attention.supported = real
    return run_copying


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", help="a checkpoint folder (sqltune train's); default: SmolLM2 as shipped")
    p.add_argument("--rows", type=int, default=320)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--candidates", type=int, default=4)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--variants", default="old,old-sf,new,new-k")  # and copy, copy-k, copy-s, new-s
    p.add_argument("--source", default="generator", help="generator, or a data.source (all its splits' rows)")
    ns = p.parse_args()
    torch.set_num_threads(ns.threads)

    if ns.checkpoint:
        from sqltune import cli

        ckpt = cli.checkpoint_folder(ns.checkpoint)
        net, tokenizer = model.load_checkpoint(ckpt, rundir.checkpoint_hparams(ckpt))
    else:
        cfg = config.ModelSettings(name="smollm2", dtype="float32")
        tokenizer = model.load_tokenizer(cfg)
        net = model.load_model(cfg, tokenizer, None)
    if ns.source == "generator":
        made = synthetic.generate(4000, 0, tempfile.mkdtemp(prefix="sqltune-bench-"))
        rows = splits.select(made, "medium", 10**6)[:ns.rows]
    else:
        built = splits.load_splits(config.DataSettings(source=ns.source, subset="all", split_by="question"))
        rows = [r for part in ("train", "valid", "test") for r in built[part]][:ns.rows]
    n_db = len({r["db_id"] for r in rows})
    n_schema = len({r["input"] for r in rows})
    old = old_generate_candidates()
    kw = {"max_new_tokens": ns.max_new_tokens, "batch_size": ns.batch_size, "progress": False}
    runs = {
        "old": lambda: old(net, tokenizer, rows, config.DEFAULT_SYSTEM_PROMPT, **kw),
        "old-sf": lambda: old(net, tokenizer, rows, config.DEFAULT_SYSTEM_PROMPT, **kw),
        "new": lambda: evaluate.generate_candidates(net, tokenizer, rows, config.DEFAULT_SYSTEM_PROMPT,
                                                    layout="schema_first", **kw),
        "new-k": lambda: evaluate.generate_candidates(net, tokenizer, rows, config.DEFAULT_SYSTEM_PROMPT,
                                                      layout="schema_first", candidates=ns.candidates, **kw),
        "new-s": lambda: evaluate.generate_candidates(net, tokenizer, rows, config.DEFAULT_SYSTEM_PROMPT,
                                                      layout="schema_first", candidates=ns.candidates,
                                                      decoding="sample", **kw),
    }
    for name in ("new", "new-k", "new-s"):
        runs[name.replace("new", "copy")] = copying(runs[name])
    results: dict[str, list[list[str]]] = {}
    times: dict[str, float] = {}
    print(f"{len(rows)} rows ({ns.source}) of {n_db} databases ({n_schema} distinct schemas), batch {ns.batch_size}, "
          f"{ns.max_new_tokens} new tokens at most, {ns.threads} threads, "
          f"model {'checkpoint ' + ns.checkpoint if ns.checkpoint else 'SmolLM2 as shipped'}")
    for name in ns.variants.split(","):
        OLD_LAYOUT["layout"] = "schema_first" if name == "old-sf" else "reference"
        torch.manual_seed(0)  # new-s draws its samples from this
        started = time.perf_counter()
        results[name] = runs[name]()
        took = time.perf_counter() - started
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        same = ""
        twin = name.replace("copy", "new") if name.startswith("copy") else name.replace("new", "copy")
        if twin != name and twin in results:
            same = f"  identical SQL to {twin}: {sum(a == b for a, b in zip(results[name], results[twin]))}/{len(rows)}"
        if name == "new" and "old-sf" in results:
            same = f"  identical SQL to old-sf: {sum(a[0] == b[0] for a, b in zip(results['new'], results['old-sf']))}/{len(rows)}"
        if name == "new" and "old" in results:
            same += f"  identical to old: {sum(a[0] == b[0] for a, b in zip(results['new'], results['old']))}/{len(rows)}"
        times[name] = took
        print(f"{name:<8}{took:>8.1f} s{peak:>8.2f} GiB peak so far"
              + "".join(f"  {times[b] / took:.2f}x {b}" for b in ("old", "old-sf") if b in times and b != name)
              + (f"  {took / times['new']:.2f}x greedy's time" if name in ("new-k", "new-s") and "new" in times else "")
              + (f"  {took / times['copy']:.2f}x greedy's time" if name in ("copy-k", "copy-s") and "copy" in times else "")
              + (f"  {times[twin] / took:.2f}x {twin}" if twin != name and twin in times and name.startswith("new") else "")
              + same, flush=True)


if __name__ == "__main__":
    sys.exit(main())
