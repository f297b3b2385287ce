"""What the commands print: one rich Console, and the table of metrics per difficulty."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqltune.sql.scoring import GROUPS, SQL_METRICS

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

LOG_WIDTH = 200  # columns when output is a file or a CI log (rich would assume 80 and wrap cells)


def make_console() -> Console:
    """rich's Console: the terminal's width, or LOG_WIDTH when output is not a terminal."""
    from rich.console import Console

    console = Console()
    return console if console.is_terminal else Console(width=LOG_WIDTH)


def metrics_table(metrics: dict[str, float], title: str) -> Table:
    """Rows: metrics; columns: all rows, then per difficulty and per Spider hardness when present."""
    from rich.table import Table

    groups = [g for g in GROUPS if any(f"eval_{m}_{g}" in metrics for m in SQL_METRICS)]
    table = Table(title=title)
    table.add_column("metric")
    for col in ("all", *groups):
        table.add_column(col.replace("hardness_", "spider "), justify="right")
    for key in ("eval_loss", "eval_accuracy"):
        if key in metrics:
            table.add_row(key, f"{metrics[key]:.4f}", *[""] * len(groups))
    for m in SQL_METRICS:
        if f"eval_{m}" in metrics:
            cells = [metrics.get(f"eval_{m}_{g}") for g in groups]
            table.add_row(f"eval_{m}", f"{metrics[f'eval_{m}']:.3f}", *["" if c is None else f"{c:.3f}" for c in cells])
    return table
