"""The report's one-screen answer (:mod:`tfbench.reports.headline`) as plain text for a terminal: what
``tfbench run`` prints at the end of a run, before the report's path. A pure function of the results frame
(no TensorFlow), drawn with tabulate so that it reads the same in a terminal, a pipe or a CI log."""

from __future__ import annotations

import pandas as pd
from tabulate import tabulate

from tfbench.reports.headline import headline_rows


def answer(frame: pd.DataFrame) -> str:
    """Per workload: the approaches ranked at their best, the compiled modes' gains, the test accuracy."""
    tables = headline_rows(frame)
    if not tables:
        return "No step-time records in this run: nothing to rank."
    parts = []
    for workload, (device, batch, rows) in tables.items():
        best = rows.iloc[0]
        parts.append(f"{workload} on {device}, batch {batch}: fastest {best['approach']} ({best['best']}, "
                     f"{best['ms']:#.3g} ms a step)")
        parts.append(tabulate(
            [[row["approach"], row["best"], f"{row['ms']:#.3g}", f"{row['vs_fastest']:.2f}x", row["function_gain"],
              row["xla_gain"], "—" if row["accuracy"] is None or pd.isna(row["accuracy"]) else f"{row['accuracy']:.4f}"]
             for _, row in rows.iterrows()],
            headers=["approach", "at its best", "ms/step", "vs fastest", "function/eager", "XLA/function",
                     "test acc"]))
        parts.append("")
    parts.append("Gains: ratios of medians timed side by side at K=1; above 1.00x the compiled mode is faster.")
    return "\n".join(parts)
