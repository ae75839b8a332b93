"""The Python API: run the suite, load stored results, report and compare, from a script or a notebook.

::

    import tfbench

    results = tfbench.run(profile="quick", approaches=["custom_tape", "keras_fit"], workloads=["mlp"],
                          modes=["eager", "function"], batch_sizes=[128], stages=["step_time"], out="results")
    frame = results.to_dataframe()          # one row per record (pandas)
    results.plot_step_time("step_time.png")
    results.report("report/")               # REPORT.md and its charts
    tfbench.compare("baseline.json", results.paths)

The command line (``tfbench run``, ``report``, ``compare``) is a thin layer over the same functions. Nothing
here imports TensorFlow until :func:`run` really trains; names are checked before that.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tfbench.errors import ConfigError

if TYPE_CHECKING:
    import pandas as pd

    from tfbench.benchmarks.gate.compare import Row

PathLike = str | Path


@dataclass(frozen=True)
class Results:
    """Stored results: one or more results files (each one run), read when asked."""

    paths: tuple[Path, ...]

    @property
    def documents(self) -> list[dict]:
        """Each file's whole document (checked against the schema)."""
        from tfbench.benchmarks.results import load as load_document

        return [load_document(path) for path in self.paths]

    @property
    def records(self) -> list[dict]:
        return [record for document in self.documents for record in document["records"]]

    def to_dataframe(self) -> pd.DataFrame:
        """One row per record, metrics flattened into columns (see :mod:`tfbench.reports.data`)."""
        from tfbench.reports.data import load_results

        return load_results(self.paths)

    def report(self, out_dir: PathLike) -> Path:
        """Write ``out_dir/REPORT.md`` and its charts; return REPORT.md's path."""
        from tfbench.reports import write_report

        return write_report(self.paths, out_dir)

    def plot_step_time(self, path: PathLike) -> Path | None:
        """The step-time chart as a PNG at ``path`` (None if there is no step-time record to draw)."""
        from tfbench.reports import plot_step_time

        return plot_step_time(self.to_dataframe(), Path(path))

    def __repr__(self) -> str:
        statuses: dict[str, int] = {}
        for record in self.records:
            statuses[record["status"]] = statuses.get(record["status"], 0) + 1
        counts = ", ".join(f"{n} {status}" for status, n in statuses.items()) or "no records"
        return f"Results({', '.join(str(p) for p in self.paths)}: {counts})"


def load(paths: PathLike | Iterable[PathLike]) -> Results:
    """Results files, or folders of them; a missing or damaged file fails here with one line naming it."""
    from tfbench.reports.data import results_paths

    results = Results(tuple(results_paths(paths)))
    results.documents  # noqa: B018 (read now, so that a bad file fails here and not later)
    return results


# Each argument of :func:`run` and the `tfbench run` option (argparse dest name) it stands for: an argument that
# no stage of the run honours is refused, as on the command line (tfbench.benchmarks.plan.refuse_ignored).
RUN_OPTIONS = {"profile": "profile", "approaches": "approach", "workloads": "workload", "modes": "mode",
               "batch_sizes": "batch_size", "steps_per_call": "steps_per_call", "stages": "stages", "device": "device",
               "dataset": "dataset", "data_dir": "data_dir", "samples": "samples", "threads": "threads", "out": "out",
               "output": "output", "overwrite": "overwrite", "seed": "seed", "progress": "quiet", "budget": "budget"}


def run(profile: str = "quick", *, approaches: Sequence[str] | None = None, workloads: Sequence[str] | None = None,
        modes: Sequence[str] | None = None, batch_sizes: Sequence[int] | None = None,
        steps_per_call: Sequence[int] | None = None, stages: Sequence[str] | None = None, device: str = "auto",
        dataset: str | None = None, data_dir: PathLike | None = None, samples: int | None = None,
        threads: tuple[int, int] | None = None, out: PathLike = "results", output: PathLike | None = None,
        overwrite: bool = False, seed: int = 0, progress: bool = False, budget: float | None = None) -> Results:
    """Run the benchmark suite, as ``tfbench run`` does, and return its results.

    ``profile`` is ``quick``, ``full`` or ``gate``; every other argument narrows it (None keeps the profile's
    choice; ``dataset`` is the accuracy stage's, default mnist). An argument that no stage of the run honours
    (``dataset`` without the accuracy stage) raises :class:`~tfbench.errors.ConfigError` naming the stages that
    would. ``threads`` is (threads per op, ops side by side); default: both the core count. The results file
    is ``output``, or a new ``results-<run id>.json`` in ``out``; an existing ``output`` is refused unless
    ``overwrite``, and one process at a time writes a file. ``progress`` prints a line per job to stderr.
    ``budget`` is the seconds of benchmarking the run should take (docs/budget.md; the quick profile's
    default is 300, the full profile samples a fixed amount unless given one).
    """
    given = [name for name, value in locals().items() if value is not None and value is not False]  # arguments only

    from tfbench.benchmarks.console import progress as progress_log
    from tfbench.benchmarks.console import starting_tensorflow
    from tfbench.benchmarks.environment import cpu_count
    from tfbench.benchmarks.outputs import WriterLock, check_file
    from tfbench.benchmarks.plan import PROFILES, build_plan, check_device, refuse_ignored, run_stages
    from tfbench.benchmarks.suite import execute, new_run_id

    names = {dest: f"{name}=" for name, dest in RUN_OPTIONS.items()}  # an option named as the caller wrote it
    refuse_ignored([RUN_OPTIONS[name] for name in given], run_stages(profile, stages), spell=names.__getitem__,
                   stages_option="stages=")
    check_device(device)
    plan = build_plan(profile, approaches=approaches, workloads=workloads, modes=modes, batch_sizes=batch_sizes,
                      steps_per_call=steps_per_call, stages=stages, dataset="mnist" if dataset is None else dataset,
                      data_dir=data_dir, samples=samples, seed=seed, budget_s=budget)
    if threads is None:
        pools = {"intra_op": PROFILES[profile].intra_op or cpu_count(), "inter_op": cpu_count()}
    else:
        if len(threads) != 2 or any(not isinstance(n, int) or n < 0 for n in threads):
            raise ConfigError(f"threads must be (threads per op, ops side by side), whole numbers >= 0; "
                              f"got {threads!r}")
        pools = {"intra_op": threads[0], "inter_op": threads[1]}
    run_id = new_run_id()
    path = check_file(Path(out) / f"results-{run_id}.json" if output is None else output, "the results file")
    log = progress_log(quiet=not progress)
    with WriterLock(path):  # as `tfbench run`: never replace a results file by accident, never two writers
        if path.exists() and not overwrite:
            raise ConfigError(f"{path} already exists; pass overwrite=True to replace it, or another output")
        starting_tensorflow(log)
        results = execute(plan, threads=pools, device=device, output=path, log=log, run_id=run_id)
    return Results((results.path,))


def compare(baseline: PathLike | Iterable[PathLike] | Results, candidate: PathLike | Iterable[PathLike] | Results,
            metric: str = "step_time") -> list[Row]:
    """The regression gate's decision, record by record (worst first), as ``tfbench compare`` makes it."""
    from tfbench.benchmarks.gate.checks import decide
    from tfbench.benchmarks.gate.compare import DEFAULT_ALPHA, compare_documents

    sides = [side if isinstance(side, Results) else load(side) for side in (baseline, candidate)]
    rows = compare_documents(sides[0].documents, sides[1].documents, metric=metric)
    if metric == "step_time":  # Holm's correction, the results check and peak memory, as the command
        rows, _ = decide(rows, sides[0].documents, sides[1].documents, DEFAULT_ALPHA)
    return rows
