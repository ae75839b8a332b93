"""The report's "Tutorials as published" section, its chart, and the reproduced curves of the recipes.

Pure functions of the results DataFrame, like the rest of :mod:`tfbench.reports`: one table row per recipe
with a published loop (its ``as_published`` record, joined with the same recipe's ``recipe`` record of the
same machine for the fixed loop's accuracy); :func:`plot_as_published` draws time per step on a log scale
(as published / fixed eager / best mode) beside the accuracies (as published / fixed / documented);
:func:`plot_recipe_curves` draws each recipe's figure per epoch against the one its tutorial printed.

A capped run (fewer epochs than the tutorial ran) is shown as such, "after 1/10 epochs", and is never put
beside the documented figure as a reproduction.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from tfbench.reports.data import ok

DPI = 100
BARS = (("as published", "#d62728"), ("fixed, eager", "#ff9896"), ("fixed, best mode", "#1f77b4"))
ACCURACY_BARS = (("as published", "#d62728"), ("fixed", "#1f77b4"), ("documented", "#7f7f7f"))


def _present(value) -> bool:
    return value is not None and value is not pd.NA and not (isinstance(value, float) and np.isnan(value))


def recipe_full_length(record: pd.Series) -> bool | None:
    """Whether a recipe record ran all the tutorial's epochs; None when an old record does not say."""
    if _present(record.get("full_length")):
        return bool(record["full_length"])
    if _present(record.get("documented_epochs")) and _present(record.get("epochs")):
        return int(record["epochs"]) >= int(record["documented_epochs"])
    return None


def recipe_epochs(record: pd.Series) -> str:
    """"10/10" (epochs run / documented), or the epochs run alone when the record does not say."""
    from tfbench.reports.markdown import DASH

    if not _present(record.get("epochs")):
        return DASH
    documented = f"/{int(record['documented_epochs'])}" if _present(record.get("documented_epochs")) else ""
    return f"{int(record['epochs'])}{documented}"


def recipe_figure(record: pd.Series) -> float | None:
    """The fixed recipe's figure: the reproduced one if full length, else the one after its last epoch."""
    if recipe_full_length(record) is False:
        value = record.get("final_accuracy")
        if not _present(value):  # an older capped record stored its last figure as "reproduced"
            value = record.get("reproduced_accuracy")
        return value if _present(value) else None
    value = record.get("reproduced_accuracy")
    return value if _present(value) else None


def joined(frame: pd.DataFrame) -> pd.DataFrame:
    """The ok ``as_published`` records, each with its recipe record's ``fixed_*`` columns (same machine)."""
    # Oldest run first, so that "the last" of a recipe's records is its newest run's, whatever the file names.
    published = ok(frame, "as_published").sort_values("run_updated", kind="stable")
    if published.empty:
        return published
    recipes = ok(frame, "recipe").sort_values("run_updated", kind="stable")
    rows = []
    for _, row in published.iterrows():
        same = recipes[(recipes["variant"] == row["variant"]) & (recipes["machine"] == row["machine"])]
        fixed = same.iloc[-1] if not same.empty else None
        rows.append({**row.to_dict(),
                     "fixed_accuracy": None if fixed is None else recipe_figure(fixed),
                     "fixed_epochs": None if fixed is None else recipe_epochs(fixed),
                     "fixed_full_length": None if fixed is None else recipe_full_length(fixed)})
    return pd.DataFrame(rows)


def _time(record: pd.Series, prefix: str) -> str:
    """A median step time, marked when its samples were noisy (as the step-time tables mark them)."""
    from tfbench.benchmarks.results import NOISY_IQR_FRACTION
    from tfbench.reports.markdown import NOISY_MARK, ms

    median, iqr = record.get(f"{prefix}_median"), record.get(f"{prefix}_iqr")
    noisy = _present(median) and _present(iqr) and median > 0 and iqr / median > NOISY_IQR_FRACTION
    return ms(median) + (NOISY_MARK if noisy else "")


def _after(value, full_length, epochs: str) -> str:
    from tfbench.reports.markdown import DASH, accuracy

    if not _present(value):
        return DASH
    return accuracy(value) if full_length else f"{accuracy(value)} (capped, {epochs} epochs)"


def section(frame: pd.DataFrame) -> list[str]:
    """Markdown lines: one row per recipe, time per step as published vs fixed, and accuracy."""
    from tfbench.reports.markdown import DASH, NOISY_MARK, _table, _text, accuracy, times

    rows_frame = joined(frame)
    if rows_frame.empty:
        return ["No as-published records in these results."]
    rows = []
    for _, r in rows_frame.iterrows():
        published_epochs = f"{int(r['published_epochs'])}/{int(r['documented_epochs'])}"
        fraction = r.get("train_fraction")
        if _present(fraction) and float(fraction) < 1:  # a budgeted run's share of one epoch's steps
            published_epochs = f"{float(fraction):.0%} of one of {int(r['documented_epochs'])}"
        ci = r.get("published_over_best_ci")
        interval = f" ({ci[0]:.1f}–{ci[1]:.1f})" if isinstance(ci, (list, tuple)) and len(ci) == 2 else ""
        documented = accuracy(r["documented_accuracy"]) if _present(r["documented_accuracy"]) else "not reported"
        if _present(r["documented_accuracy"]):
            documented += f" (epoch {int(r['documented_epoch'])})" if _present(r.get("documented_epoch")) else ""
        rows.append([r["variant"], r["device_label"], str(int(r["published_batch_size"])),
                     _time(r, "published_step_time_s"), _time(r, "fixed_eager_step_time_s"),
                     f"{_time(r, 'best_step_time_s')} ({r['best_mode']}, K={int(r['best_steps_per_call'])})",
                     times(r.get("published_over_fixed_eager")), times(r["published_over_best"]) + interval,
                     _text(r["documented_metric"]),
                     _after(r["published_accuracy"], bool(r["published_full_length"]), published_epochs),
                     _after(r["fixed_accuracy"], r["fixed_full_length"] is not False, r["fixed_epochs"])
                     if _present(r["fixed_accuracy"]) else DASH, documented])
    capped = rows_frame[~rows_frame["published_full_length"].astype(bool)]
    out = ["Each tutorial's own training loop, run as published (its batching, per-step printing, metrics and "
           "evaluations, its initialisation and its bugs, eager), against the same recipe's fixed loop at the "
           "same batch size, timed interleaved in one process: in eager mode, and in its fastest compiled "
           "mode and K. Ratios are of medians, with the bootstrap 95% interval of published / best. "
           "Accuracy: the figure the tutorial reports, as published, fixed (the recipe stage's run) and "
           f"documented. A capped run says how many epochs it ran and is not a reproduction. {NOISY_MARK}: "
           "interquartile range over 10% of the median.", "",
           _table(["Recipe", "Device", "Batch", "As published", "Fixed, eager", "Fixed, best mode",
                   "Published / fixed eager", "Published / best", "Metric", "As published", "Fixed",
                   "Documented"], rows)]
    if not capped.empty:
        out += ["", f"{len(capped)} of {len(rows_frame)} as-published runs were capped (the quick profile); "
                    "run `tfbench run --profile full --stages recipe as_published` to compare them with the "
                    "documented figures."]
    return out


def plot_as_published(frame: pd.DataFrame, path: str | Path) -> pd.DataFrame | None:
    """Time per step (log scale: as published / fixed eager / best mode) beside the accuracies, per recipe."""
    rows = joined(frame)
    if rows.empty:
        return None
    rows = rows.drop_duplicates("variant", keep="last").reset_index(drop=True)
    figure = Figure(figsize=(12, 1.2 + 0.9 * len(rows)), dpi=DPI, layout="constrained")
    times_ax, accuracy_ax = figure.subplots(1, 2, sharey=True, width_ratios=(3, 2))
    positions = np.arange(len(rows))
    height = 0.27
    columns = ("published_step_time_s_median", "fixed_eager_step_time_s_median", "best_step_time_s_median")
    for offset, ((label, colour), column) in enumerate(zip(BARS, columns)):
        values = [r.get(column) * 1e3 if _present(r.get(column)) else np.nan for _, r in rows.iterrows()]
        times_ax.barh(positions + (offset - 1) * height, values, height, color=colour, label=label)
    times_ax.set_xscale("log")
    times_ax.set_xlabel("milliseconds per optimizer step (log scale)")
    times_ax.set_yticks(positions, rows["variant"])
    times_ax.invert_yaxis()
    times_ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:,.10g}"))
    times_ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.1), ncols=3, fontsize="small")
    accuracy_columns = ("published_accuracy", "fixed_accuracy", "documented_accuracy")
    for offset, ((label, colour), column) in enumerate(zip(ACCURACY_BARS, accuracy_columns)):
        values = [r.get(column) if _present(r.get(column)) else np.nan for _, r in rows.iterrows()]
        accuracy_ax.barh(positions + (offset - 1) * height, values, height, color=colour, label=label)
    for position, (_, r) in zip(positions, rows.iterrows()):  # a capped run is marked: not a reproduction
        if not r["published_full_length"]:
            value = r["published_accuracy"] if _present(r["published_accuracy"]) else 0.0
            accuracy_ax.annotate(f"capped: {int(r['published_epochs'])}/{int(r['documented_epochs'])} epochs",
                                 (value + 0.01, position - height), va="center", fontsize="x-small")
        if r["fixed_full_length"] is False and _present(r["fixed_accuracy"]):
            accuracy_ax.annotate(f"capped: {r['fixed_epochs']} epochs", (r["fixed_accuracy"] + 0.01, position),
                                 va="center", fontsize="x-small")
    accuracy_ax.set_xlim(0, 1)
    accuracy_ax.set_xlabel("the accuracy each tutorial reports")
    accuracy_ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.1), ncols=3, fontsize="small")
    figure.suptitle("Tutorials as published against the same recipe done well")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=DPI)
    return rows


def plot_recipe_curves(frame: pd.DataFrame, path: str | Path) -> pd.DataFrame | None:
    """Per recipe with a published per-epoch figure: the reproduced curve(s) against the published one."""
    recipes = ok(frame, "recipe").sort_values("run_updated", kind="stable")  # newest run last
    if recipes.empty or "documented_curve" not in recipes:
        return None
    recipes = recipes[recipes["documented_curve"].map(lambda c: isinstance(c, list) and len(c) > 0)]
    recipes = recipes.drop_duplicates("variant", keep="last")
    if recipes.empty:
        return None
    published = joined(frame)
    figure = Figure(figsize=(6 * len(recipes), 4.5), dpi=DPI, layout="constrained")
    axes = np.atleast_1d(figure.subplots(1, len(recipes), squeeze=False)[0])
    for ax, (_, r) in zip(axes, recipes.iterrows()):
        curve = r["documented_curve"]
        ax.plot(range(1, len(curve) + 1), curve, "o-", color="#7f7f7f", label="published")
        key = {"train_accuracy": "accuracy"}.get(r["documented_metric"], r["documented_metric"])
        fixed = [epoch.get(key) for epoch in r["history"]]
        ax.plot(range(1, len(fixed) + 1), fixed, "s-", color="#1f77b4",
                label=f"fixed recipe ({recipe_epochs(r)} epochs)")
        mine = published[published["variant"] == r["variant"]] if not published.empty else published
        if not mine.empty and isinstance(mine.iloc[-1]["published_history"], list):
            last = mine.iloc[-1]
            history = last["published_history"]
            ax.plot([e["epoch"] for e in history], [e.get("accuracy") for e in history], "^-", color="#d62728",
                    label=f"as published ({int(last['published_epochs'])}/{int(last['documented_epochs'])} epochs)")
        ax.set_title(r["variant"])
        ax.set_xlabel("epoch")
        ax.set_ylabel(str(r["documented_metric"]).replace("_", " "))
        ax.legend(fontsize="small")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=DPI)
    return recipes
