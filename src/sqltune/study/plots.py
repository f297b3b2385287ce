"""The PNG plots of `sqltune compare`, one function per plot, each run in the same colour everywhere.

Figures are made with `matplotlib.figure.Figure` and saved by the Agg canvas directly, never
through pyplot: no display, no global state, nothing changed for a caller that uses pyplot itself.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from sqltune.sql.scoring import GROUPS, SQL_METRICS
from sqltune.study.runs import overall_metrics

if TYPE_CHECKING:
    from sqltune.study.runs import Comparison, Run


def _color(i: int) -> str:
    return f"C{i % 10}"


def _save(fig: Figure, path: Path) -> Path:
    FigureCanvasAgg(fig)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    return path


def _note(ax: Any, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="0.4")


def curve(runs: list[Run], group: str, key: str, path: Path, title: str) -> Path:
    fig = Figure(figsize=(7, 4))
    ax = fig.subplots()
    for i, r in enumerate(runs):
        points = sorted((s, m[key]) for s, m in r.curves[group].items() if key in m)
        if points:
            ax.plot(*zip(*points), marker="o" if len(points) < 30 else None, ms=3, color=_color(i),
                    label=f"{r.name} ({r.method})")
    if ax.has_data():
        ax.legend(fontsize=7)
    else:
        _note(ax, f"no run reported {key}")
    ax.set(title=title, xlabel="step", ylabel=key)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def metric_vs_rank(runs: list[Run], metric: str, path: Path) -> Path:
    """The final searcher metric against LoRA r (log 2 axis); full fine-tunes as dashed lines."""
    fig = Figure(figsize=(7, 4))
    ax = fig.subplots()
    ranks = set()
    for i, r in enumerate(runs):
        if metric not in r.final:
            continue
        if r.lora is None:
            ax.axhline(r.final[metric], ls="--", color=_color(i), label=f"{r.name} (full)")
        else:
            ranks.add(r.lora[0])
            ax.scatter([r.lora[0]], [r.final[metric]], color=_color(i), s=40, label=f"{r.name} ({r.method})", zorder=3)
    if ranks:
        ax.set_xscale("log", base=2)
        ax.set_xticks(sorted(ranks), [str(x) for x in sorted(ranks)])
    if ax.has_data() or ax.lines:
        ax.legend(fontsize=7)
    else:
        _note(ax, f"no run reported {metric}")
    ax.set(title=f"{metric} (last evaluation) vs LoRA rank", xlabel="LoRA r", ylabel=metric)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def per_difficulty(runs: list[Run], path: Path) -> Path | None:
    """Bars per difficulty (and Spider hardness) of each SQL metric; None when no run has them."""
    panels = [(m, [g for g in GROUPS if any(f"eval_{m}_{g}" in r.final for r in runs)]) for m in SQL_METRICS]
    panels = [(m, groups) for m, groups in panels if groups]
    if not panels:
        return None
    fig = Figure(figsize=(8, 2.8 * len(panels)))
    axes = fig.subplots(len(panels), 1, squeeze=False)[:, 0]
    width = 0.8 / max(1, len(runs))
    for ax, (m, groups) in zip(axes, panels):
        for i, r in enumerate(runs):  # a run without these metrics keeps its slot, with no bar
            values = [r.final.get(f"eval_{m}_{g}", math.nan) for g in groups]
            bars = ax.bar([x + i * width for x in range(len(groups))], values, width, color=_color(i),
                          label=f"{r.name} ({r.method})")
            ax.bar_label(bars, fmt="%.2f", fontsize=6)  # a zero stays visible as its label
        ax.set_xticks([x + width * (len(runs) - 1) / 2 for x in range(len(groups))],
                      [g.replace("hardness_", "spider ") for g in groups])
        top = max([1.0] + [r.final.get(f"eval_{m}_{g}", 0.0) for r in runs for g in groups])
        ax.set(title=f"eval_{m} by difficulty (last evaluation)", ylabel=m, ylim=(0, top * 1.1))
        ax.grid(alpha=0.3, axis="y")
    axes[0].legend(fontsize=7)
    return _save(fig, path)


def resources(runs: list[Run], path: Path) -> Path:
    """Trainable parameters, wall time, peak RSS and peak GPU memory, one bar per run."""
    panels = [("trainable_parameters", "trainable parameters", True), ("wall_time_s", "wall time (s)", False),
              ("peak_rss_gib", "peak RSS (GiB)", False), ("peak_gpu_gib", "peak GPU memory (GiB)", False)]
    if not any(r.summary.get("peak_gpu_gib") for r in runs):
        panels.pop()  # all on CPU
    fig = Figure(figsize=(9, 2 * (1.0 + 0.3 * len(runs))))
    axes = fig.subplots(2, 2).flatten()
    names = [r.name for r in runs]
    if len(panels) < len(axes):
        axes[-1].set_axis_off()  # no GPU panel: every run was on CPU
    for ax, (key, title, log) in zip(axes, panels):
        values = [r.summary.get(key) for r in runs]
        ax.barh(names, [v or 0 for v in values], color=[_color(i) for i in range(len(runs))])
        for y, v in enumerate(values):
            if v is None:
                ax.text(0, y, " n/a", va="center", fontsize=7, color="0.4")
        if log and any(values):
            ax.set_xscale("log")
        ax.set_title(title, fontsize=9)
        ax.grid(alpha=0.3, axis="x")
        ax.invert_yaxis()  # best run on top, as in the table
        ax.tick_params(axis="y", labelsize=7)
    return _save(fig, path)


def draw_all(comp: Comparison, folder: Path) -> list[tuple[Path, str]]:
    """Every plot of the report, as (PNG path, caption)."""
    folder.mkdir(parents=True, exist_ok=True)
    runs = comp.runs
    out = [(curve(runs, "training", "loss", folder / "train_loss.png", "training loss"), "Training loss per step")]
    for m in overall_metrics(runs):
        out.append((curve(runs, "validation", m, folder / f"{m}.png", m), f"{m} at each evaluation"))
    out.append((metric_vs_rank(runs, comp.metric, folder / "metric_vs_r.png"),
                f"{comp.metric} vs LoRA rank; full fine-tunes dashed"))
    bars = per_difficulty(runs, folder / "per_difficulty.png")
    if bars is not None:
        out.append((bars, "SQL metrics per difficulty, one colour per run"))
    out.append((resources(runs, folder / "resources.png"), "Trainable parameters, wall time, peak memory"))
    return out
