"""The results file: schema, summary statistics, atomic record-by-record writes.

One JSON file per run::

    {
      "schema_version": 1,
      "run_id": "20261122T040000Z-3f9a1c",
      "created": "...", "updated": "...", "complete": false,
      "config": {...the run's arguments...},
      "environment": {...versions, CPU, GPUs, threads, git commit, machine id...},
      "devices": [{"name": "cpu", "kind": "cpu", "tf_device": "/CPU:0",
                   "description": "...", "peak_gflops": 201.3, ...}],
      "records": [record, ...],
      "nonfinite_values": {"/records/3/metrics/history/1/loss": "NaN", ...}  (only if any)
    }

The file is strict JSON (RFC 8259): a number that is NaN or infinite is
written as ``null``, and ``nonfinite_values`` maps the JSON Pointer of each
such ``null`` to what it was, so nothing is silently lost. (A loss that
becomes NaN also makes its record ``failed``, with the epoch and step, see
``TrainingDiverged``.) Files written by older versions with bare ``NaN``
tokens are still read.

A record is one measurement::

    {"id": "step_time/custom_tape/mlp/function/k1/cpu/b32/synthetic/",
     "kind": "step_time" | "accuracy" | "recipe" | "input_pipeline" | "as_published" | "breakdown"
             | "distributed",
     "approach", "workload", "mode", "steps_per_call", "device", "batch_size",
     "dataset", "variant" (recipe or pipeline name, else ""),
     "strategy": "none" | "mirrored" | "multiworker", "replicas": int (replicas in sync),
     "status": "ok" | "unsupported" | "skipped" | "failed", "reason": str | None,
     (``--resume`` re-attempts ``skipped`` and ``failed`` records; ``ok`` and
     ``unsupported`` are final)
     "metrics": {...}, "started": iso time, "duration_s": float}

Metrics, where they apply: ``step_time_s`` (see :func:`summarize`),
``noisy``, ``first_call_s``, ``throughput_sps``, ``speedup_vs_eager`` and
``speedup_vs_eager_ci`` ([low, high]), ``flops_per_sample``,
``roofline_fraction``, ``peak_memory_bytes``, ``test_accuracy``,
``target_accuracy``, ``time_to_accuracy_s``, ``history``,
``documented_accuracy``, ``documented_metric``, ``reproduced_accuracy``,
``harness_overhead_fraction``, ``known_cost`` (text: the approach's reason for
extra work per step in that mode, see ``Trainer.known_cost``).

Recipe records also hold ``epochs`` (count run), ``documented_epochs`` (count
the tutorial ran), ``documented_epoch`` (the epoch its figure belongs to),
``documented_curve`` (fractions, its figure per epoch where it prints one),
``full_length`` (bool: epochs run >= documented), ``final_accuracy``
(fraction: the documented metric after the last epoch run); and
``reproduced_accuracy`` is null unless the run was full length.

``as_published`` records (one per recipe with a published loop, mode
``eager``, batch size the tutorial's): ``published_step_time_s`` (seconds per
optimizer step of the loop as published, a :func:`summarize` dict),
``published_first_call_s`` (s), ``fixed_step_time_s`` (dict "MODE/kK" ->
summary: the recipe's fixed loop at the same batch size),
``fixed_eager_step_time_s`` and ``best_step_time_s`` (summaries),
``best_mode`` and ``best_steps_per_call`` (the fastest compiled
configuration), ``published_over_fixed_eager`` and ``published_over_best``
(ratios of medians) with ``..._ci`` ([low, high] bootstrap 95%),
``failed_configs`` (dict "MODE/kK" -> reason), ``published_nonfinite`` (bool),
``published_batch_size``; and the accuracy of a fresh run of the loop:
``published_accuracy`` (fraction: the documented metric, at the documented
epoch if full length, else after the last epoch run), ``published_epochs``
(count run), ``documented_epochs``, ``published_full_length`` (bool),
``published_train_time_s`` (s, printing to os.devnull included),
``published_figures`` (dict of every accuracy the loop ends with),
``published_history`` (per-epoch dicts of what the loop prints).

Roofline, memory and breakdown metrics (name, unit: meaning):

* ``flops_per_sample``, FLOP: exact matmul + convolution FLOPs of one training sample
  (``implementations/costs.py``; records before it held 3 x forward, which counted the first layer's
  input gradient); ``achieved_gflops``, GFLOP/s: those FLOPs at the record's throughput;
* ``roofs``, {``peak_gflops``: GFLOP/s, ``bandwidth_gbs``: {bytes: GB/s}}: the step-time group's own
  roofs, best matmul rate and best streaming rate per working-set size, timed in its rounds;
* ``model_flops_per_step``, FLOP; ``elementwise_flops_per_step``, FLOP (bias, ReLU, pooling, loss,
  optimizer); ``min_bytes_per_step``, bytes: the fewest float32 bytes the step's ops read and write;
* ``floor_s``, s: the roofline floor of one step, sum over ops of max(FLOPs / peak, bytes / bandwidth);
  ``floor_compute_s`` / ``floor_memory_s``, s: its compute-bound and memory-bound parts;
  ``binding_roof``, "compute" | "memory": the larger part; ``fraction_of_floor``, ratio: floor / median
  step time (at most 1 if the model holds); ``floor_unavailable``, text: why a workload has no floor;
* ``mfu``, ratio: model FLOPs utilisation, exact matmul/convolution FLOPs per second over the peak;
* ``roofline_fraction``, ratio: older records only (exact FLOPs over a peak measured once a run; records
  written with 3 x forward FLOPs are recounted by :func:`recount_flops`);
* ``peak_memory_bytes``, bytes: the record's own peak, the device allocator's high-water mark during its
  build, first call and warm-up above what was held before it (the process's resident memory where
  the allocator keeps no statistics); ``harness_preplaced_bytes``, bytes: the batches the harness
  placed on the device for the whole group before any configuration was built;
* breakdown records: ``profiled_step_s``, s: wall time per step under the profiler; ``breakdown_s``,
  {category: s}: that time split into ``conv``, ``pool``, ``matmul``, ``elementwise``, ``optimizer``,
  ``copies`` (each op category's share of the wall time ops covered) and ``rest`` (no op running:
  dispatch, control flow, Python); ``thread_s``, {category: s}: the ops' own times summed over threads;
  ``ops_wall_s``, s: wall time with at least one op running; ``profiled_steps``, ``op_events``, counts.

``strategy`` and ``replicas`` were added after the first files were written: a
record without them is read as ``"none"`` and ``1`` (one device), and its id
is unchanged (the id names them only when a strategy is used). In a
``distributed`` record ``batch_size`` is the batch *per replica*.

Metrics of ``distributed`` records (besides ``step_time_s``, ``noisy``,
``first_call_s`` and ``throughput_sps``, which counts the samples of the
global batch per second):

* ``global_batch_size`` (samples): the batch of one step over all replicas,
  ``batch_size x replicas``;
* ``scaling_efficiency`` (fraction): ``throughput(N) / (N x throughput(1))``,
  against the same approach, mode and K at 1 replica under the same strategy
  (under ``multiworker``, against the single-device record): 1 is perfect
  scaling; on logical CPU devices, which share the cores, it measures the
  strategy's overhead, not a speed-up;
* ``vs_fastest`` (ratio): the step time over the fastest approach's at the
  same strategy, replicas, mode and K (1 for the fastest);
* ``vs_single_device`` (ratio): the step time over the same approach's
  without a strategy at the same global batch, where measured (the cost of
  the strategy itself at 1 replica, its distributed input pipeline included).

The published schema, ``results.schema.json`` beside this module, declares
every field and every metric with its type, unit and meaning (its
``$defs/metrics``); :func:`validate` rejects a document that does not conform,
naming the first problem's place in it. A new metric is declared there before
the code writes it (a test runs the suite and validates its output).

This module is pure Python + NumPy + jsonschema (no TensorFlow): the reports
and the regression gate read results through it.
"""

from __future__ import annotations

import functools
import json
import math
import os
import re
import reprlib
import sys
import tempfile
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from tfbench.benchmarks.outputs import writing
from tfbench.errors import TfbenchError, WriteError

SCHEMA_VERSION = 1
SCHEMA_PATH = Path(__file__).with_name("results.schema.json")
KINDS = ("step_time", "accuracy", "recipe", "input_pipeline", "as_published", "breakdown", "distributed",
         "retracing", "memory_growth", "k_sweep", "mixed_precision", "peer")
STATUSES = ("ok", "unsupported", "skipped", "failed")
FINAL_STATUSES = ("ok", "unsupported")  # a resumed run keeps these; skipped and failed ones are tried again
# Key fields a file written before tf.distribute support (strategy, replicas) or before the JAX peers
# (backend) lacks, with the value they then mean.
DISTRIBUTION_DEFAULTS = {"strategy": "none", "replicas": 1}
KEY_DEFAULTS = {**DISTRIBUTION_DEFAULTS, "backend": "tensorflow"}
KEY_FIELDS = ("kind", "approach", "workload", "mode", "steps_per_call", "device", "batch_size", "dataset",
              "variant", *KEY_DEFAULTS)
# A sample set whose interquartile range exceeds this fraction of its median is flagged noisy.
NOISY_IQR_FRACTION = 0.10


class ResultsError(TfbenchError, ValueError):
    """A results file is missing, unreadable or not of this schema; the message names it."""


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def record_id(record: dict) -> str:
    """A readable, unique key of what a record measures (not of its outcome)."""
    k = record
    key = (f"{k['kind']}/{k['approach']}/{k['workload']}/{k['mode']}/k{k['steps_per_call']}/"
           f"{k['device']}/b{k['batch_size']}/{k['dataset']}/{k.get('variant') or ''}")
    strategy = k.get("strategy") or "none"
    # Single-device TensorFlow ids stay what they were before strategies and backends existed, so old files
    # still match new ones.
    if strategy != "none":
        key = f"{key}/{strategy}x{k.get('replicas', 1)}"
    backend = k.get("backend") or "tensorflow"
    return key if backend == "tensorflow" else f"{key}/{backend}"


def make_record(kind: str, *, approach: str, workload: str, mode: str, steps_per_call: int, device: str,
                batch_size: int, dataset: str, variant: str = "", status: str = "ok",
                reason: str | None = None, metrics: dict | None = None, strategy: str = "none",
                replicas: int = 1, backend: str = "tensorflow") -> dict:
    if kind not in KINDS:
        raise ValueError(f"unknown record kind {kind!r}")
    if status not in STATUSES:
        raise ValueError(f"unknown record status {status!r}")
    record = {"kind": kind, "approach": approach, "workload": workload, "mode": mode,
              "steps_per_call": int(steps_per_call), "device": device, "batch_size": int(batch_size),
              "dataset": dataset, "variant": variant, "strategy": strategy, "replicas": int(replicas),
              "backend": backend, "status": status, "reason": reason, "metrics": metrics or {}}
    record["id"] = record_id(record)
    return record


def summarize(samples: Sequence[float]) -> dict:
    """Median, p10, p90, IQR, mean, stdev (n-1), n and the raw samples of a timing sample set."""
    values = np.asarray(samples, dtype=float)
    if values.size == 0:
        raise ValueError("no samples to summarise")
    p10, p25, median, p75, p90 = np.percentile(values, [10, 25, 50, 75, 90])
    return {"median": float(median), "p10": float(p10), "p90": float(p90), "iqr": float(p75 - p25),
            "mean": float(values.mean()), "stdev": float(values.std(ddof=1)) if values.size > 1 else 0.0,
            "n": int(values.size), "samples": [float(v) for v in values]}


def is_noisy(summary: dict) -> bool:
    return summary["median"] > 0 and summary["iqr"] / summary["median"] > NOISY_IQR_FRACTION


def strict_json(value: object, pointer: str = "", replaced: dict[str, str] | None = None) -> tuple[object, dict]:
    """``value`` with every NaN or infinite number replaced by None, and {JSON Pointer: what it was}.

    NumPy scalars and arrays become plain numbers and lists on the way.
    """
    replaced = {} if replaced is None else replaced
    if isinstance(value, dict):
        return {key: strict_json(item, f"{pointer}/{_escape(str(key))}", replaced)[0]
                for key, item in value.items()}, replaced
    if isinstance(value, (list, tuple, np.ndarray)):
        return [strict_json(item, f"{pointer}/{index}", replaced)[0] for index, item in enumerate(value)], replaced
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        replaced[pointer] = "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
        return None, replaced
    return value, replaced


def _escape(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")  # JSON Pointer (RFC 6901)


def write_json_atomic(path: Path, document: dict, what: str = "results file") -> None:
    """Write strict JSON to a temporary file in the same folder, fsync, then rename over ``path``.

    A crash at any moment leaves either the old file or the new one, never half of one. NaN and
    infinities are written as null and listed under ``nonfinite_values`` (see the module docstring).
    An OSError becomes a one-line :class:`~tfbench.errors.WriteError` naming ``path``.
    """
    path = Path(path)
    clean, replaced = strict_json(document)
    if replaced and isinstance(clean, dict):
        clean["nonfinite_values"] = {**clean.get("nonfinite_values", {}), **replaced}
    with writing(path, f"the {what}"):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            umask = os.umask(0)
            os.umask(umask)
            os.fchmod(fd, 0o666 & ~umask)  # mkstemp makes 0600; a results file is an ordinary file
            with os.fdopen(fd, "w") as handle:
                json.dump(clean, handle, indent=1, allow_nan=False)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


@functools.cache
def schema() -> dict:
    """The results document's JSON Schema (``results.schema.json``, shipped with the package)."""
    return json.loads(SCHEMA_PATH.read_text())


@functools.cache
def _validator():
    import jsonschema

    document_schema = schema()
    return jsonschema.validators.validator_for(document_schema)(document_schema)


_SHORT = reprlib.Repr()
_SHORT.maxstring, _SHORT.maxother, _SHORT.maxlist, _SHORT.maxdict = 40, 40, 3, 2


def _place(path: Iterable) -> str:
    """``records[3].metrics.step_time_s``: a place in the document, as a reader would write it."""
    place = ""
    for part in path:
        place += f"[{part}]" if isinstance(part, int) else f".{part}" if place else str(part)
    return place


_JSON_TYPES = {dict: "an object", list: "a list", str: "a string", bool: "true/false", int: "a whole number",
               float: "a number", type(None): "null"}
_EXPECTED = {"object": "an object", "array": "a list", "string": "a string", "boolean": "true or false",
             "integer": "a whole number", "number": "a number", "null": "null"}


def _problem(error, document: object = None) -> str:
    """One line for a jsonschema error: which record and field, what it holds, and what was expected."""
    problem = _what(error)
    path = list(error.absolute_path)
    if len(path) >= 2 and path[0] == "records" and isinstance(path[1], int) and isinstance(document, dict):
        try:
            record_key = document["records"][path[1]].get("id")
        except (AttributeError, IndexError, KeyError, TypeError):
            record_key = None
        if record_key:
            problem += f" (in record {record_key})"
    return problem


def _what(error) -> str:
    where = _place(error.absolute_path)
    at = f"{where}: " if where else ""
    kind, instance, rule = error.validator, error.instance, error.schema
    if kind == "required":
        missing = [name for name in rule["required"] if name not in instance]
        return f"{at}missing {missing[0]!r}" if missing else f"{at}{error.message}"
    if kind == "additionalProperties":
        declared, patterns = rule.get("properties", {}), rule.get("patternProperties", {})
        extra = [name for name in instance
                 if name not in declared and not any(re.search(p, name) for p in patterns)]
        what = "metric" if error.absolute_path and error.absolute_path[-1] == "metrics" else "field"
        return f"{at}unknown {what} {extra[0]!r} (not declared in {SCHEMA_PATH.name})"
    if kind == "type":
        types = [rule["type"]] if isinstance(rule["type"], str) else rule["type"]
        expected = " or ".join(_EXPECTED.get(name, name) for name in types)
        # A metric's description starts with the kinds it applies to ("step_time: ..."): keep its meaning.
        meaning = rule.get("description", "").split(": ", 1)[-1][:80]
        meaning = f" ({meaning})" if meaning else ""
        held = _JSON_TYPES.get(type(instance), type(instance).__name__)
        value = "" if instance is None else f" {_SHORT.repr(instance)}"
        return f"{at}holds {held}{value}, expected {expected}{meaning}"
    if kind in ("enum", "const"):
        allowed = rule["enum"] if kind == "enum" else [rule["const"]]
        return f"{at}{_SHORT.repr(instance)} is not one of {', '.join(map(repr, allowed))}"
    return f"{at}{_SHORT.repr(instance)} violates {kind} {_SHORT.repr(rule.get(kind))}"


def _with_nonfinite_values(document: dict) -> dict:
    """A copy of a strict-JSON document with each null listed in ``nonfinite_values`` back to its NaN or
    infinity, so the schema's number types apply to it; a pointer that names no null is a ResultsError."""
    import copy

    values = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}
    restored = copy.deepcopy(document)
    for pointer, value in document["nonfinite_values"].items():
        parts = [part.replace("~1", "/").replace("~0", "~") for part in pointer.split("/")[1:]]
        parent = restored
        try:
            for part in parts[:-1]:
                parent = parent[int(part) if isinstance(parent, list) else part]
            key = int(parts[-1]) if isinstance(parent, list) else parts[-1]
            if parent[key] is not None or value not in values:
                raise LookupError
        except (LookupError, TypeError, ValueError):
            raise ValueError(pointer) from None
        parent[key] = values[value]
    return restored


def validate(document: object, source: str = "results") -> dict:
    """Check a loaded document against the schema; raise :class:`ResultsError` naming ``source`` and the
    first problem (its place in the document and what is wrong)."""
    from jsonschema.exceptions import best_match

    if not isinstance(document, dict):
        raise ResultsError(f"{source}: not a results file (expected a JSON object)")
    if "schema_version" not in document:
        raise ResultsError(f"{source}: no schema_version; is it a tf-training-bench results file?")
    version = document["schema_version"]
    readable = schema()["properties"]["schema_version"]["enum"]
    if version not in readable:
        raise ResultsError(f"{source}: schema_version {version!r} is not one this suite reads "
                           f"({', '.join(map(str, readable))}); re-run `tfbench run` with this version of the suite")
    checked = document
    if isinstance(document.get("nonfinite_values"), dict):
        try:
            checked = _with_nonfinite_values(document)
        except ValueError as bad:
            raise ResultsError(f"{source}: nonfinite_values: {bad} does not name a null number of the document; "
                               "the file was changed by hand or is damaged") from None
    error = best_match(_validator().iter_errors(checked))
    if error is not None:
        hint = "; is it a tf-training-bench results file?" if not error.absolute_path else ""
        raise ResultsError(f"{source}: {_problem(error, document)}{hint}")
    for record in document["records"]:
        for field, default in KEY_DEFAULTS.items():  # a file from before strategies or backends
            record.setdefault(field, default)
    return document


def expand(path: str | Path) -> list[Path]:
    """A results file as given, or every ``*.json`` of a directory (sorted); an empty directory is an error."""
    path = Path(path)
    if not path.is_dir():
        return [path]
    files = sorted(path.glob("*.json"))
    if not files:
        raise ResultsError(f"{path}: no *.json results files in this directory")
    return files


def load(path: str | Path) -> dict:
    """Read and validate one results file; every failure is a :class:`ResultsError` naming the path."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ResultsError(f"{path}: no such results file") from None
    except OSError as error:
        raise ResultsError(f"{path}: cannot read: {error.strerror}") from None
    try:
        document = json.loads(text)  # Python's parser also reads the bare NaN of files from older versions
    except json.JSONDecodeError as error:
        raise ResultsError(f"{path}: not valid JSON (line {error.lineno}: {error.msg}); "
                           "the file is corrupt or truncated") from None
    return recount_flops(validate(drop_nonfinite_metrics(document, str(path)), str(path)))


def _nonfinite(value: object) -> bool:
    """A non-finite number, or a summary (a dict, e.g. ``step_time_s``) with one among its own figures.
    A list (a per-epoch history, raw samples) keeps its NaN: one epoch's diverged loss is data."""
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, dict):
        return any(isinstance(v, float) and not math.isfinite(v) for v in value.values())
    return False


def drop_nonfinite_metrics(document: object, source: str = "results", warn=None) -> object:
    """A metric that is a bare NaN or infinity, or a summary holding one (a file from an older version, or
    edited by hand), is read as missing, with one warning naming the records, so one bad number does not make
    a whole file unreadable.

    A strict file's own non-finite numbers are ``null`` and listed in ``nonfinite_values``; they are not
    touched here. ``warn`` takes the warning's one line (default: printed to stderr).
    """
    if not isinstance(document, dict) or not isinstance(document.get("records"), list):
        return document
    dropped = []
    for index, record in enumerate(document["records"]):
        metrics = record.get("metrics") if isinstance(record, dict) else None
        if not isinstance(metrics, dict):
            continue
        names = [name for name, value in metrics.items() if _nonfinite(value)]
        for name in names:
            del metrics[name]
            dropped.append(f"records[{index}].metrics.{name}")
        if "step_time_s" in names and record.get("status") == "ok":
            # An ok timing record without its timing is not a result: it reads as failed, so --resume measures
            # it again and the gate does not take it for a measurement.
            record["status"], record["reason"] = "failed", "its step_time_s held NaN or infinity in the file"
    if dropped:
        shown = ", ".join(dropped[:5]) + (f" and {len(dropped) - 5} more" if len(dropped) > 5 else "")
        line = (f"tfbench: warning: {source}: {len(dropped)} metric(s) held NaN or infinity and are read as "
                f"missing: {shown}")
        if warn is None:
            print(line, file=sys.stderr)
        else:
            warn(line)
    return document


def recount_flops(document: dict) -> dict:
    """Records written under the "3 x forward" FLOP convention, recounted with the exact FLOPs.

    That convention counted the first layer's input gradient, which no step computes, so its MLP records at
    large batches read above 100% of the matmul peak: an error in the count, not a result. A record holds its
    own ``flops_per_sample``; where it is its workload's 3 x forward figure, it and the figures derived from it
    (``achieved_gflops``, ``roofline_fraction``) are scaled to the exact count. Measured values are untouched.
    """
    from tfbench.implementations.workloads import WORKLOADS

    for record in document["records"]:
        metrics = record.get("metrics") or {}
        workload = WORKLOADS.get(record.get("workload"))
        if workload is None or metrics.get("flops_per_sample") != 6 * workload.forward_macs():
            continue
        scale = workload.flops_per_sample / metrics["flops_per_sample"]
        metrics["flops_per_sample"] = workload.flops_per_sample
        for name in ("achieved_gflops", "roofline_fraction"):
            if isinstance(metrics.get(name), (int, float)):
                metrics[name] *= scale
    return document


class ResultsFile:
    """A run's results, saved atomically after every record so an interrupted run keeps its work.

    Give it a :class:`~tfbench.benchmarks.outputs.WriterLock` (held by the caller for the whole run) and a
    second process writing the same file is refused.
    """

    def __init__(self, path: str | Path, document: dict):
        self.path = Path(path)
        self.document = document
        self._saved = len(document["records"])  # how many records the file on disk holds

    @classmethod
    def create(cls, path: str | Path, *, run_id: str, config: dict, environment: dict,
               devices: Iterable[dict] = ()) -> ResultsFile:
        document = {"schema_version": SCHEMA_VERSION, "run_id": run_id, "created": now_iso(),
                    "updated": now_iso(), "complete": False, "config": config, "environment": environment,
                    "devices": list(devices), "records": []}
        results = cls(path, document)
        results.save()
        return results

    @classmethod
    def open(cls, path: str | Path) -> ResultsFile:
        return cls(path, load(path))

    @classmethod
    def open_to_resume(cls, path: str | Path) -> ResultsFile:
        """A results file that ``tfbench run --resume`` can continue: it must hold the run's plan."""
        results = cls.open(path)
        config = results.document.get("config")
        if not isinstance(config, dict) or not isinstance(config.get("plan"), dict):
            raise ResultsError(f"{path}: no run plan ('config' / 'plan') to resume; it was not written by "
                               "`tfbench run`, or it is damaged: start a new run instead")
        return results

    @property
    def records(self) -> list[dict]:
        return self.document["records"]

    def done_ids(self) -> set[str]:
        """Ids of the records whose outcome is final (ok, unsupported): a resumed run does not redo them."""
        return {record["id"] for record in self.records if record["status"] in FINAL_STATUSES}

    def retry(self) -> list[dict]:
        """The records a resumed run measures again: skipped (e.g. the data was missing) or failed."""
        return [record for record in self.records if record["status"] not in FINAL_STATUSES]

    def add(self, record: dict) -> None:
        """Append (or replace, by id) a record and save at once."""
        record.setdefault("id", record_id(record))
        self.document["records"] = [r for r in self.records if r["id"] != record["id"]] + [record]
        self.save()

    def save(self, complete: bool | None = None) -> None:
        if complete is not None:
            self.document["complete"] = complete
        self.document["updated"] = now_iso()
        try:
            write_json_atomic(self.path, self.document)
        except WriteError as error:
            if not self.path.is_file():
                raise
            raise WriteError(f"{error}; the file keeps the {self._saved} records saved before; once it can be "
                             f"written, `tfbench run --resume {self.path}` completes the run") from None
        self._saved = len(self.records)
