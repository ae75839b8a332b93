"""PNG charts of the results DataFrame.

Every ``plot_*(frame, path)`` draws only ``ok`` records, writes ``path`` and returns the rows it drew; with
nothing to draw it writes nothing and returns ``None``. Each approach keeps one colour in every chart
(:func:`reports.data.approach_colour`); modes are told apart by shade and hatching.

Figures are drawn with the Agg renderer through :class:`matplotlib.figure.Figure`, never through pyplot, so
no window and no global figure state is involved and nothing leaks between charts.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter

from tfbench.reports.data import approach_colour, approach_rank, latest, main_device_batch, ok, ordered
from tfbench.reports.markdown import sig

DPI = 100
FIGSIZE = (10, 5)  # inches: 1000 x 500 pixels at DPI
CURVES_FIGSIZE = (10, 8)  # the 2 x 2 loss / accuracy grid
LOG_SCALE_RATIO = 20  # a value axis whose max / min exceeds this is logarithmic
# Eager lighter, function the approach's own colour, XLA darker; hatching says the same for grey-scale prints.
MODE_STYLES = {"eager": (0.55, ""), "function": (0.0, "//"), "xla": (-0.4, "xx")}
OTHER_MODE_STYLE = (0.3, "..")
DEVICE_MARKERS = ("o", "s", "^", "D", "v")
LEGEND_COLUMNS = 5
PLAIN_NUMBER = FuncFormatter(lambda value, _: f"{value:,.10g}")  # 20,000 and 0.5, never 2e4 or 10^1


def mode_colour(colour: str, mode: str) -> tuple[float, float, float]:
    """The approach's colour shaded for a mode: mixed with white (eager) or black (xla)."""
    shade = MODE_STYLES.get(mode, OTHER_MODE_STYLE)[0]
    rgb = np.array(to_rgb(colour))
    mixed = rgb + (1 - rgb) * shade if shade >= 0 else rgb * (1 + shade)
    return tuple(float(c) for c in mixed)


def _hatch(mode: str) -> str:
    return MODE_STYLES.get(mode, OTHER_MODE_STYLE)[1]


def _new_figure(figsize: tuple[float, float] = FIGSIZE) -> Figure:
    return Figure(figsize=figsize, dpi=DPI, layout="constrained")


def _save(figure: Figure, path: str | Path) -> None:
    # No bbox_inches="tight": the image keeps exactly FIGSIZE x DPI pixels.
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=DPI)


def _log_if_wide(ax, values, axis: str = "y") -> None:
    """A logarithmic value axis when the values span more than LOG_SCALE_RATIO, ticked 1-2-5 in plain numbers."""
    values = np.asarray([v for v in values if v > 0], dtype=float)
    if values.size and values.max() / values.min() > LOG_SCALE_RATIO:
        target = ax.yaxis if axis == "y" else ax.xaxis
        (ax.set_yscale if axis == "y" else ax.set_xscale)("log")
        target.set_major_locator(LogLocator(subs=(1, 2, 5)))
        target.set_major_formatter(PLAIN_NUMBER)
        target.set_minor_formatter(NullFormatter())


def _approach_labels(ax, approaches: list[str], rotation: int = 20) -> None:
    ax.set_xticks(range(len(approaches)), approaches, rotation=rotation, ha="right" if rotation else "center")
    for label, approach in zip(ax.get_xticklabels(), approaches):
        label.set_color(approach_colour(approach))


def _mode_legend(figure: Figure, modes: list[str]) -> None:
    grey = "#7f7f7f"
    handles = [Patch(facecolor=mode_colour(grey, m), hatch=_hatch(m), edgecolor="white", label=m) for m in modes]
    figure.legend(handles=handles, loc="outside lower center", ncols=len(handles))


def _approach_legend(figure: Figure, approaches: list[str], line: bool = False) -> None:
    """The approaches' colours in rows under the panels."""
    handles = [Line2D([], [], color=approach_colour(a), label=a) if line else Patch(color=approach_colour(a), label=a)
               for a in approaches]
    figure.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), LEGEND_COLUMNS))


def _mode_bars(ax, data: pd.DataFrame, modes: list[str], value: str, low: str, high: str,
               scale: float = 1.0) -> list[str]:
    """Bars grouped by approach, one per mode; error bars from the ``low`` / ``high`` columns. Returns approaches."""
    approaches = sorted(data["approach"].unique(), key=approach_rank)
    width = 0.8 / len(modes)
    for j, mode in enumerate(modes):
        for i, approach in enumerate(approaches):
            x = i - 0.4 + width * (j + 0.5)
            row = data[(data["approach"] == approach) & (data["mode"] == mode)]
            if row.empty:  # unsupported, skipped, failed or not measured: say so rather than leave a silent gap
                ax.text(x, 0.01, "n/a", rotation=90, ha="center", va="bottom", fontsize=8, color="#555555",
                        transform=ax.get_xaxis_transform(), bbox={"facecolor": "white", "edgecolor": "none",
                                                                  "pad": 1})
                continue
            r = row.iloc[0]
            height = r[value] * scale
            error = None
            if not pd.isna(r[low]) and not pd.isna(r[high]):
                error = [[max(height - r[low] * scale, 0)], [max(r[high] * scale - height, 0)]]
            ax.bar(x, height, width, yerr=error, capsize=2, ecolor="#333333",
                   color=mode_colour(approach_colour(approach), mode), hatch=_hatch(mode), edgecolor="white",
                   linewidth=0.5)
    _approach_labels(ax, approaches)
    return approaches


def _modes(data: pd.DataFrame) -> list[str]:
    return list(dict.fromkeys(ordered(data)["mode"]))


def _workloads(data: pd.DataFrame) -> list[str]:
    return list(dict.fromkeys(ordered(data)["workload"]))


def _main_step_times(frame: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """The ok step-time rows of the chart device, smallest batch size and K, and a title suffix naming them."""
    step_times = ok(latest(frame), "step_time")
    selection = main_device_batch(step_times)
    if selection is None:
        return step_times, ""
    device, batch, steps_per_call = selection
    chosen = step_times[(step_times["device_label"] == device) & (step_times["batch_size"] == batch)
                        & (step_times["steps_per_call"] == steps_per_call)]
    return chosen, f"{device}, batch {batch}, K={steps_per_call}"


def plot_step_time(frame: pd.DataFrame, path: str | Path) -> pd.DataFrame | None:
    """Median step time by approach x mode with p10-p90 error bars, one panel per workload."""
    data, where = _main_step_times(frame)
    if data.empty:
        return None
    figure = _new_figure()
    workloads = _workloads(data)
    axes = figure.subplots(1, len(workloads), squeeze=False)[0]
    modes = _modes(data)
    for ax, workload in zip(axes, workloads):
        panel = data[data["workload"] == workload]
        _mode_bars(ax, panel, modes, "step_time_median_s", "step_time_p10_s", "step_time_p90_s", scale=1e3)
        _log_if_wide(ax, pd.concat([panel["step_time_p10_s"], panel["step_time_p90_s"]]) * 1e3)
        ax.set_title(workload)
        ax.set_ylabel("time per optimizer step (ms)")
        ax.grid(axis="y", alpha=0.3)
    figure.suptitle(f"Step time, median with 10th–90th percentile ({where}); lower is better")
    _mode_legend(figure, modes)
    _save(figure, path)
    return data


def plot_speedup(frame: pd.DataFrame, path: str | Path) -> pd.DataFrame | None:
    """Speedup over eager of the compiled modes, with its interval, one panel per workload."""
    data, where = _main_step_times(frame)
    data = data[(data["mode"] != "eager")].dropna(subset=["speedup_vs_eager"]) if not data.empty else data
    if data.empty:
        return None
    figure = _new_figure()
    workloads = _workloads(data)
    axes = figure.subplots(1, len(workloads), squeeze=False)[0]
    modes = _modes(data)
    for ax, workload in zip(axes, workloads):
        panel = data[data["workload"] == workload]
        _mode_bars(ax, panel, modes, "speedup_vs_eager", "speedup_low", "speedup_high")
        ax.axhline(1, color="#333333", linestyle="--", linewidth=1)
        _log_if_wide(ax, pd.concat([panel["speedup_vs_eager"], pd.Series([1.0])]))
        ax.set_title(workload)
        ax.set_ylabel("speedup over eager (x), higher is better")
        ax.grid(axis="y", alpha=0.3)
    figure.suptitle(f"Speedup over eager with its interval ({where}); dashed line: as fast as eager")
    _mode_legend(figure, modes)
    _save(figure, path)
    return data


def plot_throughput(frame: pd.DataFrame, path: str | Path) -> pd.DataFrame | None:
    """Best throughput of each approach (over modes and K) on each device at its smallest batch size."""
    step_times = ok(latest(frame), "step_time").dropna(subset=["throughput_sps"])
    if step_times.empty:
        return None
    smallest = step_times.groupby("device_label")["batch_size"].transform("min")
    candidates = ordered(step_times[step_times["batch_size"] == smallest])
    best = candidates.loc[candidates.groupby(["device_label", "workload", "approach"], sort=False)
                          ["throughput_sps"].idxmax()]
    data = ordered(best)
    devices = list(dict.fromkeys(data["device_label"]))
    workloads = _workloads(data)
    approaches = sorted(data["approach"].unique(), key=approach_rank)
    figure = _new_figure()
    axes = figure.subplots(1, len(workloads), squeeze=False)[0]
    width = 0.8 / len(approaches)
    for ax, workload in zip(axes, workloads):
        panel = data[data["workload"] == workload]
        for i, device in enumerate(devices):
            for j, approach in enumerate(approaches):
                row = panel[(panel["device_label"] == device) & (panel["approach"] == approach)]
                if row.empty:
                    continue
                r = row.iloc[0]
                x = i - 0.4 + width * (j + 0.5)
                ax.bar(x, r["throughput_sps"], width, color=approach_colour(approach), edgecolor="white",
                       linewidth=0.5)
                how = r["mode"] if int(r["steps_per_call"]) == 1 else f"{r['mode']} K={int(r['steps_per_call'])}"
                ax.annotate(how, (x, r["throughput_sps"]), xytext=(0, 2), textcoords="offset points",
                            rotation=90, ha="center", va="bottom", fontsize=7)
        batches = data.drop_duplicates("device_label").set_index("device_label")["batch_size"]
        ax.set_xticks(range(len(devices)), [f"{d}\nbatch {int(batches[d])}" for d in devices])
        ax.yaxis.set_major_formatter(PLAIN_NUMBER)
        _log_if_wide(ax, panel["throughput_sps"])
        ax.margins(y=0.15)
        ax.set_title(workload)
        ax.set_ylabel("training samples per second")
        ax.grid(axis="y", alpha=0.3)
    figure.suptitle("Throughput by device: each approach in its fastest mode (labelled); higher is better")
    _approach_legend(figure, approaches)
    _save(figure, path)
    return data


def _series(history: list[dict], key: str) -> tuple[list[float], list[float]]:
    points = [(h.get("epoch", i + 1), h[key]) for i, h in enumerate(history) if h.get(key) is not None]
    return [p[0] for p in points], [p[1] for p in points]


def plot_accuracy_curves(frame: pd.DataFrame, path: str | Path, workload: str) -> pd.DataFrame | None:
    """Loss and accuracy per epoch, on the training data and the test data, per approach, for one workload."""
    accuracies = ok(latest(frame), "accuracy")
    if accuracies.empty:
        return None
    data = ordered(accuracies[(accuracies["workload"] == workload)
                              & accuracies["history"].map(lambda h: isinstance(h, list) and len(h) > 0)])
    if data.empty:
        return None
    devices = list(dict.fromkeys(data["device_label"]))
    figure = _new_figure(CURVES_FIGSIZE)
    axes = figure.subplots(2, 2, sharex=True)
    with_validation = False
    for _, r in data.iterrows():
        colour = approach_colour(r["approach"])
        marker = DEVICE_MARKERS[devices.index(r["device_label"]) % len(DEVICE_MARKERS)]
        for row, metric in enumerate(("loss", "accuracy")):
            for column, keys in enumerate(((metric,), (f"test_{metric}", f"val_{metric}"))):
                for key in keys:
                    epochs, values = _series(r["history"], key)
                    if not values:
                        continue
                    validation = key.startswith("val_")
                    with_validation |= validation
                    axes[row, column].plot(epochs, values, color=colour, marker=marker, markersize=4,
                                           linestyle=":" if validation else "-")
    for column, data_name in enumerate(("training data", "test data")):
        axes[0, column].set_title(f"{data_name}")
        axes[0, column].set_ylabel("loss (cross-entropy)")
        axes[1, column].set_ylabel("accuracy")
        axes[1, column].set_xlabel("epoch")
        axes[1, column].xaxis.set_major_locator(MaxNLocator(integer=True))
    for ax in axes.flat:
        ax.grid(alpha=0.3)
    _approach_legend(figure, list(dict.fromkeys(data["approach"])), line=True)
    styles = []
    if len(devices) > 1:
        styles += [Line2D([], [], color="#555555", marker=DEVICE_MARKERS[i % len(DEVICE_MARKERS)], linestyle="",
                          label=device) for i, device in enumerate(devices)]
    if with_validation:
        styles.append(Line2D([], [], color="#555555", linestyle=":", label="validation split"))
    if styles:
        axes[1, 1].legend(handles=styles, loc="lower right", fontsize=8)
    figure.suptitle(f"Training curves, {workload} ({', '.join(dict.fromkeys(data['dataset']))})")
    _save(figure, path)
    return data


def plot_time_to_accuracy(frame: pd.DataFrame, path: str | Path) -> pd.DataFrame | None:
    """Training time until the target test accuracy, one horizontal bar per approach x workload (x device)."""
    data = ordered(ok(latest(frame), "accuracy"))
    if data.empty:
        return None
    several_devices = data["device_label"].nunique() > 1
    figure = _new_figure()
    ax = figure.subplots()
    labels = []
    longest = data["time_to_accuracy_s"].max()
    for y, (_, r) in enumerate(data.iterrows()):
        labels.append(f"{r['workload']} · {r['approach']}" + (f"\n{r['device_label']}" if several_devices else ""))
        if pd.isna(r["time_to_accuracy_s"]):
            ax.text(0, y, f"  target {r['target_accuracy']:.4g} not reached (final {r['test_accuracy']:.4f})",
                    va="center", fontsize=8, color="#555555")
            continue
        ax.barh(y, r["time_to_accuracy_s"], color=approach_colour(r["approach"]))
        ax.annotate(f"{sig(r['time_to_accuracy_s'])} s", (r["time_to_accuracy_s"], y), xytext=(3, 0),
                    textcoords="offset points", va="center", fontsize=8)
    ax.set_yticks(range(len(labels)), labels)
    ax.invert_yaxis()
    if not pd.isna(longest):
        ax.set_xlim(0, longest * 1.15)
    ax.set_xlabel("training time to the target test accuracy (s), shorter is better")
    ax.grid(axis="x", alpha=0.3)
    ax.set_title("Time to target accuracy")
    _save(figure, path)
    return data


def plot_batch_size(frame: pd.DataFrame, path: str | Path) -> pd.DataFrame | None:
    """Throughput against batch size per approach and mode, on the chart device; only with several batch sizes."""
    step_times = ok(latest(frame), "step_time").dropna(subset=["throughput_sps"])
    selection = main_device_batch(step_times)
    if selection is None:
        return None
    device, _, steps_per_call = selection
    data = step_times[(step_times["device_label"] == device) & (step_times["steps_per_call"] == steps_per_call)]
    # A line needs two batch sizes: an approach x mode measured at one batch size only is left out.
    several = data.groupby(["workload", "approach", "mode"])["batch_size"].transform("nunique") > 1
    data = ordered(data[several])
    if data.empty:
        return None
    workloads = _workloads(data)
    figure = _new_figure()
    axes = figure.subplots(1, len(workloads), squeeze=False)[0]
    linestyles = {"eager": ":", "function": "-", "xla": "--"}
    for ax, workload in zip(axes, workloads):
        panel = data[data["workload"] == workload]
        for (approach, mode), line in panel.groupby(["approach", "mode"], sort=False):
            line = line.sort_values("batch_size")
            ax.plot(line["batch_size"].astype(int), line["throughput_sps"], marker="o",
                    color=approach_colour(approach), linestyle=linestyles.get(mode, "-."))
        ax.set_xscale("log", base=2)
        batches = sorted(int(b) for b in panel["batch_size"].unique())
        ax.set_xticks(batches, [str(b) for b in batches])
        ax.minorticks_off()
        ax.yaxis.set_major_formatter(PLAIN_NUMBER)
        _log_if_wide(ax, panel["throughput_sps"])
        ax.set_title(workload)
        ax.set_xlabel("batch size (samples)")
        ax.set_ylabel("training samples per second")
        ax.grid(alpha=0.3)
    _approach_legend(figure, sorted(data["approach"].unique(), key=approach_rank), line=True)
    modes = _modes(data)
    if len(modes) > 1:
        axes[0].legend(handles=[Line2D([], [], color="#555555", linestyle=linestyles.get(m, "-."), label=m)
                                for m in modes], loc="best", fontsize=8)
    figure.suptitle(f"Throughput against batch size ({device}, K={steps_per_call}"
                    f"{', ' + modes[0] if len(modes) == 1 else ''}); higher is better")
    _save(figure, path)
    return data
