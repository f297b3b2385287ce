"""Rows of (instruction, input, response) -> train/valid/test splits per difficulty.

Sources: the built-in generator (`synthetic`, offline), a Hugging Face hub dataset name
(`Clinton/Text-to-sql-v1` on a cluster), local JSONL / JSON / CSV / Parquet files (a path or
glob, files.py), or a benchmark folder (`spider:PATH`, `bird:PATH`, benchmarks.py).

Rows are bucketed by difficulty (rows.py, the reference's word counts), then the first `max_rows`
rows of the bucket in source order are split: 80/10/10 with `datasets.train_test_split(seed=123)`
as the reference does, or (`split_by: db`) 80/10/10 of the databases. A benchmark folder and
`data.train/valid/test` files bring their own splits, bucketed each. A row missing a column or
with an empty response is skipped and counted, never a crash; a file missing a whole column is an
error.

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
import random
import shutil
import tempfile
from pathlib import Path
from typing import Any

import datasets
from filelock import FileLock

from sqltune.config import DataConfig, cache_root
from sqltune.data.benchmarks import benchmark_splits, is_benchmark
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
    """Rows of one difficulty bucket (or all three), tagged with it, first `max_rows` in order.

    `all` also keeps rows longer than the reference's 800 words, as hard: a benchmark's big
    schemas (BIRD's) would otherwise vanish; the schema is pruned to fit later (prune.py)."""
    out = []
    for row in rows:
        d = difficulty(row, open_ended=subset == "all")
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


def split_by_db(rows: list[dict[str, Any]], seed: int = 123) -> datasets.DatasetDict:
    """Whole databases per split, 80/10/10 of the databases (at least one each), so validation
    and test measure schemas the model never saw. A database is a row's `db_id` (else `db_path`)."""
    by_db: dict[str, list[dict[str, Any]]] = {}
    for i, row in enumerate(rows):
        key = row.get("db_id") or row.get("db_path")
        if not key:
            raise DataError(f"data.split_by: db needs a db_id or db_path in every row; row {i + 1} has neither")
        by_db.setdefault(str(key), []).append(row)
    if len(by_db) < 3:
        raise DataError(f"data.split_by: db needs at least 3 databases to split, found {len(by_db)}")
    names = sorted(by_db)
    random.Random(seed).shuffle(names)
    n_held = max(1, round(0.1 * len(names)))
    parts = {"valid": names[:n_held], "test": names[n_held:2 * n_held], "train": names[2 * n_held:]}
    log.info("split by database: %s", "; ".join(f"{k} {', '.join(sorted(v))}" for k, v in parts.items() if k != "train"))
    return datasets.DatasetDict({k: datasets.Dataset.from_list([r for name in v for r in by_db[name]])
                                 for k, v in (("train", parts["train"]), ("valid", parts["valid"]), ("test", parts["test"]))})


def _given_splits(cfg: DataConfig, cache_dir: Path) -> tuple[dict[str, list[dict[str, Any]]], list[str]] | None:
    """The splits a benchmark folder or `data.train/valid/test` bring; None for a random split."""
    if is_benchmark(cfg.source):
        return benchmark_splits(cfg.source, evidence=cfg.evidence), []
    if cfg.train is None:
        return None
    out, skipped = {}, []
    for name in ("train", "valid", "test"):
        path = getattr(cfg, name)
        rows, bad = local_rows(path, f"data.{name}") if path else ([], [])
        out[name], skipped = rows, skipped + bad
    return out, skipped


def _source_files(cfg: DataConfig) -> list[str]:
    """The local files the splits are read from, for the cache key."""
    if is_benchmark(cfg.source):  # its question files; the databases don't change between downloads
        folder = os.path.expanduser(cfg.source.partition(":")[2])
        return sorted(glob.glob(os.path.join(folder, "**", "*.json"), recursive=True))
    patterns = [p for p in (cfg.train, cfg.valid, cfg.test) if p] or (
        [cfg.source] if cfg.source != "synthetic" and is_local(cfg.source) else [])
    return [p for pattern in patterns for p in sorted(glob.glob(os.path.expanduser(pattern)))]


def _cache_key(cfg: DataConfig) -> str:
    fields = cfg.model_dump(exclude={"cache_dir", "max_train_samples", "max_eval_samples"})
    fields["files"] = [(p, os.path.getsize(p), os.path.getmtime(p)) for p in _source_files(cfg)]
    return hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()[:12]


def data_cache_dir(cfg: DataConfig) -> Path:
    return Path(cfg.cache_dir).expanduser() if cfg.cache_dir else cache_root() / "data"


def load_splits(cfg: DataConfig) -> datasets.DatasetDict:
    """Cached train/valid/test for `cfg`, built once by whichever process gets the lock first."""
    cache_dir = data_cache_dir(cfg)
    cache_dir.mkdir(parents=True, exist_ok=True)
    origin = cfg.train if cfg.train else cfg.source.replace(":", "-")
    name = f"{Path(origin).name.replace('*', 'x') or 'data'}-{cfg.subset}-{_cache_key(cfg)}"
    target = cache_dir / name
    with FileLock(str(cache_dir / f"{name}.lock")):
        if not (target / "stats.json").exists():
            _build(cfg, cache_dir, target)
    splits = datasets.load_from_disk(str(target))
    for k in ("valid", "test"):  # a split the source doesn't have: empty, with the same columns
        if k not in splits:
            splits[k] = datasets.Dataset.from_dict({c: [] for c in splits["train"].features},
                                                   features=splits["train"].features)
    stats = json.loads((target / "stats.json").read_text())
    log.info("data %s: %s", name, ", ".join(f"{k}={v}" for k, v in stats.items() if k != "skipped_examples"))
    for k, limit in (("train", cfg.max_train_samples), ("valid", cfg.max_eval_samples)):
        if limit is not None and len(splits[k]) > limit:
            splits[k] = splits[k].select(range(limit))
    return splits


def _build(cfg: DataConfig, cache_dir: Path, target: Path) -> None:
    given = _given_splits(cfg, cache_dir)
    if given is not None:
        parts, skipped = given
        rows = [r for part in parts.values() for r in part]
        chosen_parts = {k: select(v, cfg.subset, cfg.max_rows) for k, v in parts.items()}
        for k in ("train", "valid"):
            if not chosen_parts[k]:
                raise DataError(f"data: the {k} split has no {cfg.subset!r} rows (of {len(parts[k])}); "
                                "try data.subset: all")
        chosen = [r for part in chosen_parts.values() for r in part]
        # an empty split (no test file) is not saved: datasets can't read a zero-row split back
        splits = datasets.DatasetDict({k: datasets.Dataset.from_list(v) for k, v in chosen_parts.items() if v})
    else:
        rows, skipped = read_rows(cfg, cache_dir)
        chosen = select(rows, cfg.subset, cfg.max_rows)
        splits = split_by_db(chosen, cfg.split_seed) if cfg.split_by == "db" else split(chosen, cfg.split_seed)
    if skipped:
        log.warning("skipped %d unusable rows, e.g. %s", len(skipped), "; ".join(skipped[:3]))
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
