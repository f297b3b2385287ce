"""Everything that touches Determined: the Core API context, the trial's info, and our callback.

No other module imports `determined`, and this one uses its public API only. The same code runs on
a cluster and off it, as the Core API tutorials intend: on a cluster the ClusterInfo (read once)
gives the trial's hyperparameters and its latest checkpoint; off it `det.core.init()` returns
working dummy contexts (metrics are logged, checkpoints go to a local folder), fed the YAML's
hyperparameters and the run folder's record of its latest checkpoint. What lands in the run
folder (metrics lines, the checkpoint pointer, the config copy) is rundir.py's business: the
callback hands it over.

Why not `determined.transformers.DetCallback` (0.38.1): with transformers 5 its resume reads the
removed `overwrite_output_dir`, `adaptive_asha` crashes on an unset `required_metrics`, it forces a
final evaluation, and the upstream example never passes `resume_from_checkpoint` to `train()`.
`CoreCallback` below keeps its good parts (report from the chief once per step, sharded uploads of
`checkpoint-N/`, preemption at a step boundary) and fixes those.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import math
import os
import shutil
import signal
import time
import uuid
from pathlib import Path
from typing import Any, Iterator

import determined as det
import transformers

from sqltune import manifest, rundir
from sqltune.errors import CheckpointNotFound, CheckpointStoreFailed, ConfigError, MasterUnreachable

log = logging.getLogger(__name__)

SPEED_SUFFIXES = ("_runtime", "_per_second", "_compilation_time", "_preparation_time")


@dataclasses.dataclass
class Trial:
    """What the platform tells a trial at start-up."""

    hparams: dict[str, Any] | None  # None off-cluster: the YAML's are used
    latest_checkpoint: str | None
    trial_id: int | None
    searcher: dict[str, Any]
    on_cluster: bool
    fallbacks: list[str] = dataclasses.field(default_factory=list)  # older checkpoints of this run, newest first
    run_id: str = dataclasses.field(default_factory=lambda: uuid.uuid4().hex)  # names the run's stored checkpoints


@functools.cache
def cluster_info() -> det.ClusterInfo | None:
    """Determined's ClusterInfo, read once per process; None off-cluster."""
    return det.get_cluster_info()


def cluster_trial() -> Trial | None:
    info = cluster_info()
    if info is None or info.task_type != "TRIAL":
        return None
    return Trial(
        hparams=info.trial.hparams,
        latest_checkpoint=info.latest_checkpoint,
        trial_id=info.trial.trial_id,
        searcher=_experiment_searcher(info.trial.experiment_id),
        on_cluster=True,
        run_id=f"trial-{info.trial.trial_id}",
    )


def _experiment_searcher(experiment_id: int) -> dict[str, Any]:
    """The experiment's `searcher:` block, through the SDK (inside a task it logs in with the
    task's token). ClusterInfo exposes only `hparams` and `data` publicly; its `_config` is
    private "because it's not a stable API". Without the master's answer the start-up checks of
    the searcher against training_args are skipped, with a warning; training goes on."""
    from determined.experimental import client

    try:
        return (client.get_experiment(experiment_id).config or {}).get("searcher") or {}
    except Exception as e:  # noqa: BLE001 - the checks are a courtesy; the master's own still apply
        log.warning("could not read experiment %d's searcher from the master (%s: %s): searcher checks skipped",
                    experiment_id, type(e).__name__, e)
        return {}


def local_trial(raw_config: dict[str, Any], run: rundir.RunFolder, fresh: bool) -> Trial:
    """Off-cluster, the run folder says what to resume from: its pointer's checkpoint, then its
    other stored ones, newest first (a torn pointer is survived: rundir.resume_candidates)."""
    searcher = raw_config.get("searcher", {})
    if fresh:
        return Trial(None, None, None, searcher, on_cluster=False)
    candidates = run.resume_candidates(rundir.storage_dir(raw_config.get("checkpoint_storage"), run.path))
    return Trial(None, candidates[0] if candidates else None, None, searcher, on_cluster=False,
                 fallbacks=candidates[1:], run_id=run.run_id or uuid.uuid4().hex)


def distributed_context(use_deepspeed: bool) -> det.core.DistributedContext | None:
    """From DeepSpeed's launcher environment or torchrun's; None for a single process."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    ports = {}
    if cluster_info() is None and "MASTER_PORT" in os.environ:
        # Off-cluster, two runs on one host must not share Determined's fixed zmq ports; the
        # launcher already gave each run its own MASTER_PORT, so derive ours from it.
        base = int(os.environ["MASTER_PORT"])
        ports = {"pub_port": base + 1, "pull_port": base + 2}
    if use_deepspeed and "LOCAL_SIZE" in os.environ:
        env = {"LOCAL_SIZE": "LOCAL_SIZE", "CROSS_RANK": "CROSS_RANK", "CROSS_SIZE": "CROSS_SIZE"}
    else:
        env = {"LOCAL_SIZE": "LOCAL_WORLD_SIZE", "CROSS_RANK": "GROUP_RANK", "CROSS_SIZE": "GROUP_WORLD_SIZE"}
    missing = [v for v in ("RANK", "LOCAL_RANK", *env.values()) if v not in os.environ]
    if missing:
        raise RuntimeError(f"launched with WORLD_SIZE>1 but {', '.join(missing)} unset: use torchrun or deepspeed")
    return det.core.DistributedContext(
        rank=int(os.environ["RANK"]),
        size=int(os.environ["WORLD_SIZE"]),
        local_rank=int(os.environ["LOCAL_RANK"]),
        local_size=int(os.environ[env["LOCAL_SIZE"]]),
        cross_rank=int(os.environ[env["CROSS_RANK"]]),
        cross_size=int(os.environ[env["CROSS_SIZE"]]),
        chief_ip=os.environ.get("DET_CHIEF_IP") or os.environ.get("MASTER_ADDR"),
        **ports,
    )


def init(distributed: det.core.DistributedContext | None, storage: Path | None) -> det.core.Context:
    """`det.core.init()`; off-cluster, checkpoints go to the folder `storage` (handed to the Core
    API as a string, the form its off-cluster mode accepts for local storage). On a cluster the
    experiment's checkpoint storage is used and `storage` must be None."""
    if cluster_info() is not None:
        return det.core.init(distributed=distributed)
    assert storage is not None, "off-cluster, checkpoints need a local storage folder"
    storage.mkdir(parents=True, exist_ok=True)
    return det.core.init(distributed=distributed, checkpoint_storage=str(storage))


def tensorboard_dir(core: det.core.Context) -> str | None:
    """On a cluster, where Determined's TensorBoard picks events up (HF writes there via env)."""
    if cluster_info() is None:
        return None
    return str(core.train.get_tensorboard_path())


@contextlib.contextmanager
def restore(core: det.core.Context, storage_id: str) -> Iterator[Path]:
    """The HF `checkpoint-N` folder inside a stored checkpoint (downloaded if the storage needs it)."""
    with _gone_as_ours(storage_id), core.checkpoint.restore_path(storage_id) as path:
        ckpt = rundir.hf_checkpoint(Path(path))
        if ckpt is None:
            raise CheckpointNotFound(f"checkpoint {storage_id} at {path} holds no checkpoint-N folder")
        yield ckpt


@contextlib.contextmanager
def _gone_as_ours(storage_id: str) -> Iterator[None]:
    try:
        yield
    except det.errors.CheckpointNotFound as e:
        raise CheckpointNotFound(f"checkpoint {storage_id} is gone from storage ({e})") from None


def damage(core: det.core.Context, ckpt: Path) -> str | None:
    """What is wrong with a restored checkpoint (manifest.problem), None when it is complete; the
    same answer on every rank (each node's local chief checks what it was handed)."""
    found = manifest.problem(ckpt) if core.distributed.local_rank == 0 else None
    if core.distributed.size > 1:
        found = next((p for p in core.distributed.allgather(found) if p), None)
    return found


def check_searcher(searcher: dict[str, Any], args: transformers.TrainingArguments) -> None:
    """Refuse a searcher that disagrees with the training length, naming both sides."""
    if "max_length" in searcher:
        raise ConfigError([
            "searcher.max_length is deprecated on Determined 0.38 and ignored by this trial: remove it; "
            "training length comes from training_args.max_steps"
        ])
    if searcher.get("name") in ("adaptive_asha", "async_halving"):
        unit, length = searcher.get("time_metric"), searcher.get("max_time")
        if unit == "batches" and length != args.max_steps:
            raise ConfigError([
                f"searcher.max_time ({length} batches) must equal training_args.max_steps ({args.max_steps})"
            ])
        if unit not in ("batches", None):
            raise ConfigError([f"searcher.time_metric must be 'batches' for this trial, got {unit!r}"])


class CoreCallback(transformers.TrainerCallback):
    """Reports metrics and progress, uploads checkpoints, honours preemption."""

    def __init__(self, core: det.core.Context, *, trial: Trial, results: rundir.Results,
                 storage: Path | None = None, run_folder: Path | None = None) -> None:
        self.core = core
        self.trial = trial
        self.results = results  # the chief hands it every metric line and checkpoint (the run folder)
        self.storage = storage  # off-cluster: the local checkpoint storage (None on a cluster)
        self.run_folder = run_folder
        self.searcher_metric = trial.searcher.get("metric")
        self.last_reported: dict[str, int] = {}
        self.last_progress = -1
        self.preempted = False
        self.latest_storage_id: str | None = None
        self.last_validation: dict[str, float] = {}
        self._signalled = False
        self._old_handlers: dict[int, Any] = {}

    def on_train_begin(self, args, state, control, **kwargs):  # noqa: ANN001
        if not self.trial.on_cluster:
            # Off-cluster, Ctrl-C or SIGTERM stops at the next step boundary with a checkpoint.
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._old_handlers[sig] = signal.signal(sig, self._on_signal)

    def on_train_end(self, args, state, control, **kwargs):  # noqa: ANN001
        for sig, handler in self._old_handlers.items():
            signal.signal(sig, handler)
        self._old_handlers.clear()

    def _on_signal(self, signum: int, frame: Any) -> None:
        if self._signalled:  # second Ctrl-C: stop now
            raise KeyboardInterrupt
        log.warning("signal %d: saving a checkpoint at the next step, then stopping (again to abort)", signum)
        self._signalled = True

    # -- metrics ---------------------------------------------------------------------------------

    def on_log(self, args, state, control, logs=None, **kwargs):  # noqa: ANN001
        if not logs:
            return
        group = "validation" if any(k.startswith("eval_") for k in logs) else "training"
        if group == "training" and not any(k in logs for k in ("loss", "train_loss")):
            return
        metrics = {
            k: float(v)
            for k, v in logs.items()
            if isinstance(v, (int, float)) and k != "epoch" and not k.endswith(SPEED_SUFFIXES)
        }
        metrics = {k: v for k, v in metrics.items() if math.isfinite(v)}
        metrics["batches"] = state.global_step
        metrics["epochs"] = float(state.epoch or 0.0)
        if self.last_reported.get(group) == state.global_step and group == "training":
            return
        self.last_reported[group] = state.global_step
        if group == "validation":
            self.last_validation = metrics  # stored with the next checkpoint
        if group == "validation" and self.searcher_metric and self.searcher_metric not in metrics:
            # every rank holds the same eval metrics, so every rank raises: no rank left waiting
            raise ConfigError([
                f"searcher.metric '{self.searcher_metric}' is not among the validation metrics "
                f"({', '.join(sorted(metrics))}); the searcher could not rank this trial"
            ])
        if not state.is_world_process_zero:
            return
        self.core.train.report_metrics(group=group, steps_completed=state.global_step, metrics=metrics)
        self.results.append_metrics(group, state.global_step, metrics)

    # -- progress and preemption -----------------------------------------------------------------

    def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001
        if state.is_world_process_zero and state.max_steps > 0:
            percent = int(100 * state.global_step / state.max_steps)
            if percent > self.last_progress:
                self.last_progress = percent
                self.core.train.report_progress(state.global_step / state.max_steps)
        # Collective on every rank: the chief decides, everyone stops at the same step.
        preempt = self.core.preempt.should_preempt()
        if self.core.distributed.size > 1:
            preempt = self.core.distributed.broadcast(preempt or self._signalled)
        else:
            preempt = preempt or self._signalled
        if preempt:
            log.warning("preemption requested: saving checkpoint at step %d and stopping", state.global_step)
            self.preempted = True
            control.should_save = True
            control.should_training_stop = True
        return control

    # -- checkpoints -----------------------------------------------------------------------------

    def on_save(self, args, state, control, **kwargs):  # noqa: ANN001
        name = f"checkpoint-{state.global_step}"
        local = Path(args.output_dir) / name
        self._seal(local, state.is_world_process_zero)
        metadata = {"steps_completed": state.global_step, "format": "huggingface", "checkpoint": name}
        if state.is_world_process_zero:  # the Core API merges every rank's metadata: these are the chief's
            metadata.update(run_id=self.trial.run_id, stored_at=time.time())
            if self.run_folder is not None:
                metadata["run_folder"] = str(self.run_folder.resolve())  # rundir.stored_checkpoints finds them by it
        if self.trial.trial_id is not None:
            metadata["trial_id"] = self.trial.trial_id
        if self.last_validation:
            metadata["validation"] = self.last_validation
        before = set(os.listdir(self.storage)) if self.storage is not None and self.storage.is_dir() else set()
        free = shutil.disk_usage(self.storage).free if self.storage is not None and self.storage.is_dir() else None
        try:
            storage_id = self.core.checkpoint.upload(
                args.output_dir, metadata=metadata, shard=True, selector=lambda p: p.startswith(name + "/")
            )
        except OSError as e:  # shutil.Error too: no space, permission, I/O error
            raise self._store_failed(e, local, before, free) from None
        self.latest_storage_id = storage_id
        # Kept once per disk: the upload has returned on every rank (it ends in an allgather), so
        # the Trainer's local copy goes; resume restores from storage. For a 7B full fine-tune
        # with ZeRO optimizer state the two copies would double hundreds of GB. The Trainer's
        # `load_best_model_at_end` reads the local folders back, so with it they stay.
        if not args.load_best_model_at_end and self.core.distributed.local_rank == 0:
            shutil.rmtree(local, ignore_errors=True)
        if state.is_world_process_zero:
            self.results.record_checkpoint(storage_id, state.global_step, name)
            log.info("checkpoint %s uploaded as %s", name, storage_id)

    def _seal(self, local: Path, chief: bool) -> None:
        """Stamp the Trainer's `checkpoint-N/` with our config copy, then its manifest, written last:
        each node's local chief lists the files its ranks wrote (once all have: the allgather
        waits for every rank's own rng_state file), and the chief writes the union."""
        if chief:
            self.results.stamp_checkpoint(local)
        dist = self.core.distributed
        if dist.size > 1:
            dist.allgather(None)
        files = manifest.entries(local) if dist.local_rank == 0 and local.is_dir() else {}
        if dist.size > 1:
            files = {k: v for part in dist.allgather(files) for k, v in part.items()}
        if chief:
            self.results.seal_checkpoint(local, files)

    def _store_failed(self, error: OSError, local: Path, before: set[str], free: int | None) -> CheckpointStoreFailed:
        """Undo a failed store (the partial folder in storage, the Trainer's local copy) and say in
        one line what failed, where, the space needed and free, and what the next run resumes from."""
        need = sum(p.stat().st_size for p in local.rglob("*") if p.is_file()) if local.is_dir() else 0
        where = self.storage if self.storage is not None else "the experiment's checkpoint storage"
        if self.storage is not None and self.storage.is_dir():
            for entry in set(os.listdir(self.storage)) - before:  # the folder this upload started
                folder = self.storage / entry
                started = folder.is_dir() and ((folder / local.name).is_dir() or not any(folder.iterdir()))
                if started and ((folder / local.name).is_dir() is False or manifest.problem(folder / local.name)):
                    shutil.rmtree(folder, ignore_errors=True)
        shutil.rmtree(local, ignore_errors=True)
        last = self.latest_storage_id or self.trial.latest_checkpoint
        reason = error.strerror or str(error)[:300]
        if isinstance(error, shutil.Error) and error.args and isinstance(error.args[0], list) and error.args[0]:
            reason = str(error.args[0][0][-1]).split(": '")[0][:300]  # copytree's (src, dst, why) of its first failed file
        return CheckpointStoreFailed(
            f"storing {local.name} in {where} failed: {reason}; it needs {need / 2**20:,.1f} MiB"
            + (f" and {free / 2**20:,.1f} MiB were free there" if free is not None else "")
            + "; the partial copy was removed, and the next run "
            + (f"resumes from checkpoint {last}" if last else "starts from scratch (no checkpoint was stored)"))


def download_checkpoint(uuid: str) -> Path:
    """A checkpoint from the master at DET_MASTER, downloaded once to $TMPDIR/sqltune-checkpoints/
    (log in first with `det user login`; the checkpoint storage must be reachable from here)."""
    from determined.experimental import client

    path = Path(os.environ.get("TMPDIR", "/tmp")) / "sqltune-checkpoints" / uuid
    if not path.exists():
        with master_errors(CheckpointNotFound(
                f"--checkpoint: '{uuid}' is neither a folder, nor a checkpoint of a run on this machine, "
                f"nor one the master at {os.environ.get('DET_MASTER')} knows")):
            client.get_checkpoint(uuid).download(str(path))
    return path


def get_experiment(experiment_id: int) -> Any:
    """An experiment from the master at DET_MASTER, through the Determined SDK (`det user login` first)."""
    from determined.experimental import client

    with master_errors(MasterUnreachable(f"--experiment {experiment_id}: the master at "
                                         f"{os.environ.get('DET_MASTER')} knows no such experiment")):
        return client.get_experiment(experiment_id)


@contextlib.contextmanager
def master_errors(not_found: Exception) -> Iterator[None]:
    """The SDK's errors as ours: `not_found` for an unknown ID, else MasterUnreachable, one line each."""
    from determined.common.api import errors

    master = os.environ.get("DET_MASTER") or "localhost:8080 (DET_MASTER is unset)"
    try:
        yield
    except errors.NotFoundException:
        raise not_found from None
    except errors.MasterNotFoundException:
        raise MasterUnreachable(f"can't reach the Determined master at {master}: is DET_MASTER right, "
                                "and the master up?") from None
    except (errors.BadRequestException, errors.BadResponseException) as e:
        raise MasterUnreachable(f"the Determined master at {master} refused: {type(e).__name__}: {str(e)[:300]}; "
                                "log in with `det user login`") from None
