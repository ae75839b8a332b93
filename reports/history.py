"""``tfbench history RESULTS... [--out DIR] [--machine ID]``: step times over many runs, and their step changes.

The gate (``tfbench ab``) answers "is this change slower than that one?" for two revisions at a time. A history
answers "when did this get slower?" over every run a team kept: each results file is one run, placed by the
commit it measured (``environment.git_commit``) and when it ran (``created``, then ``run_id``): commits in the
order of their first run, and a commit's runs in time order. For every step-time record (approach x workload x
mode x K x batch x device x dataset, within one profile) the run medians form a series; the change points of
each series (:mod:`reports.history_steps`) are the steps, each reported with the commit range where it
happened (last run before, first run after), its ratio and that ratio's 95% interval, and what changed in the
environment (TensorFlow, Keras, NumPy, Python) across that range.

Written to ``--out``: ``HISTORY.md`` (the runs, the steps, what is not in the history and why) and one trend
chart per record group (profile x workload x batch x device x dataset: one panel per mode and K, one line per
approach, the median with its 95% interval at each run, the steps marked).

Absolute times only compare on one machine: files from several machines (``environment.machine_id``) are
refused in one line unless ``--machine ID`` picks one; the other machines' files are then listed as skipped.
A file that cannot be read (damaged JSON, not a results file, another schema) gets a warning naming it and a
line in HISTORY.md, and so does every measurement that is not a history point (a failed or skipped record, a
file with no step-time records). Pure: no TensorFlow, only the results files.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from tfbench.benchmarks.results import ResultsError, load
from tfbench.errors import UsageError
from tfbench.reports import history_steps
from tfbench.reports.data import approach_colour, approach_rank, mode_rank

KIND = "step_time"
ENV_FIELDS = ("tensorflow", "keras", "numpy", "python")
GROUP_FIELDS = ("profile", "workload", "batch_size", "device", "dataset", "strategy", "replicas", "backend",
                "variant")
DPI = 100
UNKNOWN = "unknown"
Z = 1.96


@dataclass
class Run:
    """One results file: where it sits in the history and what it measured."""

    path: Path
    run_id: str
    created: datetime
    commit: str
    machine: str
    profile: str
    environment: dict
    records: list[dict]
    complete: bool = True
    position: int = 0  # its place in the ordered history, from 1

    @property
    def short_commit(self) -> str:
        return short(self.commit)


@dataclass(frozen=True)
class Skipped:
    """What is not in the history, and why: a whole file (record "") or one record of a run."""

    source: str
    record: str
    reason: str


@dataclass
class Point:
    run: Run
    median: float
    low: float | None
    high: float | None


@dataclass
class Series:
    group: tuple
    approach: str
    mode: str
    steps_per_call: int
    points: list[Point] = field(default_factory=list)
    steps: list[history_steps.Step] = field(default_factory=list)
    sigma: float = 0.0

    @property
    def label(self) -> str:
        return f"{self.approach} {self.mode} K={self.steps_per_call}"


@dataclass
class History:
    runs: list[Run]
    series: list[Series]
    skipped: list[Skipped]
    unsupported: int = 0  # unsupported records: the approach cannot run that configuration (never a measurement)
    machine: str = ""


def short(commit: str) -> str:
    if commit == UNKNOWN:
        return commit
    head, dirty, _ = commit.partition("-dirty")
    return head[:10] + ("-dirty" if dirty else "")


def _created(document: dict) -> datetime:
    try:
        created = datetime.fromisoformat(str(document.get("created")))
    except ValueError:
        return datetime.min.replace(tzinfo=timezone.utc)
    return created if created.tzinfo else created.replace(tzinfo=timezone.utc)


def _files(paths: Iterable[str | Path], skipped: list[Skipped], warn: Callable[[str], None]) -> list[Path]:
    """Each file as given; each folder's files, sorted. A folder's non-JSON files are foreign: warned, listed."""
    files = []
    for path in map(Path, paths):
        if not path.is_dir():
            files.append(path)
            continue
        entries = sorted(entry for entry in path.iterdir() if entry.is_file() and not entry.name.startswith("."))
        for entry in entries:
            if entry.suffix == ".json":
                files.append(entry)
            else:
                reason = "not a results file (results files are *.json)"
                warn(f"tfbench: warning: {entry}: {reason}; skipped")
                skipped.append(Skipped(str(entry), "", reason))
        if not entries:
            warn(f"tfbench: warning: {path}: an empty folder")
            skipped.append(Skipped(str(path), "", "an empty folder"))
    return files


def read_runs(paths: Iterable[str | Path], warn: Callable[[str], None] | None = None) -> tuple[list[Run],
                                                                                               list[Skipped]]:
    """Every readable results file as a :class:`Run` (unordered), and every file that is not one, with why."""
    warn = warn or (lambda line: print(line, file=sys.stderr))
    skipped: list[Skipped] = []
    runs = []
    for path in _files(paths, skipped, warn):
        try:
            document = load(path)
        except ResultsError as error:
            reason = str(error.args[0]).removeprefix(f"{path}: ")
            warn(f"tfbench: warning: {path}: {reason}; skipped")
            skipped.append(Skipped(str(path), "", reason))
            continue
        environment = document.get("environment") or {}
        config = document.get("config") or {}
        runs.append(Run(path, str(document.get("run_id", "")), _created(document),
                        str(environment.get("git_commit") or UNKNOWN), str(environment.get("machine_id") or UNKNOWN),
                        str(config.get("profile") or (config.get("plan") or {}).get("profile") or UNKNOWN),
                        environment, list(document.get("records", [])), document.get("complete") is not False))
    return runs, skipped


def order(runs: Sequence[Run]) -> list[Run]:
    """Commits in the order of their first run; each commit's runs by creation time, then run id."""
    first: dict[str, tuple] = {}
    for run in runs:
        key = (run.created, run.run_id)
        first[run.commit] = min(first.get(run.commit, key), key)
    ordered = sorted(runs, key=lambda run: (first[run.commit], run.created, run.run_id, str(run.path)))
    for position, run in enumerate(ordered, 1):
        run.position = position
    return ordered


def pick_machine(runs: list[Run], machine: str | None, skipped: list[Skipped]) -> tuple[list[Run], str]:
    """The runs of one machine: the only one there is, or ``machine``; several without a choice is an error."""
    counts: dict[str, int] = {}
    for run in runs:
        counts[run.machine] = counts.get(run.machine, 0) + 1
    listed = ", ".join(f"{name} ({count} file{'s' * (count != 1)})" for name, count in sorted(counts.items()))
    if machine is None:
        if len(counts) > 1:
            raise UsageError(f"the results come from {len(counts)} machines ({listed}) and absolute step times do "
                             "not compare between machines; pick one with --machine ID")
        return runs, next(iter(counts), "")
    if machine not in counts:
        raise UsageError(f"--machine {machine}: no results file is from that machine; the files' machines: "
                         f"{listed or 'none'}")
    for run in runs:
        if run.machine != machine:
            skipped.append(Skipped(str(run.path), "", f"from machine {run.machine}, not --machine {machine}"))
    return [run for run in runs if run.machine == machine], machine


def median_interval(samples: Sequence[float]) -> tuple[float, float] | None:
    """A distribution-free 95% interval of a median: the order statistics the binomial(n, 1/2) puts around it."""
    values = np.sort(np.asarray([s for s in samples if isinstance(s, (int, float)) and math.isfinite(s)], float))
    n = values.size
    if n < 6:  # fewer samples cannot bracket a median at 95%
        return None
    half = Z * math.sqrt(n) / 2
    low, high = max(0, math.floor(n / 2 - half)), min(n - 1, math.ceil(n / 2 + half) - 1)
    return float(values[low]), float(values[high])


def _group(run: Run, record: dict) -> tuple:
    values = {"profile": run.profile, **record}
    return tuple(values.get(name) if values.get(name) is not None else "" for name in GROUP_FIELDS)


def collect(runs: Sequence[Run], skipped: list[Skipped]) -> tuple[list[Series], int]:
    """The series of every step-time record over the ordered runs; what is not a point goes to ``skipped``."""
    series: dict[tuple, Series] = {}
    unsupported = 0
    for run in runs:
        records = [record for record in run.records if isinstance(record, dict) and record.get("kind") == KIND]
        if not records:
            kinds = sorted({str(record.get("kind")) for record in run.records if isinstance(record, dict)})
            skipped.append(Skipped(str(run.path), "", f"no {KIND} records (it holds {', '.join(kinds) or 'none'})"))
            continue
        if not run.complete:
            skipped.append(Skipped(str(run.path), "", "an interrupted run: its measured records are kept, the "
                                   "records it did not reach are not points"))
        for record in records:
            status = record.get("status")
            if status == "unsupported":
                unsupported += 1
                continue
            summary = (record.get("metrics") or {}).get("step_time_s")
            if status != "ok" or not isinstance(summary, dict) or not summary.get("median"):
                why = f"{status}: {record.get('reason')}" if status != "ok" else "no step_time_s median"
                skipped.append(Skipped(str(run.path), str(record.get("id", "")), why))
                continue
            group = _group(run, record)
            key = (group, record["approach"], record["mode"], int(record["steps_per_call"]))
            entry = series.setdefault(key, Series(group, *key[1:]))
            interval = median_interval(summary.get("samples") or [])
            entry.points.append(Point(run, float(summary["median"]), *(interval or (None, None))))
    ordered = sorted(series.values(), key=lambda s: (_group_sort(s.group), approach_rank(s.approach),
                                                     mode_rank(s.mode), s.steps_per_call))
    return ordered, unsupported


def _group_sort(group: tuple) -> tuple:
    return tuple((0, value, "") if isinstance(value, (int, float)) else (1, 0, str(value)) for value in group)


def detect(series: Sequence[Series]) -> None:
    """Each series' steps, its noise pooled with its group's (one machine, workload, batch: one noise level)."""
    pooled: dict[tuple, float] = {}
    for group in {entry.group for entry in series}:
        pooled[group] = history_steps.pooled_scatter([[p.median for p in s.points] for s in series
                                                      if s.group == group])
    for entry in series:
        halfwidths = [(math.log(p.high) - math.log(p.low)) / 2 for p in entry.points
                      if p.low and p.high and p.low > 0]
        entry.steps, entry.sigma = history_steps.detect([p.median for p in entry.points], halfwidths,
                                                        pooled[entry.group])


def build(paths: Iterable[str | Path], machine: str | None = None,
          warn: Callable[[str], None] | None = None) -> History:
    """Read, order, pick the machine, collect the series and find their steps."""
    runs, skipped = read_runs(paths, warn)
    if not runs:
        raise UsageError("no readable results file among the inputs (the warnings above say why); give "
                         "`tfbench run` results files or folders of them")
    runs, chosen = pick_machine(runs, machine, skipped)
    runs = order(runs)
    series, unsupported = collect(runs, skipped)
    detect(series)
    return History(runs, series, skipped, unsupported, chosen)


# --- rendering -------------------------------------------------------------------------------------------------

def group_title(group: tuple) -> str:
    values = dict(zip(GROUP_FIELDS, group))
    parts = [f"{values['workload']}, batch {values['batch_size']}", f"{values['device']}, {values['dataset']}",
             f"profile {values['profile']}"]
    if values["strategy"] not in ("", "none"):
        parts.append(f"{values['strategy']} x{values['replicas']}")
    if values["backend"] not in ("", "tensorflow"):
        parts.append(str(values["backend"]))
    if values["variant"]:
        parts.append(str(values["variant"]))
    return " - ".join(parts)


def group_file(group: tuple) -> str:
    values = dict(zip(GROUP_FIELDS, group))
    parts = [values["profile"], values["workload"], f"b{values['batch_size']}", values["device"], values["dataset"]]
    if values["strategy"] not in ("", "none"):
        parts.append(f"{values['strategy']}{values['replicas']}")
    if values["backend"] not in ("", "tensorflow"):
        parts.append(values["backend"])
    if values["variant"]:
        parts.append(values["variant"])
    return "history-" + re.sub(r"[^A-Za-z0-9.]+", "-", "-".join(map(str, parts))).strip("-") + ".png"


def _percent(ratio: float) -> str:
    return f"{100 * (ratio - 1):+.1f}%"


def environment_change(before: Run, after: Run) -> str:
    changes = [f"{name} {before.environment.get(name)} -> {after.environment.get(name)}" for name in ENV_FIELDS
               if before.environment.get(name) != after.environment.get(name)]
    return "; ".join(changes) or "none"


def commit_range(before: Run, after: Run) -> str:
    if before.commit == after.commit:
        return f"none: both runs measured {before.short_commit} (the machine or environment moved, not the code)"
    return f"`{before.short_commit}..{after.short_commit}`"


def step_rows(history: History) -> list[tuple[Series, history_steps.Step, Run, Run]]:
    return [(entry, step, entry.points[step.index - 1].run, entry.points[step.index].run)
            for entry in history.series for step in entry.steps]


def to_markdown(history: History, charts: dict[tuple, str]) -> str:
    runs = history.runs
    tested = [entry for entry in history.series if len(entry.points) >= 2 * history_steps.MIN_SEGMENT]
    lines = ["# Step-time history", ""]
    span = f"commits {runs[0].short_commit} to {runs[-1].short_commit}" if runs else "no runs"
    lines += [f"{len(runs)} runs on machine {history.machine or UNKNOWN} ({span}), ordered by commit (commits in "
              "the order of their first run) and, within a commit, by run time. Each point is one run's step-time "
              "median with its 95% interval; a step is a change point found by ruptures' PELT on the log medians "
              f"(l1 cost, at least {history_steps.MIN_SEGMENT} runs a side, BIC penalty sigma/sqrt(2) ln n, "
              f"noise floor {100 * history_steps.NOISE_FLOOR:g}%) and kept only if its ratio's 95% interval "
              "(Bonferroni-corrected over the places a step could be) excludes 1 (docs/history.md).", ""]
    lines += ["## Step changes", ""]
    rows = step_rows(history)
    if rows:
        lines += ["By commit range (each series' step counted where it happened):", "",
                  "| commit range | runs | series that moved | slower | faster | median change | environment changed |",
                  "|---|---|---|---|---|---|---|"]
        ranges: dict[tuple, list[history_steps.Step]] = {}
        for _, step, before, after in rows:
            ranges.setdefault((before.position, after.position), []).append(step)
        by_position = {run.position: run for run in runs}
        for (first, last), steps in sorted(ranges.items()):
            before, after = by_position[first], by_position[last]
            slower = sum(step.ratio > 1 for step in steps)
            change = float(np.median([step.ratio for step in steps]))
            lines.append(f"| {commit_range(before, after)} | #{first} -> #{last} | {len(steps)} of {len(tested)} | "
                         f"{slower} | {len(steps) - slower} | {_percent(change)} | "
                         f"{environment_change(before, after)} |")
        lines += ["", "Each step:", ""]
        lines += ["| record group | series | commit range | before | after | change | 95% interval | runs "
                  "before/after | environment changed |", "|---|---|---|---|---|---|---|---|---|"]
        for entry, step, before, after in rows:
            lines.append(f"| {group_title(entry.group)} | {entry.label} | {commit_range(before, after)} | "
                         f"{1e3 * step.before:.3g} ms | {1e3 * step.after:.3g} ms | {_percent(step.ratio)} | "
                         f"[{_percent(step.low)}, {_percent(step.high)}] | {step.n_before}/{step.n_after} "
                         f"(runs #{before.position} -> #{after.position}) | {environment_change(before, after)} |")
    else:
        lines.append(f"No step change in the {len(tested)} series with enough runs to test.")
    short_series = len(history.series) - len(tested)
    if short_series:
        lines += ["", f"{short_series} series have fewer than {2 * history_steps.MIN_SEGMENT} runs and are charted "
                  "but not tested for steps (a step needs two runs on each side)."]
    lines += ["", "## Runs", "", "| # | commit | created | run id | profile | TensorFlow | Keras | file |",
              "|---|---|---|---|---|---|---|---|"]
    for run in runs:
        lines.append(f"| {run.position} | `{run.short_commit}` | {run.created.isoformat(timespec='seconds')} | "
                     f"{run.run_id} | {run.profile} | {run.environment.get('tensorflow', '')} | "
                     f"{run.environment.get('keras', '')} | {run.path.name} |")
    if charts:
        lines += ["", "## Charts", ""]
        lines += [f"![{group_title(group)}]({name})" for group, name in charts.items()]
    lines += ["", "## Not in the history", ""]
    if history.skipped:
        lines += ["| file | record | why |", "|---|---|---|"]
        lines += [f"| {Path(item.source).name} | {item.record or '(whole file)'} | {item.reason} |"
                  for item in history.skipped]
    else:
        lines.append("Every file and every measured record is in the history.")
    if history.unsupported:
        lines += ["", f"{history.unsupported} records are `unsupported` (the approach cannot run that "
                  "configuration, with the reason in the results file): never measured, so never a point."]
    return "\n".join(lines) + "\n"


def _panels(series: Sequence[Series]) -> list[tuple[str, int]]:
    return sorted({(s.mode, s.steps_per_call) for s in series}, key=lambda p: (mode_rank(p[0]), p[1]))


def plot_group(series: Sequence[Series], runs: Sequence[Run], path: Path) -> Path:
    """One group's trend chart: a panel per (mode, K), a line per approach, steps marked."""
    panels = _panels(series)
    positions = sorted({p.run.position for s in series for p in s.points})
    columns = min(3, len(panels))
    rows = math.ceil(len(panels) / columns)
    figure = Figure(figsize=(4.2 * columns + 1, 3.2 * rows + 1.2), dpi=DPI, layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False)
    by_position = {run.position: run for run in runs}
    labels = [f"#{p} {by_position[p].short_commit[:7]}\n{by_position[p].created:%m-%d %H:%M}" for p in positions]
    x_of = {position: i for i, position in enumerate(positions)}
    approaches = []
    marks: dict[tuple, list[str]] = {}
    for ax, (mode, k) in zip(axes.flat, panels):
        for entry in (s for s in series if (s.mode, s.steps_per_call) == (mode, k)):
            colour = approach_colour(entry.approach)
            if entry.approach not in approaches:
                approaches.append(entry.approach)
            xs = [x_of[p.run.position] for p in entry.points]
            ys = [1e3 * p.median for p in entry.points]
            below = [1e3 * (p.median - p.low) if p.low is not None else 0.0 for p in entry.points]
            above = [1e3 * (p.high - p.median) if p.high is not None else 0.0 for p in entry.points]
            ax.errorbar(xs, ys, yerr=[below, above], color=colour, marker="o", markersize=3.5, linewidth=1.2,
                        capsize=2)
            for step in entry.steps:
                middle = (xs[step.index - 1] + xs[step.index]) / 2
                ax.axvline(middle, color=colour, linestyle="--", linewidth=1)
                # Stacked from the panel's top, so that several approaches' steps at one place stay readable.
                stacked = marks.setdefault((ax, middle), [])
                ax.text(middle, 0.97 - 0.07 * len(stacked), f" {_percent(step.ratio)}", color=colour, fontsize=7,
                        transform=ax.get_xaxis_transform(), va="top")
                stacked.append(entry.approach)
        ax.set_title(f"{mode}, K={k}", fontsize=10)
        ax.set_xticks(range(len(positions)), labels, fontsize=7)
        ax.set_xlim(-0.5, len(positions) - 0.5)
        ax.set_ylabel("ms per step (median, 95% CI)", fontsize=8)
        ax.grid(axis="y", alpha=0.3)
        ax.tick_params(axis="y", labelsize=8)
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    approaches.sort(key=approach_rank)
    handles = [Line2D([], [], color=approach_colour(name), marker="o", label=name) for name in approaches]
    handles.append(Line2D([], [], color="grey", linestyle="--", label="step change"))
    figure.legend(handles=handles, loc="outside lower center", ncols=len(handles), fontsize=8)
    figure.suptitle(f"Step-time history: {group_title(series[0].group)}", fontsize=11)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=DPI)
    return path


def write_history(history: History, out: Path) -> Path:
    """HISTORY.md and one chart per record group into ``out``; return the Markdown's path."""
    out.mkdir(parents=True, exist_ok=True)
    groups: dict[tuple, list[Series]] = {}
    for entry in history.series:
        groups.setdefault(entry.group, []).append(entry)
    charts = {}
    for group, members in groups.items():
        charts[group] = plot_group(members, history.runs, out / group_file(group)).name
    path = out / "HISTORY.md"
    path.write_text(to_markdown(history, charts))
    return path


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = ("Chart the step times of many runs (results files or folders of them) in commit order "
                          "and list the step changes, each with its commit range, size and 95% interval.")
    parser.add_argument("results", nargs="+", type=Path, help="results JSON files, or folders of them")
    parser.add_argument("--out", type=Path, default=Path("history"), metavar="DIR",
                        help="where HISTORY.md and the charts go (default: history/)")
    parser.add_argument("--machine", default=None, metavar="ID",
                        help="keep only this machine's runs (environment.machine_id); needed when the files come "
                             "from several machines")


def main(args: argparse.Namespace) -> int:
    from tfbench.benchmarks.outputs import check_dir, writing

    try:
        history_steps._ruptures()  # before reading anything: the one-line install hint
    except history_steps.MissingDependency as error:
        raise UsageError(str(error)) from None
    history = build(args.results, args.machine)
    with writing(check_dir(args.out, "the history"), "the history to"):
        path = write_history(history, args.out)
    steps = len(step_rows(history))
    print(f"history of {len(history.runs)} runs, {len(history.series)} series: {steps} step change"
          f"{'s' * (steps != 1)}, {len(history.skipped)} items not in the history -> {path}")
    return 0
