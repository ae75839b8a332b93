"""The report's roofline model: what the floor of a step is, the roofs it was computed from, each record's cell.

Pure functions of the results DataFrame (no TensorFlow). A step-time record measured with the roofline
model carries ``floor_s``, ``fraction_of_floor``, ``binding_roof`` and ``mfu`` and its group's roofs
(``roofs_peak_gflops``, ``roofs_bandwidth_gbs_<bytes>``); an older record carries only
``roofline_fraction``, against a peak measured once a run (its 3 x forward FLOPs recounted exactly on load).
"""

from __future__ import annotations

import math

import pandas as pd

from tfbench.reports.data import missing, ordered

MODEL = (
    "**The model.** A training step is the list of ops it must run (forward, loss, the weight gradients, the "
    "input gradients of every layer but the first, the optimizer update), each with its exact FLOPs and the "
    "fewest float32 bytes it must read and write (`implementations/costs.py`). An op cannot run faster than "
    "its FLOPs at the device's peak nor than its bytes at the bandwidth the device streams data at for a "
    "working set of its size (the roofline model of Williams, Waterman and Patterson, 2009); the step's "
    "**floor** is the sum of each op's larger bound. Both roofs are measured on the device in the same run, "
    "interleaved with the records they divide, in every step-time group: the best rate of float32 matmuls "
    "(512³ to 2048³) and the best rate at which TensorFlow streams an array through an element-wise op, from "
    "256 KiB (in a core's cache) to 64 MiB (main memory). Assumptions, each of which can only lower the "
    "floor: ops run one after another with no dispatch cost; element-wise ops that can run inside the kernel "
    "producing their input (bias, ReLU, the bias gradient) move no tensor of their own, as oneDNN's and XLA's "
    "fused kernels do; every FLOP, element-wise ones included, runs at the matmul peak; an op gets the "
    "bandwidth measured at the largest probed size not above its own. **Of floor** is floor / median step "
    "time: 100% would be a step at the device's limit. **MFU** (model FLOPs utilisation, as nanoGPT and PaLM "
    "use it) is the exact matmul and convolution FLOPs per second over the group's matmul peak. *compute* or "
    "*memory* names the roof that binds the larger part of the floor."
)
FLOP_CONVENTION = (
    "FLOPs per training sample count 2 per multiply-accumulate of the matmuls and convolutions a step "
    "computes; element-wise work is counted apart. The older \"3 x forward\" convention also counted a "
    "gradient with respect to the input images, which no step computes (mlp: 1.41 MFLOP per sample where "
    "1.01 MFLOP is computed)."
)


def _percent(fraction: float) -> str:
    return "—" if missing(fraction) else f"{fraction * 100:.1f}%"


def _sig(value: float) -> str:
    if missing(value):
        return "—"
    rounded = float(f"{value:.3g}")
    decimals = max(3 - 1 - math.floor(math.log10(abs(rounded))), 0) if rounded else 0
    return f"{rounded:,.{decimals}f}"


def has_floor(record: pd.Series) -> bool:
    return "fraction_of_floor" in record.index and not missing(record["fraction_of_floor"])


def roofline_cell(record: pd.Series) -> str:
    """One record's place under its roofs: "41.2% of floor (memory), MFU 12.0%"; an older record's fraction of
    the run's matmul peak (exact FLOPs: ``results.recount_flops`` recounts 3 x forward records)."""
    if has_floor(record):
        return (f"{_percent(record['fraction_of_floor'])} of floor ({record['binding_roof']}), "
                f"MFU {_percent(record['mfu'])}")
    if "roofline" in record.index and not missing(record["roofline"]):
        return f"{_percent(record['roofline'])} of the run's matmul peak"
    return "—"


def bandwidth_columns(frame: pd.DataFrame) -> list[tuple[int, str]]:
    prefix = "roofs_bandwidth_gbs_"
    return sorted((int(c.removeprefix(prefix)), c) for c in frame.columns if c.startswith(prefix))


def _size(nbytes: int) -> str:
    return f"{nbytes >> 20} MiB" if nbytes >= 1 << 20 else f"{nbytes >> 10} KiB"


def _span(values: pd.Series) -> str:
    values = values.dropna().astype(float)
    low, high = _sig(values.min()), _sig(values.max())
    return low if low == high else f"{low}–{high}"


def roofs_lines(step_times: pd.DataFrame) -> list[str]:
    """Per device: the roofs its step-time groups measured (range over groups), or the run's matmul peak."""
    lines = []
    for device, group in ordered(step_times).groupby("device_label", sort=False):
        description = group["device_description"].iloc[0]
        name = f"{device}" + ("" if missing(description) else f" ({description})")
        measured = group.dropna(subset=["roofs_peak_gflops"]) if "roofs_peak_gflops" in group else group.iloc[:0]
        if not measured.empty:
            bandwidth = ", ".join(f"{_size(size)} {_span(measured[column])}"
                                  for size, column in bandwidth_columns(measured) if measured[column].notna().any())
            lines.append(f"- {name}: matmul peak {_span(measured['roofs_peak_gflops'])} GFLOP/s; streaming "
                         f"bandwidth (GB/s) at {bandwidth} (the range over its step-time groups)")
        older = group[group["roofs_peak_gflops"].isna()] if "roofs_peak_gflops" in group else group
        for _, run in older.drop_duplicates("run_id").dropna(subset=["device_peak_gflops"]).iterrows():
            size = "" if missing(run["device_peak_size"]) else f" at {int(run['device_peak_size'])}³"
            lines.append(f"- {name}, older records: matmul peak {_sig(run['device_peak_gflops'])} GFLOP/s{size}, "
                         "measured once at the start of the run")
    return lines


def model_lines(step_times: pd.DataFrame) -> list[str]:
    """The roofline section's opening: the model, the roofs per device, the FLOPs per sample."""
    flops = ordered(step_times.drop_duplicates(["workload", "flops_per_sample"]))
    per_workload = ", ".join(f"{r['workload']} {_sig(r['flops_per_sample'] / 1e6)} MFLOP"
                             for _, r in flops.iterrows() if not missing(r["flops_per_sample"]))
    out = [MODEL, "", "Roofs:", "", *roofs_lines(step_times), ""]
    if per_workload:
        out += [f"FLOPs per training sample: {per_workload}. {FLOP_CONVENTION}", ""]
    floors = step_times[step_times.apply(has_floor, axis=1)] if not step_times.empty else step_times
    if not floors.empty:
        over = floors[floors["fraction_of_floor"] > 1]
        over_peak = floors[floors["mfu"] > 1]
        out.append(f"{len(floors)} records have a floor; {len(over)} ran faster than their floor and "
                   f"{len(over_peak)} above the matmul peak" + (" (the model does not hold for them)."
                                                                if len(over) or len(over_peak) else "."))
        out.append("")
    return out
