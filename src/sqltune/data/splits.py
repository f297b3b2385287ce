"""Rows of (instruction, input, response) -> train/valid/test splits per difficulty.

Sources: the built-in generator (`synthetic`, offline), a Hugging Face hub dataset name
(`Clinton/Text-to-sql-v1` on a cluster), or local JSONL / JSON / CSV / Parquet files (a path or
glob, files.py).

Rows are bucketed by difficulty (rows.py, the reference's word counts), then the first `max_rows`
rows of the bucket in source order are split 80/10/10 with `datasets.train_test_split(seed=123)`
as the reference does. A row missing a column or with an
empty response is skipped and counted, never a crash; a file missing a whole column is an error.

Splits are cached on disk under `data.cache_dir`, keyed by everything that changes them. A file
lock makes one process build while the others wait, and the build lands by an atomic rename,
so no two ranks ever write the same folder.
"""

from __future__ import annotations

import glob
import hashlib
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import datasets
from filelock import FileLock

from sqltune.config import DataConfig, cache_root
from sqltune.data.files import is_local, local_rows
from sqltune.data.rows import COLUMNS, difficulty, row_problem
from sqltune.errors import DataError

log = logging.getLogger(__name__)


def _hub_rows(name: str) -> tuple[list[dict[str, Any]], list[str]]:
    try:
        ds = datasets.load_dataset(name, split="train")
    except Exception as e:  # offline, unknown name, gated: all end the same way for the user
        raise DataError(f"data.source: could not load hub dataset '{name}': {type(e).__name__}: {e}") from None
    missing = [c for c in COLUMNS if c not in ds.column_names]
    if missing:
        raise DataError(f"data.source '{name}': missing column {', '.join(missing)} (has: {ds.column_names})")
    rows, skipped = [], []
    for i, row in enumerate(ds, 1):
        problem = row_problem(row)
        if problem:
            skipped.append(f"{name} row {i}: {problem}")
        else:
            rows.append({k: v for k, v in row.items() if k not in ("text", "source")})
    return rows, skipped


def read_rows(cfg: DataConfig, cache_dir: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """All usable rows of the source, in source order, and a line per skipped row."""
    if cfg.source == "synthetic":
        from sqltune.data import synthetic

        return synthetic.generate(cfg.synthetic_rows, cfg.synthetic_seed, cache_dir / "synthetic-dbs"), []
    if is_local(cfg.source):
        return local_rows(cfg.source)
    return _hub_rows(cfg.source)


# ---- bucketing and splitting -----------------------------------------------------------------


def select(rows: list[dict[str, Any]], subset: str, max_rows: int) -> list[dict[str, Any]]:
    """Rows of one difficulty bucket (or all three), tagged with it, first `max_rows` in order."""
    out = []
    for row in rows:
        d = difficulty(row)
        if d is not None and (subset == "all" or d == subset):
            out.append({**row, "difficulty": d})
            if len(out) == max_rows:
                break
    return out


def split(rows: list[dict[str, Any]], seed: int = 123) -> datasets.DatasetDict:
    """80/10/10 exactly as the reference: train_test_split(train_size=0.8), then halve the rest."""
    if len(rows) < 10:
        raise DataError(f"only {len(rows)} usable rows after bucketing; need at least 10 to split 80/10/10")
    ds = datasets.Dataset.from_list(rows)
    train_rest = ds.train_test_split(train_size=0.8, seed=seed)
    valid_test = train_rest["test"].train_test_split(test_size=0.5, seed=seed)
    return datasets.DatasetDict(train=train_rest["train"], valid=valid_test["train"], test=valid_test["test"])


def _cache_key(cfg: DataConfig) -> str:
    fields = cfg.model_dump(exclude={"cache_dir", "max_train_samples", "max_eval_samples"})
    if cfg.source != "synthetic" and is_local(cfg.source):
        fields["files"] = [
            (p, os.path.getsize(p), os.path.getmtime(p)) for p in sorted(glob.glob(os.path.expanduser(cfg.source)))
        ]
    return hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()[:12]


def data_cache_dir(cfg: DataConfig) -> Path:
    return Path(cfg.cache_dir).expanduser() if cfg.cache_dir else cache_root() / "data"


def load_splits(cfg: DataConfig) -> datasets.DatasetDict:
    """Cached train/valid/test for `cfg`, built once by whichever process gets the lock first."""
    cache_dir = data_cache_dir(cfg)
    cache_dir.mkdir(parents=True, exist_ok=True)
    name = f"{Path(cfg.source).name.replace('*', 'x') or 'data'}-{cfg.subset}-{_cache_key(cfg)}"
    target = cache_dir / name
    with FileLock(str(cache_dir / f"{name}.lock")):
        if not (target / "stats.json").exists():
            _build(cfg, cache_dir, target)
    splits = datasets.load_from_disk(str(target))
    stats = json.loads((target / "stats.json").read_text())
    log.info("data %s: %s", name, ", ".join(f"{k}={v}" for k, v in stats.items() if k != "skipped_examples"))
    for k, limit in (("train", cfg.max_train_samples), ("valid", cfg.max_eval_samples)):
        if limit is not None and len(splits[k]) > limit:
            splits[k] = splits[k].select(range(limit))
    return splits


def _build(cfg: DataConfig, cache_dir: Path, target: Path) -> None:
    rows, skipped = read_rows(cfg, cache_dir)
    if skipped:
        log.warning("skipped %d unusable rows, e.g. %s", len(skipped), "; ".join(skipped[:3]))
    chosen = select(rows, cfg.subset, cfg.max_rows)
    splits = split(chosen, cfg.split_seed)
    tmp = Path(tempfile.mkdtemp(dir=cache_dir, prefix=".building-"))
    try:
        datasets.disable_progress_bars()  # three instant "saving" bars are noise
        try:
            splits.save_to_disk(str(tmp))
        finally:
            datasets.enable_progress_bars()
        stats = {
            "source_rows": len(rows) + len(skipped),
            "skipped": len(skipped),
            "skipped_examples": skipped[:20],
            "selected": len(chosen),
            **{k: len(v) for k, v in splits.items()},
        }
        (tmp / "stats.json").write_text(json.dumps(stats, indent=1))
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
