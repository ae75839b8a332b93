"""What the gate decides beyond the clock (issue 21): many records at once, the results check, peak memory.

Why a record "regressed", "changed results" or used more memory is decided here, on top of the step-time rows
of :func:`benchmarks.gate.compare.compare_documents`:

* **Many records, one gate.** With 20+ records the per-record level alpha would let a same-code A/A gate fail
  far more often than alpha. The step-time rows' p-values are therefore corrected by Holm's step-down
  procedure (Holm 1979): sorted ascending, the i-th of m must be below alpha / (m - i + 1), and the first that
  is not stops the rejections. That bounds the chance that *any* record of a same-code gate fails at alpha per
  gate run, whatever the correlation between records. A record still needs its ratio's interval beyond
  1 + threshold/2 (unchanged rule); one that was significant alone but not after Holm reads "unchanged" with
  a note.
* **Results.** Both sides start from the same weights and see the same batches, so on the CPU their first
  steps compute the same numbers to float tolerance. Each step-time record carries the results check
  (``check_steps``, ``check_loss``, ``check_weights_l2``, ``check_weights_sum``: the first call and the
  warm-up from the initial weights, :func:`benchmarks.stages.step_time.results_check`). A record whose check
  differs by more than :data:`RESULTS_TOLERANCE` (relative) is **changed results**: it fails the gate whatever
  its time did (a step that got faster by not updating the weights is not "improved"), unless
  ``--accept-numerics-change`` says the change is deliberate. A side without the check metrics (an older
  baseline) makes the check unavailable for that record, which is said, not failed.
* **Memory.** ``peak_memory_bytes`` (each side's median over its runs) regresses when the candidate's is more
  than ``memory_threshold`` (default :data:`DEFAULT_MEMORY_THRESHOLD`) above the baseline's, by more than
  :data:`MEMORY_FLOOR_BYTES`, and above every baseline run (the A/A spread of one run is up to ~15%).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from tfbench.benchmarks.gate.compare import Row, record_key
from tfbench.benchmarks.results import record_id

# Relative tolerance of the results check. The same ops in the same order on the CPU give identical bits; a
# different but equivalent op order (a fusion, a reduction split) moves float32 results after a few steps by
# ~1e-6 relative; a change of what is computed (a skipped update, another loss) moves them by 1e-2 or more.
RESULTS_TOLERANCE = 1e-4
CHECK_METRICS = ("check_loss", "check_weights_l2", "check_weights_sum")
DEFAULT_MEMORY_THRESHOLD = 0.10
# A record's peak is the process's resident-memory rise while it builds and warms up: in a real same-code duet
# gate (20 records, contended machine) one run's peak differed from its pair's by up to 15% and 9.3 MiB (95th
# percentile 7.7 MiB). Hence the floor, and a candidate median that must also exceed every baseline run.
MEMORY_FLOOR_BYTES = 8 << 20
CHANGED = "changed results"
MIB = float(1 << 20)


def holm(rows: Sequence[Row], alpha: float) -> list[Row]:
    """The rows with Holm's correction applied over every step-time row that has a p-value (module docstring):
    a "regressed" or "improved" row whose p-value does not survive it becomes "unchanged", with a note."""
    tested = sorted((row.verdict.p_value, index) for index, row in enumerate(rows)
                    if row.verdict is not None and row.verdict.p_value is not None)
    m = len(tested)
    survives: set[int] = set()
    for rank, (p_value, index) in enumerate(tested):
        if not p_value < alpha / (m - rank):
            break
        survives.add(index)
    result = list(rows)
    for rank, (p_value, index) in enumerate(tested):
        row = result[index]
        if row.status in ("regressed", "improved") and index not in survives:
            note = (f"p = {p_value:.2g} is not significant after Holm's correction over {m} records "
                    f"(needs < {alpha / (m - rank):.2g})")
            note = "; ".join(filter(None, [row.note, note]))
            verdict = replace(row.verdict, status="unchanged")
            result[index] = replace(row, status="unchanged", note=note, verdict=verdict)
    return result


def _metric_by_key(docs: Sequence[dict], name: str) -> dict[tuple, list[float]]:
    values: dict[tuple, list[float]] = {}
    for doc in docs:
        for record in doc["records"]:
            value = record.get("metrics", {}).get(name) if record["status"] == "ok" else None
            if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                values.setdefault(record_key(record), []).append(float(value))
    return values


def _step_time_keys(docs: Sequence[dict]) -> set[tuple]:
    return {record_key(record) for doc in docs for record in doc["records"]
            if record["kind"] == "step_time" and record["status"] == "ok"}


@dataclass(frozen=True)
class ResultsDifference:
    metric: str
    baseline: float
    candidate: float
    relative: float

    def text(self) -> str:
        return (f"{self.metric} {self.baseline:.6g} -> {self.candidate:.6g} (relative difference "
                f"{self.relative:.2g}, tolerance {RESULTS_TOLERANCE:g})")


def results_differences(base_docs: Sequence[dict], cand_docs: Sequence[dict]
                        ) -> tuple[dict[tuple, ResultsDifference | None], list[tuple]]:
    """Per record that has the check on both sides (same ``check_steps``): its largest relative difference
    (None within tolerance); and the keys of step-time records that lack the check on some side."""
    base = {name: _metric_by_key(base_docs, name) for name in ("check_steps", *CHECK_METRICS)}
    cand = {name: _metric_by_key(cand_docs, name) for name in ("check_steps", *CHECK_METRICS)}
    timed = _step_time_keys(base_docs) & _step_time_keys(cand_docs)
    found: dict[tuple, ResultsDifference | None] = {}
    unavailable = []
    for key in sorted(timed, key=str):
        if not all(key in base[name] and key in cand[name] for name in base) or (
                np.median(base["check_steps"][key]) != np.median(cand["check_steps"][key])):
            unavailable.append(key)
            continue
        medians = {name: (float(np.median(base[name][key])), float(np.median(cand[name][key])))
                   for name in CHECK_METRICS}
        scale_l2 = max(abs(v) for v in medians["check_weights_l2"])
        worst = None
        for name, (b, c) in medians.items():
            # A sum of signed weights can be near 0: measure its change against the weights' L2 norm.
            scale = max(abs(b), abs(c), scale_l2 if name == "check_weights_sum" else 0.0, 1e-30)
            relative = abs(c - b) / scale
            if relative > RESULTS_TOLERANCE and (worst is None or relative > worst.relative):
                worst = ResultsDifference(name, b, c, relative)
        found[key] = worst
    return found, unavailable


def memory_text(base: float, cand: float) -> str:
    return f"memory: {base / MIB:.0f} MiB -> {cand / MIB:.0f} MiB, {100 * (cand / base - 1):+.0f}%"


def memory_changes(base_docs: Sequence[dict], cand_docs: Sequence[dict]
                   ) -> dict[tuple, tuple[float, float, float]]:
    """Per record with ``peak_memory_bytes`` on both sides: (baseline median, candidate median, baseline max)."""
    base = _metric_by_key(base_docs, "peak_memory_bytes")
    cand = _metric_by_key(cand_docs, "peak_memory_bytes")
    return {key: (float(np.median(base[key])), float(np.median(cand[key])), float(max(base[key])))
            for key in sorted(set(base) & set(cand), key=str)}


def memory_regressed(base: float, cand: float, threshold: float, base_max: float | None = None) -> bool:
    """Above the threshold, above the floor, and (with several baseline runs) above every baseline run."""
    return (cand - base > MEMORY_FLOOR_BYTES and cand > base * (1 + threshold)
            and (base_max is None or cand > base_max))


def decide(rows: Sequence[Row], base_docs: Sequence[dict], cand_docs: Sequence[dict], alpha: float, *,
           accept_numerics_change: bool = False, memory_threshold: float = DEFAULT_MEMORY_THRESHOLD
           ) -> tuple[list[Row], list[str]]:
    """The gate's rows (step time after Holm, results changed, memory regressed) and notes on the checks."""
    rows = holm(rows, alpha)
    ids = {record_key(record): record_id(record) for doc in [*base_docs, *cand_docs] for record in doc["records"]}
    by_id = {row.record: index for index, row in enumerate(rows) if row.metric == "step_time"}
    differences, unavailable = results_differences(base_docs, cand_docs)
    notes = []
    changed = {key: diff for key, diff in differences.items() if diff is not None}
    for key, diff in changed.items():
        index = by_id.get(ids[key])
        note = f"results changed: {diff.text()}"
        if accept_numerics_change:
            notes.append(f"{ids[key]}: {note} (accepted: --accept-numerics-change)")
            continue
        if index is None:
            rows.append(Row(ids[key], "step_time", CHANGED, note=note))
        else:
            row = rows[index]
            timing = f"step time {row.status}" + (f", ratio {row.verdict.ratio:.3f}" if row.verdict else "")
            rows[index] = replace(row, status=CHANGED, note=f"{note}; {timing}")
    if differences:
        notes.append(f"results check: {len(differences) - len(changed)} of {len(differences)} records agree to "
                     f"{RESULTS_TOLERANCE:g} (relative; loss and weights after the first steps from the same "
                     "initial weights on the same batches)")
    if unavailable:
        names = ", ".join(ids[key] for key in unavailable[:3]) + (" ..." if len(unavailable) > 3 else "")
        notes.append(f"results check unavailable for {len(unavailable)} record{'s' * (len(unavailable) != 1)} "
                     f"(a side has no check metrics, e.g. an older baseline; not a failure): {names}")
    memory = memory_changes(base_docs, cand_docs)
    rises = []
    for key, (base, cand, base_max) in memory.items():
        if base > 0:
            rises.append(cand / base - 1)
        if memory_regressed(base, cand, memory_threshold, base_max):
            rows.append(Row(ids[key], "memory", "regressed", base, cand,
                            note=f"{memory_text(base, cand)} (threshold +{100 * memory_threshold:g}%)"))
    if memory:
        largest = f", largest change {100 * max(rises, key=abs):+.1f}%" if rises else ""
        notes.append(f"memory: peak_memory_bytes of {len(memory)} records compared{largest}; regressed above "
                     f"+{100 * memory_threshold:g}%, +{MEMORY_FLOOR_BYTES / MIB:g} MiB and every baseline run")
    from tfbench.benchmarks.gate.compare import STATUSES

    return sorted(rows, key=lambda row: (STATUSES.index(row.status), row.record)), notes


def gate_decision(rows: Sequence[Row], base_docs: Sequence[dict], cand_docs: Sequence[dict], alpha: float,
                  args) -> tuple[list[Row], list[str]]:
    """:func:`decide` with the command line's ``--accept-numerics-change`` and ``--memory-threshold``."""
    threshold = getattr(args, "memory_threshold", None)
    return decide(rows, base_docs, cand_docs, alpha,
                  accept_numerics_change=bool(getattr(args, "accept_numerics_change", False)),
                  memory_threshold=DEFAULT_MEMORY_THRESHOLD if threshold is None else threshold)
