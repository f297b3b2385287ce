"""`sqltune search`: a search YAML's `searcher:` and `hyperparameters:` run as Optuna trials here.

    sqltune search experiments/local-r-grid.yaml              # trials one after another
    sqltune search experiments/local-r-grid.yaml --parallel 2 # two at a time, one process each
    sqltune search experiments/local-r-grid.yaml --dry-run    # list the trials, train nothing
    optuna-dashboard sqlite:///runs/local-r-grid/study.db     # watch the study

The YAML is the one `det e create` takes. Determined's searchers map onto Optuna's: `grid` is a
GridSampler over Determined's own grid (every categorical value; `count` evenly spaced points of an
int, double or log, as master/pkg/searcher/grid.go rounds them), `random` a RandomSampler, and
`adaptive_asha` a RandomSampler with a SuccessiveHalvingPruner fed the searcher metric at every
evaluation. Its rungs are Determined's (`max_time / divisor**k`, at most `max_rungs`, and no more
than `max_trials` and `max_time` allow) but there is one bracket only, the one Determined's
`mode: aggressive` runs; `standard` and `conservative` add gentler brackets on a cluster.

Each trial is an ordinary run folder, `<output_dir>/trial-<k>/`, trained in this process by the
same `recipes.run` that `sqltune train` calls, its `training_args.output_dir` set by a `--set`
override. The study lives beside them in `<output_dir>/study.db` (SQLite; rundir.py lays the
folder out). A search folder is locked while a search runs in it, so a new `sqltune search` knows
that a trial still RUNNING there was killed: it marks it failed and enqueues a retry with the same
hyperparameters into the same run folder, where `recipes.run` resumes from its latest checkpoint.
Complete and pruned trials are never run again; failed ones are retried once per `sqltune search`.
Ctrl-C saves a checkpoint at the next step and stops (a second one stops at once); run the same
command to go on.

Trials share this process, so peak RSS and GPU memory are reset before each one (the summary
reports the trial's own peak; RSS via /proc/self/clear_refs, Linux only).
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import gc
import logging
import math
import os
import signal
import subprocess
import sys
import types
import warnings
from pathlib import Path
from typing import Any, Iterator

import optuna
import torch
import transformers
from optuna.trial import TrialState

from sqltune import config, core_api, recipes, rundir
from sqltune.sql.scoring import SQL_METRICS
from sqltune.errors import ConfigError, SearchRunning
from sqltune.study.space import Param, grid_points, search_space, yaml_text

log = logging.getLogger(__name__)

SEARCHERS = ("grid", "random", "adaptive_asha")
FOLDER_LOCK = ".search.lock"  # held (shared) by every process running trials in the folder
ASK_LOCK = ".ask.lock"  # held while a process counts trials and asks for the next one


class _GridSampler(optuna.samplers.GridSampler):
    """GridSampler without its `study.stop()` at the end of the grid, which only works inside
    `study.optimize`; we run trials with ask/tell and count them ourselves (`next_trial`)."""

    def after_trial(self, study, trial, state, values) -> None:  # noqa: ANN001
        pass


@dataclasses.dataclass
class Search:
    """A validated search: its config, what varies, where it runs, how many trials it holds."""

    path: Path
    raw: dict[str, Any]
    overrides: list[str]  # the user's --set, applied to every trial
    params: list[Param]
    searcher: dict[str, Any]
    folder: Path  # the YAML's training_args.output_dir: study.db and trial-<k>/ live here
    n_trials: int

    @property
    def metric(self) -> str:
        return self.searcher["metric"]

    @property
    def storage_url(self) -> str:
        return rundir.study_url(self.folder)

    def trial_overrides(self, values: dict[str, Any], run_dir: Path) -> list[str]:
        sets = [f"{name}={yaml_text(v)}" for name, v in values.items()]
        return [*sets, *self.overrides, f"training_args.output_dir={yaml_text(str(run_dir))}"]

    def sampler(self, n_existing: int) -> optuna.samplers.BaseSampler:
        if self.searcher["name"] == "grid":
            return _GridSampler({p.name: [p.encode(v) for v in p.grid()] for p in self.params}, seed=0)
        # Seeded per trial number: the same draws whatever process asks, and a resumed search
        # does not draw the first trials' values again.
        seed = (self.raw.get("reproducibility") or {}).get("experiment_seed") or 0
        return optuna.samplers.RandomSampler(seed=seed + n_existing)

    def rungs(self) -> list[int]:
        """adaptive_asha's rungs in steps, as adaptive_asha.go counts them for its most aggressive bracket."""
        s = self.searcher
        divisor, max_time = int(s.get("divisor") or 4), s["max_time"]
        n = min(s.get("max_rungs") or 5, int(math.log(max_time) / math.log(divisor)) + 1,
                int(math.log(s["max_trials"]) / math.log(divisor)) + 1)
        first = max(1, max_time // divisor ** (n - 1))
        return [first * divisor**k for k in range(n - 1)] + [max_time]

    def pruner(self) -> optuna.pruners.BasePruner:
        if self.searcher["name"] != "adaptive_asha":
            return optuna.pruners.NopPruner()
        divisor = int(self.searcher.get("divisor") or 4)
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=self.rungs()[0], reduction_factor=divisor)


def load(path: str | os.PathLike, overrides: list[str] = ()) -> Search:
    """Read and check a search YAML; every problem is reported at once, in one ConfigError."""
    path, overrides = Path(path), list(overrides)
    raw = config.read_yaml(path)
    searcher = raw.get("searcher") or {}
    problems = _searcher_problems(searcher)
    fixed = [key for key, _ in config.parse_overrides(overrides)]
    params = []
    for p in search_space(raw.get("hyperparameters") or {}):
        inside = [key for key in fixed if key.startswith(p.name + ".")]
        if inside:
            problems.append(f"--set {inside[0]}: {p.name} is searched as a whole; fix it with --set {p.name}=VALUE")
        elif not any(p.name == key or p.name.startswith(key + ".") for key in fixed):
            params.append(p)  # a --set of the hyperparameter (or of its parent) takes it out of the search
    if not params:
        problems.append("hyperparameters: nothing to search (no int, double, log or categorical): use `sqltune train`")
    if searcher.get("name") == "grid":
        problems += [f"hyperparameters.{p.name}: grid search needs `count` on int, double and log hyperparameters"
                     for p in params if p.spec["type"] != "categorical" and not p.spec.get("count")]
    exp = None
    try:  # one trial's config, built now: its problems show before anything trains
        exp = config.build(raw, [f"{p.name}={yaml_text(p.first())}" for p in params] + overrides, path)
    except ConfigError as e:
        problems += e.problems
    if exp is not None:
        problems += _training_problems(searcher, exp.hparams)
    if problems:
        raise ConfigError(problems, str(path))
    n_trials = len(grid_points(params)) if searcher["name"] == "grid" else searcher["max_trials"]
    return Search(path, raw, overrides, params, searcher, Path(exp.hparams.training_args["output_dir"]), n_trials)


def _searcher_problems(s: dict[str, Any]) -> list[str]:
    name = s.get("name")
    if name == "single":
        return ["searcher.name: 'single' runs one trial, there is nothing to search: use `sqltune train`"]
    if name not in SEARCHERS:
        return [f"searcher.name: {name!r} is not supported by sqltune search (use {', '.join(SEARCHERS)})"]
    out = []
    if not str(s.get("metric", "")).startswith("eval_"):
        out.append(f"searcher.metric: expected a validation metric such as eval_loss or eval_accuracy, got {s.get('metric')!r}")
    if name != "grid" and not (isinstance(s.get("max_trials"), int) and s["max_trials"] > 0):
        out.append(f"searcher.max_trials: required for {name}, a positive integer")
    if name == "adaptive_asha":
        if s.get("time_metric") != "batches":
            out.append("searcher.time_metric: adaptive_asha on Determined 0.38 needs `time_metric: batches` "
                       "(our trial reports `batches` with every validation)")
        if not isinstance(s.get("max_time"), int) or s["max_time"] < 1:
            out.append("searcher.max_time: required for adaptive_asha, equal to training_args.max_steps")
        divisor = s.get("divisor") or 4
        if divisor != int(divisor) or divisor < 2:
            out.append(f"searcher.divisor: a local search needs an integer >= 2 (Optuna's reduction_factor), got {divisor}")
    return out


def _training_problems(searcher: dict[str, Any], hp: config.Hyperparameters) -> list[str]:
    out = []
    targs = hp.training_args  # read as written: building TrainingArguments here would check this machine's devices
    try:
        core_api.check_searcher(searcher, types.SimpleNamespace(max_steps=targs.get("max_steps", -1)))
    except ValueError as e:  # searcher.max_length, or max_time against max_steps
        out.append(str(e))
    if targs.get("eval_strategy", "no") == "no":
        out.append(f"hyperparameters.training_args.eval_strategy: the searcher needs {searcher.get('metric')} "
                   "from evaluations: set steps (with eval_steps) or epoch")
    if any(str(searcher.get("metric") or "").startswith(f"eval_{m}") for m in SQL_METRICS) and not hp.eval.generate_samples:
        out.append(f"searcher.metric: {searcher['metric']} is scored on generated SQL: set eval.generate_samples > 0")
    return out


# ---- running ---------------------------------------------------------------------------------


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


def describe(search: Search) -> str:
    """What `--dry-run` prints: the searcher, the folder and the trials (all of them for a grid)."""
    lines = [f"{search.searcher['name']} search on {search.metric} "
             f"({'smaller' if search.searcher.get('smaller_is_better', True) else 'larger'} is better), "
             f"{search.n_trials} trials in {search.folder}/trial-<k>/, study {search.storage_url}"]
    if search.searcher["name"] == "grid":
        lines += [f"  {i}: " + ", ".join(f"{k}={yaml_text(v)}" for k, v in point.items())
                  for i, point in enumerate(grid_points(search.params))]
    else:
        lines += [f"  {p.name}: {yaml_text(p.spec)}" for p in search.params]
    if search.searcher["name"] == "adaptive_asha":
        lines.append(f"  successive halving: rungs at steps {search.rungs()}, "
                     f"1 in {int(search.searcher.get('divisor') or 4)} trials goes on at each")
    return "\n".join(lines)
