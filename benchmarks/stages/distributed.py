"""Distributed: every approach under a ``tf.distribute`` strategy, at several replica counts, timed interleaved.

Runs only when the plan names a strategy (``tfbench run --strategy mirrored|multiworker``). One job per
workload and per-replica batch size ``b``; in it, every approach x mode x K is built

* without a strategy at batch ``b`` (the single-device baseline), and
* under the strategy at each replica count N, on global batches of ``N x b`` split among the replicas
  (weak scaling: each replica's work stays the same),

and all of them are timed interleaved in one process: the approaches of one (replicas, mode, K) form a
block timed back to back, so that each style's cost relative to the fastest is measured on the same machine
state. From the medians: throughput (global samples per second), the scaling efficiency
``throughput(N) / (N x throughput(1))``, each approach against the fastest, and at one replica the cost of
the strategy itself against no strategy. That last ratio includes the input path the idiom requires: under a
strategy the batches come through a distributed dataset, while the single-device baseline of a hand-written
loop takes device-resident tensors (as in the step-time stage); ``keras_fit`` uses ``tf.data`` in both.

``mirrored`` uses the GPUs if there are enough, else the CPU split into logical devices
(:func:`tfbench.benchmarks.devices.split_cpu`, done before TensorFlow starts). Logical CPU devices share the
same cores: their "scaling" measures what the strategy costs, never a speed-up. Under ``multiworker`` each
worker process runs this same stage in lockstep (the all-reduce waits for every worker), with a fixed sample
count, and only the first worker's results file is kept (:mod:`tfbench.benchmarks.multiworker`).
"""

from __future__ import annotations

import contextlib
import time

import numpy as np

from tfbench.benchmarks.results import is_noisy, summarize
from tfbench.benchmarks.stages.base import Context, Job, failure, split_supported
from tfbench.errors import UsageError

KIND = "distributed"
# The `tfbench run` options this stage honours beyond the common ones (base.py).
FLAGS = ("approach", "workload", "mode", "batch_size", "steps_per_call", "samples", "strategy", "replicas",
         "worker_timeout", "budget")


def prepare(plan, tf) -> None:
    """What must happen before TensorFlow's runtime starts: split the CPU into logical devices for a mirrored
    run; create a worker's MultiWorkerMirroredStrategy (it configures the process's collective ops)."""
    from tfbench.benchmarks.devices import split_cpu
    from tfbench.implementations.distribute import make_strategy

    if plan.strategy == "mirrored":
        split_cpu(max(plan.replicas), tf)
    elif plan.strategy == "multiworker":
        make_strategy("multiworker", plan.replicas[0])


def configs(plan) -> list[tuple[str, int]]:
    """(mode, K) pairs, as in the step-time stage: K > 1 only for compiled modes."""
    return [(mode, k) for mode in plan.modes for k in plan.steps_per_call if k == 1 or mode != "eager"]


def jobs(context: Context) -> list[Job]:
    plan = context.plan
    if plan.strategy == "none":
        return []
    device = context.devices[0]  # the strategy spans this kind of device
    has_gpus = any(d.kind != "cpu" for d in context.devices) or bool(
        context.tf is not None and context.tf.config.list_physical_devices("GPU"))
    if plan.strategy == "mirrored" and device.kind == "cpu" and has_gpus:
        # distribute.local_devices takes the GPUs wherever there are any: a "cpu" record would be wrong.
        raise UsageError("a mirrored run spans this machine's GPUs, not its CPU: use --device gpu (or auto)")
    if plan.strategy == "mirrored" and device.kind != "cpu":
        same_kind = [d for d in context.devices if d.kind == device.kind]
        if len(same_kind) < max(plan.replicas):
            raise UsageError(f"{max(plan.replicas)} replicas need as many {device.kind} devices; found "
                             f"{len(same_kind)} (use fewer --replicas, or --device cpu for logical CPU devices)")
    found = []
    for workload in plan.workloads:
        for batch_size in plan.batch_sizes:
            stubs = []
            for mode, k in configs(plan):
                for replicas in [None, *plan.replicas]:  # None: the single-device baseline
                    for approach in plan.approaches:
                        # The baseline is named after the strategy it was measured beside (its own id per run).
                        distributed = ({"variant": f"{plan.strategy}_baseline"} if replicas is None
                                       else {"strategy": plan.strategy, "replicas": replicas})
                        stubs.append(context.stub(KIND, approach=approach, workload=workload, mode=mode,
                                                  steps_per_call=k, device=device.name, batch_size=batch_size,
                                                  **distributed))
            found.append(Job(KIND, {"workload": workload, "batch_size": batch_size, "device": device}, stubs))
    return found


def _bank(context: Context, global_batch: int, batches: int):
    """Synthetic batches ``(batches, global_batch, 28, 28, 1)``; the same on every worker (same seed)."""
    from tfbench.implementations.datasets import synthetic

    train, _ = synthetic(batches * global_batch, 1, seed=context.plan.seed)
    tf = context.tf
    return (tf.constant(train.x.reshape(batches, global_batch, 28, 28, 1)),
            tf.constant(train.y.reshape(batches, global_batch)))


def run(context: Context, job: Job) -> list[dict]:
    from tfbench.benchmarks import devices as dev
    from tfbench.benchmarks.timing import Timed, first_and_warmup, measure_interleaved
    from tfbench.implementations import build, get_approach
    from tfbench.implementations.interface import TrainConfig
    from tfbench.implementations.workloads import get_workload

    tf, plan, device = context.tf, context.plan, job.params["device"]
    workload = get_workload(job.params["workload"])
    batch_size = job.params["batch_size"]
    sync = lambda: dev.synchronize(device, tf)  # noqa: E731
    timed = {}
    records, metas = split_supported(job.stubs, lambda stub: get_approach(stub["approach"]).unsupported(
        workload, stub["mode"], stub["strategy"], stub["steps_per_call"]) or device.unsupported_reason(stub["mode"]))
    if not metas:
        return records
    max_k = max(s["steps_per_call"] for s in metas.values())
    batches = max(2 * max_k, 4)
    bank_x, bank_y = _bank(context, batch_size * max(s["replicas"] for s in metas.values()), batches)
    for key, stub in list(metas.items()):
        k, global_batch = stub["steps_per_call"], batch_size * stub["replicas"]
        calls = batches // k
        xs = [bank_x[i * k:(i + 1) * k, :global_batch] for i in range(calls)]
        ys = [bank_y[i * k:(i + 1) * k, :global_batch] for i in range(calls)]
        try:
            # A strategy places its replicas itself; the single-device baseline runs on the chosen device.
            with tf.device(device.tf_device) if stub["strategy"] == "none" else contextlib.nullcontext():
                trainer = build(stub["approach"], workload, TrainConfig(
                    mode=stub["mode"], steps_per_call=k, seed=plan.seed, strategy=stub["strategy"],
                    replicas=stub["replicas"]))
                timed[key] = Timed(trainer.runner(xs, ys), steps_per_call=k)
                first_and_warmup(timed[key], plan.warmup, sync, time.perf_counter)
        except Exception as error:  # this configuration fails; the others are measured
            if stub["strategy"] == "multiworker":
                raise  # the other workers wait in the all-reduce for this one: the whole job fails
            records.append({**metas.pop(key), "status": "failed", "reason": failure(error)})
            timed.pop(key, None)
    # The approaches of one (replicas, mode, K) are a block, timed back to back, each in turn first.
    blocks = {}
    for key in timed:
        stub = metas[key]
        blocks.setdefault((stub["strategy"], stub["replicas"], stub["mode"], stub["steps_per_call"]), []).append(key)
    measure_interleaved(timed, sync=sync, blocks=list(blocks.values()), **context.sampling())
    return records + _records(metas, timed)


def _records(metas: dict, timed: dict) -> list[dict]:
    records, medians = [], {}
    for key, stub in metas.items():
        if timed[key].nonfinite:
            records.append({**stub, "status": "failed", "reason": "the loss became NaN or infinite"})
            continue
        summary = summarize(timed[key].samples)
        medians[key] = summary["median"]
        global_batch = stub["batch_size"] * stub["replicas"]
        records.append({**stub, "metrics": {
            "step_time_s": summary, "noisy": is_noisy(summary), "first_call_s": timed[key].first_call_s,
            "global_batch_size": global_batch, "throughput_sps": global_batch / summary["median"]}})
    by_config = {_config(r): r for r in records if r["status"] == "ok"}
    for record in records:
        if record["status"] != "ok":
            continue
        metrics, strategy, replicas = record["metrics"], record["strategy"], record["replicas"]
        if strategy != "none":
            # Against one replica of the same strategy; a multiworker run has none, so against one device.
            base = (by_config.get(_config(record, replicas=1))
                    or by_config.get(_config(record, strategy="none", replicas=1)))
            if base is not None:
                metrics["scaling_efficiency"] = (metrics["throughput_sps"]
                                                 / (replicas * base["metrics"]["throughput_sps"]))
        if strategy != "none" and replicas == 1:
            single = by_config.get(_config(record, strategy="none", replicas=1))
            if single is not None:
                metrics["vs_single_device"] = record_median(record) / record_median(single)
        peers = [record_median(r) for r in records if r["status"] == "ok"
                 and _config(r)[1:] == _config(record)[1:]]
        metrics["vs_fastest"] = record_median(record) / float(np.min(peers))
    return records


def _config(record: dict, **override) -> tuple:
    """(approach, strategy, replicas, mode, K, workload, batch): what a comparison holds fixed."""
    r = {**record, **override}
    return (r["approach"], r["strategy"], r["replicas"], r["mode"], r["steps_per_call"], r["workload"],
            r["batch_size"])


def record_median(record: dict) -> float:
    return record["metrics"]["step_time_s"]["median"]


def summary_table(records: list[dict]) -> str | None:
    """The run's distributed records as a plain-text table for the terminal, or None if there are none."""
    from tabulate import tabulate

    rows = []
    for r in records:
        if r["kind"] != KIND or r["status"] != "ok":
            continue
        m = r["metrics"]
        where = "one device" if r["strategy"] == "none" else f"{r['strategy']} x{r['replicas']}"
        efficiency = m.get("scaling_efficiency")
        rows.append([r["workload"], r["batch_size"], r["approach"], r["mode"], r["steps_per_call"], where,
                     f"{m['step_time_s']['median'] * 1e3:.3g}", f"{m['throughput_sps']:,.0f}",
                     "" if efficiency is None else f"{100 * efficiency:.0f}%", f"{m['vs_fastest']:.2f}x"
                     + ("  noisy" if m.get("noisy") else "")])
    if not rows:
        return None
    return tabulate(rows, headers=["workload", "batch/replica", "approach", "mode", "K", "strategy", "ms/step",
                                   "samples/s", "efficiency", "vs fastest"])
