"""Rows of (instruction, input, response) -> train/valid/test splits per difficulty.

Sources: the built-in generator (`synthetic`, offline), a Hugging Face hub dataset name
(`Clinton/Text-to-sql-v1` on a cluster), local JSONL / JSON / CSV / Parquet files (a path or
glob, files.py), a benchmark folder (`spider:PATH`, `bird:PATH`, benchmarks.py), a text2sql-data
set (`text2sql-data:PATH`, text2sql_data.py), or a list of these mixed (`_mixed_parts`).

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

from sqltune.cache import cache_root
from sqltune.config import DataSettings, source_specs
from sqltune.data import synthetic, text2sql_data
from sqltune.data.benchmarks import benchmark_splits, is_benchmark
from sqltune.data.files import is_local, local_rows
from sqltune.data import rows as data_rows
from sqltune.data.rows import COLUMNS, difficulty, row_problem
from sqltune.errors import DataError
from sqltune.sql import dialect as sql_dialect

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


def read_rows(cfg: DataSettings, cache_dir: Path, source: str | None = None) -> tuple[list[dict[str, Any]], list[str]]:
    """All usable rows of one source (`source`, else `cfg.source`), in source order, and a line
    per skipped row."""
    source = cfg.source if source is None else source
    if not isinstance(source, str):
        raise DataError("data.source: read_rows takes one source; a list is split by load_splits")
    if source == "synthetic":
        return synthetic.generate(cfg.synthetic_rows, cfg.synthetic_seed, cache_dir / "synthetic-dbs"), []
    if text2sql_data.is_text2sql_data(source):
        return text2sql_data.read(source, cache_dir)
    if is_benchmark(source):
        parts = benchmark_splits(source, evidence=cfg.evidence)
        return [r for k in ("train", "valid", "test") for r in parts[k]], []
    if is_local(source):
        return local_rows(source, database=cfg.database)
    return _hub_rows(source)


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
    ds = _dataset(rows)
    train_rest = ds.train_test_split(train_size=0.8, seed=seed)
    valid_test = train_rest["test"].train_test_split(test_size=0.5, seed=seed)
    return datasets.DatasetDict(train=train_rest["train"], valid=valid_test["train"], test=valid_test["test"])


def split_by_db(rows: list[dict[str, Any]], seed: int = 123) -> datasets.DatasetDict:
    """Whole databases per split, 80/10/10 of the databases (at least one each), so validation
    and test measure schemas the model never saw. A database is a row's `db_id` (else `db_path`)."""
    return datasets.DatasetDict({k: _dataset(v) for k, v in _db_parts(rows, seed).items()})


def _db_parts(rows: list[dict[str, Any]], seed: int) -> dict[str, list[dict[str, Any]]]:
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
    parts = {"train": names[2 * n_held:], "valid": names[:n_held], "test": names[n_held:2 * n_held]}
    log.info("split by database: %s", "; ".join(f"{k} {', '.join(sorted(v))}" for k, v in parts.items() if k != "train"))
    return {k: [r for name in v for r in by_db[name]] for k, v in parts.items()}


def _own_splits(cfg: DataSettings, source: str, cache_dir: Path
                ) -> tuple[dict[str, list[dict[str, Any]]] | None, list[dict[str, Any]], list[str]]:
    """(the splits `source` brings, or None for a random split; all its rows; skipped lines)."""
    if is_benchmark(source):
        parts = benchmark_splits(source, evidence=cfg.evidence)
        return parts, [r for k in ("train", "valid", "test") for r in parts[k]], []
    rows, skipped = read_rows(cfg, cache_dir, source)
    if text2sql_data.is_text2sql_data(source) and cfg.split_by in ("question", "query"):
        return text2sql_data.splits(rows, cfg.split_by, cfg.fold), rows, skipped
    return None, rows, skipped


def _given_files(cfg: DataSettings) -> tuple[dict[str, list[dict[str, Any]]], list[str]]:
    out, skipped = {}, []
    for name in ("train", "valid", "test"):
        path = getattr(cfg, name)
        rows, bad = local_rows(path, f"data.{name}") if path else ([], [])
        out[name], skipped = rows, skipped + bad
    return out, skipped


def _weighted(rows: list[dict[str, Any]], weight: float, seed: int) -> list[dict[str, Any]]:
    """`rows` repeated `weight` times: whole copies, then a seeded sample for the fraction."""
    if weight == 1:
        return rows
    whole, frac = int(weight), weight - int(weight)
    extra = random.Random(seed).sample(rows, round(frac * len(rows))) if frac else []
    return rows * whole + extra


def _source_files(cfg: DataSettings) -> list[str]:
    """The local files the splits are read from, for the cache key."""
    patterns = [p for p in (cfg.train, cfg.valid, cfg.test) if p]
    for spec in ([] if patterns else source_specs(cfg)):
        if is_benchmark(spec.source):  # its question files; the databases don't change between downloads
            folder = os.path.expanduser(spec.source.partition(":")[2])
            patterns.append(os.path.join(folder, "**", "*.json"))
        elif text2sql_data.is_text2sql_data(spec.source):
            path = text2sql_data.json_path(spec.source)
            patterns += [str(path), str(path.parent / f"{path.stem}-schema.csv"), str(path.parent / f"{path.stem}-db*.sqlite")]
        elif spec.source != "synthetic" and is_local(spec.source):
            patterns.append(spec.source)
    return [p for pattern in patterns for p in sorted(glob.glob(os.path.expanduser(pattern), recursive=True))]


def _cache_key(cfg: DataSettings) -> str:
    fields = cfg.model_dump(exclude={"cache_dir", "max_train_samples", "max_eval_samples"})
    fields["files"] = [(p, os.path.getsize(p), os.path.getmtime(p)) for p in _source_files(cfg)]
    return hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()[:12]


def data_cache_dir(cfg: DataSettings) -> Path:
    return Path(cfg.cache_dir).expanduser() if cfg.cache_dir else cache_root() / "data"


def load_splits(cfg: DataSettings, dialect: str | None = None) -> datasets.DatasetDict:
    """Cached train/valid/test for `cfg`, built once by whichever process gets the lock first;
    with `dialect` (format.dialect) other than data.dialect, the gold queries transpiled to it."""
    write = dialect or cfg.dialect
    cache_dir = data_cache_dir(cfg)
    cache_dir.mkdir(parents=True, exist_ok=True)
    specs = source_specs(cfg)
    origin = cfg.train if cfg.train else (specs[0].source.replace(":", "-") + (f"+{len(specs) - 1}" if len(specs) > 1 else ""))
    name = f"{Path(origin).name.replace('*', 'x') or 'data'}-{cfg.subset}-{_cache_key(cfg)}"
    if write != cfg.dialect:
        name += f"-{write}"
    target = cache_dir / name
    with FileLock(str(cache_dir / f"{name}.lock")):
        if not (target / "stats.json").exists():
            _build(cfg, cache_dir, target, write)
    splits = datasets.load_from_disk(str(target))
    for k in ("valid", "test"):  # a split the source doesn't have: empty, with the same columns
        if k not in splits:
            splits[k] = datasets.Dataset.from_dict({c: [] for c in splits["train"].features},
                                                   features=splits["train"].features)
    stats = json.loads((target / "stats.json").read_text())
    log.info("data %s: %s", name, ", ".join(f"{k}={v}" for k, v in stats.items() if not k.endswith("_examples")))
    for k, limit in (("train", cfg.max_train_samples), ("valid", cfg.max_eval_samples)):
        if limit is not None and len(splits[k]) > limit:
            splits[k] = splits[k].select(range(limit))
    return splits


def _select_parts(parts: dict[str, list[dict[str, Any]]], subset: str, max_rows: int) -> dict[str, list[dict[str, Any]]]:
    return {k: select(parts.get(k, []), subset, max_rows) for k in ("train", "valid", "test")}


def _mixed_parts(cfg: DataSettings, cache_dir: Path
                 ) -> tuple[dict[str, list[dict[str, Any]]], list[dict[str, Any]], list[str]]:
    """Train/valid/test of every source of `data.source`, bucketed, capped and weighted each.

    One source is split its own way: a benchmark folder's or text2sql-data set's own splits
    (split_by question | query), else 80/10/10 of its rows or (db) of its databases. A list is
    split source by source the same way, then joined; except with split_by: db, where the rows
    of every source are pooled and whole databases split (leave databases out). A source with
    `split:` goes whole into that split."""
    out: dict[str, list[dict[str, Any]]] = {"train": [], "valid": [], "test": []}
    pooled: list[tuple[dict[str, Any], float]] = []  # split_by db over a list: (row, its source's weight)
    all_rows, skipped = [], []
    specs = source_specs(cfg)
    for spec in specs:
        given, rows, bad = _own_splits(cfg, spec.source, cache_dir)
        rows = on_database(rows, cfg.database)
        given = given and {k: on_database(part, cfg.database) for k, part in given.items()}
        all_rows += rows
        skipped += bad
        cap = spec.max_rows or cfg.max_rows
        if spec.split is not None:
            parts = {spec.split: select(rows, cfg.subset, cap)}
        elif cfg.split_by == "db" and len(specs) > 1:
            pooled += [(r, spec.weight) for r in select(rows, cfg.subset, cap)]
            continue
        elif given is not None:
            parts = _select_parts(given, cfg.subset, cap)
        else:
            chosen = select(rows, cfg.subset, cap)
            parts = _db_parts(chosen, cfg.split_seed) if cfg.split_by == "db" else \
                {k: list(v) for k, v in split(chosen, cfg.split_seed).items()}
        if len(specs) > 1:
            log.info("data source %s: %s", spec.source, ", ".join(f"{k}={len(v)}" for k, v in parts.items()))
        for k, v in parts.items():
            out[k] += _weighted(v, spec.weight, cfg.split_seed) if k == "train" else v
    if pooled:
        weight = {id(r): w for r, w in pooled}
        for k, v in _db_parts([r for r, _ in pooled], cfg.split_seed).items():
            if k == "train":  # each database's rows weighted as their source asks
                for w in sorted(set(weight.values())):
                    out[k] += _weighted([r for r in v if weight[id(r)] == w], w, cfg.split_seed)
            else:
                out[k] += v
    return out, all_rows, skipped


def on_database(rows: list[dict[str, Any]], database: str | None) -> list[dict[str, Any]]:
    """The rows on `database` (data.database), when set: `{db_id}` in it becomes each row's db_id
    (Spider copied to PostgreSQL by `sqltune copy-db`: one schema per database); without the
    placeholder, every row runs on that one database."""
    return [data_rows.on_database(r, database) for r in rows]


def _dataset(rows: list[dict[str, Any]]) -> datasets.Dataset:
    """A Dataset of rows that may differ in their extra keys (sources mixed): every key, None where
    a row lacks it (`from_list` would keep only the first row's keys)."""
    keys = list(dict.fromkeys(k for r in rows for k in r))
    return datasets.Dataset.from_list([{k: r.get(k) for k in keys} for r in rows])


def _build(cfg: DataSettings, cache_dir: Path, target: Path, write: str) -> None:
    if cfg.train is not None:
        parts, skipped = _given_files(cfg)
        parts = {k: on_database(part, cfg.database) for k, part in parts.items()}
        rows = [r for part in parts.values() for r in part]
        chosen_parts = _select_parts(parts, cfg.subset, cfg.max_rows)
    else:
        chosen_parts, rows, skipped = _mixed_parts(cfg, cache_dir)
    for k in ("train", "valid"):
        if not chosen_parts[k]:
            raise DataError(f"data: the {k} split has no {cfg.subset!r} rows; try data.subset: all")
    untranspiled: list[str] = []
    if write != cfg.dialect:
        for k, part in chosen_parts.items():
            chosen_parts[k], lost = sql_dialect.transpile_rows(part, cfg.dialect, write, k)
            untranspiled += lost
        if untranspiled:
            log.warning("data.dialect %s -> format.dialect %s: %d rows left out, their gold could not be transpiled, "
                        "e.g. %s", cfg.dialect, write, len(untranspiled), "; ".join(untranspiled[:3]))
    chosen = [r for part in chosen_parts.values() for r in part]
    # an empty split (no test file) is not saved: datasets can't read a zero-row split back
    splits = datasets.DatasetDict({k: _dataset(v) for k, v in chosen_parts.items() if v})
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
            **({"untranspiled": len(untranspiled), "untranspiled_examples": untranspiled[:20]} if write != cfg.dialect else {}),
            **{k: len(v) for k, v in splits.items()},
        }
        (tmp / "stats.json").write_text(json.dumps(stats, indent=1))
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
