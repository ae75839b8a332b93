"""``tfbench compare``: is the candidate slower than the baseline? A regression gate that does not cry wolf.

The noise this gate is built for
--------------------------------
On a shared machine the same benchmark's median moves 5-50 % from one *process* to the next (thread placement,
memory layout, the neighbours' load), while the samples *within* one process are tight and autocorrelated. A
per-sample test between two processes therefore sees the between-process shift as a highly significant
difference, and a fixed "10 % slower than the stored number" rule fails at random. So:

**The unit of replication is the run (one process).** Each side gives several runs (``tfbench ab`` alternates
A B A B ... in one job, so drift hits both sides alike); a run is summarised by its median step time, and the
two sets of run medians are compared:

* the test: the exact two-sided Mann-Whitney (Wilcoxon rank-sum) test on the run medians. It is exact for any
  noise distribution as long as runs are exchangeable, which the interleaving is there to make true (with tied
  values, the exact permutation distribution given the ties; for large samples the normal approximation with
  the tie and continuity corrections);
* the effect: ``ratio`` = median of the candidate's run medians / median of the baseline's (> 1 = slower);
* its interval: the distribution-free (1 - alpha) confidence interval of the ratio that inverts the same test
  (Hodges-Lehmann / Moses: order statistics of the m x n candidate/baseline run-median ratios; see
  Hollander & Wolfe, *Nonparametric Statistical Methods*, ch. 4). Exact, hence deterministic: no bootstrap,
  no seed (a bootstrap over 5 runs per side badly under-covers).

A record is **regressed** only if BOTH the test is significant (``p < alpha``) AND the lower bound of the
interval exceeds ``1 + threshold / 2``; **improved** symmetrically (``p < alpha`` and the upper bound below
``1 / (1 + threshold / 2)``); otherwise **unchanged**. Read ``threshold`` as "the slowdown the gate is meant to
catch": a true slowdown of ``threshold`` or more is caught when the noise allows it (``tfbench calibrate-gate``
measures how often), while a slowdown below ``threshold / 2`` fails the gate with probability at most
``alpha / 2`` per record, however many samples were taken (a significant 1 % change does not fail a PR).

Defaults: ``alpha = 0.01``, ``threshold = 3 %`` and ``tfbench ab --rounds 10``. Simulated gates (the two
records of ``--profile gate``, lognormal run-to-run noise of the run medians, 80 % of its variance shared by
the records of one process as measured here; 2000 fresh gates per cell, 10 rounds, threshold 3 %):

    run-to-run noise (sd of log run median)   1 %    2 %    3 %    5 %    10 %   18 %
    A/A false alarms per gate                 0      0      0      0.2 %  0.15 % 0.7 %
    5 % slowdown caught                       100 %  84 %   46 %   17 %   4 %    2 %
    10 % slowdown caught                      100 %  100 %  99.9 % 81 %   23 %   7 %
    20 % slowdown caught                      100 %  100 %  100 %  100 %  83 %   30 %

* The A/A rate is bounded whatever the noise: the exact test gives <= alpha/2 per record and direction, so
  <= 1 % for the gate's 2 records (a gate of more records needs a smaller alpha for the same bound).
* The detection targets (10 % -> 95 %, 5 % -> 80 %) hold when the run-to-run noise is <= ~2 %. Rounds are the
  lever: at 3 % noise 6 rounds catch a 10 % slowdown 91 % of the time, 10 rounds 99.9 %. Ten rounds are 20
  processes of ~9.4 s (``--profile gate``, measured here), ~190 s: within the 5-minute budget.
* A threshold of 3 % rather than 5 % catches a 5 % slowdown at 2 % noise 84 % of the time instead of 54 %,
  while a change below 1.5 % still fails with probability <= alpha/2.
* On this shared 2-core machine, with other jobs running, the run medians scatter by 15-20 % (26 processes
  per condition, ``tfbench calibrate-gate``): there the same gate measured 0.45 % A/A false alarms and caught
  1 % / 4 % / 40 % of 5 / 10 / 20 % slowdowns. No gate that fits in 5 minutes does much better at that noise,
  and this one says so rather than guessing: "unchanged" means "no slowdown proven", and the summary states
  how large a slowdown the intervals still allow.
* With alpha = 0.01 a side needs at least 5 runs for the test to be able to reach significance at all: fewer
  is refused (``inconclusive``), never guessed.

**One run per side** (two stored files): nothing measures the between-process noise, so the fallback is the
same rank test and interval over the pooled *samples*, with a wider default threshold (20 %: fail only if
confidently more than 10 % slower); the output says that such a comparison is less reliable. Absolute times
only compare within one job or one machine.

Other metrics: ``throughput`` is the inverse of step time (higher is better, same test). ``speedup``
(``speedup_vs_eager``) and ``roofline`` (``fraction_of_floor``: the step's roofline floor over its time; older
files, which have no floor, have no value for it) are *ratios*, which travel between machines
(the machine's speed cancels out), so they can compare a stored baseline from another machine; with one value
per side they are decided on the threshold alone (plus non-overlapping intervals for the speedup).
``accuracy`` (``test_accuracy`` of accuracy/recipe records) regresses if it drops by more than
``--accuracy-tolerance`` (absolute, default 0.01).

**Paired rounds** (``tfbench ab --schedule duet``, ``tfbench compare --paired``): the i-th run of each side ran
at the same time, so each round gives one ratio candidate / baseline in which the machine's state cancels. The
decision is then the Wilcoxon signed-rank test of the rounds' log-ratios with the Hodges-Lehmann interval
(:mod:`benchmarks.gate.signed_rank`), under the same rule (p < alpha and the interval beyond 1 + threshold/2).
With alpha = 0.01 it needs at least 8 rounds.

Records are matched on :data:`benchmarks.results.KEY_FIELDS`; only status "ok" records are compared. A record
that is ``ok`` in every baseline run that has it and ``failed`` in a candidate run is **broken**: the PR broke
it; it fails the gate and heads the summary with the candidate's error. Any other record on one side only is
"missing" (reported, not a failure). Exit status: 1 if a record regressed or broke, else 0; 2 on bad input.
``--json FILE`` writes the decision table for machines (record, ratio, interval, p, verdict).

Where things are: the tests and intervals in :mod:`benchmarks.gate.statistics`; this module matches records,
makes one row per record and holds the command line; :mod:`benchmarks.gate.checks` makes the gate's decision
over all records (Holm's correction, the results check, peak memory), which ``tfbench ab`` and ``tfbench
compare`` (step time) apply; :mod:`benchmarks.gate.views` renders the rows (the Markdown table and notes, the
JSON decision table) and decides nothing.
"""

from __future__ import annotations

import argparse
import glob
import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from tfbench.benchmarks.gate.statistics import (  # noqa: F401 (the statistics' names, as before the split)
    DEFAULT_ALPHA,
    DEFAULT_THRESHOLD,
    EXACT_MAX_PAIRS,
    EXACT_TIES_MAX_VALUES,
    MAX_SAMPLES_PER_SIDE,
    SINGLE_RUN_NOTE,
    SINGLE_RUN_THRESHOLD,
    Verdict,
    _lower_cdf,
    _median,
    _normal_lower_cdf,
    _null_lower_cdf,
    _tied_two_sided_p,
    compare_pairs,
    compare_samples,
    min_runs,
    rank_test,
    smallest_p_value,
)
from tfbench.benchmarks.results import KEY_FIELDS, ResultsError, expand, load, record_id
from tfbench.errors import UsageError

DEFAULT_ACCURACY_TOLERANCE = 0.01

# Worst first: the order of the table, and of the summary's head.
STATUSES = ("broken", "changed results", "regressed", "improved", "inconclusive", "unchanged", "missing")
# "changed results": the results check differs (benchmarks.gate.checks)
FAILING_STATUSES = ("broken", "changed results", "regressed")


# ---------------------------------------------------------------------------------------------------------
# Records and documents
# ---------------------------------------------------------------------------------------------------------

def _step_time_samples(record: dict) -> np.ndarray | None:
    summary = record["metrics"].get("step_time_s")
    if not isinstance(summary, dict):
        return None
    samples = summary.get("samples") or ([summary["median"]] if summary.get("median") is not None else [])
    values = np.asarray(samples, dtype=float)
    values = values[np.isfinite(values) & (values > 0)]
    return values if values.size else None


def _throughput_samples(record: dict) -> np.ndarray | None:
    times = _step_time_samples(record)
    if times is None:
        return None
    # Samples/s per timed step; scaled like the harness's own throughput_sps when the record has it.
    reported = record["metrics"].get("throughput_sps")
    scale = reported * float(np.median(times)) if _finite_positive(reported) else float(record["batch_size"])
    return scale / times


def _finite_positive(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0


def _scalar(name: str) -> Callable[[dict], np.ndarray | None]:
    def extract(record: dict) -> np.ndarray | None:
        value = record["metrics"].get(name)
        return np.array([float(value)]) if _finite_positive(value) else None
    return extract


@dataclass(frozen=True)
class Metric:
    name: str
    extract: Callable[[dict], np.ndarray | None]  # a run's values of one record, or None if it has none
    higher_is_better: bool
    kinds: tuple[str, ...] | None = None  # record kinds it applies to (None: any record that has the value)
    portable: bool = False  # a ratio that travels between machines


METRICS = {
    "step_time": Metric("step_time", _step_time_samples, False),
    "throughput": Metric("throughput", _throughput_samples, True),
    "speedup": Metric("speedup", _scalar("speedup_vs_eager"), True, portable=True),
    "roofline": Metric("roofline", _scalar("fraction_of_floor"), True, portable=True),
    "accuracy": Metric("accuracy", _scalar("test_accuracy"), True, kinds=("accuracy", "recipe")),
}


@dataclass(frozen=True)
class Row:
    """One record's line in the comparison: its verdict, or why it was not compared."""

    record: str
    metric: str
    status: str
    baseline: float | None = None
    candidate: float | None = None
    verdict: Verdict | None = None
    note: str = ""


def record_key(record: dict) -> tuple:
    return tuple(record.get(field) for field in KEY_FIELDS)


def _reference(record: dict) -> float | None:
    """The median time of the run's reference kernel, timed beside this record (gate profile), if any."""
    summary = record["metrics"].get("reference_s")
    median = summary.get("median") if isinstance(summary, dict) else None
    return float(median) if _finite_positive(median) else None


def _doc_values(doc: dict, metric: Metric) -> dict[tuple, tuple[np.ndarray, float | None]]:
    """One run's values of each record it has "ok", with its reference-kernel time (None if it has none)."""
    values = {}
    for record in doc["records"]:
        if record["status"] != "ok" or (metric.kinds is not None and record["kind"] not in metric.kinds):
            continue
        extracted = metric.extract(record)
        if extracted is not None:
            values[record_key(record)] = (extracted, _reference(record))
    return values


def _runs_by_key(docs: Sequence[dict], metric: Metric) -> tuple[dict[tuple, list[np.ndarray]], dict, dict, dict]:
    """Per record key: the values of each run that has it "ok", a sample record, the other statuses seen,
    and each run's reference-kernel time (None where the run has none)."""
    runs: dict[tuple, list[np.ndarray]] = {}
    examples: dict[tuple, dict] = {}
    not_ok: dict[tuple, str] = {}
    references: dict[tuple, list[float | None]] = {}
    for doc in docs:
        for record in doc["records"]:
            if metric.kinds is not None and record["kind"] not in metric.kinds:
                continue
            key = record_key(record)
            examples.setdefault(key, record)
            if record["status"] != "ok":
                not_ok[key] = f"{record['status']}" + (f": {record['reason']}" if record.get("reason") else "")
        for key, (values, reference) in _doc_values(doc, metric).items():
            runs.setdefault(key, []).append(values)
            references.setdefault(key, []).append(reference)
    return runs, examples, not_ok, references


def _paired_runs(base_docs: Sequence[dict], cand_docs: Sequence[dict], metric: Metric,
                 key: tuple) -> tuple[list[np.ndarray], list, list[np.ndarray], list]:
    """The rounds in which both sides have ``key`` "ok": (baseline runs, their references, candidate runs,
    theirs), aligned round by round."""
    base_runs, base_refs, cand_runs, cand_refs = [], [], [], []
    for base_doc, cand_doc in zip(base_docs, cand_docs):
        base, cand = _doc_values(base_doc, metric).get(key), _doc_values(cand_doc, metric).get(key)
        if base is not None and cand is not None:
            base_runs.append(base[0])
            base_refs.append(base[1])
            cand_runs.append(cand[0])
            cand_refs.append(cand[1])
    return base_runs, base_refs, cand_runs, cand_refs


def broken_records(base_docs: Sequence[dict], cand_docs: Sequence[dict]) -> dict[tuple, str]:
    """Records the candidate broke: ``failed`` in some candidate run, ``ok`` in every baseline run that has
    them (and in one at least). Key -> a note with the candidate's first error and how often it failed."""
    base_statuses: dict[tuple, set[str]] = {}
    for doc in base_docs:
        for record in doc["records"]:
            base_statuses.setdefault(record_key(record), set()).add(record["status"])
    failures: dict[tuple, list[str]] = {}
    for doc in cand_docs:
        for record in doc["records"]:
            if record["status"] == "failed":
                failures.setdefault(record_key(record), []).append(record.get("reason") or "no reason recorded")
    return {key: f"failed in {len(reasons)} of {len(cand_docs)} candidate runs: {reasons[0]}"
            for key, reasons in failures.items() if base_statuses.get(key) == {"ok"}}


def _record_ids(docs: Sequence[dict]) -> dict[tuple, str]:
    return {record_key(record): record_id(record) for doc in docs for record in doc["records"]}


def normalise(base: list[np.ndarray], base_refs: list[float | None], cand: list[np.ndarray],
              cand_refs: list[float | None], higher_is_better: bool) -> tuple[list, list] | None:
    """Each run's values at the machine speed common to all runs, or None if some run has no reference.

    A run measured while the machine was 10% slow has a 10% slower reference
    kernel too; scaling its times by (pooled reference / its reference)
    cancels that drift, which is shared between everything one process times
    (the gate's records correlate 0.83 from process to process here).
    """
    references = base_refs + cand_refs
    if any(r is None for r in references):
        return None
    common = float(np.median(references))

    def scale(runs, refs):  # times shrink on a slow machine's runs; rates (higher is better) grow
        return [run * (common / ref) ** (-1 if higher_is_better else 1) for run, ref in zip(runs, refs)]

    return scale(base, base_refs), scale(cand, cand_refs)


def _speedup_intervals_overlap(base_docs: Sequence[dict], cand_docs: Sequence[dict], key: tuple) -> bool:
    """For one run per side: do the two records' speedup_vs_eager_ci intervals overlap (True if unknown)?"""
    def interval(docs: Sequence[dict]) -> tuple[float, float] | None:
        for doc in docs:
            for record in doc["records"]:
                ci = record["metrics"].get("speedup_vs_eager_ci") if record_key(record) == key else None
                if isinstance(ci, (list, tuple)) and len(ci) == 2 and all(_finite_positive(v) for v in ci):
                    return float(ci[0]), float(ci[1])
        return None
    base, cand = interval(base_docs), interval(cand_docs)
    return base is None or cand is None or (cand[0] <= base[1] and base[0] <= cand[1])


def _accuracy_row(rid: str, base: list[np.ndarray], cand: list[np.ndarray], tolerance: float) -> Row:
    base_value = _median(np.array([run[0] for run in base]))
    cand_value = _median(np.array([run[0] for run in cand]))
    drop = base_value - cand_value
    status = "regressed" if drop > tolerance else "improved" if -drop > tolerance else "unchanged"
    note = f"{-drop:+.4f} (tolerance {tolerance:g})"
    return Row(rid, "accuracy", status, base_value, cand_value, note=note)


def compare_documents(base_docs: Sequence[dict], cand_docs: Sequence[dict], metric: str = "step_time",
                      threshold: float | None = None, alpha: float = DEFAULT_ALPHA,
                      accuracy_tolerance: float = DEFAULT_ACCURACY_TOLERANCE, normalize: bool = True,
                      paired: bool = False) -> list[Row]:
    """Compare results documents (each one run) of two sides on one metric; rows sorted worst first.

    With ``normalize`` (the default), step times and throughputs of runs that
    all timed the reference kernel are compared at a common machine speed
    (:func:`normalise`); the row's note says so. With ``paired``, ``base_docs[i]``
    and ``cand_docs[i]`` ran at the same time (one round of the duet schedule)
    and the rounds' ratios are compared (:func:`compare_pairs`). Records the
    candidate broke (:func:`broken_records`) come first, whatever the metric.

    Raises :class:`tfbench.errors.UsageError` for an unknown metric or when no record is on both sides.
    """
    if metric not in METRICS:
        raise UsageError(f"unknown metric {metric!r}; use one of {', '.join(METRICS)}")
    if paired and len(base_docs) != len(cand_docs):
        raise UsageError(f"paired rounds need as many baseline runs as candidate runs, got {len(base_docs)} and "
                         f"{len(cand_docs)}")
    spec = METRICS[metric]
    base_runs, base_examples, base_not_ok, base_refs = _runs_by_key(base_docs, spec)
    cand_runs, cand_examples, cand_not_ok, cand_refs = _runs_by_key(cand_docs, spec)
    broken = broken_records(base_docs, cand_docs)
    ids = {**_record_ids(cand_docs), **_record_ids(base_docs)}
    rows = [Row(ids[key], metric, "broken",
                _median(np.array([_median(run) for run in base_runs[key]])) if key in base_runs else None,
                None, note=note) for key, note in broken.items()]
    common = sorted((set(base_runs) & set(cand_runs)) - set(broken), key=str)
    if not common and not broken:
        raise UsageError(f"no {metric} records in common: the baseline has {len(base_runs)} ok records with it, "
                         f"the candidate {len(cand_runs)}; were both sides run with the same profile/arguments?")
    for key in common:
        rid = record_id(base_examples[key])
        if spec.name == "accuracy":
            rows.append(_accuracy_row(rid, base_runs[key], cand_runs[key], accuracy_tolerance))
            continue
        if paired:
            base, b_refs, cand, c_refs = _paired_runs(base_docs, cand_docs, spec, key)
            if not base:
                rows.append(Row(rid, metric, "missing", note="no round has it ok on both sides"))
                continue
        else:
            base, b_refs, cand, c_refs = base_runs[key], base_refs[key], cand_runs[key], cand_refs[key]
        normalised = None
        if normalize and spec.name in ("step_time", "throughput"):
            normalised = normalise(base, b_refs, cand, c_refs, spec.higher_is_better)
            if normalised:
                base, cand = normalised
        compare = compare_pairs if paired else compare_samples
        verdict = compare(base, cand, threshold, alpha, spec.higher_is_better)
        if normalised:
            note = "; ".join(filter(None, [verdict.note, "normalised by the reference kernel"]))
            verdict = replace(verdict, note=note)
        status = verdict.status
        if (verdict.mode == "values" and spec.name == "speedup" and status != "unchanged"
                and _speedup_intervals_overlap(base_docs, cand_docs, key)):
            status = "unchanged"
        rows.append(Row(rid, metric, status, verdict.baseline, verdict.candidate, verdict, verdict.note))
    for key in sorted((set(base_runs) ^ set(cand_runs)) - set(broken), key=str):
        side, other_not_ok = ("candidate", cand_not_ok) if key in base_runs else ("baseline", base_not_ok)
        runs = base_runs.get(key) or cand_runs[key]
        value = _median(np.array([_median(run) for run in runs]))
        note = f"not in the {side}" + (f" ({other_not_ok[key]})" if key in other_not_ok else "")
        example = base_examples.get(key) or cand_examples[key]
        rows.append(Row(record_id(example), metric, "missing", value if side == "candidate" else None,
                        value if side == "baseline" else None, note=note))
    return sorted(rows, key=lambda row: (STATUSES.index(row.status), row.record))


def regressions(rows: Sequence[Row]) -> list[Row]:
    """The rows that fail the gate: broken, then regressed."""
    return [row for row in rows if row.status in FAILING_STATUSES]


def exit_code(rows: Sequence[Row]) -> int:
    return 1 if regressions(rows) else 0


# ---------------------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------------------

def results_files(spec: str, side: str) -> list[Path]:
    """One results file, a directory of them (``*.json``), a quoted glob pattern (``'out/a-*.json'``) or a
    comma-separated list of those."""
    files: list[Path] = []
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        if any(char in part for char in "*?["):
            found = sorted(Path(match) for match in glob.glob(part))
            if not found:
                raise UsageError(f"{side} {part}: no file matches this pattern")
            files += found
        else:
            try:
                files += expand(part)
            except ResultsError as error:
                raise UsageError(f"{side} {error}") from None
    if not files:
        raise UsageError(f"{side}: no results file given")
    return files


def load_side(spec: str, side: str) -> list[dict]:
    """Load every run of one side; warn (stderr) about interrupted runs."""
    docs = []
    for path in results_files(spec, side):
        doc = load(path)
        if doc.get("complete") is False:
            print(f"tfbench: warning: {path} is an incomplete (interrupted) run", file=sys.stderr)
        docs.append(doc)
    return docs


def _machines(docs: Sequence[dict]) -> set:
    return {doc["environment"].get("machine_id") for doc in docs} - {None}


def percent(text: str) -> float:
    """argparse type: a percentage (5 or 5%) -> fraction 0.05."""
    try:
        value = float(text.rstrip("%"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a percentage: {text!r}") from None
    if not 0 <= value < 100:
        raise argparse.ArgumentTypeError(f"a percentage in [0, 100) is needed, got {text!r}")
    return value / 100.0


def probability(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"a level in (0, 1) is needed, got {text!r}")
    return value


def add_decision_options(parser: argparse.ArgumentParser) -> None:
    """--threshold and --alpha, shared by compare, ab and calibrate-gate (same decision everywhere)."""
    parser.add_argument("--threshold", type=percent, default=None, metavar="PCT",
                        help=f"slowdown to catch, in %%: regressed only if the ratio's interval lies above "
                             f"1 + PCT/2 (default {100 * DEFAULT_THRESHOLD:g} with several runs per side, "
                             f"{100 * SINGLE_RUN_THRESHOLD:g} with one)")
    parser.add_argument("--alpha", type=probability, default=DEFAULT_ALPHA, metavar="A",
                        help=f"significance level of the rank test (default {DEFAULT_ALPHA:g})")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = ("Compare two sets of results; exit 1 if a record regressed. Each side is a results "
                          "file, a directory of them, a quoted glob pattern or a comma-separated list of those "
                          "(one file per run).")
    parser.add_argument("baseline", metavar="BASELINE", help="results file(s) of the baseline")
    parser.add_argument("candidate", metavar="CANDIDATE", help="results file(s) of the candidate")
    parser.add_argument("--metric", choices=tuple(METRICS), default="step_time",
                        help="step_time / throughput (absolute: compare within one job or machine), speedup "
                             "(speedup_vs_eager) / roofline (fraction_of_floor): ratios that travel between "
                             "machines, accuracy (test_accuracy)")
    add_decision_options(parser)
    parser.add_argument("--accuracy-tolerance", type=float, default=DEFAULT_ACCURACY_TOLERANCE, metavar="ABS",
                        help=f"accuracy drop (absolute) that is a regression (default {DEFAULT_ACCURACY_TOLERANCE})")
    parser.add_argument("--paired", action="store_true",
                        help="the i-th files of the two sides ran at the same time (`tfbench ab --schedule duet`): "
                             "compare the rounds' paired ratios (files are paired in the order given, each "
                             "pattern or directory sorted by name)")
    add_output_options(parser)
    add_check_options(parser)
    parser.add_argument("--raw", action="store_true",
                        help="compare raw step times, not normalised by the reference kernel the gate profile times")


def add_check_options(parser: argparse.ArgumentParser) -> None:
    """--accept-numerics-change and --memory-threshold, shared by compare and ab (benchmarks.gate.checks)."""
    parser.add_argument("--accept-numerics-change", action="store_true",
                        help="a deliberate change of what the step computes: report the results check's "
                             "differences without failing the gate")
    parser.add_argument("--memory-threshold", type=percent, default=None, metavar="PCT",
                        help="peak-memory rise that fails the gate, in %% (default 10)")


def add_output_options(parser: argparse.ArgumentParser) -> None:
    """--markdown and --json, shared by compare and ab."""
    parser.add_argument("--markdown", metavar="FILE", help="also write a Markdown summary (for a PR comment)")
    parser.add_argument("--json", metavar="FILE", dest="json_path",
                        help="also write the decision table as JSON (record, ratio, interval, p, verdict)")


def check_outputs(args: argparse.Namespace) -> None:
    """--markdown and --json can be written: checked before any work, so that nothing is done for nothing."""
    from tfbench.benchmarks.outputs import check_file

    if args.markdown:
        check_file(args.markdown, "the Markdown summary")
    if args.json_path:
        check_file(args.json_path, "the JSON decision table")


def main(args: argparse.Namespace) -> int:
    from tfbench.benchmarks.gate.views import report

    if args.accuracy_tolerance < 0:
        raise UsageError(f"--accuracy-tolerance must be >= 0, got {args.accuracy_tolerance}")
    check_outputs(args)
    base_docs = load_side(args.baseline, "BASELINE")
    cand_docs = load_side(args.candidate, "CANDIDATE")
    if not METRICS[args.metric].portable and args.metric != "accuracy":
        machines = _machines(base_docs) | _machines(cand_docs)
        if len(machines) > 1:
            print(f"tfbench: warning: the results come from {len(machines)} machines; absolute times do not "
                  "travel between machines: use --metric speedup or roofline", file=sys.stderr)
    rows = compare_documents(base_docs, cand_docs, args.metric, args.threshold, args.alpha,
                             args.accuracy_tolerance, normalize=not args.raw, paired=args.paired)
    extra: list[str] = []
    if args.metric == "step_time":
        from tfbench.benchmarks.gate.checks import gate_decision

        rows, extra = gate_decision(rows, base_docs, cand_docs, args.alpha, args)
    pairing = " paired" if args.paired else ""
    return report(rows, args.alpha, args.markdown, title=f"{args.metric}: {len(base_docs)} vs {len(cand_docs)}"
                  f"{pairing} runs", json_path=args.json_path, extra_notes=extra)
