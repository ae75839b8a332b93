"""The report's K-sweep section and chart, from the ``k_sweep`` records: where more steps per call stop paying.

Each record is one approach x workload x mode swept over K = 1, 2, 4, ...; its ``knee_k`` is the smallest K
from which on each doubling gains under 5% (found from medians, by benchmarks/stages/k_sweep.py). The table
gives the knee and what K=1 -> knee gained; the chart draws step time against K on a log2 axis. Pure pandas
and matplotlib, like the rest of ``reports/``.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from tfbench.reports.data import approach_colour, latest, missing, ok, ordered
from tfbench.reports.markdown import DASH, _table, ms, times

KIND = "k_sweep"
MODE_STYLES = {"function": "-", "xla": "--"}


def _records(frame: pd.DataFrame) -> pd.DataFrame:
    records = ok(latest(frame), KIND)
    if records.empty or "k_values" not in records.columns:
        return records.iloc[0:0]
    return ordered(records)


def _curve(record: pd.Series) -> list[tuple[int, float]]:
    """(K, median seconds per step) of the K that were measured."""
    return [(int(k), float(t)) for k, t in zip(record["k_values"], record["k_step_time_s"]) if not missing(t)]


def knee_gain(record: pd.Series) -> tuple[float | None, float | None, float | None]:
    """(t(K=1) / t(knee), and the knee's own t; t at the sweep's last K when there is no knee)."""
    curve = dict(_curve(record))
    if 1 not in curve or not curve:
        return None, None, None
    knee = record.get("knee_k")
    target = int(knee) if not missing(knee) else max(curve)
    return curve[1] / curve[target], curve[1], curve[target]


def _deciding_interval(record: pd.Series) -> str:
    """The interval of the ratio that made the knee: t(next K) / t(knee)."""
    knee, ratios = record.get("knee_k"), record.get("k_doubling_ratios")
    if missing(knee) or not isinstance(ratios, list):
        return DASH
    measured = [k for k, _ in _curve(record)]
    index = measured.index(int(knee)) if int(knee) in measured else None
    if index is None or index >= len(ratios):
        return DASH
    ratio, low, high = ratios[index]
    return f"{ratio:.2f} [{low:.2f}, {high:.2f}]"


def section(frame: pd.DataFrame) -> list[str]:
    """Markdown lines of the section (the caller adds the heading)."""
    records = _records(frame)
    if records.empty:
        return ["No K-sweep records (run `tfbench run --profile full --stages k_sweep`)."]
    out = ["Each approach's step time at K = 1, 2, 4 ... steps per compiled call (batch "
           f"{', '.join(str(int(b)) for b in records['batch_size'].unique())}, device-resident batches), timed "
           "interleaved in one process. **Knee**: the smallest K from which on each doubling of K gains under "
           "5% per step, from the medians; **gain** is the step time at K=1 over the step time at the knee "
           "(at the largest K when the sweep found no knee). The last column is the ratio t(next K) / t(knee) "
           "that made it the knee, with its paired block-bootstrap interval: an interval reaching below 0.95 "
           "means the knee is within the noise.", ""]
    rows = []
    for _, r in records.iterrows():
        gain, t1, t_knee = knee_gain(r)
        largest = max((k for k, _ in _curve(r)), default=None)
        knee = DASH if missing(r.get("knee_k")) else f"K={int(r['knee_k'])}"
        if missing(r.get("knee_k")) and largest is not None:
            knee = f"none up to K={largest}"
        rows.append([r["workload"], r["approach"], r["mode"], knee, ms(t1), ms(t_knee), times(gain),
                     _deciding_interval(r)])
    out += [_table(["Workload", "Approach", "Mode", "Knee", "Step at K=1", "Step at knee", "Gain",
                    "Ratio after the knee"], rows), ""]
    devices = records["device_label"].unique()
    if len(devices) > 1:
        out += [f"Devices: {', '.join(devices)}.", ""]
    return out


def plot_k_sweep(frame: pd.DataFrame, path: str | Path) -> Path | None:
    """Step time (ms) against K on a log2 axis, one panel per workload, one colour per approach, solid for
    function and dashed for xla; each median's interval as an error bar, the knee as a ring. None when there
    is no data."""
    records = _records(frame)
    if records.empty:
        return None
    workloads = list(dict.fromkeys(records["workload"]))
    figure = Figure(figsize=(5.5 * len(workloads) + 2, 4.5), dpi=100, layout="constrained")
    axes = figure.subplots(1, len(workloads), squeeze=False)[0]
    handles, knee_marked = {}, False
    for ax, workload in zip(axes, workloads):
        for _, r in records[records["workload"] == workload].iterrows():
            curve = _curve(r)
            if not curve:
                continue
            intervals = dict(zip(r["k_values"], r["k_step_time_ci"]))
            ks = [k for k, _ in curve]
            ts = [t * 1e3 for _, t in curve]
            low = [t - 1e3 * intervals[k][0] if intervals.get(k) else 0 for k, t in zip(ks, ts)]
            high = [1e3 * intervals[k][1] - t if intervals.get(k) else 0 for k, t in zip(ks, ts)]
            bars = ax.errorbar(ks, ts, yerr=[[max(v, 0) for v in low], [max(v, 0) for v in high]], marker="o",
                               markersize=3, capsize=2, color=approach_colour(r["approach"]),
                               linestyle=MODE_STYLES.get(r["mode"], ":"))
            handles.setdefault(f"{r['approach']}, {r['mode']}", bars)
            if not missing(r.get("knee_k")) and int(r["knee_k"]) in ks:
                knee_t = ts[ks.index(int(r["knee_k"]))]
                ax.scatter([int(r["knee_k"])], [knee_t], s=110, facecolors="none",
                           edgecolors=approach_colour(r["approach"]), linewidths=1.5, zorder=5)
                knee_marked = True
        ax.set_xscale("log", base=2)
        all_ks = sorted({int(k) for ks in records["k_values"] for k in ks})
        ax.set_xticks(all_ks, [str(k) for k in all_ks])
        ax.set_xlabel("K (steps per compiled call)")
        ax.set_ylabel("step time (ms, median)")
        ax.set_ylim(bottom=0)
        ax.set_title(f"{workload}, batch {int(records['batch_size'].iloc[0])}")
        ax.grid(True, alpha=0.3)
    if knee_marked:  # one legend entry for every approach's ring
        handles["knee (ring)"] = Line2D([], [], marker="o", markersize=10, markerfacecolor="none",
                                        markeredgecolor="black", linestyle="none")
    figure.legend(list(handles.values()), list(handles), loc="outside right center", fontsize="small")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    return path
