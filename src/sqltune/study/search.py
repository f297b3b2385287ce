"""`sqltune search`: a search YAML's `searcher:` and `hyperparameters:` as Optuna trials (trials.py runs them).

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

import dataclasses
import logging
import math
import os
import types
from pathlib import Path
from typing import Any

import optuna

from sqltune import config, core_api, rundir
from sqltune.errors import ConfigError
from sqltune.sql.scoring import SQL_METRICS
from sqltune.study.space import Param, grid_points, search_space, yaml_text

log = logging.getLogger(__name__)

SEARCHERS = ("grid", "random", "adaptive_asha")


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
