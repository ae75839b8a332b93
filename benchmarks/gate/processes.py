"""One ``tfbench run`` process of the gate: its command line, and whether it ended as a completed run.

Shared by both schedules of ``tfbench ab`` and by ``tfbench calibrate-gate``. A process counts as a completed
run when it exits 0 with its results file written, or exits with :data:`RECORDS_FAILED_STATUS` (``tfbench
run``'s documented status when a record failed) with its results file complete: its failed records are then
data for the decision (a record the candidate broke fails the gate, see :mod:`benchmarks.gate.compare`), not
a crash. Anything else is a process that failed, and the gate cannot decide (exit 2).
"""

from __future__ import annotations

import json
import signal
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tfbench.benchmarks.commands import EXIT_FAILED
from tfbench.errors import TfbenchError

# `tfbench run`'s exit status when the run completed and wrote its results but some record failed.
RECORDS_FAILED_STATUS = EXIT_FAILED
STDERR_TAIL_LINES = 20
PLANT_MODULE = "tfbench.benchmarks.gate.plant"


class ProcessFailed(TfbenchError):
    """A benchmark process failed (crashed, or wrote no results); its stderr tail has been printed."""


@dataclass(frozen=True)
class ProcessResult:
    returncode: int
    stderr: str = ""


def cli_module(worktree: Path) -> str:
    """The CLI module of the suite in ``worktree``: revisions before the ``tfbench`` namespace had top-level
    packages, and a baseline may be one of them."""
    return "tfbench.benchmarks.cli" if (worktree / "tfbench" / "__init__.py").is_file() else "benchmarks.cli"


def run_command(worktree: Path, python: str, args: Sequence[str], output: Path, plant: str | None = None) -> list[str]:
    """``python -m <cli> run ARGS --output OUTPUT --quiet``, or the same behind a planted change
    (:mod:`benchmarks.gate.plant`, which only the current checkout has: calibrate-gate runs there)."""
    entry = [PLANT_MODULE, plant] if plant else [cli_module(worktree)]
    return [python, "-m", *entry, "run", *args, "--output", str(output), "--quiet"]


def ended(returncode: int) -> str:
    """How a process ended, in words: "exited with status 3" or "was killed by SIGKILL"."""
    if returncode < 0:
        try:
            return f"was killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"was killed by signal {-returncode}"
    return f"exited with status {returncode}"


def stderr_tail(text: str, lines: int = STDERR_TAIL_LINES) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


def failed_records(output: Path) -> int | None:
    """How many records failed in a complete results file; None if the file is missing, unreadable or
    incomplete (the run did not finish)."""
    try:
        document = json.loads(output.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(document, dict) or document.get("complete") is not True:
        return None
    return sum(record.get("status") == "failed" for record in document.get("records", []))


def check_completed(label: str, args: Sequence[str], worktree: Path, output: Path, result: ProcessResult) -> str:
    """Raise :class:`ProcessFailed` unless the process is a completed run (module docstring); else return a note
    ("" or "N records failed")."""
    if result.returncode == RECORDS_FAILED_STATUS:
        failures = failed_records(output)
        if failures:
            return f"{failures} record{'s' * (failures != 1)} failed"
    if result.returncode != 0:
        tail = stderr_tail(result.stderr)
        if tail:
            print(f"--- stderr of the {label} process (last {STDERR_TAIL_LINES} lines) ---\n{tail}\n---",
                  file=sys.stderr)
        raise ProcessFailed(f"the {label} process (`tfbench run {' '.join(args)}` in {worktree}) "
                            f"{ended(result.returncode)}; its stderr tail is above")
    if not output.is_file():
        raise ProcessFailed(f"the {label} process exited with status 0 but wrote no {output}; "
                            "does that revision's `tfbench run` support --output?")
    return ""
