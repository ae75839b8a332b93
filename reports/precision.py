"""The report's mixed-precision section and chart, from the ``mixed_precision`` records.

Per approach and workload: each policy's step time over float32's (measured side by side, with its
interval), its test accuracy minus float32's after the same epochs, and the verdict the stage gave
(benchmarks/stages/mixed_precision.py: pays / no gain / slower / hurts accuracy); then the CPU features
that decide whether a 16-bit type can pay (the results' ``cpu_flags``), and the policies the device could
not run, with why. Pure pandas and matplotlib, like the rest of ``reports/``.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from tfbench.reports.data import latest, missing, ordered
from tfbench.reports.markdown import DASH, _table, times

KIND = "mixed_precision"
POLICIES = ("float32", "mixed_bfloat16", "mixed_float16")
POLICY_COLOURS = {"float32": "#7f7f7f", "mixed_bfloat16": "#1f77b4", "mixed_float16": "#ff7f0e"}
# Which reported CPU features let each 16-bit type compute natively (else it is converted, at float32 speed
# or slower): x86's AVX-512 and AMX extensions, ARM's bf16 and half-precision SIMD.
DECIDING_FLAGS = {"mixed_bfloat16": ("avx512_bf16", "amx_bf16", "bf16"),
                  "mixed_float16": ("avx512_fp16", "amx_fp16", "asimdhp", "fphp")}


def _records(frame: pd.DataFrame) -> pd.DataFrame:
    if frame.empty:
        return frame
    records = latest(frame)
    return ordered(records[records["kind"] == KIND])


def _ratio(record: pd.Series) -> str:
    interval = record.get("vs_float32_ci")
    text = times(record.get("vs_float32"))
    if isinstance(interval, list) and len(interval) == 2:
        text += f" [{interval[0]:.2f}, {interval[1]:.2f}]"
    return text


def _delta(value) -> str:
    return DASH if missing(value) else f"{100 * value:+.2f} pt"


def cpu_flag_lines(records: pd.DataFrame) -> list[str]:
    """What the CPU reports of the features that decide each 16-bit type, per machine."""
    if "env_cpu_flags" not in records.columns:
        return []
    lines = []
    for machine, group in records.groupby("machine", sort=False):
        flags = next((f for f in group["env_cpu_flags"] if isinstance(f, list)), None)
        if flags is None:
            continue
        model = next((m for m in group.get("env_cpu_model", []) if isinstance(m, str)), machine)
        parts = []
        for policy, deciding in DECIDING_FLAGS.items():
            present = [f for f in deciding if f in flags]
            parts.append(f"{policy.removeprefix('mixed_')}: {', '.join(present) if present else 'no native support'}")
        lines.append(f"- {model}: {'; '.join(parts)} (all reported flags that matter: "
                     f"{', '.join(flags) if flags else 'none reported'})")
    return ["CPU features that decide it (py-cpuinfo):", "", *lines, ""] if lines else []


def gpu_lines(records: pd.DataFrame) -> list[str]:
    """What decides it on a GPU: its compute capability (NVIDIA: float16 tensor cores from 7.0, bfloat16
    from 8.0); on an Apple GPU (tensorflow-metal) the record's probe alone tells what runs."""
    lines = []
    if "env_gpu_info" not in records.columns:
        return lines
    on_gpus = records[records["device_kind"].isin(["gpu", "metal"])]
    seen = set()
    for gpus in on_gpus["env_gpu_info"]:
        for gpu in gpus if isinstance(gpus, list) else []:
            name, capability = gpu.get("name"), gpu.get("compute_capability")
            if (name, capability) in seen:
                continue
            seen.add((name, capability))
            if capability:
                lines.append(f"- {name}: compute capability {capability} (NVIDIA's tensor cores run float16 "
                             "from 7.0 and bfloat16 from 8.0)")
            else:
                lines.append(f"- {name}: no compute capability reported (an Apple GPU: what runs is what the "
                             "probe found)")
    return ["GPUs:", "", *lines, ""] if lines else []


def section(frame: pd.DataFrame) -> list[str]:
    """Markdown lines of the section (the caller adds the heading)."""
    records = _records(frame)
    if records.empty:
        return ["No mixed-precision records (run `tfbench run --profile full --stages mixed_precision`)."]
    measured = records[records["status"] == "ok"]
    out = ["Each approach under Keras's mixed-precision policies (float32 weights, 16-bit compute; float16 "
           "with loss scaling), in function mode at K=1, timed interleaved with its float32 build. **vs "
           "float32**: median step time over float32's, with its paired block-bootstrap interval. **Accuracy "
           "delta**: test accuracy minus float32's after the same epochs of training. **Verdict**: *hurts "
           "accuracy* when it lost more than 1 point (or diverged), else *pays* when at least 5% faster with "
           "the whole interval below 1, *slower* when at least 5% slower with the whole interval above 1, "
           "else *no gain*.", ""]
    rows = []
    for _, r in measured.iterrows():
        epochs = r.get("epochs")
        rows.append([r["workload"], r["approach"], r["variant"], _ratio(r), _delta(r.get("accuracy_delta")),
                     r.get("verdict") if isinstance(r.get("verdict"), str) else
                     ("baseline" if r["variant"] == "float32" else DASH),
                     DASH if missing(r.get("test_accuracy")) else f"{r['test_accuracy']:.4f}"
                     + ("" if missing(epochs) else f" ({int(epochs)} ep.)")])
    if rows:
        out += [_table(["Workload", "Approach", "Policy", "vs float32", "Accuracy delta", "Verdict",
                        "Test accuracy"], rows), ""]
    not_measured = measured[measured["reason"].notna()] if "reason" in measured.columns else measured.iloc[0:0]
    for reason in dict.fromkeys(not_measured["reason"]):
        out += [f"Note: {reason}", ""]
    out += cpu_flag_lines(records) + gpu_lines(records)
    others = records[records["status"] != "ok"]
    if not others.empty:
        out += ["Not measured:", ""]
        for (status, reason), group in others.groupby(["status", "reason"], sort=False, dropna=False):
            names = ", ".join(f"{r['approach']}/{r['workload']}/{r['variant']}" for _, r in group.iterrows())
            out.append(f"- {status}: {names}: {reason}")
        out.append("")
    return out


def plot_precision(frame: pd.DataFrame, path: str | Path) -> Path | None:
    """Step time over float32's per approach, one bar per mixed policy with its interval, one panel per
    workload; the accuracy delta written over each bar. None when there is no data."""
    records = _records(frame)
    if records.empty:
        return None
    records = records[(records["status"] == "ok") & (records["variant"] != "float32")
                      & records["vs_float32"].notna()]
    if records.empty:
        return None
    workloads = list(dict.fromkeys(records["workload"]))
    figure = Figure(figsize=(5.5 * len(workloads) + 1.5, 4.5), dpi=100, layout="constrained")
    axes = figure.subplots(1, len(workloads), squeeze=False)[0]
    policies = [p for p in POLICIES[1:] if p in set(records["variant"])]
    width = 0.8 / max(len(policies), 1)
    for ax, workload in zip(axes, workloads):
        panel = records[records["workload"] == workload]
        approaches = list(dict.fromkeys(panel["approach"]))
        for i, policy in enumerate(policies):
            for j, approach in enumerate(approaches):
                row = panel[(panel["approach"] == approach) & (panel["variant"] == policy)]
                if row.empty:
                    continue
                r = row.iloc[0]
                x = j + (i - (len(policies) - 1) / 2) * width
                interval = r.get("vs_float32_ci")
                yerr = None
                if isinstance(interval, list) and len(interval) == 2:
                    yerr = [[max(r["vs_float32"] - interval[0], 0)], [max(interval[1] - r["vs_float32"], 0)]]
                ax.bar(x, r["vs_float32"], width, yerr=yerr, capsize=3, color=POLICY_COLOURS[policy],
                       label=policy if j == 0 else None)
                if not missing(r.get("accuracy_delta")):
                    top = interval[1] if yerr is not None else r["vs_float32"]
                    ax.annotate(f"{100 * r['accuracy_delta']:+.1f}", (x, top), textcoords="offset points",
                                xytext=(0, 3), ha="center", fontsize="x-small")
        ax.axhline(1.0, color="black", linewidth=1)
        ax.set_xticks(range(len(approaches)), approaches, rotation=20, ha="right", fontsize="small")
        ax.set_ylabel("step time / float32's (lower is faster)")
        ax.set_title(f"{workload}: numbers over bars = accuracy delta (points)", fontsize="medium")
    axes[0].legend(fontsize="small")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    return path
