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

from tfbench.reports.data import missing, ok, ordered

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


def _table(group: pd.DataFrame) -> str:
    rows = [[r["approach"], r["mode"], int(r["steps_per_call"]), _ms(r["profiled_step_s"])]
            + [_ms(r[f"breakdown_s_{c}"]) for c in CATEGORIES] for _, r in group.iterrows()]
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
        out += [f"### {workload} on {device}, batch {int(batch)}", "", _table(group), ""]
        rows = [[g["approach"], g["mode"], g["fastest"], f"{g['ratio']:.2f}x", f"+{_ms(g['gap_s'])} ms",
                 _gap_text(g), g["known_cost"] or "—"] for g in gaps(group)]
        if rows:
            out += [f"More than {GAP:.0%} slower than the fastest approach of the same mode, and where the "
                    "difference lies (ms per step against the fastest; the approach's own account beside it):", "",
                    tabulate(rows, headers=["Approach", "Mode", "Fastest", "Step vs fastest", "Gap", "Difference",
                                            "Stated cost"], tablefmt="github", disable_numparse=True), ""]
    return out[:-1]


def plot_breakdown(frame: pd.DataFrame, path: str | Path, workload: str) -> pd.DataFrame | None:
    """Stacked bars, one per approach x mode (and device), of one workload's step split by category."""
    found = breakdowns(frame)
    found = found[found["workload"] == workload] if not found.empty else found
    if found.empty:
        return None
    several_devices = found["device_label"].nunique() > 1
    labels = [f"{r['approach']}\n{r['mode']} K={int(r['steps_per_call'])}"
              + (f"\n{r['device_label']}" if several_devices else "") for _, r in found.iterrows()]
    figure = Figure(figsize=(max(8, 1.1 * len(found) + 2), 5), dpi=100, layout="constrained")
    ax = figure.add_subplot()
    bottom = [0.0] * len(found)
    for category in CATEGORIES:
        heights = [1e3 * v for v in found[f"breakdown_s_{category}"].fillna(0.0)]
        ax.bar(range(len(found)), heights, bottom=bottom, color=COLOURS[category], label=LABELS[category])
        bottom = [b + h for b, h in zip(bottom, heights)]
    ax.set_xticks(range(len(found)), labels, fontsize=8)
    ax.set_ylabel("ms per step (under the profiler)")
    ax.set_title(f"Where the time of one {workload} step goes, batch {int(found['batch_size'].iloc[0])}")
    ax.legend(fontsize=8, ncols=4, loc="upper left")
    ax.set_ylim(0, max(bottom) * 1.25)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    return found
