"""The report's "Scaling out with tf.distribute" section and its chart, from the ``distributed`` records.

For each device, workload, per-replica batch, mode and K: each approach's step time, throughput and
scaling efficiency at every replica count, and its cost against the fastest style at that count; the chart
draws the scaling efficiency against the replica count, one line per approach. Pure pandas and matplotlib,
like the rest of ``reports/``.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from tfbench.reports.data import approach_colour, approach_rank, latest, ok, ordered
from tfbench.reports.markdown import DASH, NOISY_MARK, _table, ms, sig, times

KIND = "distributed"
STRATEGY_NAMES = {"none": "one device", "mirrored": "MirroredStrategy", "multiworker": "MultiWorkerMirroredStrategy"}
LOGICAL_CPU_NOTE = (
    "**Logical CPU devices share the same cores.** A MirroredStrategy over a CPU split into logical devices "
    "runs every replica on the same cores, so its \"scaling\" measures what the strategy costs (splitting "
    "the batch, running each replica, the all-reduce), never a speed-up: an efficiency of 1/N there means the "
    "strategy cost nothing. The same holds for several worker processes on one machine. Only separate GPUs or "
    "machines can show a real speed-up.")


def _records(frame: pd.DataFrame) -> pd.DataFrame:
    return ok(frame, KIND) if not frame.empty and "strategy" in frame.columns else frame.iloc[0:0]


def _percent(value) -> str:
    return DASH if pd.isna(value) else f"{100 * value:.0f}%"


def section(frame: pd.DataFrame) -> list[str]:
    """Markdown lines of the section (the caller adds the heading)."""
    records = _records(latest(frame))
    if records.empty:
        return ["No distributed records (run `tfbench run --strategy mirrored` or `--strategy multiworker`)."]
    out = ["Every approach under a `tf.distribute` strategy, each replica at the same batch (the global batch "
           "grows with the replicas), timed interleaved with the same approaches on one device. Throughput "
           "counts the global batch; **scaling efficiency** = throughput(N) / (N x throughput(1)), against "
           "one replica of the same strategy (multiworker: against one device); **vs fastest** is the step "
           "time over the fastest approach's at the same replica count, mode and K.", "", LOGICAL_CPU_NOTE, ""]
    if any(records["device_kind"].fillna("cpu") == "cpu"):
        out += ["Measured on CPU devices here: read the efficiencies below as the strategy's overhead.", ""]
    keys = ["device_label", "workload", "batch_size", "mode", "steps_per_call", "strategy"]
    for (device, workload, batch, mode, k, strategy), group in records.groupby(keys, sort=False):
        if strategy == "none":
            continue
        baseline = records[(records["device_label"] == device) & (records["workload"] == workload)
                           & (records["batch_size"] == batch) & (records["mode"] == mode)
                           & (records["steps_per_call"] == k) & (records["strategy"] == "none")
                           & (records["variant"] == f"{strategy}_baseline")]
        rows = []
        for _, r in ordered(pd.concat([baseline, group])).sort_values(
                ["approach", "replicas"], key=lambda c: c.map(approach_rank) if c.name == "approach" else c,
                kind="stable").iterrows():
            noisy = f" {NOISY_MARK}" if r.get("noisy") is True else ""
            rows.append([r["approach"], "1 (no strategy)" if r["strategy"] == "none" else int(r["replicas"]),
                         int(r["global_batch_size"]), ms(r["step_time_median_s"]) + noisy, sig(r["throughput_sps"]),
                         _percent(r.get("scaling_efficiency")), times(r.get("vs_fastest")),
                         times(r.get("vs_single_device"))])
        out += [f"**{STRATEGY_NAMES.get(strategy, strategy)}, {workload} on {device}**, {int(batch)} per replica, "
                f"{mode}, K={int(k)}:", "",
                _table(["Approach", "Replicas", "Global batch", "Step time", "Samples/s", "Scaling efficiency",
                        "vs fastest", "vs one device"], rows), ""]
    out += _style_costs(records)
    return out


def _style_costs(records: pd.DataFrame) -> list[str]:
    """One line per replica count: each style's cost relative to the fastest under the strategy."""
    lines = []
    keys = ["device_label", "workload", "batch_size", "mode", "steps_per_call", "strategy", "replicas"]
    for (device, workload, batch, mode, k, strategy, replicas), group in records.groupby(keys, sort=False):
        if strategy == "none" or len(group) < 2:
            continue
        group = group.sort_values("vs_fastest", kind="stable")
        costs = ", ".join(f"{r['approach']} {times(r['vs_fastest'])}" for _, r in group.iterrows())
        lines.append(f"- {STRATEGY_NAMES.get(strategy, strategy)} x{int(replicas)}, {workload} on {device}, "
                     f"batch {int(batch)} per replica, {mode} K={int(k)}: {costs}")
    return (["Each style's step time against the fastest under the strategy:", ""] + lines) if lines else []


def plot_scaling(frame: pd.DataFrame, path: str | Path) -> pd.DataFrame | None:
    """Scaling efficiency against replicas, one panel per strategy and workload, one colour per approach and
    one line style per K; the ideal (1) dashed and, for CPU devices, 1/N dotted (shared cores, no overhead).
    Returns the rows drawn, or None."""
    records = _records(latest(frame))
    records = records[(records["strategy"] != "none") & records["scaling_efficiency"].notna()] \
        if not records.empty and "scaling_efficiency" in records.columns else records.iloc[0:0]
    if records.empty:
        return None
    panels = list(dict.fromkeys(zip(records["strategy"], records["workload"])))
    figure = Figure(figsize=(5 * len(panels) + 1, 5), dpi=100, layout="constrained")
    axes = figure.subplots(1, len(panels), squeeze=False)[0]
    ks = sorted(records["steps_per_call"].unique())
    styles = dict(zip(ks, ("-", "--", ":", "-.")))
    settings = records[["mode", "batch_size", "device_label"]].drop_duplicates()
    handles = {}
    for ax, (strategy, workload) in zip(axes, panels):
        panel = records[(records["strategy"] == strategy) & (records["workload"] == workload)]
        for (approach, mode, k, batch, device), line in ordered(panel).groupby(
                ["approach", "mode", "steps_per_call", "batch_size", "device_label"], sort=False):
            line = line.sort_values("replicas")
            label = approach + (f", K={int(k)}" if len(ks) > 1 else "")
            if len(settings) > 1:
                label += f" ({mode}, b{int(batch)}, {device})"
            (handle,) = ax.plot(line["replicas"], line["scaling_efficiency"], marker="o",
                                linestyle=styles.get(k, "-"), color=approach_colour(approach), label=label)
            handles.setdefault(label, handle)
        replicas = sorted(int(n) for n in panel["replicas"].unique())
        handles.setdefault("ideal (1)", ax.axhline(1.0, color="grey", linestyle="--", linewidth=1))
        if (panel["device_kind"].fillna("cpu") == "cpu").all():
            xs = [1 + i * (max(replicas) - 1) / 200 for i in range(201)]  # a smooth curve, not a polyline
            (shared,) = ax.plot(xs, [1 / n for n in xs], color="black", linestyle=":", linewidth=1)
            handles.setdefault("1/N: shared cores, no overhead", shared)
        ax.set_xticks(replicas if 1 in replicas else [1, *replicas])
        ax.set_xlabel("replicas")
        ax.set_ylabel("scaling efficiency")
        ax.set_ylim(0, 1.05)
        ax.set_title(f"{STRATEGY_NAMES.get(strategy, strategy)}, {workload}")
    figure.legend(list(handles.values()), list(handles), loc="outside right center", fontsize="small")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    return records
