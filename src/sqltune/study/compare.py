"""`sqltune compare`: runs side by side, from run folders, search folders or a Determined master.

    sqltune compare runs/local-r-grid runs/tiny-cpu --output report   # report/report.html
    sqltune compare --experiment 12 13 --output report                # trials of cluster experiments
    tensorboard --logdir report/tensorboard                           # curves and the HParams tab

The report is one HTML file with its plots embedded (the PNGs are also in `plots/`): a table
ranked by the searcher metric, the training loss and every eval metric against step, the searcher
metric against LoRA rank, per-difficulty SQL scores, and trainable parameters, wall time and peak
memory per run. The table also prints in the terminal. TensorBoard gets every run's curves plus
its hyperparameters and final metrics for the HParams dashboard, under `tensorboard/<run>/`.

Runs are read by runs.py: a folder that can't be read is listed as skipped, with the reason.
"""

from __future__ import annotations

import base64
import html
import json
import shutil
import time
from pathlib import Path
from typing import Any, Iterable

from sqltune.console import make_console
from sqltune.errors import ConfigError
from sqltune.study.runs import Comparison, Run, collect, fetch_experiments, overall_metrics

PATH_KEYS = ("training_args.output_dir", "training_args.logging_dir", "data.cache_dir")
TABLE_HPARAMS = ("training_args.learning_rate", "model.name", "data.subset", "training_args.max_steps")


# ---- ranking, table -------------------------------------------------------------------------


def load(paths: Iterable[str | Path], experiments: list[int] = (), metric: str | None = None) -> Comparison:
    """Every run found, ranked by `metric` (default: the searcher's, that of a search or of the runs'
    own YAMLs, else eval_loss); ties (a metric every run scores 0 on) broken by eval_loss."""
    comp = collect(paths)
    if experiments:
        fetch_experiments(comp, list(experiments))
    names = [r.name for r in comp.runs]
    for r in comp.runs:  # the same folder name twice: tell them apart
        if names.count(r.name) > 1:
            r.name = f"{r.name} ({r.summary.get('output_dir', r.state)})"
    searcher = comp.searcher or next((r.searcher for r in comp.runs if r.searcher.get("metric")), {})
    comp.metric = metric or searcher.get("metric") or "eval_loss"
    if comp.metric == searcher.get("metric"):
        comp.smaller_is_better = searcher.get("smaller_is_better", True)
    else:
        comp.smaller_is_better = "loss" in comp.metric
    sign = 1 if comp.smaller_is_better else -1
    scored = sorted((r for r in comp.runs if comp.metric in r.final),
                    key=lambda r: (sign * r.final[comp.metric], r.final.get("eval_loss", float("inf"))))
    comp.runs = scored + [r for r in comp.runs if comp.metric not in r.final]
    return comp


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
    from rich.table import Table

    head, rows = table_rows(comp)
    better = "smaller" if comp.smaller_is_better else "larger"
    table = Table(title=f"{len(comp.runs)} runs by {comp.metric} ({better} is better)")
    for h in head:
        table.add_column(h, justify="left" if h in ("run", "state", "method") else "right",
                         style="bold" if h == comp.metric else None)
    for row in rows:
        table.add_row(*row)
    console = make_console()
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
    """Each run's curves under root/<run>/, with its hyperparameters for the HParams dashboard.

    Written with TensorBoard's own event writer and HParams protos rather than
    `torch.utils.tensorboard`, so that a report never imports torch (the same event files)."""
    from tensorboard.compat.proto import event_pb2, summary_pb2
    from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2, summary_v2 as hp
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    if not comp.runs:
        return

    def tb_value(v: Any) -> Any:
        return v if isinstance(v, (int, float, str, bool)) else json.dumps(v)

    def session_end(state: str) -> Any:
        status = (api_pb2.STATUS_SUCCESS if state.startswith("completed") else
                  api_pb2.STATUS_FAILURE if state.startswith("failed") else api_pb2.STATUS_UNKNOWN)
        data = plugin_data_pb2.HParamsPluginData(session_end_info=plugin_data_pb2.SessionEndInfo(status=status))
        return summary_pb2.Summary(value=[summary_pb2.Summary.Value(
            tag=metadata.SESSION_END_INFO_TAG, metadata=metadata.create_summary_metadata(data))])

    def write(folder: Path, summaries: list[tuple[int, Any]]) -> None:
        writer = EventFileWriter(str(folder))
        for step, summary in summaries:
            writer.add_event(event_pb2.Event(wall_time=time.time(), step=step, summary=summary))
        writer.close()

    keys = ["method", *varying(comp.runs)]
    tags = [f"eval/{m}" for m in overall_metrics(comp.runs)]  # per-difficulty ones stay plain scalars
    runs_hp = [{"method": r.method, **{k: tb_value(r.hparams.get(k)) for k in keys[1:]}} for r in comp.runs]
    config = hp.hparams_config_pb(hparams=[hp.HParam(k) for k in keys], metrics=[hp.Metric(t) for t in tags])
    write(root, [(0, config)])  # the experiment (its columns) once, at the top
    for r, values in zip(comp.runs, runs_hp):
        scalars = [(step, summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag=f"{prefix}/{k}", simple_value=v)]))
                   for group, prefix in (("training", "train"), ("validation", "eval"))
                   for step, metrics in sorted(r.curves[group].items()) for k, v in metrics.items()]
        last = max((s for c in r.curves.values() for s in c), default=0)
        write(root / r.name, [(0, hp.hparams_pb(values, trial_id=r.name)), *scalars, (last, session_end(r.state))])


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
