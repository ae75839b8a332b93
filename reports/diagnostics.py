"""The report's "Diagnostics" section and its memory chart: the TensorFlow pathologies users actually hit.

From the ``retracing`` and ``memory_growth`` records and every record's ``effective`` settings (issue 24):

* which styles retrace their compiled step more than once per input signature, and which measured fix
  brings it to at most one, with the epoch time it saves;
* which memory slopes lie above zero and above their noise (``growth_flagged``), beside the curves' chart;
* one run's approaches of one workload that did not start from the same initial weights;
* records that claim the same key but ran with different settings (jit_compile, dtype policy, oneDNN, flags,
  threads, determinism, backend, initial weights, first batch).

Pure pandas and matplotlib, like the rest of ``reports/``.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from tfbench.reports.data import approach_colour, latest, missing, ok, ordered
from tfbench.reports.markdown import DASH, _table, secs, sig

CHART = "memory_growth"
UNIT_NAMES = {"step": "step", "fit_call": "fit() call", "build": "build"}


def _value(row, column):
    return row[column] if column in row and not missing(row[column]) else None


def retracing_lines(frame: pd.DataFrame) -> list[str]:
    """Each approach and mode: traces per signature without a fix, and what each fix does to it."""
    records = ok(frame, "retracing")
    if records.empty or "fix" not in records:
        return []
    rows, flagged = [], []
    for (approach, mode), group in ordered(records, "fix").groupby(["approach", "mode"], sort=False):
        fixes = {row["fix"]: row for _, row in group.iterrows()}
        base = fixes.get("none")
        if base is None or missing(base["traces_per_signature"]):
            continue
        cells = []
        for fix in ("reduce_retracing", "input_signature", "drop_remainder", "tensor_scalar"):
            row = fixes.get(fix)
            if row is None or missing(row["traces_per_signature"]):
                cells.append(DASH)
                continue
            saving = base["epoch_wall_s"] - row["epoch_wall_s"]
            cells.append(f"{int(row['trace_count'])} ({sig(row['traces_per_signature'], 2)}/sig), "
                         f"{'saves' if saving >= 0 else 'costs'} {secs(abs(saving))}")
        rows.append([approach, mode, f"{int(base['trace_count'])} / {int(base['input_signatures'])} "
                                     f"= {sig(base['traces_per_signature'], 2)}",
                     secs(base["tracing_s"]), secs(base["epoch_wall_s"]), *cells])
        if base["traces_per_signature"] > 1:
            removed = [fix for fix in ("reduce_retracing", "input_signature", "drop_remainder", "tensor_scalar")
                       if fix in fixes and not missing(fixes[fix]["traces_per_signature"])
                       and fixes[fix]["traces_per_signature"] <= 1]
            best = max(removed, key=lambda f: base["epoch_wall_s"] - fixes[f]["epoch_wall_s"], default=None)
            flagged.append((approach, mode, base, best, fixes.get(best)))
    if not rows:
        return []
    lines = ["**Retracing.** One epoch a user would write (a partial last batch; the step index passed as a "
             "Python number), traces counted by TensorFlow's own counter. A signature is the tensors' shapes "
             "and dtypes and a Python argument's type: more than one trace per signature is a trace per Python "
             "value, wasted. Each fix is its own run; the saving is its epoch's wall time against no fix (one "
             "epoch each: differences of a few tenths of a second are within the noise).", ""]
    if flagged:
        for approach, mode, base, best, fixed in flagged:
            what = (f"`{best}` brings it to {int(fixed['trace_count'])} trace(s) and saves "
                    f"{secs(base['epoch_wall_s'] - fixed['epoch_wall_s'])} of {secs(base['epoch_wall_s'])}"
                    if best else "no measured fix brings it to one trace per signature")
            lines.append(f"- {approach} ({mode}) retraces {sig(base['traces_per_signature'], 2)} times per "
                         f"signature ({secs(base['tracing_s'])} tracing); {what}.")
    else:
        lines.append("- No style retraces more than once per input signature.")
    lines += ["", _table(["approach", "mode", "no fix: traces / signatures", "tracing", "epoch",
                          "reduce_retracing", "input_signature", "drop_remainder", "tensor_scalar"], rows), ""]
    return lines


def _bytes(value: float) -> str:
    if missing(value):
        return DASH
    for unit, size in (("MiB", 2**20), ("KiB", 2**10)):
        if abs(value) >= size:
            return f"{sig(value / size)} {unit}"
    return f"{sig(value)} B"


def memory_lines(frame: pd.DataFrame) -> list[str]:
    """Each approach's memory slope per step, fit() call and build, flagged where above noise."""
    records = ok(frame, "memory_growth")
    if records.empty or "growth_bytes_per_unit" not in records:
        return []
    rows, flagged = [], []
    for _, row in ordered(records, "growth_unit").iterrows():
        low, high = row["growth_ci"] if isinstance(row["growth_ci"], (list, tuple)) else (None, None)
        unit = UNIT_NAMES.get(row["growth_unit"], row["growth_unit"])
        if row["variant"] == "build_clear_session":
            unit += " with clear_session()"
        mark = "**yes**" if row["growth_flagged"] else "no"
        rows.append([row["approach"], row["mode"], unit, f"{_bytes(row['growth_bytes_per_unit'])}",
                     f"[{_bytes(low)}, {_bytes(high)}]", str(int(row["growth_units"])), mark])
        if row["growth_flagged"]:
            flagged.append(f"{row['approach']} ({row['mode']}): {_bytes(row['growth_bytes_per_unit'])} per {unit}")
    lines = ["**Memory growth.** The slope of process memory (RSS; the allocator's bytes on a GPU) after a 20% "
             "warm-up, fitted to 10 block means, with a 95% t interval. Flagged: the interval lies above zero "
             "and the growth it implies over the run exceeds the noise (1 MiB, or twice the block means' "
             "scatter).", ""]
    lines.append(f"- Above noise: {'; '.join(flagged)}." if flagged else "- No slope is above its noise.")
    # The curves' chart is placed by the report's page registry (reports/report.py), beside this table.
    lines += ["", _table(["approach", "mode", "per", "slope", "95% interval", "units", "flagged"], rows), ""]
    return lines


def settings_differences(frame: pd.DataFrame) -> list[tuple[str, str, list]]:
    """(record id, setting, the distinct values) where records of one key ran with different settings."""
    if frame.empty or "effective" not in frame:
        return []
    found = []
    with_settings = frame[frame["effective"].map(lambda e: isinstance(e, dict))]
    for record_id, group in with_settings.groupby("id", sort=True):
        if len(group) < 2:
            continue
        settings = list(group["effective"])
        for name in sorted({key for s in settings for key in s}):
            values = []
            for s in settings:
                value = s.get(name)
                if value not in values:
                    values.append(value)
            if len(values) > 1:
                found.append((record_id, name, values))
    return found


def weight_mismatches(frame: pd.DataFrame) -> list[tuple[str, str, list[str]]]:
    """(run, workload, the approaches) where one run's approaches of one workload started from different
    initial weights: the fairness every comparison rests on (same network, same initial weights)."""
    if frame.empty or "effective" not in frame:
        return []
    found = []
    rows = frame[frame["effective"].map(lambda e: isinstance(e, dict) and bool(e.get("init_weights_sha256")))]
    for (run, workload), group in rows.groupby(["run_id", "workload"], sort=True):
        hashes = group["effective"].map(lambda e: e["init_weights_sha256"])
        if hashes.nunique() > 1:
            by_hash = group.assign(hash=hashes).groupby("hash")["approach"].agg(lambda a: sorted(set(a)))
            found.append((run, workload, [", ".join(a) for a in by_hash]))
    return found


def settings_lines(frame: pd.DataFrame) -> list[str]:
    differences = settings_differences(frame)
    mismatches = weight_mismatches(frame)
    if frame.empty or "effective" not in frame or not frame["effective"].map(lambda e: isinstance(e, dict)).any():
        return []
    lines = ["**Effective settings.** Every record states what actually ran, read back after the build "
             "(resolved jit_compile, dtype policy, oneDNN, TF/XLA flags, threads, determinism, Keras backend, "
             "SHA-256 of the initial weights and of the first batch).", ""]
    for run, workload, groups in mismatches:
        lines.append(f"- Run `{run}`, {workload}: the approaches did not start from the same initial weights "
                     f"({' / '.join(groups)}): a comparison between them is not fair.")
    if not differences:
        return lines + ["- No two records of the same key ran with different settings.", ""]
    rows = [[f"`{record_id}`", name, "; ".join(DASH if v is None else f"`{v}`" for v in values)]
            for record_id, name, values in differences]
    return lines + [f"- {len({d[0] for d in differences})} key(s) ran with different settings in different "
                    "records: their results are not comparable as they stand.", "",
                    _table(["record", "setting", "values"], rows), ""]


def section(frame: pd.DataFrame) -> list[str]:
    """Markdown lines of the section (the caller adds the heading); [] when there is nothing to show."""
    if frame.empty:
        return []
    newest = latest(frame)
    # Settings are compared over every run given (a key measured twice is the case to catch), the rest from
    # the newest run of each measurement.
    return retracing_lines(newest) + memory_lines(newest) + settings_lines(frame)


def plot_memory_growth(frame: pd.DataFrame, path: str | Path) -> Path | None:
    """Memory against units, one panel per unit (step, fit() call, build), one line per approach and mode."""
    records = ok(latest(frame), "memory_growth") if not frame.empty else frame
    if records.empty or "memory_curve" not in records:
        return None
    units = [u for u in UNIT_NAMES if (records["growth_unit"] == u).any()]
    if not units:
        return None
    figure = Figure(figsize=(max(6.4, 4.2 * len(units)), 3.8), dpi=100, layout="constrained")
    axes = figure.subplots(1, len(units), squeeze=False)[0]
    styles = {"eager": ":", "function": "-", "xla": "--"}
    for ax, unit in zip(axes, units):
        for _, row in ordered(records[records["growth_unit"] == unit]).iterrows():
            curve = row["memory_curve"]
            if not isinstance(curve, list) or not curve:
                continue
            base = curve[0][1]
            cleared = row["variant"] == "build_clear_session"
            label = (f"{row['approach']} ({row['mode']})" + (" + clear_session" if cleared else "")
                     + (" ▲ flagged" if row["growth_flagged"] else ""))
            style = "-." if cleared else styles.get(row["mode"], "-")
            ax.plot([p[0] for p in curve], [(p[1] - base) / 2**20 for p in curve], style,
                    color=approach_colour(row["approach"]), linewidth=2.2 if row["growth_flagged"] else 1.2,
                    label=label)
        ax.set_title(f"per {UNIT_NAMES[unit]}")
        ax.set_xlabel(f"{UNIT_NAMES[unit]}s")
        ax.set_ylabel("MiB above the first reading")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    figure.suptitle("Memory growth (CPU: resident memory; GPU: the allocator's bytes)")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    return Path(path)
