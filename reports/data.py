"""Results files -> one pandas DataFrame, one row per record, and the selections the report makes of it.

Columns of :func:`load_results` (NaN / None where a record does not have the value):

* ``effective``: the record's effective settings as stored (a dict: jit_compile, dtype_policy, onednn...;
  None in records written before them);
* record keys: ``id``, ``kind``, ``approach``, ``workload``, ``mode``, ``steps_per_call``, ``device``,
  ``batch_size``, ``dataset``, ``variant``, ``strategy``, ``replicas`` ("none" and 1 in files written before
  strategies existed), ``status``, ``reason``, ``started``, ``duration_s``;
* the step-time summary (seconds per optimizer step): ``step_time_median_s``, ``step_time_p10_s``,
  ``step_time_p90_s``, ``step_time_iqr_s``, ``step_time_mean_s``, ``step_time_stdev_s``, ``step_time_n``,
  ``step_time_samples`` (list);
* the other metrics under their own names: ``noisy`` (nullable bool), ``first_call_s``, ``throughput_sps``,
  ``speedup_vs_eager``, ``speedup_low`` / ``speedup_high`` (its interval), ``flops_per_sample``,
  ``roofline_fraction``, ``peak_memory_bytes``, ``harness_overhead_fraction``, ``test_accuracy``,
  ``target_accuracy``, ``time_to_accuracy_s``, ``epochs``, ``history`` (list of per-epoch dicts), ``title``,
  ``source``, ``documented_metric``, ``documented_accuracy``, ``reproduced_accuracy``, ``notes``,
  ``known_cost`` (the approach's own account of why its style costs time in that mode); a metric
  this module does not know keeps its name (a dict-valued one becomes ``<name>_<key>`` columns);
* the record's device from the file's ``devices`` list: ``device_kind``, ``device_tf_device``,
  ``device_description``, ``device_peak_gflops`` (the float32 matmul rate measured in the run) and
  ``device_peak_size`` (the matmul size it was measured at);
* the run: ``run_id``, ``run_created``, ``run_updated``, ``run_complete``, ``profile`` (config.profile),
  ``source_file``;
* ``machine`` (environment machine_id, else the CPU model) and ``device_label`` ("cpu @ <machine>"),
  which tells devices of several machines apart;
* the environment flattened with an ``env_`` prefix (``env_tensorflow``, ``env_cpu_model``,
  ``env_threads_intra_op``, ``env_tf_build_info_cuda_version``...); ``env_gpus`` is a comma-separated string,
  ``env_gpu_info`` a list of dicts (name, driver, memory_bytes...), ``env_cpu_governor`` None where not exposed.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from tfbench.benchmarks.results import ResultsError, expand, load

KNOWN_APPROACHES = ("keras_fit", "custom_tape", "dual_optimizer_tape", "raw_tf_nn", "naive_sequential")
KNOWN_WORKLOADS = ("mlp", "cnn")  # the benchmarked workloads of implementations/workloads.py, in its order
MODES = ("eager", "function", "xla")

RECORD_COLUMNS = ("id", "kind", "approach", "workload", "mode", "steps_per_call", "device", "batch_size",
                  "dataset", "variant", "strategy", "replicas", "status", "reason", "started", "duration_s")
STEP_TIME_COLUMNS = ("step_time_median_s", "step_time_p10_s", "step_time_p90_s", "step_time_iqr_s",
                     "step_time_mean_s", "step_time_stdev_s", "step_time_n", "step_time_samples")
METRIC_COLUMNS = ("noisy", "first_call_s", "throughput_sps", "speedup_vs_eager", "speedup_low", "speedup_high",
                  "flops_per_sample", "roofline_fraction", "peak_memory_bytes", "harness_overhead_fraction",
                  "test_accuracy", "target_accuracy", "time_to_accuracy_s", "epochs", "history", "title",
                  "source", "documented_metric", "documented_accuracy", "reproduced_accuracy", "notes",
                  "known_cost")
DEVICE_COLUMNS = ("device_kind", "device_tf_device", "device_description", "device_peak_gflops", "device_peak_size")
RUN_COLUMNS = ("run_id", "run_created", "run_updated", "run_complete", "profile", "source_file", "machine",
               "device_label")
ENV_COLUMNS = ("env_python", "env_tensorflow", "env_keras", "env_numpy", "env_platform", "env_cpu_model",
               "env_cpu_count", "env_cpu_governor", "env_gpus", "env_gpu_info", "env_tensorflow_metal",
               "env_threads_intra_op", "env_threads_inter_op", "env_git_commit", "env_machine_id")
COLUMNS = RECORD_COLUMNS + STEP_TIME_COLUMNS + METRIC_COLUMNS + DEVICE_COLUMNS + RUN_COLUMNS + ENV_COLUMNS


def results_paths(paths: str | Path | Iterable[str | Path]) -> list[Path]:
    """Files as given, and every ``*.json`` of a directory (sorted); an empty directory is an error."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    found = [file for path in paths for file in expand(path)]
    if not found:
        raise ResultsError("no results files given")
    return found


def _flatten(mapping: dict, prefix: str) -> dict:
    flat = {}
    for key, value in mapping.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}_"))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _metric_columns(metrics: dict) -> dict:
    columns = {}
    for name, value in metrics.items():
        if name == "step_time_s" and isinstance(value, dict):
            for stat, stat_value in value.items():
                column = "step_time_samples" if stat == "samples" else "step_time_n" if stat == "n" else \
                    f"step_time_{stat}_s"
                columns[column] = stat_value
        elif name == "speedup_vs_eager_ci":
            if value is not None:
                if not isinstance(value, (list, tuple)) or len(value) != 2:
                    raise ValueError(f"speedup_vs_eager_ci must be [low, high], not {value!r}")
                columns["speedup_low"], columns["speedup_high"] = value
        elif isinstance(value, dict):
            columns.update(_flatten(value, f"{name}_"))
        else:
            columns[name] = value
    return columns


def _environment_columns(environment: dict) -> dict:
    environment = dict(environment)
    gpus = environment.get("gpus")
    if isinstance(gpus, list):
        environment["gpus"] = ", ".join(str(gpu) for gpu in gpus)
    return _flatten(environment, "env_")


def _file_rows(path: Path) -> list[dict]:
    document = load(path)  # checked against benchmarks/results.schema.json: a bad file is one clear error
    environment = document["environment"] if isinstance(document["environment"], dict) else {}
    env = _environment_columns(environment)
    machine = str(environment.get("machine_id") or environment.get("cpu_model") or "unknown machine")
    config = document.get("config") if isinstance(document.get("config"), dict) else {}
    devices = {d.get("name"): d for d in document.get("devices") or [] if isinstance(d, dict)}
    run = {"run_id": document.get("run_id") or str(path.resolve()), "run_created": document.get("created"),
           "run_updated": document.get("updated"), "run_complete": document.get("complete"),
           "profile": config.get("profile"), "source_file": str(path), "machine": machine}
    rows = []
    for index, record in enumerate(document["records"]):
        try:
            metrics = _metric_columns(record["metrics"])
        except (ValueError, TypeError) as error:
            raise ResultsError(f"{path}: record {index} ({record.get('id', '?')}): {error}") from None
        device = devices.get(record["device"], {})
        row = {key: record.get(key) for key in RECORD_COLUMNS}
        row["effective"] = record.get("effective")  # what actually ran (a dict), where the record says
        row["id"] = record.get("id") or "/".join(str(record[k]) for k in RECORD_COLUMNS[1:10])
        row.update(metrics)
        row.update({column: device.get(column.removeprefix("device_")) for column in DEVICE_COLUMNS})
        row.update(run, device_label=f"{record['device']} @ {machine}")
        row.update(env)
        rows.append(row)
    return rows


def load_results(paths: str | Path | Iterable[str | Path]) -> pd.DataFrame:
    """One row per record of one or more results files (or directories of them); see the module docstring.

    A missing, truncated or corrupt file raises :class:`~benchmarks.results.ResultsError` naming it. The same
    run loaded twice (e.g. a copy taken mid-run and the final file) gives each record once, from the file
    updated last.
    """
    rows: list[dict] = []
    unique: dict[Path, Path] = {}
    for path in results_paths(paths):
        unique.setdefault(path.resolve(), path)  # a file given twice is read once
    for path in unique.values():
        rows += _file_rows(path)
    frame = pd.DataFrame(rows)
    extra = sorted(c for c in frame.columns if c not in COLUMNS)
    frame = frame.reindex(columns=list(COLUMNS) + extra)
    if frame.empty:
        return frame
    frame["noisy"] = frame["noisy"].astype("boolean")
    for column in ("steps_per_call", "batch_size", "replicas"):
        frame[column] = frame[column].astype("Int64")
    frame = (frame.sort_values("run_updated", kind="stable", na_position="first")
             .drop_duplicates(["run_id", "id"], keep="last").sort_index().reset_index(drop=True))
    return frame


# --- what the report shows ------------------------------------------------------------------------------


def prose(text: str) -> str:
    """A record's free text (a ``known_cost``) made safe for Markdown: outside `code spans`, a double
    underscore (``Layer.__call__``) would turn into bold."""
    parts = text.split("`")
    return "`".join(part.replace("__", r"\_\_") if i % 2 == 0 else part for i, part in enumerate(parts))


def missing(value) -> bool:
    """No value: None, NaN or pandas' NA (a metric an older or partial record does not have)."""
    return value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA


def latest(frame: pd.DataFrame) -> pd.DataFrame:
    """Each measurement once per machine: when several runs of one machine measured it, the newest run's."""
    if frame.empty:
        return frame
    ordered = frame.sort_values("run_created", kind="stable", na_position="first")
    return ordered.drop_duplicates(["machine", "id"], keep="last").sort_index()


def ok(frame: pd.DataFrame, kind: str) -> pd.DataFrame:
    """The ``ok`` records of one kind: the only ones that reach a table of numbers or a chart."""
    if frame.empty:
        return frame
    return frame[(frame["kind"] == kind) & (frame["status"] == "ok")]


def approach_rank(name: str) -> tuple[int, str]:
    """The five known approaches in their usual order, then any other in alphabetical order."""
    return (KNOWN_APPROACHES.index(name), "") if name in KNOWN_APPROACHES else (len(KNOWN_APPROACHES), name)


def mode_rank(name: str) -> tuple[int, str]:
    return (MODES.index(name), "") if name in MODES else (len(MODES), name)


def workload_rank(name: str) -> tuple[int, str]:
    return (KNOWN_WORKLOADS.index(name), "") if name in KNOWN_WORKLOADS else (len(KNOWN_WORKLOADS), name)


_RANKS = {"approach": approach_rank, "mode": mode_rank, "workload": workload_rank}


def sort_key(column: pd.Series) -> pd.Series:
    """For ``sort_values(key=...)``: approaches, modes and workloads in their usual order, the rest as they are."""
    return column.map(_RANKS[column.name]) if column.name in _RANKS else column


def ordered(frame: pd.DataFrame, *extra: str) -> pd.DataFrame:
    """Rows by device, workload, approach (known order), mode (eager, function, xla), K, batch, then ``extra``."""
    keys = ["device_label", "workload", "approach", "mode", "steps_per_call", "batch_size", *extra]
    keys = [k for k in keys if k in frame.columns]
    return frame.sort_values(keys, key=sort_key, kind="stable") if not frame.empty else frame


def main_device_batch(step_times: pd.DataFrame) -> tuple[str, int, int] | None:
    """The device a chart shows (the one with most ok step-time records), its smallest batch size and K."""
    if step_times.empty:
        return None
    counts = step_times["device_label"].value_counts(sort=False)
    device = counts.idxmax()  # first of the most measured, in order of appearance
    on_device = step_times[step_times["device_label"] == device]
    batch = int(on_device["batch_size"].min())
    steps_per_call = int(on_device.loc[on_device["batch_size"] == batch, "steps_per_call"].min())
    return device, batch, steps_per_call


# Tableau colours for the known approaches; the rest of the palette, by a stable hash, for any other.
APPROACH_COLOURS = {"keras_fit": "#1f77b4", "custom_tape": "#ff7f0e", "dual_optimizer_tape": "#2ca02c",
                    "raw_tf_nn": "#d62728", "naive_sequential": "#9467bd"}
_FALLBACK_COLOURS = ("#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")


def approach_colour(name: str) -> str:
    """One colour per approach, the same in every chart and every report."""
    if name in APPROACH_COLOURS:
        return APPROACH_COLOURS[name]
    return _FALLBACK_COLOURS[zlib.crc32(name.encode()) % len(_FALLBACK_COLOURS)]
