"""The report's first screen: the three questions a reader comes with, answered per workload.

* Which style is fastest? Each approach at its best (any mode and K) at the batch size the step-time chart
  shows, against the fastest.
* What do ``tf.function`` and XLA buy? Each approach's eager -> ``tf.function`` and ``tf.function`` -> XLA
  speed ratios at one step per call, measured side by side in one run.
* Does every style reach the same accuracy? The test accuracy of each approach's accuracy-stage run.

Everything below the headline is on the index's short answers and the detail pages (:mod:`tfbench.reports.report`).
"""

from __future__ import annotations

import pandas as pd

from tfbench.reports.data import main_device_batch, ok, ordered


def _median(group: pd.DataFrame, mode: str, k: int = 1) -> float | None:
    chosen = group[(group["mode"] == mode) & (group["steps_per_call"] == k)]
    return None if chosen.empty else float(chosen["step_time_median_s"].iloc[0])


def _ratio(slow: float | None, fast: float | None) -> str:
    return "—" if slow is None or fast is None else f"{slow / fast:.2f}x"


def headline_rows(frame: pd.DataFrame) -> dict[str, tuple[str, int, pd.DataFrame]]:
    """Per workload: (device, batch size, one row per approach with its best configuration and gains)."""
    step_times = ok(frame, "step_time")
    main = main_device_batch(step_times)
    if main is None:
        return {}
    device, batch = main[0], main[1]  # the step-time chart's device and batch size, shown beside the tables
    on_device = step_times[step_times["device_label"] == device]
    accuracies = ok(frame, "accuracy")
    tables = {}
    for workload, group in ordered(on_device).groupby("workload", sort=False):
        group = group[group["batch_size"] == batch]
        if group.empty:
            continue
        fastest = group["step_time_median_s"].min()
        rows = []
        for approach, mine in group.groupby("approach", sort=False):
            best = mine.loc[mine["step_time_median_s"].idxmin()]
            eager, function, xla = (_median(mine, mode) for mode in ("eager", "function", "xla"))
            reached = accuracies[(accuracies["approach"] == approach) & (accuracies["workload"] == workload)]
            rows.append({"approach": approach, "best": f"{best['mode']}, K={int(best['steps_per_call'])}",
                         "ms": best["step_time_median_s"] * 1e3,
                         "vs_fastest": best["step_time_median_s"] / fastest,
                         "function_gain": _ratio(eager, function), "xla_gain": _ratio(function, xla),
                         "accuracy": None if reached.empty else float(reached["test_accuracy"].max())})
        tables[workload] = (device, batch, pd.DataFrame(rows).sort_values("vs_fastest", kind="stable"))
    return tables


def headline(frame: pd.DataFrame, chart: str | None = None) -> list[str]:
    """The first section of REPORT.md: a small table per workload and the most telling chart."""
    tables = headline_rows(frame)
    if not tables:
        return ["No step-time records in these results: nothing to rank."]
    lines = []
    for workload, (device, batch, rows) in tables.items():
        lines += [f"**{workload}** on {device}, batch {batch}. Best: **{rows.iloc[0]['approach']}** "
                  f"({rows.iloc[0]['best']}, {rows.iloc[0]['ms']:#.3g} ms a step).", "",
                  "| approach | at its best | ms/step | vs fastest | tf.function over eager | XLA over tf.function "
                  "| test accuracy |", "|---|---|---:|---:|---:|---:|---:|"]
        for _, row in rows.iterrows():
            accuracy = "—" if row["accuracy"] is None or pd.isna(row["accuracy"]) else f"{row['accuracy']:.4f}"
            lines.append(f"| {row['approach']} | {row['best']} | {row['ms']:#.3g} | {row['vs_fastest']:.2f}x | "
                         f"{row['function_gain']} | {row['xla_gain']} | {accuracy} |")
        lines.append("")
    lines.append("Gains are ratios of medians timed side by side in one run, at one step per call (K=1); "
                 "above 1.00x the compiled mode is faster, below it slower. Test accuracy is the accuracy stage's "
                 "(\\u2014: not run).".replace("\\u2014", "—"))
    if chart:
        lines += ["", f"![Step time by approach and mode]({chart})"]
    return lines

