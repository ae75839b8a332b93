"""The gate's views: the verdict rows of :mod:`benchmarks.gate.compare` (and :mod:`benchmarks.gate.checks`)
rendered as the Markdown table, headline and notes, and as the JSON decision table, which ``tfbench ab``,
``tfbench compare`` and ``tfbench upgrade-ab`` print and write (``--markdown``, ``--json``).

No decision is made here: why a record regressed is decided in :mod:`benchmarks.gate.compare` (one row per
record), :mod:`benchmarks.gate.checks` (over all records) and :mod:`benchmarks.gate.statistics` (the tests);
this module only shows the rows it is given, worst first as they come.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from tabulate import tabulate

from tfbench.benchmarks.gate.compare import Row, exit_code
from tfbench.benchmarks.gate.statistics import DEFAULT_ALPHA, SINGLE_RUN_NOTE
from tfbench.benchmarks.results import write_json_atomic

TEST_BASIS = {"runs": "Mann-Whitney test over run medians",
              "pairs": "Wilcoxon signed-rank test over the rounds' paired ratios",
              "samples": "Mann-Whitney test over samples, one run per side",
              "values": "one value per side: no test"}


# ---------------------------------------------------------------------------------------------------------
# Markdown (and the plain text printed on stdout)
# ---------------------------------------------------------------------------------------------------------

def _format_value(value: float | None, metric: str) -> str:
    if value is None:
        return "-"
    if metric == "step_time":
        return f"{value * 1e3:.4g} ms" if value < 1 else f"{value:.4g} s"
    if metric == "throughput":
        return f"{value:.4g}/s"
    if metric == "speedup":
        return f"{value:.3g}x"
    if metric == "roofline":
        return f"{value * 100:.3g} %"
    if metric == "memory":
        return f"{value / 2 ** 20:.1f} MiB"
    return f"{value:.4f}"


def _format_bound(value: float) -> str:
    return "∞" if math.isinf(value) else f"{value:.3f}"


def _format_change(row: Row) -> str:
    verdict = row.verdict
    if verdict is None:
        return row.note if row.metric == "accuracy" and row.status != "missing" else "-"
    if verdict.status == "inconclusive" or verdict.mode == "values":
        return f"{verdict.ratio:.3f}"
    return f"{verdict.ratio:.3f} ({_format_bound(verdict.low)}–{_format_bound(verdict.high)})"


def _format_p(row: Row) -> str:
    p_value = row.verdict.p_value if row.verdict else None
    return "-" if p_value is None else f"{p_value:.2g}"


def _runs(row: Row) -> str:
    return f"{row.verdict.n_base}/{row.verdict.n_cand}" if row.verdict else "-"


def table(rows: Sequence[Row], alpha: float = DEFAULT_ALPHA) -> str:
    """The comparison as a GitHub-flavoured Markdown table (also readable as plain text)."""
    level = f"{100 * (1 - alpha):g} %"
    headers = ["record", "status", "baseline", "candidate", f"ratio ({level} CI)", "p", "runs"]
    body = [[row.record, row.status, _format_value(row.baseline, row.metric),
             _format_value(row.candidate, row.metric), _format_change(row), _format_p(row), _runs(row)]
            for row in rows]
    return tabulate(body, headers=headers, tablefmt="github", disable_numparse=True)


def headline(rows: Sequence[Row]) -> str:
    compared = [row for row in rows if row.status != "missing"]
    broken = sum(row.status == "broken" for row in rows)
    changed = sum(row.status == "changed results" for row in rows)
    regressed = sum(row.status == "regressed" for row in rows)
    if broken or regressed or changed:
        parts = ([f"{broken} broken"] if broken else []) + ([f"{changed} changed results"] if changed else []) + (
            [f"{regressed} regression{'s' * (regressed != 1)}"] if regressed else [])
        return f"❌ {', '.join(parts)} in {len(compared)} records"
    return f"✅ no regression in {len(compared)} records"


def broken_lines(rows: Sequence[Row]) -> list[str]:
    """One line per broken record, with the candidate's error: what heads the summary."""
    return [f"{row.status}: {row.record}: {row.note}" for row in _headed(rows)]


def _headed(rows: Sequence[Row]) -> list[Row]:
    """The failures whose note says what happened: broken, changed results, a memory rise."""
    return [row for row in rows if row.status in ("broken", "changed results")
            or (row.metric == "memory" and row.status == "regressed")]


def notes(rows: Sequence[Row], alpha: float = DEFAULT_ALPHA) -> list[str]:
    """The decision rule and the caveats that apply to these rows, one sentence each."""
    lines = []
    verdicts = [row.verdict for row in rows if row.verdict is not None]
    thresholds = sorted({v.threshold for v in verdicts})
    if verdicts:
        margins = ", ".join(f"{1 + t / 2:.4g}" for t in thresholds)
        basis = "; ".join(sorted({TEST_BASIS[v.mode] for v in verdicts}))
        lines.append(f"regressed = p < {alpha:g} ({basis}) and the ratio's interval beyond "
                     f"{margins} (threshold {', '.join(f'{100 * t:g} %' for t in thresholds)}); "
                     "ratio = candidate / baseline")
    if any(v.mode == "samples" for v in verdicts):
        lines.append(SINGLE_RUN_NOTE[0].upper() + SINGLE_RUN_NOTE[1:])
    unproven = [v.worst_case for v in verdicts if v.status == "unchanged" and v.worst_case > 1 + v.threshold]
    if unproven:
        worst = max(unproven)
        allowed = "an unbounded slowdown" if math.isinf(worst) else f"slowdowns up to {100 * (worst - 1):.0f} %"
        one = len(unproven) == 1
        lines.append(f"{len(unproven)} unchanged record{'' if one else 's'} only failed to prove a slowdown: "
                     f"{'its interval still allows' if one else 'their intervals still allow'} {allowed} (the "
                     "noise between runs is large; more rounds narrow it, `tfbench calibrate-gate` measures what "
                     "this machine can detect)")
    lines += sorted({f"{row.record}: {row.note}" for row in rows if row.status in ("inconclusive", "missing")})
    return lines


def to_markdown(rows: Sequence[Row], alpha: float = DEFAULT_ALPHA, title: str = "",
                extra_notes: Sequence[str] = ()) -> str:
    """A PR-comment summary: the headline, the broken records with the candidate's error, the table, then the
    rule and the caveats."""
    parts = [f"### {headline(rows)}" + (f" ({title})" if title else ""), ""]
    broken = [f"- **{row.status if row.metric != 'memory' else 'memory'}** `{row.record}`: {row.note}"
              for row in _headed(rows)]
    parts += [*broken, ""] if broken else []
    parts += [table(rows, alpha), ""]
    parts += [f"- {line}" for line in [*notes(rows, alpha), *extra_notes]]
    missing = sum(row.status == "missing" for row in rows)
    if missing:
        parts.append(f"- {missing} record{'s' * (missing != 1)} on one side only (not a failure)")
    return "\n".join(parts).rstrip() + "\n"


def write_markdown(path: str | Path, text: str) -> None:
    from tfbench.benchmarks.outputs import writing

    path = Path(path)
    with writing(path, "the Markdown summary"):  # one line naming the path and the cause, exit 2
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


# ---------------------------------------------------------------------------------------------------------
# JSON
# ---------------------------------------------------------------------------------------------------------

def _number(value: float | None) -> float | str | None:
    """A JSON-safe number: strict JSON has no infinity, so an unbounded interval end is the string "inf"."""
    if value is None or math.isfinite(value):
        return value
    return "inf" if value > 0 else "-inf"


def to_json(rows: Sequence[Row], alpha: float = DEFAULT_ALPHA, title: str = "",
            extra_notes: Sequence[str] = ()) -> dict:
    """The decision table for machines: one entry per record (ratio, interval, p, verdict) and the exit status."""
    records = []
    for row in rows:
        verdict = row.verdict
        records.append({
            "record": row.record, "metric": row.metric, "verdict": row.status,
            "baseline": _number(row.baseline), "candidate": _number(row.candidate),
            "ratio": _number(verdict.ratio) if verdict else None,
            "interval": [_number(verdict.low), _number(verdict.high)] if verdict and verdict.mode != "values"
            else None,
            "confidence": 1 - alpha if verdict and verdict.mode != "values" else None,
            "p_value": verdict.p_value if verdict else None,
            "test": TEST_BASIS[verdict.mode] if verdict else None,
            "runs": [verdict.n_base, verdict.n_cand] if verdict else None,
            "threshold": verdict.threshold if verdict else None,
            "note": row.note,
        })
    return {"title": title, "headline": headline(rows), "exit_status": exit_code(rows), "alpha": alpha,
            "rule": notes(rows, alpha)[:1], "checks": list(extra_notes), "records": records}


def write_json(path: str | Path, document: dict) -> None:
    write_json_atomic(Path(path), document, what="JSON decision table")  # a WriteError: one line, exit 2


# ---------------------------------------------------------------------------------------------------------
# What the commands call: print the comparison, write the files asked for
# ---------------------------------------------------------------------------------------------------------

def report(rows: Sequence[Row], alpha: float, markdown: str | None, title: str = "",
           json_path: str | None = None, extra_notes: Sequence[str] = ()) -> int:
    """Print the comparison, write the Markdown summary and the JSON table if asked; return the exit status."""
    print(headline(rows) + (f" ({title})" if title else ""))
    for line in broken_lines(rows):
        print(line)
    print(table(rows, alpha))
    for line in [*notes(rows, alpha), *extra_notes]:
        print(f"* {line}")
    if markdown:
        write_markdown(markdown, to_markdown(rows, alpha, title, extra_notes))
    if json_path:
        write_json(json_path, to_json(rows, alpha, title, extra_notes))
    return exit_code(rows)
