"""The report's detail sections from the results DataFrame: every sentence and number is computed from the records.

Each ``*_section(frame) -> list[str]`` is the Markdown under one heading of a detail page; which page shows it,
and in which order, is the registry of :mod:`tfbench.reports.report`. The number formats below are shared by
every section module.

Rounding: milliseconds, seconds and samples/s to 3 significant figures, speedups to 2 decimals with "x",
accuracies to 4 decimals, percents to 1 decimal (2 significant figures below 0.1 %).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import pandas as pd
from tabulate import tabulate

from tfbench.benchmarks.results import NOISY_IQR_FRACTION
from tfbench.reports.as_published import recipe_epochs, recipe_figure, recipe_full_length
from tfbench.reports.data import approach_rank, missing, mode_rank, ok, ordered, prose, sort_key
from tfbench.reports.memory import memory_lines
from tfbench.reports.roofline import has_floor, model_lines, roofline_cell

TITLE = "TensorFlow training benchmark report"
NOISY_MARK = "†"
DASH = "—"


# --- numbers ---------------------------------------------------------------------------------------------


def sig(value: float, figures: int = 3) -> str:
    """``value`` to ``figures`` significant figures, without exponent: 1.2345 -> "1.23", 21333 -> "21,300"."""
    if missing(value):
        return DASH
    if value == 0:
        return "0"
    rounded = float(f"{value:.{figures}g}")
    decimals = figures - 1 - math.floor(math.log10(abs(rounded)))
    return f"{rounded:,.{max(decimals, 0)}f}"


def ms(seconds: float) -> str:
    return DASH if missing(seconds) else f"{sig(seconds * 1e3)} ms"


def secs(seconds: float) -> str:
    return DASH if missing(seconds) else f"{sig(seconds)} s"


def times(ratio: float) -> str:
    return DASH if missing(ratio) else f"{ratio:.2f}x"


def accuracy(value: float) -> str:
    return DASH if missing(value) else f"{value:.4f}"


def percent(fraction: float) -> str:
    if missing(fraction):
        return DASH
    value = fraction * 100
    return f"{value:.1f}%" if abs(value) >= 0.1 or value == 0 else f"{sig(value, 2)}%"


def _text(value) -> str:
    """A cell: no line breaks, and pipes escaped so they do not split the Markdown table."""
    return DASH if missing(value) or value == "" else " ".join(str(value).split()).replace("|", "\\|")


def _table(headers: list[str], rows: list[list]) -> str:
    return tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True)


def _k(k) -> str:
    return f"K={int(k)}"


def _int(value) -> str:
    return DASH if missing(value) else str(int(value))


# --- tables of approach x mode ---------------------------------------------------------------------------


def _grid(frame: pd.DataFrame, cell: Callable[[pd.Series], str],
          extra: list[tuple[str, Callable[[dict], str]]] = ()) -> str:
    """Rows workload x approach, columns mode (x K when several); a non-ok record shows its status.

    ``extra`` adds columns computed from a row's records: (header, fn({(mode, K): record}) -> str).
    """
    frame = ordered(frame)
    ks = sorted(frame["steps_per_call"].unique())
    columns = sorted({(m, int(k)) for m, k in zip(frame["mode"], frame["steps_per_call"])},
                     key=lambda c: (mode_rank(c[0]), c[1]))
    headers = ["Workload", "Approach"] + [m if len(ks) == 1 else f"{m} {_k(k)}" for m, k in columns]
    headers += [header for header, _ in extra]
    rows = []
    for (workload, approach), group in frame.groupby(["workload", "approach"], sort=False):
        records = {(r["mode"], int(r["steps_per_call"])): r for _, r in group.iterrows()}
        row = [workload, approach]
        for column in columns:
            record = records.get(column)
            row.append(DASH if record is None else cell(record) if record["status"] == "ok" else record["status"])
        row += [fn(records) for _, fn in extra]
        rows.append(row)
    return _table(headers, rows)


def _step_time_cell(record: pd.Series) -> str:
    mark = NOISY_MARK if not missing(record["noisy"]) and record["noisy"] else ""
    return (f"{ms(record['step_time_median_s'])}{mark} "
            f"({sig(record['step_time_p10_s'] * 1e3)}–{sig(record['step_time_p90_s'] * 1e3)})")


def _speedup_cell(record: pd.Series) -> str:
    if missing(record["speedup_vs_eager"]):
        return DASH
    interval = ""
    if not missing(record["speedup_low"]) and not missing(record["speedup_high"]):
        interval = f" ({record['speedup_low']:.2f}–{record['speedup_high']:.2f})"
    return times(record["speedup_vs_eager"]) + interval


def xla_over_function(step_times: pd.DataFrame) -> pd.DataFrame:
    """Speed of XLA relative to plain tf.function (function median / xla median), same everything else.

    Below 1 means XLA made the step slower.
    """
    keys = ["device_label", "workload", "approach", "steps_per_call", "batch_size"]
    medians = step_times[step_times["mode"].isin(["function", "xla"])]
    wide = medians.pivot_table(index=keys, columns="mode", values="step_time_median_s", aggfunc="first")
    if "function" not in wide or "xla" not in wide:
        return pd.DataFrame(columns=keys + ["ratio"])
    ratio = (wide["function"] / wide["xla"]).dropna().rename("ratio").reset_index()
    return ordered(ratio)


def _by_device_batch(frame: pd.DataFrame):
    """(heading text "device, batch N", records) per device and batch size."""
    for (device, batch), group in ordered(frame).groupby(["device_label", "batch_size"], sort=False):
        yield f"{device}, batch {int(batch)}", group


def _span(ratios: pd.Series) -> str:
    low, high = times(ratios.min()), times(ratios.max())
    return low if low == high else f"{low}–{high}"


# --- sections --------------------------------------------------------------------------------------------


def best_of_each_approach(group: pd.DataFrame) -> pd.DataFrame:
    """Each approach's fastest record (any mode and K) among step-time records of one batch size."""
    return group.loc[group.groupby("approach", sort=False)["step_time_median_s"].idxmin()]


def summary_section(frame: pd.DataFrame) -> list[str]:
    if frame.empty:
        return ["No records in these results."]
    runs, machines = frame["run_id"].nunique(), list(dict.fromkeys(frame["machine"]))
    counts = frame[frame["status"] == "ok"]["kind"].value_counts()
    problems = frame[frame["status"] != "ok"]["status"].value_counts()
    lines = [f"{len(frame)} records from {runs} run{'s' * (runs != 1)} on {len(machines)} "
             f"machine{'s' * (len(machines) != 1)} ({', '.join(machines)}): "
             f"{counts.get('step_time', 0)} step-time measurements, {counts.get('accuracy', 0)} accuracy runs, "
             f"{counts.get('recipe', 0)} documented recipes and {counts.get('input_pipeline', 0)} input "
             f"pipelines; " + (", ".join(f"{n} {status}" for status, n in problems.items()) or "none")
             + " (see [Unsupported, skipped and failed records](results.md#unsupported-skipped-and-failed-records))."]
    bullets = []
    step_times = ok(frame, "step_time")
    for (device, workload), group in ordered(step_times).groupby(["device_label", "workload"], sort=False):
        batch = group["batch_size"].min()
        group = group[group["batch_size"] == batch]
        best = best_of_each_approach(group)
        fastest = best.loc[best["step_time_median_s"].idxmin()]
        where = f"**{workload} on {device}** (batch {int(batch)}): "
        how = f"{fastest['mode']}, {_k(fastest['steps_per_call'])}"
        if len(best) == 1:
            bullets.append(f"{where}only {fastest['approach']} was measured: {ms(fastest['step_time_median_s'])} "
                           f"per step at best ({how}).")
            continue
        slowest = best.loc[best["step_time_median_s"].idxmax()]
        bullets.append(
            f"{where}the fastest approach is {fastest['approach']} ({how}) at "
            f"{ms(fastest['step_time_median_s'])} per step, "
            f"{times(slowest['step_time_median_s'] / fastest['step_time_median_s'])} faster than the slowest "
            f"approach at its best, {slowest['approach']} ({slowest['mode']}, {_k(slowest['steps_per_call'])}: "
            f"{ms(slowest['step_time_median_s'])}).")
    for mode, name in (("function", "`tf.function`"), ("xla", "XLA (`jit_compile=True`)")):
        speedups = step_times[(step_times["mode"] == mode)].dropna(subset=["speedup_vs_eager"])
        parts = [f"{times(g['speedup_vs_eager'].median())} on {workload} "
                 + (f"(median of {len(g)}, {_span(g['speedup_vs_eager'])})" if len(g) > 1 else "(1 measurement)")
                 for workload, g in ordered(speedups).groupby("workload", sort=False)]
        if parts:
            bullets.append(f"{name} over eager: {'; '.join(parts)}.")
    ratios = xla_over_function(step_times)
    if not ratios.empty:
        hurt = ratios[ratios["ratio"] < 1]
        if hurt.empty:
            bullets.append(f"XLA was never slower than plain `tf.function` ({len(ratios)} comparisons).")
        else:
            parts = []
            for (workload, device), g in hurt.groupby(["workload", "device_label"], sort=False):
                total = ((ratios["workload"] == workload) & (ratios["device_label"] == device)).sum()
                parts.append(f"{workload} on {device} ({len(g)} of {total}: {_span(g['ratio'])} the speed of "
                             "`tf.function`)")
            bullets.append(f"XLA hurt (slower than plain `tf.function`) on {'; '.join(parts)}.")
    accuracies = ok(frame, "accuracy")
    if not accuracies.empty:
        reached = accuracies["test_accuracy"] >= accuracies["target_accuracy"]
        best = accuracies.loc[accuracies.groupby("workload", sort=False)["test_accuracy"].idxmax()]
        text = (f"Accuracy: {int(reached.sum())} of {len(accuracies)} training runs reached their target test "
                "accuracy; best " + ", ".join(f"{r['workload']} {accuracy(r['test_accuracy'])} ({r['approach']})"
                                               for _, r in best.iterrows()))
        missed = accuracies[~reached]
        if not missed.empty:
            text += "; short of the target: " + ", ".join(
                f"{r['approach']} on {r['workload']} ({accuracy(r['test_accuracy'])} < "
                f"{accuracy(r['target_accuracy'])})" for _, r in ordered(missed).iterrows())
        bullets.append(text + ".")
    recipes = ok(frame, "recipe")
    if not recipes.empty:
        full = recipes[recipes.apply(recipe_full_length, axis=1).map(lambda f: f is not False)]
        documented = full.dropna(subset=["documented_accuracy", "reproduced_accuracy"])
        text = f"Documented recipes: {len(full)} of {len(recipes)} run to their documented length"
        if not documented.empty:
            text += "; reproduced minus documented accuracy: " + ", ".join(
                f"{r['variant']} {r['reproduced_accuracy'] - r['documented_accuracy']:+.4f}"
                for _, r in documented.iterrows())
        if len(full) < len(recipes):
            text += f"; {len(recipes) - len(full)} capped (not reproductions)"
        bullets.append(text + ".")
    noisy = int(frame["noisy"].fillna(False).sum())
    if noisy:
        bullets.append(f"{noisy} measurement{'s' * (noisy != 1)} flagged noisy "
                       "(see [Noisy measurements](results.md#noisy-measurements)).")
    return lines + [""] + [f"- {bullet}" for bullet in bullets]


def environment_section(frame: pd.DataFrame) -> list[str]:
    if frame.empty:
        return ["No runs in these results."]
    out = []
    for run_id, run in frame.groupby("run_id", sort=False):
        first = run.iloc[0]
        devices = run.drop_duplicates("device")
        build = [c for c in run.columns if c.startswith("env_tf_build_info_")]
        threads = f"intra-op {_text(first['env_threads_intra_op'])}, inter-op {_text(first['env_threads_inter_op'])}"
        fields = [
            ("Machine", first["machine"]), ("Run", run_id), ("Results file", first["source_file"]),
            ("Date", first["run_created"]),
            ("Complete", DASH if missing(first["run_complete"]) else "yes" if first["run_complete"]
             else "no (interrupted run)"),
            ("Profile", first["profile"]), ("TensorFlow", first["env_tensorflow"]), ("Keras", first["env_keras"]),
            ("Python", first["env_python"]), ("NumPy", first["env_numpy"]),
            ("tensorflow-metal", first["env_tensorflow_metal"]), ("Platform", first["env_platform"]),
            ("CPU", first["env_cpu_model"]), ("Cores", first["env_cpu_count"]),
            ("CPU governor", first.get("env_cpu_governor")),
            ("GPUs", _gpu_details(first.get("env_gpu_info")) or first["env_gpus"] or "none"),
            ("Threads", threads), ("Git commit", first["env_git_commit"]),
            ("TF build", ", ".join(f"{c.removeprefix('env_tf_build_info_')} {first[c]}" for c in build
                                   if not missing(first[c]))),
            ("Devices", "; ".join(f"{d['device']}: {_text(d['device_description'])}" for _, d in devices.iterrows())),
        ]
        hardware = ", ".join(str(v) for v in (first["env_cpu_model"], first["env_gpus"])
                             if not missing(v) and v and v != first["machine"])
        heading = f"### {first['machine']}" + (f": {hardware}" if hardware else "")
        out += [heading, "", _table(["", "Value"], [[k, _text(v)] for k, v in fields]), ""]
    return out[:-1]


def _gpu_details(gpus) -> str | None:
    """ "NVIDIA A100-SXM4-40GB (driver 535.104.05, 40 GiB, compute 8.0)" per GPU; None for an older file."""
    if not isinstance(gpus, list) or not gpus:
        return None
    described = []
    for gpu in gpus:
        facts = [f"driver {gpu['driver']}" if gpu.get("driver") else None,
                 f"{gpu['memory_bytes'] / 2**30:.3g} GiB" if gpu.get("memory_bytes") else None,
                 f"compute {gpu['compute_capability']}" if gpu.get("compute_capability") else None]
        facts = [fact for fact in facts if fact]
        described.append(gpu["name"] + (f" ({', '.join(facts)})" if facts else ""))
    return "; ".join(described)


def _harness_overhead(step_times: pd.DataFrame) -> list[str]:
    """The harness's timed loop against a bare ``perf_counter`` loop around the same compiled step, per device."""
    measured = step_times.dropna(subset=["harness_overhead_fraction"])
    if measured.empty:
        return []
    lines = []
    for device, group in ordered(measured).groupby("device_label", sort=False):
        overhead = group["harness_overhead_fraction"].astype(float)
        lines.append(f"- {device}: median {percent(overhead.median())} over {len(overhead)} measurements "
                     f"({percent(overhead.min())} to {percent(overhead.max())}; "
                     f"{int((overhead.abs() <= 0.01).sum())} within ±1%)")
    return ["The harness's own overhead (its timed loop against a bare `time.perf_counter` loop around the same "
            "compiled step, measured on each approach's first compiled configuration of each step-time group; "
            "negative values are noise):", "", *lines, ""]


def step_time_section(frame: pd.DataFrame) -> list[str]:
    step_times = frame[frame["kind"] == "step_time"] if not frame.empty else frame
    if ok(step_times, "step_time").empty:
        return ["No step-time records in these results."]
    out = [f"Median time per optimizer step, with the 10th–90th percentile range in brackets. K is the number "
           f"of steps run inside one compiled call. {NOISY_MARK} marks a noisy measurement (interquartile range "
           f"over {NOISY_IQR_FRACTION:.0%} of the median). A status in a cell means the combination did not run "
           "(see [Unsupported, skipped and failed records](results.md#unsupported-skipped-and-failed-records)).", ""]
    out += _harness_overhead(ok(step_times, "step_time"))
    for heading, group in _by_device_batch(step_times):
        out += [f"### {heading}", "", _grid(group, _step_time_cell), ""]
        first_calls = ok(group, "step_time").dropna(subset=["first_call_s"])
        if not first_calls.empty:
            out += ["First call (tracing and compiling included):", "",
                    _grid(first_calls, lambda r: secs(r["first_call_s"])), ""]
        out += memory_lines(ok(group, "step_time"), _grid)
    return out[:-1]


def speedup_section(frame: pd.DataFrame) -> list[str]:
    if ok(frame, "step_time").empty or ok(frame, "step_time")["speedup_vs_eager"].isna().all():
        return ["No speedups over eager in these results."]
    compiled = frame[(frame["kind"] == "step_time") & (frame["mode"] != "eager")]
    out = ["Median eager step time over the median step time of the mode (same approach, workload, device, "
           "batch size), with its interval in brackets; above 1x is faster than eager. *xla vs function* is "
           "XLA's speed relative to plain `tf.function` (below 1x: XLA made the step slower).", ""]

    def xla_vs_function(k: int) -> Callable[[dict], str]:
        def cell(records: dict) -> str:
            function, xla = records.get(("function", k)), records.get(("xla", k))
            if function is None or xla is None or function["status"] != "ok" or xla["status"] != "ok":
                return DASH
            return times(function["step_time_median_s"] / xla["step_time_median_s"])
        return cell

    for heading, group in _by_device_batch(compiled):
        if group["speedup_vs_eager"].isna().all() and not group["mode"].eq("xla").any():
            continue  # e.g. a batch size measured without eager: nothing to show
        ks = sorted(int(k) for k in group["steps_per_call"].unique())
        extra = [(f"xla vs function{'' if len(ks) == 1 else ' ' + _k(k)}", xla_vs_function(k)) for k in ks]
        out += [f"### {heading}", "", _grid(group, _speedup_cell, extra=extra), ""]
    return out[:-1]


def _by_device_columns(frame: pd.DataFrame, cell: Callable[[pd.Series], str]) -> str:
    """Rows workload x approach x mode x K x batch size, one column per device (and machine)."""
    frame = ordered(frame)
    devices = list(dict.fromkeys(frame["device_label"]))
    keys = ["workload", "approach", "mode", "steps_per_call", "batch_size"]
    frame = frame.sort_values(keys, key=sort_key, kind="stable")
    rows = []
    for (workload, approach, mode, k, batch), group in frame.groupby(keys, sort=False):
        by_device = {r["device_label"]: r for _, r in group.iterrows()}
        rows.append([workload, approach, mode, int(k), int(batch)]
                    + [cell(by_device[d]) if d in by_device else DASH for d in devices])
    return _table(["Workload", "Approach", "Mode", "K", "Batch"] + devices, rows)


def throughput_section(frame: pd.DataFrame) -> list[str]:
    step_times = ok(frame, "step_time").dropna(subset=["throughput_sps"]) if not frame.empty else frame
    if step_times.empty:
        return ["No throughput measurements in these results."]
    return ["Training samples per second (batch size / median step time).", "",
            _by_device_columns(step_times, lambda r: sig(r["throughput_sps"]))]


def roofline_fractions(step_times: pd.DataFrame) -> pd.Series:
    """Older records' fraction of the run's matmul peak (exact FLOPs, recounted on load); NaN for a record measured
    with the roofline model, whose figures are its floor and MFU (:mod:`tfbench.reports.roofline`)."""
    return step_times["roofline_fraction"].astype(float)


def roofline_section(frame: pd.DataFrame) -> list[str]:
    step_times = ok(frame, "step_time")
    if not step_times.empty:
        step_times = step_times.assign(roofline=roofline_fractions(step_times))
        has = step_times.apply(has_floor, axis=1) | step_times["roofline"].notna()
        step_times = step_times[has]
    if step_times.empty:
        return ["No roofline figures in these results (they need the device's roofs and the step's costs)."]
    out = model_lines(step_times)
    out += [BEST_INTRO, "", _best_per_approach(step_times), "", *_within_fastest(step_times), "",
            "Every configuration:", ""]
    return out + [_by_device_columns(step_times, roofline_cell)]


BEST_INTRO = ("Each approach's best configuration (the mode and steps per call K with the highest throughput) "
              "for each workload and batch size, against the fastest approach there:")
WITHIN = 0.10  # "within 10% of the fastest approach for the same workload, mode, K and batch size"


def _best_per_approach(step_times: pd.DataFrame) -> str:
    rows = []
    for (device, workload, batch), group in ordered(step_times).groupby(
            ["device_label", "workload", "batch_size"], sort=False):
        best = best_of_each_approach(group)
        fastest = best["throughput_sps"].max()
        for _, r in best.iterrows():
            rows.append([device, workload, int(batch), r["approach"], f"{r['mode']} {_k(r['steps_per_call'])}",
                         sig(r["throughput_sps"]), roofline_cell(r), times(r["throughput_sps"] / fastest)])
    return _table(["Device", "Workload", "Batch", "Approach", "Best mode", "Samples/s", "Roofline",
                   "Of the fastest"], rows)


def _within_fastest(step_times: pd.DataFrame) -> list[str]:
    """Per device: the configurations within 10% of the fastest approach's time for the same setting, and
    for those behind, how far and why (the approach's own ``known_cost``, where it has one)."""
    keys = ["device_label", "workload", "mode", "steps_per_call", "batch_size"]
    step_times = step_times.assign(
        behind=step_times["step_time_median_s"] / step_times.groupby(keys)["step_time_median_s"].transform("min"))
    step_times = step_times.assign(within=step_times["behind"] <= 1 + WITHIN)
    out = [f"Configurations within {WITHIN:.0%} of the fastest approach's step time for the same workload, "
           "mode, K and batch size:", ""]
    for device, on_device in ordered(step_times).groupby("device_label", sort=False):
        counts = [f"{approach} {int(g['within'].sum())} of {len(g)}"
                  for approach, g in on_device.groupby("approach", sort=False)]
        out.append(f"- {device}: {int(on_device['within'].sum())} of {len(on_device)} ({'; '.join(counts)})")
    behind = ordered(step_times[~step_times["within"]])
    if behind.empty:
        return out
    why = behind["known_cost"].where(behind["known_cost"].notna(), UNEXPLAINED)
    rows = []
    # One row per approach, mode and reason, sorted by approach and mode below.
    for (device, approach, mode, reason), group in behind.assign(why=why).groupby(
            ["device_label", "approach", "mode", "why"], sort=False):
        ks = sorted(int(k) for k in group["steps_per_call"].unique())
        # Out of the configurations of this approach and mode with these K (all workloads and batch sizes).
        configurations = step_times[(step_times["device_label"] == device) & (step_times["approach"] == approach)
                                    & (step_times["mode"] == mode) & step_times["steps_per_call"].isin(ks)]
        rows.append([device, approach, mode, ", ".join(map(str, ks)), f"{len(group)} of {len(configurations)}",
                     f"{times(group['behind'].min())}–{times(group['behind'].max())}", prose(reason)])
    rows.sort(key=lambda row: (row[0], approach_rank(row[1]), mode_rank(row[2]), row[3]))
    return out + ["", f"Where an approach is more than {WITHIN:.0%} behind (its step time over the fastest "
                      "approach's), and why:", "",
                  _table(["Device", "Approach", "Mode", "K", "Behind in", "Step time vs the fastest", "Why"], rows)]


UNEXPLAINED = ("no cost of the style was recorded with these measurements: timing noise (see the † marks), a "
               "cause found later, or a slowdown to look into (docs/performance.md, section 4)")


def input_pipeline_section(frame: pd.DataFrame) -> list[str]:
    pipelines = ordered(ok(frame, "input_pipeline"), "variant")
    if pipelines.empty:
        return ["No input-pipeline records in these results."]
    rows = [[r["variant"], r["approach"], r["workload"], r["mode"], r["device_label"], int(r["batch_size"]),
             _step_time_cell(r), sig(r["throughput_sps"])] for _, r in pipelines.iterrows()]
    return ["One training step fed by each input pipeline (median, 10th–90th percentile).", "",
            _table(["Pipeline", "Approach", "Workload", "Mode", "Device", "Batch", "Step time", "Samples/s"], rows)]


def accuracy_section(frame: pd.DataFrame) -> list[str]:
    accuracies = ordered(ok(frame, "accuracy"))
    if accuracies.empty:
        return ["No accuracy records in these results."]
    rows = []
    for _, r in accuracies.iterrows():
        reached = "yes" if r["test_accuracy"] >= r["target_accuracy"] else "no"
        tta = "not reached" if missing(r["time_to_accuracy_s"]) else secs(r["time_to_accuracy_s"])
        rows.append([r["workload"], r["approach"], r["mode"], r["device_label"], r["dataset"],
                     accuracy(r["test_accuracy"]), accuracy(r["target_accuracy"]), reached, tta,
                     _int(r["epochs"])])
    return ["Final test accuracy after training, and the training time until the test accuracy first reached "
            "the workload's target.", "",
            _table(["Workload", "Approach", "Mode", "Device", "Dataset", "Test accuracy", "Target", "Reached",
                    "Time to target", "Epochs"], rows)]


def recipes_section(frame: pd.DataFrame) -> list[str]:
    recipes = ok(frame, "recipe")
    if recipes.empty:
        return ["No documented-recipe records in these results."]
    rows = []
    for _, r in recipes.iterrows():
        capped = recipe_full_length(r) is False
        figure = recipe_figure(r)
        both = not capped and not missing(r["documented_accuracy"]) and not missing(figure)
        difference = f"{figure - r['documented_accuracy']:+.4f}" if both else DASH
        documented = accuracy(r["documented_accuracy"]) if not missing(r["documented_accuracy"]) else "not reported"
        reproduced = f"capped: {accuracy(figure)}, not a reproduction" if capped else accuracy(figure)
        rows.append([r["variant"], _text(r["title"]), r["approach"], r["workload"], r["dataset"],
                     _text(r["documented_metric"]), recipe_epochs(r), documented, reproduced, difference])
    out = ["The tutorials and books the approaches come from, run with their documented configuration (bugs "
           "fixed, see the notes). Epochs: run / documented; only a run to the documented length is compared "
           "with the documented figure.", "",
           _table(["Recipe", "Title", "Approach", "Workload", "Dataset", "Metric", "Epochs", "Documented",
                   "Reproduced", "Difference"], rows)]
    notes = [f"- **{r['variant']}** ({_text(r['source'])}): {' '.join(str(r['notes']).split())}"
             for _, r in recipes.iterrows() if not missing(r["notes"]) and r["notes"]]
    return out + (["", "Notes:", ""] + notes if notes else [])


def not_ok_section(frame: pd.DataFrame) -> list[str]:
    problems = frame[frame["status"] != "ok"] if not frame.empty else frame
    if problems.empty:
        return ["Every record ran: none unsupported, skipped or failed."]
    status_rank = {"failed": 0, "unsupported": 1, "skipped": 2}
    problems = ordered(problems).sort_values("status", key=lambda c: c.map(status_rank), kind="stable")
    rows = [[r["status"], r["kind"], r["approach"], r["workload"], r["mode"], int(r["steps_per_call"]),
             r["device_label"], int(r["batch_size"]), _text(r["variant"]), _text(r["reason"])]
            for _, r in problems.iterrows()]
    return [_table(["Status", "Kind", "Approach", "Workload", "Mode", "K", "Device", "Batch", "Variant", "Reason"],
                   rows)]


def noisy_section(frame: pd.DataFrame) -> list[str]:
    noisy = ordered(frame[frame["noisy"].fillna(False)]) if not frame.empty else frame
    if noisy.empty:
        return [f"No measurement was noisy (interquartile range over {NOISY_IQR_FRACTION:.0%} of the median)."]
    out = [f"Interquartile range over {NOISY_IQR_FRACTION:.0%} of the median: compare these with care, or "
           "re-run them on a quieter machine.", ""]
    for _, r in noisy.iterrows():
        what = " · ".join(str(v) for v in (r["kind"], r["device_label"], r["workload"], r["approach"], r["mode"],
                                           _k(r["steps_per_call"]), f"batch {int(r['batch_size'])}",
                                           r["variant"]) if v)
        if r["kind"] == "as_published":  # its own sample set is the published loop's step
            median, iqr, n = (r["published_step_time_s_median"], r["published_step_time_s_iqr"],
                              r["published_step_time_s_n"])
        else:
            median, iqr, n = r["step_time_median_s"], r["step_time_iqr_s"], r["step_time_n"]
        out.append(f"- {what}: median {ms(median)}, IQR {ms(iqr)} ({percent(iqr / median)} of the median, "
                   f"n={_int(n)})")
    return out


def to_markdown(frame: pd.DataFrame, charts: dict[str, str] | None = None) -> str:
    """The whole report in one document: the headline, then every page's sections under their ``## heading``;
    ``charts`` maps chart names (``step_time``, ``accuracy_curves_mlp``...) to image links, and an unknown name is a
    ValueError. ``write_report`` writes the same sections as an index and one page per question."""
    from tfbench.reports.report import one_document  # the pages' registry, which imports the sections above

    return one_document(frame, charts)
