"""Text-to-SQL benchmarks as data sources: a Spider or BIRD folder on disk, `spider:PATH` / `bird:PATH`.

Nothing is downloaded: PATH is the unpacked release. Each question becomes one row,

    instruction  the question (BIRD: + "\\nHint: " + its evidence, unless evidence=False or empty)
    input        the schema of its database, rendered from the SQLite file (schema.py)
    response     the gold SQL
    db_id        the benchmark's database name
    db_path      the absolute path of that database, so evaluation can run queries on it

and the benchmark's own splits are kept: train = the train files, valid = dev, test = Spider's
test.json when the release has one (2023), else empty. BIRD's `difficulty` label is kept as
`bird_difficulty`, since `difficulty` is our word-count bucket (rows.py).

Layouts (as the official archives unpack):

    Spider  PATH/train_spider.json [+ train_others.json], dev.json, database/<db_id>/<db_id>.sqlite,
            optional test.json + test_database/<db_id>/<db_id>.sqlite; tables.json is not read
    BIRD    PATH/train/train.json + train/train_databases/<db_id>/<db_id>.sqlite,
            PATH/dev/dev.json + dev/dev_databases/<db_id>/<db_id>.sqlite (dev/ may be the
            release's dated folder, e.g. dev_20240627/)

Unlike a file source (files.py), a benchmark row that can't be used is an error, not a skip: a
missing key or database means the folder is not the release it claims to be, and silently
dropping dev questions would make scores incomparable with published ones.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

from sqltune.data import schema
from sqltune.data.files import file_rows
from sqltune.errors import DataError

log = logging.getLogger(__name__)

SPLITS = ("train", "valid", "test")
LAYOUTS = {
    "spider": "the Spider layout: tables.json, train_spider.json, dev.json, database/<db_id>/<db_id>.sqlite",
    "bird": "the BIRD layout: train/train.json, train/train_databases/<db_id>/<db_id>.sqlite, "
            "dev/dev.json, dev/dev_databases/<db_id>/<db_id>.sqlite",
}
SQL_KEY = {"spider": "query", "bird": "SQL"}  # the gold query's key in each benchmark's JSON
PROGRESS_MIN_DBS = 5  # a progress bar over databases once there are more than this


@dataclasses.dataclass(frozen=True)
class _Part:
    """One JSON file of questions and the folders its databases are looked up in, in order."""

    json_path: Path
    db_dirs: tuple[Path, ...]


def is_benchmark(source: str) -> bool:
    kind, sep, path = source.partition(":")
    return kind in LAYOUTS and bool(sep) and bool(path.strip())


def benchmark_splits(source: str, *, evidence: bool = True) -> dict[str, list[dict[str, Any]]]:
    """{"train", "valid", "test"} rows of a `spider:PATH` or `bird:PATH` folder (see the module doc).

    Raises:
        DataError: the folder lacks a file of its layout, a JSON file is unreadable, or a row lacks
            a key or its database; the message names the file and row.
    """
    if not is_benchmark(source):
        raise DataError(f"data.source '{source}': expected spider:PATH or bird:PATH")
    kind, _, raw = source.partition(":")
    root = Path(raw).expanduser()
    if not root.is_dir():
        raise DataError(f"{source}: no such folder '{root}'")
    parts = _spider_parts(source, root) if kind == "spider" else _bird_parts(source, root)

    # Check every row and find its database first, so a bad row fails before any rendering.
    entries: dict[str, list[tuple[dict[str, Any], Path]]] = {split: [] for split in SPLITS}
    first_use: dict[Path, str] = {}  # database -> the row that first named it, for error messages
    for split in SPLITS:
        for part in parts[split]:
            for i, entry in enumerate(file_rows(str(part.json_path)), 1):
                where = f"{part.json_path} row {i}"
                _check_entry(entry, kind, where)
                db_path = _find_db(part, entry["db_id"], where)
                first_use.setdefault(db_path, where)
                entries[split].append((entry, db_path))

    schemas = _render_all(first_use, kind)
    splits = {
        split: [_row(kind, entry, db_path, schemas[db_path], evidence) for entry, db_path in rows]
        for split, rows in entries.items()
    }
    log.info("%s: %s from %d databases", source, ", ".join(f"{k}={len(v)}" for k, v in splits.items()), len(schemas))
    return splits


# ---- layouts ----------------------------------------------------------------------------------


def _spider_parts(source: str, root: Path) -> dict[str, list[_Part]]:
    for required in ("train_spider.json", "dev.json", "database/"):
        if not (root / required).exists():
            raise DataError(f"{source}: no {required} (expected {LAYOUTS['spider']})")
    databases = (root / "database",)
    train = [_Part(root / name, databases) for name in ("train_spider.json", "train_others.json")
             if (root / name).is_file()]
    test = [_Part(root / "test.json", (root / "test_database", *databases))] if (root / "test.json").is_file() else []
    return {"train": train, "valid": [_Part(root / "dev.json", databases)], "test": test}


def _bird_parts(source: str, root: Path) -> dict[str, list[_Part]]:
    # dev/ in the layout above; the release unpacks to a dated dev_YYYYMMDD/; some put dev.json at the top
    dev_dirs = [root / "dev", *sorted(p for p in root.glob("dev_*") if p.is_dir()), root]
    dev = next((d for d in dev_dirs if (d / "dev.json").is_file()), None)
    if dev is None:
        raise DataError(f"{source}: no dev/dev.json (expected {LAYOUTS['bird']})")
    train = next((d for d in (root / "train", root) if (d / "train.json").is_file()), None)
    if train is None:
        raise DataError(f"{source}: no train/train.json (expected {LAYOUTS['bird']})")
    return {
        "train": [_Part(train / "train.json", _bird_db_dirs(train, "train"))],
        "valid": [_Part(dev / "dev.json", _bird_db_dirs(dev, "dev"))],
        "test": [],
    }


def _bird_db_dirs(folder: Path, split: str) -> tuple[Path, ...]:
    # unzipping the release's dev_databases.zip in place can nest the folder in itself
    return folder / f"{split}_databases", folder / f"{split}_databases" / f"{split}_databases"


# ---- rows -------------------------------------------------------------------------------------


def _check_entry(entry: Any, kind: str, where: str) -> None:
    needs = ("db_id", "question", SQL_KEY[kind])
    if not isinstance(entry, dict):
        raise DataError(f"{where}: expected an object with {', '.join(needs)}, got {type(entry).__name__}")
    for key in needs:
        value = entry.get(key)
        if value is None:
            raise DataError(f"{where}: missing '{key}' (a {kind} row has {', '.join(needs)})")
        if not isinstance(value, str):
            raise DataError(f"{where}: '{key}' must be text, got {type(value).__name__} {value!r:.40}")
        if not value.strip():
            raise DataError(f"{where}: empty '{key}'")


def _find_db(part: _Part, db_id: str, where: str) -> Path:
    candidates = [d / db_id / f"{db_id}.sqlite" for d in part.db_dirs]
    for path in candidates:
        if path.is_file():
            return path.resolve()
    raise DataError(f"{where}: database '{db_id}' not found at {' or '.join(map(str, candidates))}")


def _render_all(first_use: dict[Path, str], kind: str) -> dict[Path, str]:
    """Each database's schema text, rendered once however many questions share it."""
    from tqdm.auto import tqdm

    out = {}
    bar = tqdm(first_use, desc=f"{kind} schemas", unit="db", disable=len(first_use) <= PROGRESS_MIN_DBS)
    for db_path in bar:
        try:
            out[db_path] = schema.render(db_path)
        except DataError as e:
            raise DataError(f"{first_use[db_path]}: {e}") from None
    return out


def _row(kind: str, entry: dict[str, Any], db_path: Path, schema_text: str, evidence: bool) -> dict[str, Any]:
    instruction = entry["question"].strip()
    hint = entry.get("evidence")
    if evidence and isinstance(hint, str) and hint.strip():
        instruction += "\nHint: " + hint.strip()
    row = {
        "instruction": instruction,
        "input": schema_text,
        "response": entry[SQL_KEY[kind]].strip(),
        "db_id": entry["db_id"],
        "db_path": str(db_path),
    }
    if entry.get("difficulty") is not None:  # BIRD dev: simple / moderate / challenging
        row["bird_difficulty"] = str(entry["difficulty"])
    return row
