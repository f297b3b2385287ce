"""The run folder: every file a run leaves on this machine is named, written and read here.

    <output_dir>/                     training_args.output_dir
        summary.json                  what `train` returns: final metrics, figures, hyperparameters
        metrics.jsonl                 every reported metric, one JSON line per (group, step)
        latest_checkpoint.json        the newest checkpoint's storage ID: running again resumes from it
        .sqltune.lock                 held by the process training here (its PID inside): one writer
        predictions/eval-step-N.jsonl every generated query of an evaluation, scored (evaluate.py)
        completions/rank-R.jsonl      a GRPO run's sampled completions with their rewards, per rank
        checkpoints/<uuid>/checkpoint-N/   the Core API's storage off-cluster (unless checkpoint_storage
                                      names another folder); each checkpoint-N/ holds sqltune_config.yaml
        runs/                         TensorBoard events, written by the HF Trainer
    <search folder>/                  a search's training_args.output_dir
        study.db                      the Optuna study
        trial-<k>/                    one run folder per trial

What a crash may leave, and what it may not. Every file a later run reads (the pointer, the summary,
each checkpoint's config copy and manifest, the storage index) is written whole or not at all: a
temporary file beside it, flushed and fsynced, then renamed over it. metrics.jsonl is appended to,
so a kill may tear its last line, which readers skip. A stored checkpoint counts only when its
manifest (manifest.py) matches every file; a resume checks the pointer's checkpoint and falls back
to the run's newest complete one in storage, and a torn pointer only costs that search. Not
guaranteed: the steps after the last complete checkpoint (they are trained again), and files the
Trainer or DeepSpeed write outside checkpoint-N/ (TensorBoard events).

A checkpoint's UUID is found from any working directory: every local run records its storage
folder in a small index (`$SQLTUNE_CACHE/checkpoint-storages.json`), and `find_checkpoint` looks
there, then below the current folder. Nothing here imports torch, transformers or determined:
`sqltune compare` reads run folders without them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import logging
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol

import yaml

from sqltune import manifest
from sqltune.atomic import write_atomic
from sqltune.cache import cache_root
from sqltune.config import Hyperparameters, build
from sqltune.errors import CheckpointDamaged, CheckpointNotFound, RunFolderBusy

log = logging.getLogger(__name__)

SUMMARY = "summary.json"
METRICS = "metrics.jsonl"
LATEST = "latest_checkpoint.json"
CONFIG_COPY = "sqltune_config.yaml"  # in every checkpoint-N/: the resolved hyperparameters
PREDICTIONS = "predictions"
COMPLETIONS = "completions"
STUDY_DB = "study.db"
STORAGE_INDEX = "checkpoint-storages.json"
LOCK = ".sqltune.lock"
STORED_METADATA = "metadata.json"  # what the Core API writes beside a stored checkpoint-N/
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

    def seal_checkpoint(self, checkpoint: Path, files: dict[str, dict[str, Any]]) -> None:
        """Then write its manifest of `files` (manifest.entries, every node's), the last file."""

    def record_checkpoint(self, storage_id: str, step: int, name: str) -> None:
        """A checkpoint stored under `storage_id`: the one the next run resumes from."""


@dataclasses.dataclass
class RunFolder:
    """One run's folder. Only the chief process writes to it (but for each rank's own completions file)."""

    path: Path
    hparams: dict[str, Any] | None = None  # copied into each checkpoint as sqltune_config.yaml
    run_id: str | None = None  # names this run's checkpoints in storage, across resumes; new after --fresh

    @contextlib.contextmanager
    def owned(self) -> Iterator[None]:
        """Hold the run folder for this process: an advisory lock (flock) that the kernel drops
        when the process ends, however it ends, so a kill -9 leaves no stale lock.

        Raises:
            RunFolderBusy: another live process holds it; the message names that process.
        """
        self.path.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise RunFolderBusy(f"training_args.output_dir {self.path} is in use by {_holder(fd)}: wait for it "
                                    "to end or stop it, or give this run another output_dir") from None
            os.ftruncate(fd, 0)
            os.write(fd, json.dumps({"pid": os.getpid(), "started": time.strftime("%Y-%m-%d %H:%M:%S"),
                                     "command": _command()}).encode())
            yield
        finally:
            os.close(fd)  # releases the lock; the file stays (removing it would race a new owner)

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

    def seal_checkpoint(self, checkpoint: Path, files: dict[str, dict[str, Any]]) -> None:
        manifest.write(checkpoint, files)

    def record_checkpoint(self, storage_id: str, step: int, name: str) -> None:
        pointer = {"storage_id": storage_id, "steps_completed": step, "checkpoint": name, "run_id": self.run_id}
        write_atomic(self.path / LATEST, json.dumps(pointer))

    def pointer(self) -> dict[str, Any] | None:
        """The checkpoint pointer; None when there is none.

        Raises:
            ValueError: it is there but unreadable (torn by a crash or a bad disk).
        """
        path = self.path / LATEST
        if not path.exists():
            return None
        try:
            pointer = json.loads(path.read_text())
            if isinstance(pointer, dict) and isinstance(pointer.get("storage_id"), str):
                return pointer
        except (OSError, ValueError):
            pass
        raise ValueError(f"{path} is unreadable")

    def latest_checkpoint(self) -> str | None:
        """The pointer's storage ID; None when there is none or it is torn."""
        try:
            return (self.pointer() or {}).get("storage_id")
        except ValueError:
            return None

    def resume_candidates(self, storage: Path) -> list[str]:
        """The checkpoints to resume from, best first: the pointer's, then this run's other stored
        checkpoints, newest first (the caller takes the first complete one). Sets `run_id`: the
        pointer's, or with a torn pointer that of the newest checkpoint stored from this folder;
        a new one when the folder has no checkpoint yet."""
        stored = stored_checkpoints(storage, self.path)
        try:
            pointer = self.pointer()
        except ValueError as e:
            log.warning("%s: %s", e, f"taking the newest complete checkpoint in {storage}" if stored
                        else f"and {storage} holds no checkpoint of this run folder: starting from scratch")
            pointer = {"run_id": stored[0].get("run_id")} if stored else None
        if pointer is None:
            self.run_id = uuid.uuid4().hex
            return []
        self.run_id = pointer.get("run_id")
        first = [pointer["storage_id"]] if "storage_id" in pointer else []
        return first + [s["storage_id"] for s in stored if s.get("run_id") == self.run_id and s["storage_id"] not in first]

    # -- summary ------------------------------------------------------------------------------

    def write_summary(self, summary: dict[str, Any]) -> None:
        write_atomic(self.path / SUMMARY, json.dumps(summary, indent=1, default=str))

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
        write_atomic(path, "".join(json.dumps(row) + "\n" for row in rows))


def _command() -> str:
    """This process's command line as the user typed it (`sqltune train ...`, not `.../__main__.py train ...`)."""
    head = "sqltune" if sys.argv and sys.argv[0].endswith(("__main__.py", "sqltune")) else sys.argv[0] if sys.argv else "python"
    return " ".join([head, *sys.argv[1:]])[:500]


def _holder(fd: int) -> str:
    """Who holds a run folder's lock, from what it wrote into the lock file."""
    try:
        holder = json.loads(os.pread(fd, 4096, 0))
        return f"process {holder['pid']} (`{holder['command']}`, since {holder['started']})"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"


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
    write_atomic(index, json.dumps([str(p) for p in kept[:MAX_INDEXED]], indent=0))


def stored_checkpoints(storage: Path, run_path: Path) -> list[dict[str, Any]]:
    """The checkpoints stored in `storage` from the run folder `run_path`, newest first, each as its
    Core API metadata (storage_id, steps_completed, run_id, stored_at) read from `metadata.json`.
    Entries without our metadata (other runs sharing a storage, stores cut short) are left out."""
    found = []
    own = str(run_path.resolve())
    for meta in storage.glob(f"*/{STORED_METADATA}") if storage.is_dir() else []:
        try:
            data = json.loads(meta.read_text())
            if data.get("run_folder") == own:
                found.append({**data, "storage_id": meta.parent.name})
        except (OSError, ValueError, AttributeError):
            continue
    return sorted(found, key=lambda d: (d.get("stored_at") or 0, d.get("steps_completed") or 0), reverse=True)


def find_checkpoint(ref: str, search_root: Path = Path(".")) -> Path | None:
    """A local folder for `ref`: the path itself (a run folder stands for its latest checkpoint),
    or a checkpoint UUID in a known storage or in `**/checkpoints/` below `search_root`. None when
    this machine has no such thing."""
    path = Path(ref).expanduser()
    if (path / LATEST).is_file():
        run = RunFolder(path)
        if run.latest_checkpoint() is not None:  # the pointer's, damaged or not (checked by the caller)
            return find_checkpoint(run.latest_checkpoint(), path)
        for storage_id in run.resume_candidates(path / "checkpoints"):  # a torn pointer: the newest complete
            found = find_checkpoint(storage_id, path)
            inner = hf_checkpoint(found) if found else None
            if inner is not None and manifest.problem(inner) is None:
                return found
        return None
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
    if damage := manifest.problem(inner):
        raise CheckpointDamaged(f"{field}: checkpoint {ref} is incomplete or damaged: {damage}")
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
    write_atomic(checkpoint / CONFIG_COPY, yaml.safe_dump(hparams, sort_keys=False))
