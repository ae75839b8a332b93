"""The duet schedule: the baseline's and the candidate's gate processes run at the same time, one core each.

Duet benchmarking (Bulej et al., "Duet Benchmarking: Improving Measurement Accuracy in the Cloud", ICPE 2020)
runs the two versions *concurrently* on one machine, so that whatever slows the machine during a round (a
neighbour's job, a frequency change) slows both, and compares them pair by pair. Here one round of ``tfbench
ab --schedule duet`` is:

* two ``tfbench run`` processes started together, each pinned to its own core (``os.sched_setaffinity`` in the
  child before it executes Python, so every thread it makes inherits the pin). A pinned process sees one CPU,
  so the suite sizes both TensorFlow pools to one thread: one thread per op, one op at a time;
* a barrier the gate controls, through two pipes per process named in the child's ``TFBENCH_ROUND_BARRIER``
  (:func:`benchmarks.timing.round_barrier`): before each of its measurement rounds a process writes one line
  naming the round, and waits; when every running process has arrived, the gate releases them all. Both
  measure the same records in the same order, so each round times the same record on both cores at once;
* the cores swap from pair to pair (A on the first core in odd pairs, on the second in even ones), and inside
  a pair from measurement round to measurement round: at each barrier the gate moves every thread of each
  process to the other's core (``os.sched_setaffinity`` on each thread id) before it releases them, so that each
  record is timed on both cores by both sides. A neighbour that loads one core for a few seconds then slows A's
  and B's rounds of a record alike, instead of one side's whole record (the calibration in
  docs/gate-coverage.md measures what this buys).

A process that finishes is dropped from the barrier, and the other is released alone from then on. A process
that fails ends the round: the other is stopped (SIGTERM, then SIGKILL), no process is left behind, and the
failure is raised as :class:`ProcessFailed` (exit 2 of ``tfbench ab``). If the gate itself dies, the children
see the barrier's pipe close at their next round and exit.
"""

from __future__ import annotations

import os
import re
import selectors
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tfbench.benchmarks.gate.processes import ProcessFailed, ProcessResult, check_completed, run_command
from tfbench.benchmarks.timing import ROUND_BARRIER_ENV

ROUND_NUMBER = re.compile(r"round (\d+)")  # the measurement round a barrier label names ("round 3/4: ...")
STOP_GRACE_S = 10.0  # how long a stopped process gets to exit after SIGTERM before SIGKILL
SYSFS_CPUS = Path("/sys/devices/system/cpu")


@dataclass(frozen=True)
class DuetProcess:
    """One side of a duet round."""

    label: str  # "A round 3/12"
    worktree: Path
    python: str
    args: tuple[str, ...]
    output: Path
    core: int | None  # the CPU it is pinned to (None: not pinned)
    plant: str | None = None  # a planted change (calibrate-gate only)


@dataclass
class DuetRound:
    seconds: float  # wall time of the round (both processes)
    barriers: int  # how many times the processes were released together
    notes: list[str] = field(default_factory=list)  # per process: "" or "N records failed"
    mismatches: list[str] = field(default_factory=list)  # barriers where the two named different rounds
    swaps: int = 0  # barriers at which the two processes moved to each other's core


def choose_cores(available: set[int] | None = None, sysfs: Path = SYSFS_CPUS) -> tuple[int, int] | None:
    """Two CPUs for the two sides, on different physical cores when the topology says which (two hyperthreads
    of one core would slow each other); None if fewer than two CPUs are available to this process."""
    cpus = sorted(os.sched_getaffinity(0) if available is None else available)
    if len(cpus) < 2:
        return None
    first_of_core: dict[tuple[str, str], int] = {}
    for cpu in cpus:
        try:
            topology = sysfs / f"cpu{cpu}" / "topology"
            physical = ((topology / "physical_package_id").read_text().strip(),
                        (topology / "core_id").read_text().strip())
        except OSError:
            physical = ("", str(cpu))  # topology unknown: each CPU its own core
        first_of_core.setdefault(physical, cpu)
    distinct = sorted(first_of_core.values())
    return (distinct[0], distinct[1]) if len(distinct) >= 2 else (cpus[0], cpus[1])


def supports_barrier(worktree: Path) -> bool:
    """Does the suite in ``worktree`` wait at the round barrier? (Older revisions have no such hook.)"""
    try:
        return ROUND_BARRIER_ENV in (worktree / "benchmarks" / "timing.py").read_text()
    except OSError:
        return False


def pin_threads(pid: int, core: int, tasks: Path = Path("/proc")) -> int:
    """Pin every thread of process ``pid`` to ``core``; the number of threads pinned. A thread that ends meanwhile
    is skipped; one started meanwhile inherits its creator's pin, and the next call moves it too."""
    pinned = 0
    try:
        thread_ids = [int(name) for name in os.listdir(tasks / str(pid) / "task")]
    except OSError:
        return 0  # the process has gone
    for thread_id in thread_ids:
        try:
            os.sched_setaffinity(thread_id, {core})
            pinned += 1
        except OSError:  # ProcessLookupError: the thread ended since the listing
            pass
    return pinned


def round_cores(label: str, cores: Sequence[int | None]) -> list[int | None]:
    """The cores of the processes in the measurement round ``label`` names: as started in odd rounds, each on
    the other's core in even ones (two pinned processes only; otherwise as started)."""
    match = ROUND_NUMBER.search(label)
    if len(cores) != 2 or None in cores or match is None or int(match.group(1)) % 2:
        return list(cores)
    return list(cores[::-1])


class _Running:
    """A launched process, its two barrier pipes (our ends) and its captured output."""

    def __init__(self, spec: DuetProcess):
        self.spec = spec
        spec.output.unlink(missing_ok=True)  # the harness resumes an existing results file: never mix two runs
        ready_read, ready_write = os.pipe()
        go_read, go_write = os.pipe()
        self.ready, self.go = ready_read, go_write
        self.stdout = tempfile.TemporaryFile()
        self.stderr = tempfile.TemporaryFile()
        self.pending: list[str] = []
        self.buffer = b""
        self.finished = False
        self.core = spec.core  # the core its threads are pinned to now
        env = {**os.environ, "PYTHONPATH": str(spec.worktree), ROUND_BARRIER_ENV: f"{ready_write},{go_read}"}
        core = spec.core
        try:
            self.process = subprocess.Popen(
                run_command(spec.worktree, spec.python, spec.args, spec.output, spec.plant), cwd=spec.worktree,
                env=env, stdin=subprocess.DEVNULL, stdout=self.stdout, stderr=self.stderr,
                pass_fds=(ready_write, go_read),
                # In the child, before Python starts: every thread it will make inherits the pin.
                preexec_fn=None if core is None else (lambda: os.sched_setaffinity(0, {core})))
        except OSError as error:
            self.close()
            raise ProcessFailed(f"cannot start the {spec.label} process ({spec.python}): {error.strerror}") from None
        finally:
            os.close(ready_write)
            os.close(go_read)

    def read_arrivals(self) -> bool:
        """Read the labels of the rounds it arrived at; False at end of file (it exited)."""
        chunk = os.read(self.ready, 4096)
        if not chunk:
            return False
        self.buffer += chunk
        *lines, self.buffer = self.buffer.split(b"\n")
        self.pending += [line.decode(errors="replace") for line in lines]
        return True

    def release(self) -> None:
        os.write(self.go, b"g")

    def result(self) -> ProcessResult:
        returncode = self.process.wait()
        output = b""
        for stream in (self.stderr, self.stdout):  # stderr explains a failure; stdout if stderr is empty
            stream.seek(0)
            output = output or stream.read()
        return ProcessResult(returncode, output.decode(errors="replace"))

    def stop(self) -> None:
        """End it if it still runs (SIGTERM, then SIGKILL), and reap it: no process outlives the round."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def close(self) -> None:
        for fd in (self.ready, self.go):
            try:
                os.close(fd)
            except OSError:
                pass
        self.stdout.close()
        self.stderr.close()


def run_together(specs: Sequence[DuetProcess], log: Callable[[str], None] = print,
                 swap_cores: bool = True) -> DuetRound:
    """Run the processes of one duet round concurrently, releasing them together at every barrier; with
    ``swap_cores``, two pinned processes change cores from one measurement round to the next (module docstring)."""
    start = time.perf_counter()
    running: list[_Running] = []
    barriers, swaps, mismatches, notes = 0, 0, [], []
    selector = selectors.DefaultSelector()
    try:
        for spec in specs:
            running.append(_Running(spec))
            selector.register(running[-1].ready, selectors.EVENT_READ, running[-1])
        while selector.get_map():
            for key, _ in selector.select():
                process: _Running = key.data
                if not process.read_arrivals():  # it exited: is that a completed run?
                    selector.unregister(process.ready)
                    process.finished = True
                    spec = process.spec
                    check_completed(spec.label, spec.args, spec.worktree, spec.output, process.result())
            active = [process for process in running if not process.finished]
            while active and all(process.pending for process in active):
                labels = [process.pending.pop(0) for process in active]
                barriers += 1
                if len(set(labels)) > 1:
                    mismatches.append(f"barrier {barriers}: " + "; ".join(
                        f"{p.spec.label.split()[0]} at '{label}'" for p, label in zip(active, labels)))
                if swap_cores and len(active) == len(running) == 2:
                    wanted = round_cores(labels[0], [p.spec.core for p in active])
                    if wanted != [p.core for p in active]:
                        for process, core in zip(active, wanted):
                            pin_threads(process.process.pid, core)
                            process.core = core
                        swaps += 1
                for process in active:
                    process.release()
        for process in running:
            spec = process.spec
            notes.append(check_completed(spec.label, spec.args, spec.worktree, spec.output, process.result()))
    except ProcessFailed:
        others = [p.spec.label for p in running if p.process.poll() is None]
        if others:
            log(f"stopping the {' and '.join(others)} process{'es' * (len(others) > 1)} of this round")
        raise
    finally:
        for process in running:
            process.stop()
            process.close()
        selector.close()
    return DuetRound(time.perf_counter() - start, barriers, notes, mismatches, swaps)
