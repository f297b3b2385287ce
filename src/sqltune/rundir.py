"""The run folder: every file a run leaves on this machine is named, written and read here.

    <output_dir>/                     training_args.output_dir
        summary.json                  what `train` returns: final metrics, figures, hyperparameters
        metrics.jsonl                 every reported metric, one JSON line per (group, step)
        latest_checkpoint.json        the newest checkpoint's storage ID: running again resumes from it
        predictions/eval-step-N.jsonl every generated query of an evaluation, scored (evaluate.py)
        completions/rank-R.jsonl      a GRPO run's sampled completions with their rewards, per rank
        checkpoints/<uuid>/checkpoint-N/   the Core API's storage off-cluster (unless checkpoint_storage
                                      names another folder); each checkpoint-N/ holds sqltune_config.yaml
        runs/                         TensorBoard events, written by the HF Trainer
    <search folder>/                  a search's training_args.output_dir
        study.db                      the Optuna study
        trial-<k>/                    one run folder per trial

A checkpoint's UUID is found from any working directory: every local run records its storage
folder in a small index (`$SQLTUNE_CACHE/checkpoint-storages.json`), and `find_checkpoint` looks
there, then below the current folder. Nothing here imports torch, transformers or determined:
`sqltune compare` reads run folders without them.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Any, Callable, Protocol

import yaml

from sqltune.cache import cache_root
from sqltune.config import Hyperparameters, build
from sqltune.errors import CheckpointNotFound

SUMMARY = "summary.json"
METRICS = "metrics.jsonl"
LATEST = "latest_checkpoint.json"
CONFIG_COPY = "sqltune_config.yaml"  # in every checkpoint-N/: the resolved hyperparameters
PREDICTIONS = "predictions"
COMPLETIONS = "completions"
STUDY_DB = "study.db"
STORAGE_INDEX = "checkpoint-storages.json"
MAX_INDEXED = 200  # storages remembered, newest first


class Results(Protocol):
    """Where a run's measurements go. Evaluation, the reward and the Core API callback hand what
    they measured to one of these and write no file themselves; the run folder is the one we have."""

    def append_metrics(self, group: str, step: int, metrics: dict[str, float]) -> None:
        """Every reported metric of an evaluation or a logging step (`group`: training, validation)."""

    def write_predictions(self, prefix: str, step: int, rows: list[dict[str, Any]]) -> None:
        """An evaluation's per-row generated SQL, scored (`prefix` is the Trainer's, e.g. eval)."""

    def log_completions(self, rank: int, records: list[dict[str, Any]]) -> None:
        """A GRPO batch's sampled completions and their rewards, from one rank."""

    def stamp_checkpoint(self, checkpoint: Path) -> None:
        """A checkpoint folder about to be stored: add what is needed to load it."""

    def record_checkpoint(self, storage_id: str, step: int, name: str) -> None:
        """A checkpoint stored under `storage_id`: the one the next run resumes from."""


@dataclasses.dataclass
class RunFolder:
    """One run's folder. Only the chief process writes to it (but for each rank's own completions file)."""

    path: Path
    hparams: dict[str, Any] | None = None  # copied into each checkpoint as sqltune_config.yaml

    def clear(self) -> None:
        """Forget an earlier run here (`train --fresh`): its metrics, summary and checkpoint pointer."""
        for name in (METRICS, LATEST, SUMMARY):
            (self.path / name).unlink(missing_ok=True)

    # -- metrics ------------------------------------------------------------------------------

    def append_metrics(self, group: str, step: int, metrics: dict[str, float]) -> None:
        with open(self.path / METRICS, "a") as f:
            f.write(json.dumps({"group": group, "step": step, "time": time.time(), **metrics}) + "\n")

    def curves(self) -> dict[str, dict[int, dict[str, float]]]:
        """metrics.jsonl by group and step; a step written twice (after a resume) keeps its last line."""
        curves: dict[str, dict[int, dict[str, float]]] = {"training": {}, "validation": {}}
        path = self.path / METRICS
        for line in path.read_text().splitlines() if path.exists() else []:
            try:
                row = json.loads(line)
                group, step = curves[row.pop("group")], int(row.pop("step"))
            except (ValueError, KeyError, TypeError, AttributeError):
                continue  # a torn last line of a killed run, or another tool's line
            group[step] = {k: v for k, v in row.items() if is_number(v) and k not in ("time",)}
        return curves

    # -- checkpoints --------------------------------------------------------------------------

    def stamp_checkpoint(self, checkpoint: Path) -> None:
        """Write the resolved hyperparameters into an HF `checkpoint-N/` before it is uploaded."""
        if self.hparams is not None:
            write_config_copy(checkpoint, self.hparams)

    def record_checkpoint(self, storage_id: str, step: int, name: str) -> None:
        pointer = {"storage_id": storage_id, "steps_completed": step, "checkpoint": name}
        (self.path / LATEST).write_text(json.dumps(pointer))

    def latest_checkpoint(self) -> str | None:
        pointer = self.path / LATEST
        return json.loads(pointer.read_text())["storage_id"] if pointer.exists() else None

    # -- summary ------------------------------------------------------------------------------

    def write_summary(self, summary: dict[str, Any]) -> None:
        (self.path / SUMMARY).write_text(json.dumps(summary, indent=1, default=str))

    def read_summary(self) -> dict[str, Any]:
        """The summary; raises OSError or ValueError (incl. JSON errors) when missing or torn."""
        return json.loads((self.path / SUMMARY).read_text())

    def has_summary(self) -> bool:
        return (self.path / SUMMARY).exists()

    def has_metrics(self) -> bool:
        return (self.path / METRICS).exists()

    def log_completions(self, rank: int, records: list[dict[str, Any]]) -> None:
        """Append a GRPO batch's sampled completions and rewards (every rank writes its own file)."""
        folder = self.path / COMPLETIONS
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / f"rank-{rank}.jsonl", "a") as f:
            f.writelines(json.dumps(r) + "\n" for r in records)

    def write_predictions(self, prefix: str, step: int, rows: list[dict[str, Any]]) -> None:
        """An evaluation's per-row generated SQL, scored (`prefix` is the Trainer's, e.g. eval)."""
        path = self.path / PREDICTIONS / f"{prefix}-step-{step}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w") as f:
            f.writelines(json.dumps(row) + "\n" for row in rows)


def is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def is_run_folder(path: Path) -> bool:
    return (path / SUMMARY).exists() or (path / METRICS).exists()


def is_search_folder(path: Path) -> bool:
    return (path / STUDY_DB).exists()


def study_url(folder: Path) -> str:
    """The Optuna storage URL of a search folder (what optuna-dashboard takes)."""
    return f"sqlite:///{folder.resolve() / STUDY_DB}"


# ---- checkpoint storage and lookup ------------------------------------------------------------


def storage_dir(checkpoint_storage: dict[str, Any] | None, output_dir: str | Path) -> Path:
    """Where checkpoints go off-cluster: the YAML's shared_fs or directory storage, else
    `<output_dir>/checkpoints`. On a cluster the master's storage is used and this is not asked."""
    cs = checkpoint_storage or {}
    if cs.get("type") == "shared_fs" and cs.get("host_path"):
        return Path(cs["host_path"]).expanduser() / cs.get("storage_path", "")
    if cs.get("type") == "directory" and cs.get("container_path"):
        return Path(cs["container_path"]).expanduser()
    return Path(output_dir) / "checkpoints"


def _index_path() -> Path:
    return cache_root() / STORAGE_INDEX


def known_storages() -> list[Path]:
    """Storage folders that local runs used, newest first (an unreadable index counts as empty)."""
    try:
        return [Path(p) for p in json.loads(_index_path().read_text())]
    except (OSError, ValueError, TypeError):
        return []


def remember_storage(storage: Path) -> None:
    """Add a storage folder to the index (atomically: concurrent runs may race; the last wins)."""
    storage = storage.resolve()
    kept = [storage] + [p for p in known_storages() if p != storage and p.exists()]
    index = _index_path()
    index.parent.mkdir(parents=True, exist_ok=True)
    tmp = index.with_name(f".{index.name}.{os.getpid()}")
    tmp.write_text(json.dumps([str(p) for p in kept[:MAX_INDEXED]], indent=0))
    os.replace(tmp, index)


def find_checkpoint(ref: str, search_root: Path = Path(".")) -> Path | None:
    """A local folder for `ref`: the path itself (a run folder stands for its latest checkpoint),
    or a checkpoint UUID in a known storage or in `**/checkpoints/` below `search_root`. None when
    this machine has no such thing."""
    path = Path(ref).expanduser()
    if (path / LATEST).is_file():
        return find_checkpoint(RunFolder(path).latest_checkpoint() or "", path)
    if path.exists():
        return path
    if "/" in ref or not ref:
        return None
    for storage in known_storages():
        if (storage / ref).is_dir():
            return storage / ref
    return next(iter(sorted(search_root.glob(f"**/checkpoints/{ref}"))), None)


def checkpoint_folder(ref: str, field: str, download: Callable[[str], Path] | None = None) -> Path:
    """The HF `checkpoint-N/` that `ref` names: a folder (a checkpoint-N, a stored checkpoint
    holding one, or a run folder: its latest checkpoint), the UUID of a checkpoint stored on this machine (from any working directory), or,
    with DET_MASTER set and a `download`, one on the cluster. `field` names it in the error."""
    folder = find_checkpoint(ref)
    if folder is None and download is not None and os.environ.get("DET_MASTER"):
        folder = download(ref)
    if folder is None and (Path(ref).expanduser() / LATEST).is_file():
        raise CheckpointNotFound(f"{field}: the run folder '{ref}' names its latest checkpoint "
                                 f"{RunFolder(Path(ref).expanduser()).latest_checkpoint()}, which is not on this machine")
    if folder is None:
        raise CheckpointNotFound(
            f"{field}: '{ref}' is neither a folder nor the UUID of a checkpoint stored on this machine "
            "(runs here record their storage in $SQLTUNE_CACHE; set DET_MASTER to fetch one from a cluster)")
    inner = hf_checkpoint(folder)
    if inner is None:
        raise CheckpointNotFound(f"{field}: {folder} holds no checkpoint-N folder")
    return inner


def hf_checkpoint(folder: Path) -> Path | None:
    """The HF `checkpoint-N/` to load from a folder: itself when it holds our config copy, else its
    highest-numbered `checkpoint-N/` (a stored checkpoint holds exactly one); None if neither."""
    if (folder / CONFIG_COPY).exists():
        return folder
    steps = [(int(p.name.split("-")[1]), p) for p in folder.glob("checkpoint-*")
             if p.is_dir() and p.name.split("-")[1].isdigit()]
    return max(steps)[1] if steps else None


def read_config_copy(checkpoint: Path) -> dict[str, Any] | None:
    """The hyperparameters a checkpoint was trained with; None when it has no config copy.

    A copy written before `format.layout` existed (every copy names it since) was trained on the
    reference layout, which was then the only one: it is read as such, not as today's default."""
    path = checkpoint / CONFIG_COPY
    if not path.is_file():
        return None
    saved = yaml.safe_load(path.read_text())
    if isinstance(saved, dict):
        saved["format"] = {"layout": "reference", **(saved.get("format") or {})}
    return saved


def checkpoint_hparams(checkpoint: Path) -> Hyperparameters:
    """The hyperparameters a checkpoint folder was trained with, checked as any config is.

    Raises:
        CheckpointNotFound: the folder has no config copy (not written by sqltune).
    """
    saved = read_config_copy(checkpoint)
    if saved is None:
        raise CheckpointNotFound(f"--checkpoint: {checkpoint} has no {CONFIG_COPY} (not written by sqltune?)")
    return build({"hyperparameters": saved}, path=checkpoint / CONFIG_COPY).hparams


def write_config_copy(checkpoint: Path, hparams: dict[str, Any]) -> None:
    (checkpoint / CONFIG_COPY).write_text(yaml.safe_dump(hparams, sort_keys=False))
