"""The report's index page: one short answer per question, each a sentence and a small table.

The index (REPORT.md) must read in a few minutes, so each function here answers its question in at most a
dozen rows, at the level a reader decides on (the fastest and the slowest, a median and its range), and leaves
every configuration to the question's detail page (:mod:`tfbench.reports.report` links them). Every function
takes the results frame, already reduced to the newest record of each measurement, and returns Markdown lines;
with no records of its kind, one line that says so.
"""

from __future__ import annotations

import pandas as pd

from tfbench.reports.as_published import joined, recipe_epochs, recipe_figure, recipe_full_length
from tfbench.reports.breakdown import CATEGORIES, LABELS, breakdowns
from tfbench.reports.data import main_device_batch, missing, ok, ordered, sort_key
from tfbench.reports.markdown import (
    DASH,
    NOISY_MARK,
    _span,
    _table,
    accuracy,
    best_of_each_approach,
    ms,
    percent,
    secs,
    sig,
    times,
    xla_over_function,
)
from tfbench.reports.roofline import has_floor, roofline_cell


def _by_device(headers: list[str], rows: list[list], intro: str) -> list[str]:
    """The intro and the table; with one device only, its column goes and the intro names it (narrower tables)."""
    devices = {row[0] for row in rows}
    if len(devices) == 1:
        return [f"On {devices.pop()}: {intro[0].lower()}{intro[1:]}", "", _table(headers[1:], [r[1:] for r in rows])]
    return [intro, "", _table(headers, rows)]


def fastest_style(frame: pd.DataFrame) -> list[str]:
    """Per workload and mode, at one step per call on the chart's device and batch: the fastest and the slowest
    approach, and how far behind the slowest is."""
    step_times = ok(frame, "step_time")
    main = main_device_batch(step_times)
    if main is None:
        return ["No step-time records in these results."]
    device, batch, _ = main
    chosen = step_times[(step_times["device_label"] == device) & (step_times["batch_size"] == batch)]
    k = int(chosen["steps_per_call"].min())
    chosen = ordered(chosen[chosen["steps_per_call"] == k])
    rows = []
    for (workload, mode), group in chosen.groupby(["workload", "mode"], sort=False):
        fastest = group.loc[group["step_time_median_s"].idxmin()]
        slowest = group.loc[group["step_time_median_s"].idxmax()]
        rows.append([workload, mode, fastest["approach"], ms(fastest["step_time_median_s"]), slowest["approach"],
                     times(slowest["step_time_median_s"] / fastest["step_time_median_s"])])
    return [f"On {device}, batch {batch}, K={k} (one step per call): the fastest and the slowest approach in each "
            "mode, timed side by side in one run.", "",
            _table(["Workload", "Mode", "Fastest", "Step time", "Slowest", "Slowest vs fastest"], rows)]


def compiled_gains(frame: pd.DataFrame) -> list[str]:
    """Per device and workload: the median speedup of tf.function and of XLA over eager (with their range over
    approaches, K and batch sizes), and how often XLA was slower than plain tf.function."""
    step_times = ok(frame, "step_time")
    if step_times.empty or step_times["speedup_vs_eager"].isna().all():
        return ["No speedups over eager in these results."]
    ratios = xla_over_function(step_times)
    rows = []
    for (device, workload), group in ordered(step_times).groupby(["device_label", "workload"], sort=False):
        cells = []
        for mode in ("function", "xla"):
            speedups = group.loc[group["mode"] == mode, "speedup_vs_eager"].dropna()
            cells.append(DASH if speedups.empty else f"{times(speedups.median())} ({_span(speedups)})")
        mine = ratios[(ratios["device_label"] == device) & (ratios["workload"] == workload)]["ratio"]
        cells.append(DASH if mine.empty else f"{times(mine.median())} ({_span(mine)})")
        cells.append(DASH if mine.empty else f"{int((mine < 1).sum())} of {len(mine)}")
        rows.append([device, workload, *cells])
    return _by_device(["Device", "Workload", "tf.function over eager", "XLA over eager", "XLA over tf.function",
                       "XLA slower in"], rows,
                      "Medians over every approach, K and batch size, with their range; above 1.00x the compiled "
                      "mode is faster. *XLA slower in*: the configurations where XLA was slower than tf.function.")


def throughput_per_device(frame: pd.DataFrame) -> list[str]:
    """Per device and workload: the highest throughput measured, and the configuration that reached it."""
    step_times = ok(frame, "step_time").dropna(subset=["throughput_sps"]) if not frame.empty else frame
    if step_times.empty:
        return ["No throughput measurements in these results."]
    rows = []
    for (device, workload), group in ordered(step_times).groupby(["device_label", "workload"], sort=False):
        best = group.loc[group["throughput_sps"].idxmax()]
        rows.append([device, workload, sig(best["throughput_sps"]), best["approach"],
                     f"{best['mode']}, K={int(best['steps_per_call'])}", int(best["batch_size"])])
    return _by_device(["Device", "Workload", "Samples/s", "Approach", "Mode", "Batch"], rows,
                      "The most training samples per second reached on each workload, at any approach, mode, K and "
                      "batch size.")


def roofline_summary(frame: pd.DataFrame) -> list[str]:
    """Per device, workload and batch size: the fastest approach's place under the device's roofs."""
    step_times = ok(frame, "step_time")
    if not step_times.empty:
        step_times = step_times[step_times.apply(has_floor, axis=1)]
    if step_times.empty:
        return ["No roofline figures in these results (they need the device's roofs and the step's costs)."]
    rows = []
    for (device, workload, batch), group in ordered(step_times).groupby(
            ["device_label", "workload", "batch_size"], sort=False):
        best = best_of_each_approach(group)
        fastest = best.loc[best["step_time_median_s"].idxmin()]
        rows.append([device, workload, int(batch), f"{fastest['approach']} ({fastest['mode']}, "
                     f"K={int(fastest['steps_per_call'])})", ms(fastest["step_time_median_s"]),
                     roofline_cell(fastest)])
    return _by_device(["Device", "Workload", "Batch", "Fastest (mode, K)", "Step time", "Roofline"], rows,
                      "How close the fastest step comes to its floor (the sum over its ops of the time the device's "
                      "measured roofs allow: matmul peak, streaming bandwidth at the op's size), and its MFU.")


def breakdown_summary(frame: pd.DataFrame) -> list[str]:
    """Per workload and mode: the fastest approach's profiled step and the op categories that take most of it."""
    found = breakdowns(frame)
    if found.empty:
        return ["No breakdown records in these results."]
    rows = []
    for (device, workload, batch, mode), group in found.groupby(
            ["device_label", "workload", "batch_size", "mode"], sort=False):
        fastest = group.loc[group["profiled_step_s"].idxmin()]
        shares = sorted(((fastest[f"breakdown_s_{c}"] / fastest["profiled_step_s"], c) for c in CATEGORIES),
                        reverse=True)
        rows.append([device, workload, int(batch), f"{mode}, K={int(fastest['steps_per_call'])}",
                     fastest["approach"], ms(fastest["profiled_step_s"]),
                     ", ".join(f"{LABELS[c]} {percent(share)}" for share, c in shares[:2])])
    return _by_device(["Device", "Workload", "Batch", "Mode", "Fastest", "Step (profiled)", "Largest shares"], rows,
                      "The fastest approach's step in each mode, traced by TensorFlow's profiler, and the two op "
                      "categories that take most of it (*rest*: no op running, i.e. dispatch and Python).")


def input_pipeline_summary(frame: pd.DataFrame) -> list[str]:
    pipelines = ordered(ok(frame, "input_pipeline"), "variant")
    if pipelines.empty:
        return ["No input-pipeline records in these results."]
    rows = [[r["variant"], r["workload"], r["mode"], ms(r["step_time_median_s"]), sig(r["throughput_sps"])]
            for _, r in pipelines.iterrows()]
    return ["One training step fed by each input pipeline: `tf.data` with prefetch against the tutorials' NumPy "
            "slicing and per-step `tf.one_hot`.", "",
            _table(["Pipeline", "Workload", "Mode", "Step time", "Samples/s"], rows)]


def accuracy_summary(frame: pd.DataFrame) -> list[str]:
    """Per workload: the spread of the approaches' test accuracy, how many reached the target, the fastest there."""
    accuracies = ordered(ok(frame, "accuracy"))
    if accuracies.empty:
        return ["No accuracy records in these results."]
    rows = []
    for workload, group in accuracies.groupby("workload", sort=False):
        low, high = group.loc[group["test_accuracy"].idxmin()], group.loc[group["test_accuracy"].idxmax()]
        reached = group[group["test_accuracy"] >= group["target_accuracy"]]
        timed = group.dropna(subset=["time_to_accuracy_s"])
        first = None if timed.empty else timed.loc[timed["time_to_accuracy_s"].idxmin()]
        quickest = DASH if first is None else f"{first['approach']} ({secs(first['time_to_accuracy_s'])})"
        rows.append([workload, len(group), f"{accuracy(low['test_accuracy'])} ({low['approach']})",
                     f"{accuracy(high['test_accuracy'])} ({high['approach']})",
                     f"{len(reached)} of {len(group)} (target {accuracy(group['target_accuracy'].max())})", quickest])
    return ["Every approach trained on the real dataset in function mode: the lowest and the highest final test "
            "accuracy, and the training time until the test accuracy first reached the workload's target.", "",
            _table(["Workload", "Runs", "Lowest", "Highest", "Reached the target", "Fastest to the target"], rows)]


def recipes_summary(frame: pd.DataFrame) -> list[str]:
    recipes = ok(frame, "recipe")
    if recipes.empty:
        return ["No documented-recipe records in these results."]
    rows = []
    for _, r in recipes.iterrows():
        capped = recipe_full_length(r) is False
        figure = recipe_figure(r)
        both = not capped and not missing(r["documented_accuracy"]) and not missing(figure)
        rows.append([r["variant"], recipe_epochs(r),
                     accuracy(r["documented_accuracy"]) if not missing(r["documented_accuracy"]) else "not reported",
                     f"capped: {accuracy(figure)}" if capped else accuracy(figure),
                     f"{figure - r['documented_accuracy']:+.4f}" if both else DASH])
    return ["Each tutorial's documented configuration run here (its bugs fixed): the figure it reports against "
            "the one reproduced. Epochs: run / documented; a capped run is not a reproduction.", "",
            _table(["Recipe", "Epochs", "Documented", "Reproduced", "Difference"], rows)]


def as_published_summary(frame: pd.DataFrame) -> list[str]:
    published = joined(frame)
    if published.empty:
        return ["No as-published records in these results."]
    rows = []
    for _, r in published.iterrows():
        noisy = NOISY_MARK if not missing(r.get("noisy")) and bool(r.get("noisy")) else ""
        rows.append([r["variant"], ms(r["published_step_time_s_median"]) + noisy,
                     f"{ms(r['best_step_time_s_median'])} ({r['best_mode']}, K={int(r['best_steps_per_call'])})",
                     times(r["published_over_best"])])
    return ["Each tutorial's own loop, bugs included, against the same math done well (the recipe's fixed loop in "
            f"its fastest mode), timed interleaved; {NOISY_MARK}: noisy.", "",
            _table(["Recipe", "As published", "Fixed, best mode", "Published / best"], rows)]


def scaling_summary(frame: pd.DataFrame) -> list[str]:
    """Per strategy, workload, batch, mode, K and replica count above one: the range of the approaches' scaling
    efficiency."""
    records = ok(frame, "distributed") if not frame.empty and "strategy" in frame.columns else frame.iloc[0:0]
    records = records[(records["strategy"] != "none") & (records["replicas"] > 1)] if not records.empty else records
    if records.empty:
        return ["No distributed records (run `tfbench run --strategy mirrored` or `--strategy multiworker`)."]
    rows = []
    keys = ["device_label", "strategy", "workload", "batch_size", "mode", "steps_per_call", "replicas"]
    for (device, strategy, workload, batch, mode, k, replicas), group in records.sort_values(
            keys, key=sort_key, kind="stable").groupby(keys, sort=False):
        efficiency = group["scaling_efficiency"].dropna().astype(float)
        low, high = (percent(efficiency.min()), percent(efficiency.max())) if not efficiency.empty else (DASH, DASH)
        rows.append([device, strategy, workload, int(batch), f"{mode}, K={int(k)}", int(replicas), len(group),
                     low if low == high else f"{low}–{high}"])
    table = _by_device(["Device", "Strategy", "Workload", "Batch per replica", "Mode", "Replicas", "Approaches",
                        "Scaling efficiency"], rows,
                       "Scaling efficiency = throughput(N) / (N x throughput(1)), lowest to highest over the "
                       "approaches; each replica at the same batch.")
    if any(records["device_kind"].fillna("cpu") == "cpu"):
        table = ["Measured on logical CPU devices that share the same cores: these efficiencies are the strategy's "
                 "overhead, never a speed-up.", "", *table]
    return table


def runs_summary(frame: pd.DataFrame) -> list[str]:
    """One row per run that the report shows a record of: where, when, which profile, how many records."""
    if frame.empty:
        return ["No records in these results."]
    rows = []
    for _, run in frame.groupby("run_id", sort=False):
        first = run.iloc[0]
        statuses = run["status"].value_counts()
        counted = ", ".join(f"{n} {status}" for status, n in statuses.items())
        rows.append([first["machine"], first["source_file"], str(first["run_created"])[:10], first["profile"],
                     counted, int(run["noisy"].fillna(False).sum())])
    return [f"{len(frame)} records, each the newest measurement of its configuration on its machine.", "",
            _table(["Machine", "Results file", "Date", "Profile", "Records shown", "Noisy"], rows)]


# --- this wave's diagnostics and peers: one short table each; their detail pages hold every record ---------------


def diagnostics_summary(frame: pd.DataFrame) -> list[str]:
    traces = ok(frame, "retracing")
    growth = ok(frame, "memory_growth")
    if traces.empty and growth.empty:
        return ["No retracing or memory-growth records in these results."]
    rows = []
    if not traces.empty:
        plain = traces[traces["fix"] == "none"]
        for (approach, mode), record in plain.groupby(["approach", "mode"], sort=False):
            per = record["traces_per_signature"].iloc[0]
            if missing(per) or per <= 1:
                continue
            fixes = traces[(traces["approach"] == approach) & (traces["mode"] == mode) & (traces["fix"] != "none")
                           & (traces["traces_per_signature"] <= 1)]
            best = fixes.sort_values("epoch_wall_s").iloc[0] if not fixes.empty else None
            rows.append([approach, mode, f"{sig(per)} traces per signature",
                         DASH if best is None else f"`{best['fix']}`: epoch {secs(record['epoch_wall_s'].iloc[0])} "
                                                  f"-> {secs(best['epoch_wall_s'])}"])
    flagged = growth[growth["growth_flagged"] == True] if not growth.empty else growth  # noqa: E712 (a column)
    names = {"step": "step", "fit_call": "fit() call", "build": "build"}
    units = sorted({names.get(unit, unit) for unit in flagged.get("growth_unit", [])}) if not flagged.empty else []
    lines = ["Each style's compiled step over a user's epoch (a partial last batch, the step index passed as a "
             "Python number), and the fix that ends the retracing, measured:", ""]
    lines += [_table(["Approach", "Mode", "Without a fix", "Fix with the shortest epoch"], rows)] if rows else \
        ["- No style traces more than once per input signature."]
    lines += ["", f"Memory that grows above its noise: per {' and per '.join(units)} "
                  f"({len(flagged)} of {len(growth)} curves); no per-step slope is flagged."
              if units and "step" not in units else
              f"Memory above its noise: {len(flagged)} of {len(growth)} curves."]
    return lines


def k_sweep_summary(frame: pd.DataFrame) -> list[str]:
    sweeps = ordered(ok(frame, "k_sweep"), "mode")
    if sweeps.empty:
        return ["No K-sweep records in these results."]
    rows = [[r["workload"], r["approach"], r["mode"], DASH if missing(r["knee_k"]) else f"K={int(r['knee_k'])}"]
            for _, r in sweeps.iterrows()]
    return ["The smallest K after which doubling the steps per call gains under 5%:", "",
            _table(["Workload", "Approach", "Mode", "Knee"], rows)]


def precision_summary(frame: pd.DataFrame) -> list[str]:
    policies = ok(frame, "mixed_precision")
    policies = policies[policies["variant"] != "float32"] if not policies.empty else policies
    if policies.empty:
        return ["No mixed-precision records in these results."]
    rows = []
    for (workload, policy), group in policies.groupby(["workload", "variant"], sort=False):
        verdicts = group["verdict"].value_counts()
        rows.append([workload, policy, f"{group['vs_float32'].min():.2f}x to {group['vs_float32'].max():.2f}x",
                     ", ".join(f"{verdict} ({count})" for verdict, count in verdicts.items())])
    return ["Each approach's step time under a policy over its float32 step (same run), and the verdicts:", "",
            _table(["Workload", "Policy", "vs float32", "Verdicts (approaches)"], rows)]


def peers_summary(frame: pd.DataFrame) -> list[str]:
    peers = ok(frame, "peer")
    if peers.empty:
        return ["No peer records in these results."]
    jax = peers[peers["id"].str.endswith("/jax") & (peers["steps_per_call"] == 1)]
    rows = [[r["workload"], r["batch_size"], "plain JAX" if r["approach"] == "plain_jax" else "Keras 3 on JAX",
             DASH if missing(r.get("vs_best_tensorflow")) else f"{r['vs_best_tensorflow']:.2f}x"]
            for _, r in ordered(jax, "batch_size").iterrows()]
    return ["Step time at K=1 over TensorFlow's fastest style's, measured in one run (below 1: JAX is faster):", "",
            _table(["Workload", "Batch", "Peer", "vs best TensorFlow"], rows)]
