"""Running a search's trials (search.py defines the search): the study in the search folder, one
trial at a time in this process or `--parallel N` worker processes, a killed search's RUNNING
trials retried into their own run folders, Optuna fed and pruning through a Trainer callback.
Trials share a process, so peak RSS and GPU memory are reset before each one."""

from __future__ import annotations

import contextlib
import fcntl
import gc
import logging
import os
import signal
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Iterator

import optuna
import torch
import transformers
from optuna.trial import TrialState

from sqltune import config, core_api, recipes, rundir
from sqltune.errors import ConfigError, SearchRunning
from sqltune.study.search import Search

log = logging.getLogger(__name__)

FOLDER_LOCK = ".search.lock"  # held (shared) by every process running trials in the folder
ASK_LOCK = ".ask.lock"  # held while a process counts trials and asks for the next one


@contextlib.contextmanager
def _flock(path: Path, mode: int) -> Iterator[int]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, mode)
        yield fd
    finally:
        os.close(fd)


def open_study(search: Search) -> optuna.Study:
    """The folder's study, created on first use; refused if the YAML's searcher or space changed since."""
    storage = optuna.storages.RDBStorage(search.storage_url, engine_kwargs={"connect_args": {"timeout": 120}})
    names = optuna.get_all_study_names(storage)
    name = names[0] if names else str(search.raw.get("name") or "sqltune-search")
    study = optuna.create_study(
        study_name=name, storage=storage, sampler=search.sampler(0), pruner=search.pruner(),
        direction="minimize" if search.searcher.get("smaller_is_better", True) else "maximize",
        load_if_exists=True,
    )
    recorded = {"searcher": search.searcher, "space": {p.name: p.spec for p in search.params}}
    if not names:
        with warnings.catch_warnings(category=optuna.exceptions.ExperimentalWarning, action="ignore"):
            study.set_metric_names([search.metric])  # optuna-dashboard labels the value with it
        for key, value in recorded.items():
            study.set_user_attr(key, value)
    changed = [key for key, value in recorded.items() if study.user_attrs.get(key) != value]
    if changed:
        raise ConfigError([f"{search.folder} holds a search with a different {' and '.join(changed)}: resuming needs "
                           "the same config; set another training_args.output_dir to start a new search"], str(search.path))
    return study


def recover(study: optuna.Study) -> list[int]:
    """Retry, in its own run folder, every trial whose latest attempt did not finish.

    Only call this holding the folder lock exclusively: then a RUNNING trial was killed.
    Returns the numbers of the trials retried.
    """
    latest: dict[str, optuna.trial.FrozenTrial] = {}
    for t in study.get_trials(deepcopy=False):
        latest[t.user_attrs.get("run_dir", f"trial-{t.number}")] = t
        if t.state == TrialState.RUNNING:
            study.tell(t.number, state=TrialState.FAIL)
    retried = []
    for run_dir, t in latest.items():
        if t.state in (TrialState.RUNNING, TrialState.FAIL) and t.params:
            study.enqueue_trial(t.params, user_attrs={"run_dir": run_dir, "retry_of": t.number})
            retried.append(t.number)
    return retried


def next_trial(search: Search, study: optuna.Study) -> optuna.Trial | None:
    """The next trial to run (a retry first), or None when every slot is taken. Safe across processes."""
    with _flock(search.folder / ASK_LOCK, fcntl.LOCK_EX):
        trials = study.get_trials(deepcopy=False)
        waiting = any(t.state == TrialState.WAITING for t in trials)
        slots = {t.user_attrs.get("run_dir", f"trial-{t.number}") for t in trials}
        if not waiting and len(slots) >= search.n_trials:
            return None
        study.sampler = search.sampler(len(trials))
        trial = study.ask({p.name: p.distribution() for p in search.params})
        if "run_dir" not in trial.user_attrs:
            trial.set_user_attr("run_dir", f"trial-{trial.number}")
        return trial


class StudyReporter(transformers.TrainerCallback):
    """Feeds the searcher metric of every evaluation to the Optuna trial; when the pruner says
    so, stops training there (the run folder stays an ordinary, shorter run)."""

    def __init__(self, trial: optuna.Trial, metric: str) -> None:
        self.trial = trial
        self.metric = metric
        self.pruned_at: int | None = None

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):  # noqa: ANN001
        if not metrics or self.metric not in metrics:
            return  # CoreCallback has already refused a validation without the searcher metric
        self.trial.report(float(metrics[self.metric]), state.global_step)
        if state.global_step < state.max_steps and self.trial.should_prune():
            log.info("trial %d pruned at step %d (%s %.4g)", self.trial.number, state.global_step,
                     self.metric, metrics[self.metric])
            self.pruned_at = state.global_step
            control.should_training_stop = True


def _reset_peak_memory() -> None:
    gc.collect()
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")  # resets this process's peak RSS (ru_maxrss)
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def run_trial(search: Search, study: optuna.Study, trial: optuna.Trial) -> TrialState | None:
    """Train one trial and tell the study; None when it was stopped (it stays RUNNING, to resume)."""
    run_dir = search.folder / trial.user_attrs["run_dir"]
    values = {p.name: p.decode(trial.params[p.name]) for p in search.params}
    retry = trial.user_attrs.get("retry_of")
    log.info("trial %d -> %s%s: %s", trial.number, run_dir, f" (retry of trial {retry})" if retry is not None else "",
             ", ".join(f"{k}={v}" for k, v in values.items()))
    reporter = StudyReporter(trial, search.metric)
    try:
        exp = config.build(search.raw, search.trial_overrides(values, run_dir), search.path)
        _reset_peak_memory()
        local = core_api.local_trial(exp.raw, rundir.RunFolder(run_dir), fresh=False)
        summary = recipes.run(exp, local, callbacks=[reporter])
    except Exception as e:  # one trial's failure is recorded, not the search's end
        log.exception("trial %d failed", trial.number)
        trial.set_user_attr("error", f"{type(e).__name__}: {e}"[:2000])
        study.tell(trial, state=TrialState.FAIL)
        return TrialState.FAIL
    if summary["preempted"]:
        return None
    trial.set_user_attr("validation", summary["validation"])
    trial.set_user_attr("global_step", summary["global_step"])
    if reporter.pruned_at is not None:
        return study.tell(trial, state=TrialState.PRUNED).state
    if search.metric not in summary["validation"]:
        trial.set_user_attr("error", f"no evaluation reported {search.metric}: evaluate at the last step")
        return study.tell(trial, state=TrialState.FAIL).state
    return study.tell(trial, summary["validation"][search.metric]).state


def work(search: Search, study: optuna.Study) -> int:
    """Run trials until every slot is taken: 0, 1 if a trial failed, 130 if stopped."""
    failed = False
    while (trial := next_trial(search, study)) is not None:
        state = run_trial(search, study, trial)
        if state is None:
            log.warning("search stopped during trial %d: run the same command again to resume it", trial.number)
            return 130
        failed |= state == TrialState.FAIL
    return 1 if failed else 0


def run(search: Search, parallel: int = 1) -> int:
    """Lock the folder, recover what a killed search left, then run the trials here or in workers."""
    search.folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(search.folder / FOLDER_LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise SearchRunning(f"{search.folder}: another `sqltune search` is running there; wait for it, "
                                "or stop it (Ctrl-C saves a checkpoint) and run this again") from None
        study = open_study(search)
        retried = recover(study)
        if retried:
            log.info("retrying trial(s) %s, from their latest checkpoints", ", ".join(map(str, retried)))
        fcntl.flock(fd, fcntl.LOCK_SH)  # workers (and nobody else) may now join
        try:
            return work(search, study) if parallel <= 1 else _spawn_workers(search, parallel)
        except KeyboardInterrupt:
            log.warning("interrupted: run the same command again to resume")
            return 130
    finally:
        os.close(fd)


def run_worker(search: Search) -> int:
    """One of `--parallel N` processes: join the folder (shared lock) and run trials."""
    with _flock(search.folder / FOLDER_LOCK, fcntl.LOCK_SH | fcntl.LOCK_NB):
        return work(search, open_study(search))


def _spawn_workers(search: Search, n: int) -> int:
    cmd = [sys.executable, "-m", "sqltune", "search", str(search.path), "--worker"]
    cmd += [arg for o in search.overrides for arg in ("--set", o)]
    gpus = torch.cuda.device_count() if "CUDA_VISIBLE_DEVICES" not in os.environ else 0
    procs = []
    for i in range(n):
        env = dict(os.environ)
        env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // n)))  # CPU trials share the cores
        if gpus > 1:
            env["CUDA_VISIBLE_DEVICES"] = str(i % gpus)
        procs.append(subprocess.Popen(cmd, env=env))
    signal.signal(signal.SIGTERM, lambda *_: [p.send_signal(signal.SIGTERM) for p in procs])
    try:
        codes = [p.wait() for p in procs]
    except KeyboardInterrupt:  # the workers got it too: they save a checkpoint and stop
        codes = [p.wait() for p in procs]
    return max(codes, key=abs)


