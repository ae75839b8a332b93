"""One run of the suite: set TensorFlow up, choose the devices, then run every stage's jobs into one results
file, record by record.

The plan (every record id) is known before anything runs, so a resumed run skips what an interrupted run
already wrote. Both the CLI (``tfbench run``) and the Python API (:func:`tfbench.run`) come through
:func:`execute`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

from tfbench.benchmarks.plan import Plan
from tfbench.benchmarks.results import ResultsFile
from tfbench.benchmarks.stages import STAGES
from tfbench.benchmarks.stages.base import Context, Job, failure
from tfbench.errors import TrainingDiverged


def quiet(*args, **kwargs) -> None:
    """A progress log that says nothing."""


def set_up_tensorflow(threads: dict):
    """Import TensorFlow and set what must be set before its runtime starts: thread pools, GPU memory growth.
    Returns (tf, the threads in force)."""
    import tensorflow as tf

    from tfbench.benchmarks import devices

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads["intra_op"])
        tf.config.threading.set_inter_op_parallelism_threads(threads["inter_op"])
    except RuntimeError:  # the runtime is already up (a second run in one process): record what is in force
        threads = {"intra_op": tf.config.threading.get_intra_op_parallelism_threads(),
                   "inter_op": tf.config.threading.get_inter_op_parallelism_threads()}
    devices.enable_memory_growth(tf)
    return tf, threads


def new_run_id() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ") + f"-{os.getpid() % 0xFFFFFF:06x}"


def execute(plan: Plan, *, threads: dict, device: str = "auto", output: Path | None = None,
            out_dir: Path = Path("results"), resume: ResultsFile | None = None,
            log: Callable[..., None] = quiet, run_id: str | None = None, progress=None) -> ResultsFile:
    """Run ``plan`` (or continue ``resume``, whose stored plan it is) and return its complete results file.

    ``progress`` (a :class:`tfbench.benchmarks.console.RunProgress`) draws the live bar; ``log`` the lines."""
    tf, threads = set_up_tensorflow(threads)
    STAGES["distributed"].prepare(plan, tf)  # logical CPU devices, a worker's strategy: before TF starts
    from tfbench.benchmarks import devices
    from tfbench.benchmarks.environment import capture

    if resume is not None:
        chosen = [d for d in devices.detect(tf) if d.name in plan.devices]
        results = resume
    else:
        chosen = devices.select(devices.detect(tf), device)
        plan = plan.with_devices(d.name for d in chosen)
        run_id = run_id or new_run_id()
        results = ResultsFile.create(output or Path(out_dir) / f"results-{run_id}.json", run_id=run_id,
                                     config={"profile": plan.profile, "plan": plan.to_dict()},
                                     environment=capture(tf, chosen, threads), devices=[])
    import keras

    keras.utils.set_random_seed(plan.seed)
    log(f"run: profile {plan.profile}, devices {', '.join(plan.devices)}, results {results.path}")
    context = Context(plan=plan, devices=chosen, results=results, log=log, tf=tf)
    STAGES["step_time"].measure_peaks(context)
    jobs = [job for name in plan.stages for job in STAGES[name].jobs(context)]
    if plan.budget_s is not None:
        context.budget = make_budget(context, jobs, fresh=resume is None)
    run_jobs(context, jobs, progress=progress)
    results.save(complete=True)
    return results


def make_budget(context: Context, jobs: list[Job], fresh: bool = True):
    """The run's :class:`~tfbench.benchmarks.budget.Budget`, over the jobs not done yet: the machine measured
    (once: a resumed run keeps its measurement) and stored with the budget in the environment. A budget too
    small is refused here (one line), and a new run's results file, empty still, is removed."""
    from tfbench.benchmarks.budget import GROW_MARGIN, Budget, MachineSpeed, measure_machine, spent_by
    from tfbench.errors import ConfigError

    results, plan = context.results, context.plan
    environment = results.document["environment"]
    if environment.get("machine_speed"):
        speed = MachineSpeed.from_json(environment["machine_speed"])
    else:
        device = context.devices[0]
        speed = measure_machine(context.tf, device, context.peaks.get(device.name))
    done = results.done_ids()
    todo = [job for job in jobs if not all(s["id"] in done for s in job.stubs)]
    from tfbench.benchmarks.plan import PROFILES

    # The profile's own default (the quick profile's 300 s) grows on a slow machine; a budget the user chose
    # is held to, and one too small for it is refused.
    default = plan.budget_s == PROFILES[plan.profile].budget_s
    try:
        budget = Budget.for_jobs(plan.budget_s, speed, todo, plan,
                                 spent_s=spent_by([r for r in results.records if r["id"] in done]), strict=fresh,
                                 grow=fresh and default)
    except ConfigError:
        if fresh and not results.records:
            results.path.unlink(missing_ok=True)
        raise
    if budget.budget_s > plan.budget_s:
        context.log(f"the {plan.profile} profile's {plan.budget_s:g} s budget cannot give every record its minimum "
                    f"on this machine ({speed.slowdown:.1f}x slower than the reference): it runs at the smallest that "
                    f"fits, with a {GROW_MARGIN - 1:.0%} margin, {budget.budget_s:g} s (choose one with --budget)")
    environment.update(budget_s=budget.budget_s, machine_speed=speed.to_json())
    results.save()
    context.log(f"budget: {budget.budget_s:g} s; this machine: float32 matmul {speed.matmul_gflops:.0f} GFLOP/s, "
                f"a tf.function call {speed.call_s * 1e6:.0f} us, {speed.slowdown:.2f}x the reference machine's "
                f"time; ETA {budget.eta_s():.0f} s")
    return budget


def run_jobs(context: Context, jobs: list[Job], progress=None) -> None:
    """Run each job not already done, writing its records as it ends; a failing job fails its records only."""
    done = context.results.done_ids()
    todo = [job for job in jobs if not all(s["id"] in done for s in job.stubs)]
    if len(todo) < len(jobs):
        context.log(f"resuming: {len(jobs) - len(todo)} of {len(jobs)} jobs already done")
    budget = context.budget
    started_run = time.perf_counter()
    if progress is not None:
        progress.start(sum(len([s for s in job.stubs if s["id"] not in done]) for job in todo))
    try:
        _run_each(context, todo, done, budget, started_run, progress)
    finally:
        if progress is not None:
            progress.stop()


def _run_each(context: Context, todo: list[Job], done: set, budget, started_run: float, progress) -> None:
    for index, job in enumerate(todo, 1):
        job.stubs = [s for s in job.stubs if s["id"] not in done]  # a resumed run keeps what it has
        if budget is not None:
            budget.start(job)
        if progress is not None:
            progress.working(label(job), budget.eta_s() if budget is not None else None)
        started = datetime.now(timezone.utc).isoformat(timespec="seconds")
        start = time.perf_counter()
        try:
            records = STAGES[job.kind].run(context, job)
        except Exception as error:  # one failing job is recorded, and the run goes on
            records = [{**s, "status": "failed", "reason": failure(error)} for s in job.stubs]
            if isinstance(error, TrainingDiverged) and error.history:  # keep the epochs completed before it
                for record in records:
                    record["metrics"] = {"history": error.history}
        duration = time.perf_counter() - start
        for record in records:
            record["started"] = started
            record["duration_s"] = duration / len(records)
            context.results.add(record)
        if budget is not None:
            budget.done(job, duration)
            eta = budget.eta_s()
        else:
            eta = (time.perf_counter() - started_run) / index * (len(todo) - index)
        if progress is not None:
            progress.advance(len(records), eta)
        context.log(f"[{index}/{len(todo)}] {describe(records)}  (ETA {eta:.0f} s)")


def label(job: Job) -> str:
    """The progress bar's name for a job: its kind and what it measures."""
    first = job.stubs[0] if job.stubs else {}
    what = first.get("variant") or " ".join(str(part) for part in (first.get("approach") if len(
        {s["approach"] for s in job.stubs}) == 1 else "all approaches", first.get("workload"),
        f"b{first.get('batch_size')}" if first.get("batch_size") else "") if part)
    return f"{job.kind} {what} ({len(job.stubs)} record{'s' if len(job.stubs) != 1 else ''})"


def describe(records: list[dict]) -> str:
    """One progress line for a job's records; a group of several approaches is labelled per record."""
    first = records[0]
    approaches = list(dict.fromkeys(r["approach"] for r in records))
    head = f"{first['kind']} {first['approach'] if len(approaches) == 1 else 'all approaches'} " \
           f"{first['workload']} b{first['batch_size']} {first['device']}"
    if first["kind"] == "recipe":
        head = f"recipe {first['variant']}"
    parts = []
    for r in records:
        label = r["variant"] or f"{r['mode']}/K{r['steps_per_call']}"
        if r["kind"] == "distributed":  # its variant only names the baseline: say the mode, K and replicas
            where = "one device" if r["strategy"] == "none" else f"{r['strategy']} x{r['replicas']}"
            label = f"{r['mode']}/K{r['steps_per_call']} {where}"
        if len(approaches) > 1:
            label = f"{r['approach']} {label}"
        m = r.get("metrics") or {}
        if r["status"] != "ok":
            parts.append(f"{label}: {r['status']}")
        elif "published_step_time_s" in m:  # as_published: the tutorial's step against the best mode's
            parts.append(f"{label} {m['published_step_time_s']['median'] * 1e3:.3g} ms a step as published, "
                         f"{m['best_step_time_s']['median'] * 1e3:.3g} ms fixed ({m['best_mode']})")
        elif "step_time_s" in m:
            parts.append(f"{label} {m['step_time_s']['median'] * 1e3:.3g} ms")
        elif "profiled_step_s" in m:
            parts.append(f"{label} {m['profiled_step_s'] * 1e3:.3g} ms profiled")
        elif "test_accuracy" in m:
            tta = m.get("time_to_accuracy_s")
            parts.append(f"test acc {m['test_accuracy']:.4f}" + (f", target in {tta:.1f} s" if tta else ""))
    return f"{head}: {'; '.join(parts)}"
