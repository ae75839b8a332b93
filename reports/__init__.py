"""Reports: REPORT.md, its detail pages and PNG charts as pure functions of stored results files.

``load_results(paths) -> DataFrame`` (columns: :mod:`reports.data`), ``to_markdown(df, charts) -> str`` (the
whole report in one document), ``plot_*(df, path)`` and ``write_report(paths, out_dir) -> Path`` (the index
REPORT.md, ``details/<page>.md`` and ``figures/``; its pages are the registry of :mod:`reports.report`). Nothing
here imports TensorFlow: a report can be written on any machine from the results files of others.
"""

from tfbench.reports.data import approach_colour, load_results
from tfbench.reports.markdown import to_markdown
from tfbench.reports.plots import (
    plot_accuracy_curves,
    plot_batch_size,
    plot_speedup,
    plot_step_time,
    plot_throughput,
    plot_time_to_accuracy,
)
from tfbench.reports.report import write_report

__all__ = ["approach_colour", "load_results", "plot_accuracy_curves", "plot_batch_size", "plot_speedup",
           "plot_step_time", "plot_throughput", "plot_time_to_accuracy", "to_markdown", "write_report"]
