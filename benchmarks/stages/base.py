"""What every stage of a run shares: the run's context, a job, and a failure's one-line reason.

A stage is a module under :mod:`tfbench.benchmarks.stages` with

* ``KIND``: the record kind it writes (``step_time``, ``accuracy``...);
* ``jobs(context) -> list[Job]``: what it will measure, every record stub known before anything runs, so that
  ``--resume`` can tell what an interrupted run already wrote;
* ``run(context, job) -> list[dict]``: the records of one job, one per stub;
* ``FLAGS``: the ``tfbench run`` options (argparse dest names, e.g. ``"strategy"``) this stage honours beyond
  the ones every stage takes (:data:`tfbench.benchmarks.plan.COMMON_FLAGS`); ``tfbench run`` and
  :func:`tfbench.run` refuse an option that no stage of the run honours, naming the stages that would
  (:func:`tfbench.benchmarks.plan.refuse_ignored`). A new option is one more name in the ``FLAGS`` of each
  stage that reads it.

A stage raises nothing for a failing configuration it can isolate: it records it ``failed`` and goes on. An
exception that escapes ``run`` fails that job's records only (:func:`tfbench.benchmarks.suite.run_jobs`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tfbench.benchmarks.results import ResultsFile, make_record


@dataclass
class Job:
    kind: str
    params: dict  # what the stage needs to run it (device, workload, batch size...)
    stubs: list[dict]  # the records it will write, without outcome


@dataclass
class Context:
    """One run: its plan, the devices chosen, the results file, a progress log and TensorFlow."""

    plan: Any  # tfbench.benchmarks.plan.Plan
    devices: list  # tfbench.benchmarks.devices.Device
    results: ResultsFile
    log: Callable[..., None]
    tf: Any
    peaks: dict[str, float] = field(default_factory=dict)  # device name -> matmul peak, GFLOP/s
    unavailable: dict[str, str] = field(default_factory=dict)  # dataset -> why it cannot be had
    budget: Any = None  # tfbench.benchmarks.budget.Budget of a budgeted run, else None

    def stub(self, kind: str, **key) -> dict:
        """A record stub of ``kind``; the fields a stage does not name take their neutral value."""
        base = {"approach": "", "workload": "", "mode": "function", "steps_per_call": 1, "device": "cpu",
                "batch_size": 0, "dataset": "synthetic", "variant": ""}
        return make_record(kind, **{**base, **key})

    def sampling(self) -> dict:
        """How many samples: the profile's time budget per round, exactly ``--samples`` in all, or (a budgeted
        run) until the stopping rule says so, within the running job's share of the budget."""
        plan = self.plan
        sampling = {"rounds": plan.rounds, "round_budget_s": plan.round_budget_s, "warmup": plan.warmup}
        if self.budget is not None and not plan.samples:
            return {**sampling, "stopping": self.budget.rule, "time_budget_s": self.budget.allotment_s,
                    "on_sampled": self.budget.sampled}
        if plan.samples:  # exactly N: as many rounds as divide N, up to the profile's
            rounds = max(r for r in range(1, plan.rounds + 1) if plan.samples % r == 0)
            per_round = plan.samples // rounds
            sampling.update(rounds=rounds, min_per_round=per_round, max_per_round=per_round)
        return sampling

    def training_size(self, job: Job, epochs: int) -> tuple[int, float]:
        """(epochs, share of the training set) a training job runs: the profile's ``epochs`` and all of it,
        or what fits in a budgeted run's share (:meth:`tfbench.benchmarks.budget.Budget.training`)."""
        return (epochs, 1.0) if self.budget is None else self.budget.training(job, epochs)

    def dataset_or_skip(self, name: str, stubs: list[dict]):
        """(the dataset, None), or (None, the stubs marked skipped); a dataset that cannot be had is tried
        once a run."""
        from tfbench.errors import DatasetError
        from tfbench.implementations.datasets import load

        if name not in self.unavailable:
            try:
                return load(name, data_dir=self.plan.data_dir, verify=self.plan.verify), None
            except DatasetError as error:
                self.unavailable[name] = str(error)
        return None, skipped(stubs, self.unavailable[name])


def skipped(stubs: list[dict], reason: str) -> list[dict]:
    return [{**s, "status": "skipped", "reason": reason} for s in stubs]


def unsupported(stubs: list[dict], reason: str) -> list[dict]:
    return [{**s, "status": "unsupported", "reason": reason} for s in stubs]


def split_supported(stubs: list[dict], reason_of: Callable[[dict], str | None]) -> tuple[list[dict], dict]:
    """(the ``unsupported`` records of the stubs that cannot run, with their reason; the others by id)."""
    records, runnable = [], {}
    for stub in stubs:
        reason = reason_of(stub)
        if reason:
            records.append({**stub, "status": "unsupported", "reason": reason})
        else:
            runnable[stub["id"]] = stub
    return records, runnable


def failure(error: BaseException) -> str:
    """A record's failure reason: the exception's type and the first line of its message."""
    message = str(error).strip()
    return f"{type(error).__name__}: {message.splitlines()[0] if message else ''}"[:500]
