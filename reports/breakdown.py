"""Where a step's time goes: the ``breakdown`` records as a table, the gaps to the fastest, and a stacked bar chart.

A breakdown record (``benchmarks/stages/breakdown.py``) splits one profiled step of an approach and mode
into op categories (``breakdown_s_<category>`` columns, summing to ``profiled_step_s``). The report shows
them per device and workload, and for each approach more than 10% slower than the fastest approach of the
same mode, which categories make the difference: the cost shown, beside the approach's own account of it
(``known_cost``, given for the device kind it was measured on).
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure
from tabulate import tabulate

from tfbench.benchmarks.roofline import Roofs, step_floor
from tfbench.implementations.costs import step_costs
from tfbench.implementations.workloads import get_workload
from tfbench.reports.data import missing, ok, ordered, prose
from tfbench.reports.roofline import bandwidth_columns

CATEGORIES = ("conv", "pool", "matmul", "elementwise", "optimizer", "copies", "rest")
LABELS = {"conv": "conv", "pool": "pooling", "matmul": "matmul", "elementwise": "element-wise",
          "optimizer": "optimizer update", "copies": "copies", "rest": "rest (no op running)"}
COLOURS = {"conv": "#4c72b0", "pool": "#55a868", "matmul": "#c44e52", "elementwise": "#8172b2",
           "optimizer": "#ccb974", "copies": "#64b5cd", "rest": "#bbbbbb"}
GAP = 0.10  # an approach more than 10% slower than the fastest of its mode gets its difference explained
INTRO = (
    "One compiled call per approach and mode, traced by TensorFlow's profiler (`tf.profiler.experimental`), "
    "its step split by what ran: each op category's share of the wall time during which ops ran (ops run on "
    "several threads at once, so their own times are scaled to the wall time they covered), and *rest*, the "
    "time no op ran: dispatch, the executor's control flow, Python, the iterator. Under XLA the optimizer's "
    "element-wise update is fused with other element-wise work and counted there. Milliseconds per step, "
    "measured under the profiler, which adds a little to each op."
)


# A cost model's op category -> the breakdown's (the profiler shows the loss as element-wise ops).
COST_CATEGORY = {"loss": "elementwise"}
FLOOR_NOTE = (
    "The *floor* row is the roofline model's least time for each category of the step's ops (the roofline "
    "section), from the roofs the step-time group of the same batch size measured. Set against the fastest "
    "compiled step, it shows which op holds the step back: the largest difference between a category's time "
    "and its floor."
)


def _ms(seconds: float) -> str:
    if missing(seconds):
        return "—"
    value = seconds * 1e3
    if value == 0:
        return "0"
    rounded = float(f"{value:.3g}")
    decimals = max(3 - 1 - math.floor(math.log10(abs(rounded))), 0)
    return f"{rounded:,.{decimals}f}"


def breakdowns(frame: pd.DataFrame) -> pd.DataFrame:
    found = ok(frame, "breakdown") if not frame.empty else frame
    if found.empty or "profiled_step_s" not in found:
        return found.iloc[:0]
    for category in CATEGORIES:
        column = f"breakdown_s_{category}"
        if column not in found:
            found = found.assign(**{column: 0.0})
    return ordered(found.dropna(subset=["profiled_step_s"]))


def floor_by_category(frame: pd.DataFrame, breakdown: pd.Series) -> dict[str, float] | None:
    """The roofline floor of each op category of ``breakdown``'s step, from the roofs of the step-time records
    of its device, workload and batch size (its own run's if it has them); None without such records."""
    steps = ok(frame, "step_time")
    if steps.empty or "roofs_peak_gflops" not in steps:
        return None
    same = steps[(steps["device_label"] == breakdown["device_label"]) & (steps["workload"] == breakdown["workload"])
                 & (steps["batch_size"] == breakdown["batch_size"])].dropna(subset=["roofs_peak_gflops"])
    own_run = same[same["run_id"] == breakdown["run_id"]]
    same = own_run if not own_run.empty else same
    if same.empty:
        return None
    roofs_of = same.iloc[-1]
    bandwidth = {size: float(roofs_of[column]) for size, column in bandwidth_columns(same)
                 if not missing(roofs_of[column])}
    ops = step_costs(get_workload(breakdown["workload"]), int(breakdown["batch_size"]))
    floor = step_floor(ops, Roofs(float(roofs_of["roofs_peak_gflops"]), bandwidth))
    by_category = dict.fromkeys(CATEGORIES, 0.0)
    for op, (_, seconds, _) in zip(ops, floor.per_op, strict=True):
        by_category[COST_CATEGORY.get(op.category, op.category)] += seconds
    return by_category


def furthest_from_floor(record: pd.Series, floor: dict[str, float]) -> list[tuple[str, float, float]]:
    """(category, time, floor) of ``record``'s categories, the largest excess over the floor first. Under XLA
    the optimizer's update is fused into element-wise work, so their floors are compared together."""
    floor = dict(floor)
    if record["mode"] == "xla":
        floor["elementwise"] += floor.pop("optimizer")
    rows = [(c, float(record[f"breakdown_s_{c}"]), floor.get(c, 0.0)) for c in CATEGORIES if c in floor]
    return sorted(rows, key=lambda row: row[2] - row[1])


def _table(group: pd.DataFrame, floor: dict[str, float] | None) -> str:
    rows = [[r["approach"], r["mode"], int(r["steps_per_call"]), _ms(r["profiled_step_s"])]
            + [_ms(r[f"breakdown_s_{c}"]) for c in CATEGORIES] for _, r in group.iterrows()]
    if floor is not None:
        rows.append(["*floor*", "", "", _ms(sum(floor.values()))] + [_ms(floor[c]) for c in CATEGORIES])
    return tabulate(rows, headers=["Approach", "Mode", "K", "Step"] + [LABELS[c] for c in CATEGORIES],
                    tablefmt="github", disable_numparse=True)


def gaps(group: pd.DataFrame) -> list[dict]:
    """Each approach more than 10% slower than the fastest of the same mode: by how much, and by category."""
    found = []
    for mode, same_mode in group.groupby("mode", sort=False):
        fastest = same_mode.loc[same_mode["profiled_step_s"].idxmin()]
        for _, r in same_mode.iterrows():
            ratio = r["profiled_step_s"] / fastest["profiled_step_s"]
            if ratio <= 1 + GAP:
                continue
            differences = {c: r[f"breakdown_s_{c}"] - fastest[f"breakdown_s_{c}"] for c in CATEGORIES}
            found.append({"approach": r["approach"], "mode": mode, "fastest": fastest["approach"], "ratio": ratio,
                          "gap_s": r["profiled_step_s"] - fastest["profiled_step_s"], "differences": differences,
                          "known_cost": None if missing(r.get("known_cost")) else r.get("known_cost")})
    return found


def _gap_text(gap: dict) -> str:
    largest = sorted(gap["differences"].items(), key=lambda item: -item[1])
    parts = [f"{LABELS[c]} {'+' if d >= 0 else '−'}{_ms(abs(d))} ms" for c, d in largest if abs(d) >= 0.05 *
             gap["gap_s"]]
    return ", ".join(parts) or "spread over every category"


def breakdown_section(frame: pd.DataFrame) -> list[str]:
    found = breakdowns(frame)
    if found.empty:
        return ["No breakdown records in these results."]
    out = [INTRO, ""]
    for (device, workload, batch), group in found.groupby(["device_label", "workload", "batch_size"], sort=False):
        floor = floor_by_category(frame, group.iloc[0])
        out += [f"### {workload} on {device}, batch {int(batch)}", "", _table(group, floor), ""]
        compiled = group[group["mode"] != "eager"]
        if floor is not None and not compiled.empty:
            fastest = compiled.loc[compiled["profiled_step_s"].idxmin()]
            fused = fastest["mode"] == "xla"  # the optimizer's floor joins the element-wise one
            worst = [f"{LABELS[c]}{' with the optimizer update' if fused and c == 'elementwise' else ''} {_ms(t)} ms "
                     f"against a floor of {_ms(f)}" for c, t, f in furthest_from_floor(fastest, floor)[:3] if t > f]
            out += [f"{FLOOR_NOTE} Here the fastest compiled step is {fastest['approach']} {fastest['mode']} "
                    f"K={int(fastest['steps_per_call'])}, {_ms(fastest['profiled_step_s'])} ms against a floor of "
                    f"{_ms(sum(floor.values()))} ms; furthest from their floors: {'; '.join(worst)}.", ""]
        rows = [[g["approach"], g["mode"], g["fastest"], f"{g['ratio']:.2f}x", f"+{_ms(g['gap_s'])} ms",
                 _gap_text(g), prose(g["known_cost"]) if g["known_cost"] else "—"] for g in gaps(group)]
        if rows:
            out += [f"More than {GAP:.0%} slower than the fastest approach of the same mode, and where the "
                    "difference lies (ms per step against the fastest; the approach's own account beside it):", "",
                    tabulate(rows, headers=["Approach", "Mode", "Fastest", "Step vs fastest", "Gap", "Difference",
                                            "Stated cost"], tablefmt="github", disable_numparse=True), ""]
    return out[:-1]


def plot_breakdown(frame: pd.DataFrame, path: str | Path, workload: str) -> pd.DataFrame | None:
    """Stacked bars of one workload's step split by category: a panel per mode, each on its own scale (an eager
    step is ten times a compiled one, which would flatten the compiled bars), one bar per approach (and device),
    and the step's roofline floor as a dashed line where the step-time records give it."""
    found = breakdowns(frame)
    found = found[found["workload"] == workload] if not found.empty else found
    if found.empty:
        return None
    several_devices = found["device_label"].nunique() > 1
    modes = list(dict.fromkeys(found["mode"]))
    figure = Figure(figsize=(4.2 * len(modes) + 1, 5), dpi=100, layout="constrained")
    axes = figure.subplots(1, len(modes), squeeze=False)[0]
    floor_line = None
    for ax, mode in zip(axes, modes):
        panel = found[found["mode"] == mode]
        labels = [r["approach"] + (f"\n{r['device_label']}" if several_devices else "") for _, r in panel.iterrows()]
        bottom = [0.0] * len(panel)
        for category in CATEGORIES:
            heights = [1e3 * v for v in panel[f"breakdown_s_{category}"].fillna(0.0)]
            ax.bar(range(len(panel)), heights, bottom=bottom, color=COLOURS[category], label=LABELS[category])
            bottom = [b + h for b, h in zip(bottom, heights)]
        floor = floor_by_category(frame, panel.iloc[0])
        if floor is not None and not several_devices:
            floor_line = ax.axhline(1e3 * sum(floor.values()), color="black", linestyle="--", linewidth=1)
        ax.set_xticks(range(len(panel)), labels, fontsize=8, rotation=30, ha="right")
        steps = sorted({int(k) for k in panel["steps_per_call"]})
        ax.set_title(f"{mode}, K={'/'.join(map(str, steps))}", fontsize=10)
        ax.set_ylim(0, max(bottom) * 1.1)
    axes[0].set_ylabel("ms per step (under the profiler)")
    handles, names = axes[0].get_legend_handles_labels()
    if floor_line is not None:
        handles, names = [*handles, floor_line], [*names, "floor (roofline model)"]
    figure.legend(handles, names, loc="outside right center", fontsize=8)
    figure.suptitle(f"Where the time of one {workload} step goes, batch {int(found['batch_size'].iloc[0])}")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    return found
