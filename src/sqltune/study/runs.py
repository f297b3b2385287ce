"""Runs as `sqltune compare` sees them: from run folders, search folders or a Determined master.

A folder that is missing, was killed mid-run (metrics but no summary) or is not a sqltune run is
reported as skipped, with the reason; it never stops the report. From a cluster, metrics come
from the master; it does not know parameter counts or memory, shown as n/a.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Iterable

from sqltune import rundir
from sqltune.rundir import is_number
from sqltune.config import LoraSettings
from sqltune.errors import MasterUnreachable
from sqltune.sql.scoring import GROUPS, SQL_METRICS
from sqltune.study.space import search_space

FIGURES = ("global_step", "max_steps", "trainable_parameters", "total_parameters", "wall_time_s", "peak_rss_gib",
           "peak_gpu_gib")  # the numbers of a run's summary a report shows
FIRST_METRICS = ("eval_loss", "eval_accuracy", *(f"eval_{m}" for m in SQL_METRICS))


@dataclasses.dataclass
class Run:
    name: str
    hparams: dict[str, Any]  # flat, dotted names
    curves: dict[str, dict[int, dict[str, float]]]  # "training" / "validation" -> step -> metrics
    summary: dict[str, Any]  # FIGURES from the run's summary (None where unknown) and output_dir
    state: str
    searcher: dict[str, Any] = dataclasses.field(default_factory=dict)  # its YAML's searcher: name, metric, direction

    @property
    def final(self) -> dict[str, float]:
        val = self.curves["validation"]
        return val[max(val)] if val else {}

    @property
    def lora(self) -> tuple[int, int] | None:
        """(r, lora_alpha) of a LoRA run, None for a full fine-tune."""
        h, default = self.hparams, LoraSettings()
        enabled = h.get("lora.enabled", h.get("lora"))
        if enabled is None:
            enabled = any(k.startswith("lora.") for k in h)
        return (h.get("lora.r", default.r), h.get("lora.lora_alpha", default.lora_alpha)) if enabled else None

    @property
    def method(self) -> str:
        return "full" if self.lora is None else "LoRA r={} α={}".format(*self.lora)


@dataclasses.dataclass
class Comparison:
    runs: list[Run] = dataclasses.field(default_factory=list)  # ranked: best first, those without the metric last
    skipped: list[str] = dataclasses.field(default_factory=list)  # why each unusable folder was left out
    searcher: dict[str, Any] = dataclasses.field(default_factory=dict)  # the first search's searcher block
    searched: set[str] = dataclasses.field(default_factory=set)  # hyperparameters the searches varied
    studies: list[str] = dataclasses.field(default_factory=list)  # Optuna storage URLs of the search folders
    metric: str = "eval_loss"
    smaller_is_better: bool = True

    def add(self, got: Run | str) -> None:
        (self.runs if isinstance(got, Run) else self.skipped).append(got)


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _metrics_only(row: dict[str, Any]) -> dict[str, float]:
    return {k: v for k, v in row.items() if is_number(v) and k not in ("batches", "epochs")}


def load_run(folder: Path, name: str, state: str | None = None) -> Run | str:
    """A finished run folder as a Run, or the reason it can't be one."""
    run = rundir.RunFolder(folder)
    if not run.has_summary():
        if run.has_metrics():
            return f"{folder}: no {rundir.SUMMARY} (killed mid-run, or still running)"
        return f"{folder}: not a sqltune run folder (no {rundir.SUMMARY} or {rundir.METRICS})"
    try:
        raw = run.read_summary()
        step, max_steps = int(raw["global_step"]), int(raw["max_steps"])
        if not all(isinstance(raw.get(k) or {}, dict) for k in ("validation", "hparams")):
            raise TypeError("'validation' and 'hparams' should be mappings")
    except (ValueError, KeyError, TypeError) as e:
        return f"{folder}: unreadable {rundir.SUMMARY} ({type(e).__name__}: {e})"
    summary = {k: raw.get(k) if is_number(raw.get(k)) else None for k in FIGURES} | {"output_dir": raw.get("output_dir")}
    curves = {group: {step: _metrics_only(m) for step, m in by_step.items()} for group, by_step in run.curves().items()}
    if not curves["validation"] and raw.get("validation"):
        curves["validation"][step] = _metrics_only(raw["validation"])
    if raw.get("preempted"):
        state = "preempted"  # stopped with a checkpoint: running the search (or train) again goes on
    elif state is None:
        state = "completed" if step >= max_steps else "stopped"
    if step < max_steps:
        state += f" at {step}/{max_steps}"
    searcher = raw.get("searcher") if isinstance(raw.get("searcher"), dict) else {}
    return Run(name, flatten(raw.get("hparams") or {}), curves, summary, state, searcher)


def _add_search(comp: Comparison, folder: Path) -> None:
    """A search folder's trials, with their state (pruned, failed) and searcher from its Optuna study."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url = rundir.study_url(folder)
    states = {}
    try:
        study = optuna.load_study(study_name=None, storage=url)
        for t in study.get_trials(deepcopy=False):  # a folder's latest attempt counts
            states[t.user_attrs.get("run_dir", f"trial-{t.number}")] = t.state.name.lower()
        comp.searcher = comp.searcher or study.user_attrs.get("searcher") or {}
        comp.searched |= set(study.user_attrs.get("space") or {})
        comp.studies.append(url)
    except Exception as e:  # noqa: BLE001 - a broken study still leaves readable run folders
        comp.skipped.append(f"{folder / rundir.STUDY_DB}: unreadable Optuna study ({type(e).__name__}: {e})")
    trials = sorted((p for p in folder.glob("trial-*") if p.is_dir()), key=lambda p: (len(p.name), p.name))
    for trial in trials:
        state = states.get(trial.name)
        comp.add(load_run(trial, f"{folder.name}/{trial.name}", None if state in (None, "complete") else state))


def collect(paths: Iterable[str | Path], comp: Comparison | None = None) -> Comparison:
    """Runs from run folders, search folders and folders holding either; and what was skipped, why."""
    comp = comp or Comparison()
    for path in map(Path, paths):
        if not path.is_dir():
            comp.skipped.append(f"{path}: no such folder")
        elif rundir.is_search_folder(path):
            _add_search(comp, path)
        elif rundir.is_run_folder(path):
            comp.add(load_run(path, path.name))
        else:
            inner = [p for p in sorted(path.iterdir()) if p.is_dir() and (rundir.is_run_folder(p) or rundir.is_search_folder(p))]
            if not inner:
                comp.skipped.append(f"{path}: not a sqltune run or search folder "
                                    f"(no {rundir.SUMMARY}, {rundir.METRICS} or {rundir.STUDY_DB})")
            collect(inner, comp)
    return comp


# ---- from a Determined master ----------------------------------------------------------------


def run_from_trial(experiment_id: int, trial: Any, training: Iterable[Any], validation: Iterable[Any]) -> Run:
    """A Run from the SDK's `Trial` and its `TrialMetrics` (determined.experimental.client)."""
    curves: dict[str, dict[int, dict[str, float]]] = {"training": {}, "validation": {}}
    times = []
    for group, reports in (("training", training), ("validation", validation)):
        for m in reports:
            curves[group][m.steps_completed] = {k: float(v) for k, v in m.metrics.items() if is_number(v)}
            times.append(m.end_time)
    hp = flatten(trial.hparams or {})
    step = max((s for c in curves.values() for s in c), default=0)
    max_steps = hp.get("training_args.max_steps") or step
    state = trial.state.value.removeprefix("STATE_").lower() if trial.state else "unknown"
    if state == "completed" and step < max_steps:
        state = f"stopped at {step}/{max_steps}"  # adaptive_asha stopped it
    summary = dict.fromkeys(FIGURES) | {"global_step": step, "max_steps": max_steps,  # the master has no memory figures
                                        "wall_time_s": (max(times) - min(times)).total_seconds() if times else None}
    return Run(f"exp-{experiment_id}/trial-{trial.id}", hp, curves, summary, state)


def add_experiment(comp: Comparison, experiment: Any) -> None:
    """Every trial of a `determined.experimental.client.Experiment`, with its searcher and space."""
    cfg = experiment.config or {}
    comp.searcher = comp.searcher or cfg.get("searcher") or {}
    comp.searched |= {p.name for p in search_space(cfg.get("hyperparameters") or {})}
    for t in experiment.list_trials():
        comp.add(run_from_trial(experiment.id, t, t.iter_metrics("training"), t.iter_metrics("validation")))


def fetch_experiments(comp: Comparison, ids: list[int]) -> None:
    """Experiments from the master at DET_MASTER (log in first with `det user login`); an
    unreachable master, a missing login or an unknown ID is a MasterUnreachable."""
    from sqltune import core_api  # Determined's SDK is imported only when a master is asked

    for eid in ids:
        experiment = core_api.get_experiment(eid)
        with core_api.master_errors(MasterUnreachable(f"experiment {eid}: the master lost track of a trial")):
            add_experiment(comp, experiment)


def overall_metrics(runs: list[Run]) -> list[str]:
    """Eval metrics over all rows (per-difficulty ones, `eval_bleu_easy`, are drawn as bars)."""
    found = {k for r in runs for step in r.curves["validation"].values() for k in step if k.startswith("eval_")}
    per_group = {f"eval_{m}_{g}" for m in SQL_METRICS for g in GROUPS}
    found -= per_group
    return [m for m in FIRST_METRICS if m in found] + sorted(found - set(FIRST_METRICS))
