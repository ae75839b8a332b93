"""The report's pages: results files in; an index, one detail page per question and PNG charts out.

``write_report(paths, out_dir)`` writes::

    out_dir/REPORT.md            the index: the one-screen answer, then one short answer per question
    out_dir/details/<slug>.md    one page per question: every table, note and chart of it
    out_dir/figures/<name>.png   the charts, linked from both

The report is a registry: :data:`PAGES` lists the pages in the order the index shows them. A page is a question
(its title), the sections of its detail page (heading, ``section(frame) -> list[str]``, the Markdown lines under
the heading), an optional short answer for the index (``summary(frame) -> list[str]``) and its charts
(``plot_<x>(frame, path)``, which returns ``None`` and writes nothing when it has no data). Adding a page is one
entry in that list::

    Page("diagnostics", "Does anything retrace or leak?", (("Retracing and memory growth", diagnostics.section),),
         charts=(Chart("diagnostics", "Traces per input signature", diagnostics.plot_diagnostics),)),

and nothing else: the index links it, its charts are drawn and placed, and a page or chart that a new run no
longer has is deleted when the report is written again. Every section gets the frame of the newest record of
each measurement (:func:`tfbench.reports.data.latest`); a section with no data of its kind says so in a line.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from tfbench.reports import diagnostics, index, k_sweep, peers, precision
from tfbench.reports.as_published import plot_as_published, plot_recipe_curves
from tfbench.reports.as_published import section as as_published_section
from tfbench.reports.breakdown import breakdown_section, plot_breakdown
from tfbench.reports.data import latest, load_results, ok
from tfbench.reports.distributed import plot_scaling
from tfbench.reports.distributed import section as distributed_section
from tfbench.reports.headline import headline
from tfbench.reports.markdown import (
    TITLE,
    accuracy_section,
    environment_section,
    input_pipeline_section,
    noisy_section,
    not_ok_section,
    recipes_section,
    roofline_section,
    speedup_section,
    step_time_section,
    summary_section,
    throughput_section,
)
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
DETAILS = "details"  # the detail pages' folder, beside REPORT.md
HEADLINE_CHART = "step_time"  # the one-screen answer's chart
HISTORY = "history/HISTORY.md"  # tfbench history's page, beside REPORT.md (made by that command, not here)


@dataclass(frozen=True)
class Chart:
    """A PNG chart, ``figures/<name>.png``; with ``per_workload`` set to a record kind, one chart per workload
    that has ok records of that kind, ``figures/<name>_<workload>.png``, drawn by ``plot(frame, path, workload)``
    and titled with ``{workload}`` replaced."""

    name: str
    title: str
    plot: Callable[..., object]
    per_workload: str | None = None
    on_index: bool = True  # shown under the question's short answer too, not only on its detail page


@dataclass(frozen=True)
class Page:
    """A question: its detail page ``details/<slug>.md`` and its place on the index."""

    slug: str
    title: str
    sections: tuple[tuple[str, Callable[[pd.DataFrame], list[str]]], ...]
    summary: Callable[[pd.DataFrame], list[str]] | None = None
    charts: tuple[Chart, ...] = ()


PAGES: list[Page] = [
    Page("step_time", "Which style is fastest?", (("Step time", step_time_section),), index.fastest_style,
         (Chart("step_time", "Step time by approach and mode", plot_step_time, on_index=False),
          Chart("batch_size", "Throughput against batch size", plot_batch_size))),
    Page("speedup", "What do tf.function and XLA buy?", (("Speedup over eager", speedup_section),),
         index.compiled_gains, (Chart("speedup", "Speedup over eager", plot_speedup),)),
    Page("throughput", "Throughput per device", (("Throughput by device", throughput_section),),
         index.throughput_per_device, (Chart("throughput", "Throughput by device", plot_throughput),)),
    Page("roofline", "How close to the hardware's limit?", (("Roofline", roofline_section),), index.roofline_summary),
    Page("breakdown", "Where does the time of a step go?", (("Where the time goes", breakdown_section),),
         index.breakdown_summary,
         (Chart("breakdown", "Where the time of one step goes, {workload}", plot_breakdown, "breakdown",
                on_index=False),)),
    Page("input_pipeline", "What does feeding the data cost?", (("Input pipeline", input_pipeline_section),),
         index.input_pipeline_summary),
    Page("accuracy", "Does every style reach the same accuracy?",
         (("Accuracy and time-to-accuracy", accuracy_section),), index.accuracy_summary,
         (Chart("time_to_accuracy", "Time to target accuracy", plot_time_to_accuracy),
          Chart("accuracy_curves", "Loss and accuracy per epoch, {workload}", plot_accuracy_curves, "accuracy",
                on_index=False))),
    Page("recipes", "Do the tutorials' recipes reproduce their figures?", (("Documented recipes", recipes_section),),
         index.recipes_summary,
         (Chart("recipe_curves", "Reproduced figure per epoch against the published one", plot_recipe_curves,
                on_index=False),)),
    Page("as_published", "Tutorials as published: what does the loop I was taught cost?",
         (("Tutorials as published", as_published_section),), index.as_published_summary,
         (Chart("as_published", "Time per step and accuracy: as published, fixed, documented", plot_as_published),)),
    Page("distributed", "Scaling out with tf.distribute", (("Scaling out with tf.distribute", distributed_section),),
         index.scaling_summary, (Chart("scaling", "Scaling efficiency against replicas", plot_scaling),)),
    Page("diagnostics", "Does a loop retrace, or leak memory, and what actually ran?",
         (("Retracing, memory growth and effective settings", diagnostics.section),), index.diagnostics_summary,
         charts=(Chart("memory_growth", "Process memory against steps, fit() calls and builds",
                       diagnostics.plot_memory_growth),)),
    Page("k_sweep", "Where do more steps per call stop paying?", (("Steps per call: the knee", k_sweep.section),),
         index.k_sweep_summary, charts=(Chart("k_sweep", "Step time against steps per call K", k_sweep.plot_k_sweep),)),
    Page("precision", "Does mixed precision pay?", (("Mixed precision", precision.section),),
         index.precision_summary,
         charts=(Chart("precision", "Step time and accuracy per dtype policy", precision.plot_precision),)),
    Page("peers", "Would Keras on JAX, or plain JAX, be faster?", (("Peers", peers.section),),
         index.peers_summary,
         charts=(Chart("peers", "The best TensorFlow style against Keras on JAX and plain JAX", peers.plot_peers),)),
    Page("results", "About these results",
         (("Summary", summary_section), ("Environment", environment_section),
          ("Unsupported, skipped and failed records", not_ok_section), ("Noisy measurements", noisy_section)),
         index.runs_summary),
]


def anchor(heading: str) -> str:
    """The anchor GitHub and MkDocs give a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")


def _chart_names(frame: pd.DataFrame, chart: Chart) -> list[tuple[str, str, tuple]]:
    """(file name stem, title, extra plot arguments) of each chart a :class:`Chart` stands for."""
    if chart.per_workload is None:
        return [(chart.name, chart.title, ())]
    records = ok(frame, chart.per_workload)
    workloads = dict.fromkeys(records["workload"]) if not records.empty else {}
    return [(f"{chart.name}_{w}", chart.title.format(workload=w), (w,)) for w in workloads]


def chart_order(frame: pd.DataFrame) -> list[str]:
    """The names of the charts the registry can draw for ``frame``, in the order of :data:`PAGES`."""
    return [name for page in PAGES for chart in page.charts for name, _, _ in _chart_names(frame, chart)]


def _owner(name: str) -> tuple[Page, Chart, str]:
    """The page, chart and title of a chart's file name stem (``breakdown_mlp``...); ValueError if unknown."""
    for page in PAGES:
        for chart in page.charts:
            if name == chart.name:
                return page, chart, chart.title
            if chart.per_workload is not None and name.startswith(f"{chart.name}_"):
                return page, chart, chart.title.format(workload=name.removeprefix(f"{chart.name}_"))
    known = [c.name + ("_<workload>" if c.per_workload else "") for p in PAGES for c in p.charts]
    raise ValueError(f"unknown chart {name!r}; expected one of {', '.join(known)}")


def _images(charts: dict[str, str], page: Page, prefix: str = "", index: bool = False,
            skip: tuple[str, ...] = ()) -> list[str]:
    """The image lines of ``page``'s charts among ``charts`` (name -> link), links prefixed with ``prefix``; on the
    index only those shown there."""
    lines = []
    for name, link in charts.items():
        owner, chart, title = _owner(name)
        if owner is page and name not in skip and (chart.on_index or not index):
            lines += [f"![{title}]({prefix}{link})", ""]
    return lines


def _headline(frame: pd.DataFrame, charts: dict[str, str]) -> list[str]:
    return [f"# {TITLE}", "", "## The answer in one screen", "", *headline(frame, charts.get(HEADLINE_CHART)), ""]


def detail_page(frame: pd.DataFrame, page: Page, charts: dict[str, str]) -> str:
    """``details/<slug>.md``: the question, a link back to the index, the page's charts, then every section.
    ``charts`` maps chart names to links relative to REPORT.md."""
    frame = latest(frame)
    lines = [f"# {page.title}", "", f"Part of the [benchmark report](../{REPORT_NAME}).", ""]
    lines += _images(charts, page, prefix="../")
    for heading, render in page.sections:
        lines += [f"## {heading}", "", *render(frame), ""]
    return "\n".join(lines).rstrip("\n") + "\n"


def index_page(frame: pd.DataFrame, charts: dict[str, str], history: bool = False) -> str:
    """REPORT.md: the one-screen answer, then per question its short answer, its charts and its detail page."""
    frame = latest(frame)
    lines = _headline(frame, charts)
    lines += ["Below, each question in short; its detail page has every table.", ""]
    for page in PAGES:
        links = " · ".join(f"[{heading}]({DETAILS}/{page.slug}.md{'#' + anchor(heading) if i else ''})"
                           for i, (heading, _) in enumerate(page.sections))
        lines += [f"## {page.title}", ""]
        if page.summary is not None:
            lines += [*page.summary(frame), ""]
        lines += _images(charts, page, index=True)
        lines += [f"Details: {links}.", ""]
    if history:  # only where `tfbench history` wrote its page beside the report (the committed reports/)
        lines += ["## History", "",
                  f"- [Step-time history]({HISTORY}): every committed run's step times by commit, and the step "
                  "changes found (`tfbench history reports/results --out reports/history`; docs/history.md).", ""]
    return "\n".join(lines).rstrip("\n") + "\n"


def one_document(frame: pd.DataFrame, charts: dict[str, str] | None = None) -> str:
    """Every section of every page in one Markdown document, each under its ``## heading`` (a PR comment, a single
    file to mail, and what the section tests read); ``charts`` as for :func:`detail_page`."""
    frame = latest(frame)
    charts = dict(charts or {})
    for name in charts:
        _owner(name)  # refuse an unknown chart before writing anything
    lines = _headline(frame, charts)
    for page in PAGES:
        for heading, render in page.sections:
            lines += [f"## {heading}", "", *render(frame), ""]
        lines += _images(charts, page, skip=(HEADLINE_CHART,))  # the headline shows it
    return "\n".join(lines).rstrip("\n") + "\n"


def write_report(paths: str | Path | Iterable[str | Path], out_dir: str | Path) -> Path:
    """Write ``out_dir/REPORT.md``, ``out_dir/details/*.md`` and, in ``out_dir/figures/``, the charts that have data;
    return REPORT.md's path. Charts and detail pages of an earlier report that this one does not have are
    removed."""
    frame = latest(load_results(paths))
    out_dir = Path(out_dir)
    figures, details = out_dir / FIGURES, out_dir / DETAILS
    figures.mkdir(parents=True, exist_ok=True)
    details.mkdir(parents=True, exist_ok=True)
    for stale in [*figures.glob("*.png"), *details.glob("*.md")]:  # what has no data this time must not linger
        stale.unlink()
    charts: dict[str, str] = {}
    for page in PAGES:
        for chart in page.charts:
            for name, _, extra in _chart_names(frame, chart):
                if chart.plot(frame, figures / f"{name}.png", *extra) is not None:
                    charts[name] = f"{FIGURES}/{name}.png"
    for page in PAGES:
        (details / f"{page.slug}.md").write_text(detail_page(frame, page, charts))
    report = out_dir / REPORT_NAME
    report.write_text(index_page(frame, charts, history=(out_dir / HISTORY).is_file()))
    return report
