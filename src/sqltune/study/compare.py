"""`sqltune compare`: runs side by side, from run folders, search folders or a Determined master.

    sqltune compare runs/local-r-grid runs/tiny-cpu --output report   # report/report.html
    sqltune compare --experiment 12 13 --output report                # trials of cluster experiments
    tensorboard --logdir report/tensorboard                           # curves and the HParams tab

The report is one HTML file with its plots embedded (the PNGs are also in `plots/`): a table
ranked by the searcher metric, the training loss and every eval metric against step, the searcher
metric against LoRA rank, per-difficulty SQL scores, and trainable parameters, wall time and peak
memory per run. The table also prints in the terminal. TensorBoard gets every run's curves plus
its hyperparameters and final metrics for the HParams dashboard, under `tensorboard/<run>/`.

A folder that is missing, was killed mid-run (metrics.jsonl but no summary.json) or is not a
sqltune run is reported as skipped, with the reason; it never stops the report. From a cluster,
metrics come from the master; it does not know parameter counts or memory, shown as n/a.
"""

from __future__ import annotations

import base64
import dataclasses
import html
import json
import shutil
from pathlib import Path
from typing import Any, Iterable

from sqltune.evaluate import GROUPS, SQL_METRICS
from sqltune.config import ConfigError, LoraConfig
from sqltune.platform import METRICS
from sqltune.study.search import STUDY_DB
from sqltune.study.space import search_space
from sqltune.train import SUMMARY

PATH_KEYS = ("training_args.output_dir", "training_args.logging_dir", "data.cache_dir")
FIGURES = ("global_step", "max_steps", "trainable_parameters", "total_parameters", "wall_time_s", "peak_rss_gib",
           "peak_gpu_gib")  # the numbers of summary.json a report shows
FIRST_METRICS = ("eval_loss", "eval_accuracy", *(f"eval_{m}" for m in SQL_METRICS))
TABLE_HPARAMS = ("training_args.learning_rate", "model.name", "data.subset", "training_args.max_steps")


@dataclasses.dataclass
class Run:
    name: str
    hparams: dict[str, Any]  # flat, dotted names
    curves: dict[str, dict[int, dict[str, float]]]  # "training" / "validation" -> step -> metrics
    summary: dict[str, Any]  # FIGURES from summary.json (None where unknown) and output_dir
    state: str

    @property
    def final(self) -> dict[str, float]:
        val = self.curves["validation"]
        return val[max(val)] if val else {}

    @property
    def lora(self) -> tuple[int, int] | None:
        """(r, lora_alpha) of a LoRA run, None for a full fine-tune."""
        h, default = self.hparams, LoraConfig()
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


def read_curves(path: Path) -> dict[str, dict[int, dict[str, float]]]:
    """metrics.jsonl by group and step; a step written twice (after a resume) keeps its last line."""
    curves: dict[str, dict[int, dict[str, float]]] = {"training": {}, "validation": {}}
    for line in path.read_text().splitlines() if path.exists() else []:
        try:
            row = json.loads(line)
            group, step = curves[row.pop("group")], int(row.pop("step"))
        except (ValueError, KeyError, TypeError, AttributeError):
            continue  # a torn last line of a killed run, or another tool's line
        group[step] = {k: v for k, v in row.items() if _number(v) and k not in ("time", "batches", "epochs")}
    return curves


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def load_run(folder: Path, name: str, state: str | None = None) -> Run | str:
    """A finished run folder as a Run, or the reason it can't be one."""
    summary_path = folder / SUMMARY
    if not summary_path.exists():
        if (folder / METRICS).exists():
            return f"{folder}: no {SUMMARY} (killed mid-run, or still running)"
        return f"{folder}: not a sqltune run folder (no {SUMMARY} or {METRICS})"
    try:
        raw = json.loads(summary_path.read_text())
        step, max_steps = int(raw["global_step"]), int(raw["max_steps"])
        if not all(isinstance(raw.get(k) or {}, dict) for k in ("validation", "hparams")):
            raise TypeError("'validation' and 'hparams' should be mappings")
    except (ValueError, KeyError, TypeError) as e:
        return f"{folder}: unreadable {SUMMARY} ({type(e).__name__}: {e})"
    summary = {k: raw.get(k) if _number(raw.get(k)) else None for k in FIGURES} | {"output_dir": raw.get("output_dir")}
    curves = read_curves(folder / METRICS)
    if not curves["validation"] and raw.get("validation"):
        curves["validation"][step] = {k: v for k, v in raw["validation"].items() if _number(v)}
    if raw.get("preempted"):
        state = "preempted"  # stopped with a checkpoint: running the search (or train) again goes on
    elif state is None:
        state = "completed" if step >= max_steps else "stopped"
    if step < max_steps:
        state += f" at {step}/{max_steps}"
    return Run(name, flatten(raw.get("hparams") or {}), curves, summary, state)


def _add_search(comp: Comparison, folder: Path) -> None:
    """A search folder's trials, with their state (pruned, failed) and searcher from its Optuna study."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url = f"sqlite:///{folder.resolve() / STUDY_DB}"
    states = {}
    try:
        study = optuna.load_study(study_name=None, storage=url)
        for t in study.get_trials(deepcopy=False):  # a folder's latest attempt counts
            states[t.user_attrs.get("run_dir", f"trial-{t.number}")] = t.state.name.lower()
        comp.searcher = comp.searcher or study.user_attrs.get("searcher") or {}
        comp.searched |= set(study.user_attrs.get("space") or {})
        comp.studies.append(url)
    except Exception as e:  # noqa: BLE001 - a broken study still leaves readable run folders
        comp.skipped.append(f"{folder / STUDY_DB}: unreadable Optuna study ({type(e).__name__}: {e})")
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
        elif (path / STUDY_DB).exists():
            _add_search(comp, path)
        elif (path / SUMMARY).exists() or (path / METRICS).exists():
            comp.add(load_run(path, path.name))
        else:
            inner = [p for p in sorted(path.iterdir()) if p.is_dir() and any(
                (p / f).exists() for f in (SUMMARY, METRICS, STUDY_DB))]
            if not inner:
                comp.skipped.append(f"{path}: not a sqltune run or search folder (no {SUMMARY}, {METRICS} or {STUDY_DB})")
            collect(inner, comp)
    return comp


# ---- from a Determined master ----------------------------------------------------------------


def run_from_trial(experiment_id: int, trial: Any, training: Iterable[Any], validation: Iterable[Any]) -> Run:
    """A Run from the SDK's `Trial` and its `TrialMetrics` (determined.experimental.client)."""
    curves: dict[str, dict[int, dict[str, float]]] = {"training": {}, "validation": {}}
    times = []
    for group, reports in (("training", training), ("validation", validation)):
        for m in reports:
            curves[group][m.steps_completed] = {k: float(v) for k, v in m.metrics.items() if _number(v)}
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
    """Experiments from the master at DET_MASTER (log in first with `det user login`)."""
    from sqltune import platform

    for eid in ids:
        try:
            add_experiment(comp, platform.get_experiment(eid))
        except Exception as e:  # noqa: BLE001 - unreachable master, no login, unknown ID: one message
            raise ConfigError([f"experiment {eid}: {type(e).__name__}: {e}"], "--experiment") from None


# ---- ranking, table -------------------------------------------------------------------------


def load(paths: Iterable[str | Path], experiments: list[int] = (), metric: str | None = None) -> Comparison:
    """Every run found, ranked by `metric` (default: the searcher's, else eval_loss)."""
    comp = collect(paths)
    if experiments:
        fetch_experiments(comp, list(experiments))
    names = [r.name for r in comp.runs]
    for r in comp.runs:  # the same folder name twice: tell them apart
        if names.count(r.name) > 1:
            r.name = f"{r.name} ({r.summary.get('output_dir', r.state)})"
    searcher = comp.searcher
    comp.metric = metric or searcher.get("metric") or "eval_loss"
    if comp.metric == searcher.get("metric"):
        comp.smaller_is_better = searcher.get("smaller_is_better", True)
    else:
        comp.smaller_is_better = "loss" in comp.metric
    scored = sorted((r for r in comp.runs if comp.metric in r.final), key=lambda r: r.final[comp.metric],
                    reverse=not comp.smaller_is_better)
    comp.runs = scored + [r for r in comp.runs if comp.metric not in r.final]
    return comp


def overall_metrics(runs: list[Run]) -> list[str]:
    """Eval metrics over all rows (per-difficulty ones, `eval_bleu_easy`, are drawn as bars)."""
    found = {k for r in runs for step in r.curves["validation"].values() for k in step if k.startswith("eval_")}
    per_group = {f"eval_{m}_{g}" for m in SQL_METRICS for g in GROUPS}
    found -= per_group
    return [m for m in FIRST_METRICS if m in found] + sorted(found - set(FIRST_METRICS))


def varying(runs: list[Run]) -> list[str]:
    """Hyperparameters that differ between runs (LoRA's r and alpha make the method; paths left out)."""
    keys = sorted({k for r in runs for k in r.hparams})
    skip = (*PATH_KEYS, "lora.r", "lora.lora_alpha", "lora.enabled", "lora")
    return [k for k in keys if k not in skip and len({json.dumps(r.hparams.get(k), default=str) for r in runs}) > 1]


def columns(comp: Comparison, limit: int = 4) -> list[str]:
    """The hyperparameter columns of the table: searched ones first, then the usual suspects."""
    differ = varying(comp.runs)
    first = [k for k in differ if any(k == s or k.startswith(s + ".") for s in comp.searched)]
    return (first + [k for k in TABLE_HPARAMS if k in differ and k not in first])[:limit]


def _fmt(v: Any, digits: int = 4, missing: str = "n/a") -> str:
    if v is None:
        return missing
    if isinstance(v, float):
        return f"{v:.{digits}g}"
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v:,}"
    return str(v)


def table_rows(comp: Comparison) -> tuple[list[str], list[list[str]]]:
    evals = [m for m in overall_metrics(comp.runs) if m != comp.metric]
    hps = columns(comp)
    gpu = any(r.summary.get("peak_gpu_gib") for r in comp.runs)
    head = ["#", "run", "state", "method", *hps, comp.metric, *evals, "trainable", "wall s", "RSS GiB"]
    rows = []
    for i, r in enumerate(comp.runs, 1):
        s = r.summary
        rows.append([str(i), r.name, r.state, r.method, *(_fmt(r.hparams.get(k), missing="-") for k in hps),
                     *(_fmt(r.final.get(m)) for m in (comp.metric, *evals)), _fmt(s.get("trainable_parameters")),
                     _fmt(s.get("wall_time_s"), 3), _fmt(s.get("peak_rss_gib"), 3)] + gpu * [_fmt(s.get("peak_gpu_gib"), 3)])
    return head + gpu * ["GPU GiB"], rows


def print_table(comp: Comparison) -> None:
    from rich.console import Console
    from rich.table import Table

    head, rows = table_rows(comp)
    better = "smaller" if comp.smaller_is_better else "larger"
    table = Table(title=f"{len(comp.runs)} runs by {comp.metric} ({better} is better)")
    for h in head:
        table.add_column(h, justify="left" if h in ("run", "state", "method") else "right",
                         style="bold" if h == comp.metric else None)
    for row in rows:
        table.add_row(*row)
    console = Console()
    if not console.is_terminal:  # a log file or a pipe: wide rows rather than wrapped cells
        console = Console(width=200)
    console.print(table)
    for s in comp.skipped:
        console.print(f"[yellow]skipped[/yellow] {s}", highlight=False)


# ---- report ---------------------------------------------------------------------------------


def write_report(comp: Comparison, out: Path) -> Path:
    """report.html (self-contained), plots/*.png and tensorboard/<run>/ under `out`."""
    from sqltune.study import plots

    out.mkdir(parents=True, exist_ok=True)
    for sub in ("plots", "tensorboard"):  # ours from an earlier report: rewritten, not appended to
        if (out / "report.html").exists() and (out / sub).is_dir():
            shutil.rmtree(out / sub)
    figures = plots.draw_all(comp, out / "plots")
    write_tensorboard(comp, out / "tensorboard")
    head, rows = table_rows(comp)
    better = "smaller" if comp.smaller_is_better else "larger"
    th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    trs = "\n".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    figs = "\n".join(
        f'<figure id="{html.escape(p.stem)}"><img alt="{html.escape(p.stem)}" '
        f'src="data:image/png;base64,{base64.b64encode(p.read_bytes()).decode()}">'
        f"<figcaption>{html.escape(caption)}</figcaption></figure>" for p, caption in figures)
    skipped = "".join(f"<li>{html.escape(s)}</li>" for s in comp.skipped) or "<li>none</li>"
    tools = [f"tensorboard --logdir {out.resolve() / 'tensorboard'}"] + [f"optuna-dashboard {s}" for s in comp.studies]
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>sqltune compare: {len(comp.runs)} runs</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse;font-size:13px}}
td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}}td:nth-child(-n+4),th:nth-child(-n+4){{text-align:left;white-space:nowrap}}
th{{background:#eee}}figure{{display:inline-block;margin:1em 1em 0 0}}img{{max-width:640px}}</style></head>
<body><h1>sqltune compare: {len(comp.runs)} runs</h1>
<p>Ranked by <b>{html.escape(comp.metric)}</b> (last evaluation; {better} is better).</p>
<div style="overflow-x:auto"><table id="runs"><tr>{th}</tr>
{trs}
</table></div>
<h2>Skipped</h2><ul id="skipped">{skipped}</ul>
<h2>Plots</h2>
{figs}
<h2>Elsewhere</h2><pre>{html.escape(chr(10).join(tools))}</pre>
</body></html>
"""
    (out / "report.html").write_text(page)
    return out / "report.html"


def write_tensorboard(comp: Comparison, root: Path) -> None:
    """Each run's curves under root/<run>/, with its hyperparameters and final metrics for HParams."""
    from torch.utils.tensorboard import SummaryWriter
    from torch.utils.tensorboard.summary import hparams

    def tb_value(v: Any) -> Any:
        return v if isinstance(v, (int, float, str, bool)) else json.dumps(v)

    keys = ["method", *varying(comp.runs)]
    tags = [f"eval/{m}" for m in overall_metrics(comp.runs)]  # per-difficulty ones stay plain scalars
    runs_hp = [{"method": r.method, **{k: tb_value(r.hparams.get(k)) for k in keys[1:]}} for r in comp.runs]
    if not comp.runs:
        return
    with SummaryWriter(str(root)) as w:  # the experiment (its columns) once, at the top
        experiment, _, _ = hparams(runs_hp[0], {t: 0.0 for t in tags})
        w.file_writer.add_summary(experiment)
    for r, hp in zip(comp.runs, runs_hp):
        with SummaryWriter(str(root / r.name)) as w:
            for group, prefix in (("training", "train"), ("validation", "eval")):
                for step, metrics in sorted(r.curves[group].items()):
                    for k, v in metrics.items():
                        w.add_scalar(f"{prefix}/{k}", v, step)
            _, session_start, session_end = hparams(hp, {t: r.final.get(t[5:], 0.0) for t in tags})
            w.file_writer.add_summary(session_start)
            w.file_writer.add_summary(session_end)


def main(paths: list[str], experiments: list[int], output: str, metric: str | None) -> int:
    if not paths and not experiments:
        raise ConfigError(["nothing to compare: give run or search folders, or --experiment ID"], "compare")
    comp = load(paths, experiments, metric)
    print_table(comp)
    if not comp.runs:
        raise ConfigError(["no finished runs to compare (see skipped above)"], "compare")
    report = write_report(comp, Path(output))
    print(f"report: {report}\ntensorboard --logdir {Path(output) / 'tensorboard'}")
    return 0
