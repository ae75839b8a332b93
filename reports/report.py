"""``write_report``: results files in, ``REPORT.md`` and its PNG charts out."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from tfbench.reports.as_published import plot_as_published, plot_recipe_curves
from tfbench.reports.breakdown import plot_breakdown
from tfbench.reports.data import load_results, ok
from tfbench.reports.distributed import plot_scaling
from tfbench.reports.markdown import to_markdown
from tfbench.reports.plots import (
    plot_accuracy_curves,
    plot_batch_size,
    plot_speedup,
    plot_step_time,
    plot_throughput,
    plot_time_to_accuracy,
)

REPORT_NAME = "REPORT.md"
FIGURES = "figures"  # the charts' folder, beside REPORT.md
# chart name -> plot function; the file is figures/<name>.png.
CHARTS = {"step_time": plot_step_time, "batch_size": plot_batch_size, "speedup": plot_speedup,
          "throughput": plot_throughput, "time_to_accuracy": plot_time_to_accuracy,
          "recipe_curves": plot_recipe_curves, "as_published": plot_as_published, "scaling": plot_scaling}


def write_report(paths: str | Path | Iterable[str | Path], out_dir: str | Path) -> Path:
    """Write ``out_dir/REPORT.md`` and, in ``out_dir/figures/``, the charts that have data; return REPORT.md's path."""
    frame = load_results(paths)
    out_dir = Path(out_dir)
    figures = out_dir / FIGURES
    figures.mkdir(parents=True, exist_ok=True)
    for stale in figures.glob("*.png"):  # a chart that has no data this time must not linger
        stale.unlink()
    charts: dict[str, str] = {}
    for name, plot in CHARTS.items():
        if plot(frame, figures / f"{name}.png") is not None:
            charts[name] = f"{FIGURES}/{name}.png"
    for workload in dict.fromkeys(ok(frame, "breakdown")["workload"] if not frame.empty else []):
        name = f"breakdown_{workload}"
        if plot_breakdown(frame, figures / f"{name}.png", workload) is not None:
            charts[name] = f"{FIGURES}/{name}.png"
    accuracies = ok(frame, "accuracy")
    for workload in dict.fromkeys(accuracies["workload"] if not accuracies.empty else []):
        name = f"accuracy_curves_{workload}"
        if plot_accuracy_curves(frame, figures / f"{name}.png", workload) is not None:
            charts[name] = f"{FIGURES}/{name}.png"
    report = out_dir / REPORT_NAME
    report.write_text(to_markdown(frame, charts))
    return report
