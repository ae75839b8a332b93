"""The report's "Peers" section and chart, from the ``peer`` records: TensorFlow's best style beside Keras 3 on
JAX and plain JAX, same network, weights, batches and optimizer, timed in one interleaved run.

Per device, workload, batch size and K: the fastest TensorFlow configuration, keras_fit on JAX and plain JAX,
each one's median step, its time over the fastest TensorFlow's (with the bootstrap interval), its fraction of
the roofline floor, and how far its weights ended from raw_tf_nn's after the agreement steps (against the
stated tolerance). The chart draws the ratio to the best TensorFlow style with its interval, one panel per
workload. The backend is read from the record id (``.../jax``), so the frame needs no column of its own.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from tfbench.reports.data import latest, missing, ok
from tfbench.reports.markdown import DASH, _table, ms, percent, times

KIND = "peer"
ROWS = (("tensorflow", None, "best TensorFlow"), ("jax", "keras_fit", "Keras 3 on JAX"),
        ("jax", "plain_jax", "plain JAX"))


def _records(frame: pd.DataFrame) -> pd.DataFrame:
    records = ok(latest(frame), KIND) if not frame.empty else frame
    if records.empty:
        return records
    records = records.copy()
    records["backend"] = records["id"].map(lambda i: "jax" if str(i).endswith("/jax") else "tensorflow")
    return records


def _pick(group: pd.DataFrame, backend: str, approach: str | None):
    rows = group[group["backend"] == backend]
    if approach is not None:
        rows = rows[rows["approach"] == approach]
    if rows.empty:
        return None
    return rows.loc[rows["step_time_median_s"].idxmin()]


def _interval(row) -> str:
    ci = row.get("vs_best_tensorflow_ci")
    if isinstance(ci, (list, tuple)) and len(ci) == 2:
        return f"{times(row['vs_best_tensorflow'])} [{ci[0]:.2f}, {ci[1]:.2f}]"
    return times(row.get("vs_best_tensorflow"))


def _agreement(row) -> str:
    diff, tolerance = row.get("agreement_max_abs_diff"), row.get("agreement_tolerance")
    if missing(diff):
        return DASH
    verdict = "ok" if missing(tolerance) or diff <= tolerance else "**DISAGREES**"
    return f"{diff:.1e} ({verdict})"


def _unsupported_note(frame: pd.DataFrame) -> list[str]:
    rows = frame[(frame["kind"] == KIND) & (frame["status"] != "ok")] if not frame.empty else frame
    if rows.empty:
        return []
    reasons = list(dict.fromkeys(str(r) for r in rows["reason"].dropna()))
    return [f"{len(rows)} peer record(s) not measured: " + "; ".join(reasons[:3]), ""]


def section(frame: pd.DataFrame) -> list[str]:
    """Markdown lines of the section (the caller adds the heading)."""
    records = _records(frame)
    if records.empty:
        return ["No peer records (run `tfbench run --profile full --stages peer`; the JAX rows need "
                "`pip install 'tf-training-bench[peers]'`)."] + [""] + _unsupported_note(frame)
    out = ["The same network, initial weights, synthetic batches and Adam update in TensorFlow's fastest "
           "style, in keras_fit on Keras 3's JAX backend and in a plain-JAX step (`jax.jit`, donated buffers, "
           "K steps in one `lax.scan`), timed in one run: separate processes per backend taking turns round "
           "by round, each on the whole machine. **vs best TF** is the median step over the fastest TensorFlow "
           "configuration's at the same K (raw_tf_nn or keras_fit, function or xla), with its 95% paired "
           "bootstrap interval; **of floor** is the roofline floor (the same FLOPs and bytes for every row) over "
           "the median step; **agreement** is the largest weight difference from raw_tf_nn after the stated "
           "number of Adam steps, against the tolerance.", ""]
    out += _unsupported_note(frame)
    rows = []
    keys = ["device_label", "workload", "batch_size", "steps_per_call"]
    for (_device, workload, batch, k), group in records.groupby(keys, sort=True):
        for backend, approach, label in ROWS:
            row = _pick(group, backend, approach)
            if row is None:
                continue
            style = f"{row['approach']} {row['mode']}" if backend == "tensorflow" else label
            rows.append([workload, int(batch), f"K={int(k)}", style, ms(row["step_time_median_s"]),
                         _interval(row), percent(row.get("fraction_of_floor")), _agreement(row)])
    out += [_table(["workload", "batch", "K", "row", "step", "vs best TF", "of floor", "agreement"], rows), ""]
    out += _hlo_lines(records)
    return out


def _hlo_lines(records: pd.DataFrame) -> list[str]:
    """The compiled steps' op counts: TensorFlow's graph (function), TensorFlow's XLA step and plain JAX's."""
    if "hlo_ops_fusions" not in records.columns:
        return []
    rows = []
    for (workload, batch, k), group in records.groupby(["workload", "batch_size", "steps_per_call"], sort=True):
        graph = group[(group["approach"] == "raw_tf_nn") & (group["mode"] == "function")]
        tf_row = group[(group["approach"] == "raw_tf_nn") & (group["mode"] == "xla")]
        jax_row = group[group["approach"] == "plain_jax"]
        if tf_row.empty or jax_row.empty or missing(tf_row.iloc[0].get("hlo_ops_fusions")):
            continue
        t, j = tf_row.iloc[0], jax_row.iloc[0]
        graph_ops = graph.iloc[0].get("hlo_ops_graph_ops") if not graph.empty else None
        rows.append([workload, int(batch), f"K={int(k)}", _int(graph_ops), _int(t["hlo_ops_fusions"]),
                     _int(t["hlo_ops_unfused_ops"]), _int(j.get("hlo_ops_fusions")),
                     _int(j.get("hlo_ops_unfused_ops"))])
    if not rows:
        return []
    return ["What each step runs: the kernels of raw_tf_nn's `tf.function` graph (each op one kernel; the Adam "
            "update and the loss are tens of small element-wise ops), against the optimized HLO of one call of "
            "raw_tf_nn's XLA step (`experimental_get_compiler_ir`) and of plain JAX's "
            "(`.lower().compile().as_text()`): XLA:CPU's fusions (element-wise chains fused into one loop), "
            "and the ops it runs outside any fusion (convolutions, dots, copies; on TensorFlow's side also its "
            "loop's and the loss's own).", "",
            _table(["workload", "batch", "K", "TF graph ops", "TF XLA fusions", "TF XLA unfused ops",
                    "JAX fusions", "JAX unfused ops"], rows), ""]


def _int(value) -> str:
    return DASH if missing(value) else str(int(value))


def plot_peers(frame: pd.DataFrame, path: str | Path) -> Path | None:
    """Each row's step time over the best TensorFlow style's, with its interval, a panel per workload; None
    without peer records."""
    records = _records(frame)
    if records.empty or "vs_best_tensorflow" not in records.columns:
        return None
    workloads = sorted(records["workload"].unique())
    figure = Figure(figsize=(7.5, 2.2 + 1.6 * len(workloads)), layout="constrained")
    axes = figure.subplots(len(workloads), 1, squeeze=False)[:, 0]
    colours = {"best TensorFlow": "#4c72b0", "Keras 3 on JAX": "#dd8452", "plain JAX": "#55a868"}
    for ax, workload in zip(axes, workloads):
        group = records[records["workload"] == workload]
        labels, positions, y = [], [], 0.0
        for (batch, k), cell in group.groupby(["batch_size", "steps_per_call"], sort=True):
            for backend, approach, label in ROWS:
                row = _pick(cell, backend, approach)
                if row is None or missing(row.get("vs_best_tensorflow")):
                    continue
                ratio = row["vs_best_tensorflow"]
                ci = row.get("vs_best_tensorflow_ci")
                err = ([[ratio - ci[0]], [ci[1] - ratio]] if isinstance(ci, (list, tuple)) and len(ci) == 2
                       else None)
                ax.barh(y, ratio, xerr=err, color=colours[label], capsize=2,
                        label=label if label not in ax.get_legend_handles_labels()[1] else None)
                labels.append(f"b{int(batch)} K={int(k)}")
                positions.append(y)
                y += 1
            y += 0.5
        ax.axvline(1.0, color="black", linewidth=0.8, linestyle="--")
        ax.set_yticks(positions, labels)
        ax.invert_yaxis()
        ax.set_title(f"{workload}: step time / best TensorFlow style's (lower is faster)", fontsize=9)
        ax.set_xlabel("ratio (95% interval)", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    path = Path(path)
    figure.savefig(path, dpi=120)
    return path
