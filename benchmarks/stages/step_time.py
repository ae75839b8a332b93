"""Step time: every approach x workload x mode x steps per call x batch size x device.

The configurations of one workload, batch size and device are one job, timed interleaved in one process
(:func:`tfbench.benchmarks.timing.measure_interleaved`): the approaches of one mode and K form a block timed
back to back, each in turn first, so that "approach A is x% slower than B" is measured on the same machine
state. Batches are synthetic and device-resident, so the input pipeline is not what is timed (the
``input_pipeline`` stage times that). Speedups over eager are ratios of samples measured side by side.
"""

from __future__ import annotations

import time

from tfbench.benchmarks.results import is_noisy, summarize
from tfbench.benchmarks.stages.base import Context, Job, failure, split_supported

KIND = "step_time"
# The `tfbench run` options this stage honours beyond the common ones (base.py).
FLAGS = ("approach", "workload", "mode", "batch_size", "steps_per_call", "samples", "inject_slowdown", "inject_into",
         "budget")
REFERENCE = "reference"  # the reference kernel's key among a group's timed configurations


def configs(plan) -> list[tuple[str, int]]:
    """(mode, K) pairs: K > 1 only for compiled modes, since eager has no call to amortise."""
    return [(mode, k) for mode in plan.modes for k in plan.steps_per_call if k == 1 or mode != "eager"]


def jobs(context: Context) -> list[Job]:
    plan, found = context.plan, []
    # One job per workload and batch size, all approaches interleaved; or (the gate) one per approach.
    groups = [list(plan.approaches)] if plan.interleave_approaches else [[a] for a in plan.approaches]
    for device in context.devices:
        for workload in plan.workloads:
            for batch_size in plan.batch_sizes:
                for approaches in groups:
                    stubs = [context.stub(KIND, approach=approach, workload=workload, mode=mode, steps_per_call=k,
                                          device=device.name, batch_size=batch_size)
                             for mode, k in configs(plan) for approach in approaches
                             if mode != "eager" or plan.eager_approaches is None or approach in plan.eager_approaches]
                    if not stubs:
                        continue
                    found.append(Job(KIND, {"approaches": approaches, "workload": workload,
                                            "batch_size": batch_size, "device": device}, stubs))
    return found


def measure_peaks(context: Context) -> None:
    """Each device's float32 matmul peak (the roofline's compute limit), once a run, kept by a resumed run."""
    from tfbench.benchmarks.roofline import matmul_gflops

    tf, plan = context.tf, context.plan
    known = {d["name"]: d for d in context.results.document.get("devices", [])}
    for device in context.devices:
        if device.name in known and "peak_gflops" in known[device.name]:
            continue
        if not plan.roofline or KIND not in plan.stages:
            known[device.name] = device.to_json()
            continue
        parallel = tf.config.threading.get_inter_op_parallelism_threads() if device.kind == "cpu" else 1
        peak = matmul_gflops(device, repeats=10, parallel=max(1, parallel), tf=tf)
        if parallel > 1:  # also one matmul at a time: what a chain of dependent ops can get
            single = matmul_gflops(device, repeats=5, parallel=1, tf=tf)
            peak["peak_gflops_single_op"] = single["peak_gflops"]
        known[device.name] = {**device.to_json(), **peak}
        context.log(f"{device.name}: {device.description}; float32 matmul peak {peak['peak_gflops']:.0f} GFLOP/s")
    context.results.document["devices"] = list(known.values())
    context.results.save()
    context.peaks = {name: d["peak_gflops"] for name, d in known.items() if "peak_gflops" in d}


def bank_size(batch_size: int, max_k: int) -> int:
    """How many distinct batches to cycle through: two calls of the largest K, at most ~64 MB of images."""
    return max(2 * max_k, min(16, max(2, (64 << 20) // (batch_size * 784 * 4))))


def device_batches(tf, device, batch_size: int, batches: int, seed: int):
    """Device-resident synthetic batches: (batches, batch, 28, 28, 1) and labels."""
    from tfbench.implementations.datasets import synthetic

    train, _ = synthetic(batches * batch_size, 1, seed=seed)
    with tf.device(device.tf_device):
        x = tf.constant(train.x.reshape(batches, batch_size, 28, 28, 1))
        y = tf.constant(train.y.reshape(batches, batch_size))
    return x, y


def call_stacks(tf, bank_x, bank_y, k: int) -> tuple[list, list]:
    """Each call's stack of K batches, as many calls as the bank holds (placed on the caller's device)."""
    calls = int(bank_x.shape[0]) // k
    return ([tf.identity(bank_x[i * k:(i + 1) * k]) for i in range(calls)],
            [tf.identity(bank_y[i * k:(i + 1) * k]) for i in range(calls)])


def run(context: Context, job: Job) -> list[dict]:
    from tfbench.benchmarks import devices as dev
    from tfbench.benchmarks.environment import trainer_settings
    from tfbench.benchmarks.timing import (
        Timed,
        first_and_warmup,
        harness_overhead,
        measure_interleaved,
        reference_kernel,
    )
    from tfbench.implementations import build, get_approach
    from tfbench.implementations.interface import TrainConfig
    from tfbench.implementations.workloads import get_workload

    tf, plan, device = context.tf, context.plan, job.params["device"]
    workload = get_workload(job.params["workload"])
    batch_size = job.params["batch_size"]
    sync = lambda: dev.synchronize(device, tf)  # noqa: E731
    timed, peak_memory, memory_windows, checks, effective = {}, {}, {}, {}, {}
    records, metas = split_supported(job.stubs, lambda stub: get_approach(stub["approach"]).unsupported(
        workload, stub["mode"]) or device.unsupported_reason(stub["mode"]))
    if not metas:
        return records
    batches = bank_size(batch_size, max(s["steps_per_call"] for s in metas.values()))
    bank_x, bank_y = device_batches(tf, device, batch_size, batches, plan.seed)
    calls_of = {}  # K -> each call's stack of K batches, shared by the configurations with that K
    with tf.device(device.tf_device):
        for record_key, stub in list(metas.items()):
            k = stub["steps_per_call"]
            if k not in calls_of:
                calls_of[k] = call_stacks(tf, bank_x, bank_y, k)
            memory_windows[record_key] = dev.start_memory_window(device, tf)
            try:
                trainer = build(stub["approach"], workload,
                                TrainConfig(mode=stub["mode"], steps_per_call=k, seed=plan.seed))
                # What actually runs, read before the first step (the weights are still the initial ones);
                # host copies, outside the device allocator whose peak is measured.
                effective[record_key] = trainer_settings(tf, trainer, first_batch=(calls_of[k][0][0][0],
                                                                                   calls_of[k][1][0][0]))
                runner = trainer.runner(*calls_of[k])
                last_loss = []
                timed[record_key] = Timed(lambda runner=runner, last=last_loss: _keep(last, runner()),
                                          steps_per_call=k, inject_fraction=_injected(plan, stub))
                # Build, first call and warm-up run one configuration at a time: its own peak memory.
                first_and_warmup(timed[record_key], plan.warmup, sync, time.perf_counter)
                timed[record_key].call = runner  # the timed calls keep no loss

            except Exception as error:  # this configuration fails (e.g. out of memory); the group goes on
                records.append({**metas.pop(record_key), "status": "failed", "reason": failure(error)})
                timed.pop(record_key, None)
                continue
            peak_memory[record_key] = dev.record_peak_memory(device, memory_windows[record_key], tf)
            checks[record_key] = results_check(trainer, last_loss, (1 + plan.warmup) * k)
        # The approaches of one mode and K form a block: timed back to back, in turn first.
        blocks = {}
        for key in timed:
            blocks.setdefault((metas[key]["mode"], metas[key]["steps_per_call"]), []).append(key)
        blocks = list(blocks.values())
        if plan.reference:
            timed[REFERENCE] = Timed(reference_kernel())
            blocks.append([REFERENCE])
        probes = _add_roof_probes(context, device, timed, blocks) if plan.roofline else []
        measure_interleaved(timed, sync=sync, blocks=blocks, **context.sampling())
        roofs = _roofs(probes, timed)
        # What the harness itself adds, on each approach's first compiled configuration (the cheapest
        # call, where bookkeeping would show most); on the CPU the sync is a no-op and the bare loop
        # is exact.
        overhead = {}
        if device.kind == "cpu" and plan.overhead_check and not plan.inject_slowdown:
            first_compiled = {}
            for key, stub in metas.items():
                if stub["mode"] != "eager":
                    first_compiled.setdefault(stub["approach"], key)
            overhead = {key: harness_overhead(timed[key], sync=sync) for key in first_compiled.values()}
    records = records + _step_records(context, metas, timed, workload, device, peak_memory)
    for record in records:
        if record["status"] == "ok" and record["id"] in checks:
            record["metrics"].update(checks[record["id"]])
    preplaced = _preplaced_bytes(bank_x, bank_y, calls_of)
    for record in records:
        if record["status"] == "ok":
            record["metrics"]["harness_preplaced_bytes"] = preplaced
            if roofs is not None:
                record["metrics"].update(_roofline_metrics(workload, record, roofs))
    for record in records:
        if record["id"] in effective and record["status"] == "ok":
            record["effective"] = effective[record["id"]]
        if record["id"] in overhead and record["status"] == "ok":
            record["metrics"]["harness_overhead_fraction"] = overhead[record["id"]]
        if REFERENCE in timed and record["status"] == "ok":
            record["metrics"]["reference_s"] = summarize(timed[REFERENCE].samples)
    return records


def _injected(plan, stub: dict) -> float:
    """The slowdown this record gets: the plan's, unless ``--inject-into`` names another record."""
    if plan.inject_into and plan.inject_into != f"{stub['approach']}/{stub['workload']}/{stub['mode']}":
        return 0.0
    return plan.inject_slowdown


def _keep(last: list, loss):
    """Keep the warm-up's latest loss (unforced) for the results check; return it for the timing."""
    last[:] = [loss]
    return loss


def results_check(trainer, last_loss: list, steps: int) -> dict:
    """The results check (issue 21): what the first ``steps`` optimizer steps from the initial weights on the
    fixed synthetic batches computed, i.e. the first call and the warm-up, which every revision runs alike.
    Taken there, it costs no extra build or trace. Two revisions that compute the same step agree to float
    tolerance; the gate compares these (:mod:`benchmarks.gate.checks`)."""
    import numpy as np

    weights = [np.asarray(w, dtype=np.float64) for w in trainer.get_weights()]
    return {"check_steps": int(steps), "check_loss": float(last_loss[0]) if last_loss else float("nan"),
            "check_weights_l2": float(np.sqrt(sum(float(np.sum(w * w)) for w in weights))),
            "check_weights_sum": float(sum(float(np.sum(w)) for w in weights))}


def _step_records(context: Context, metas, timed, workload, device, peak_memory) -> list[dict]:
    from tfbench.benchmarks.timing import bootstrap_ratio
    from tfbench.implementations import get_approach

    eager_keys = {stub["approach"]: key for key, stub in metas.items() if stub["mode"] == "eager"}
    records = []
    for key, stub in metas.items():
        measured = timed[key]
        if measured.nonfinite:
            records.append({**stub, "status": "failed", "reason": measured.nonfinite_reason})
            continue
        summary = summarize(measured.samples)
        throughput = stub["batch_size"] / summary["median"]
        metrics = {"step_time_s": summary, "noisy": is_noisy(summary), "first_call_s": measured.first_call_s,
                   "throughput_sps": throughput, "flops_per_sample": workload.flops_per_sample,
                   "achieved_gflops": throughput * workload.flops_per_sample / 1e9,
                   "peak_memory_bytes": peak_memory.get(key),
                   # Why its sampling stopped, and how narrow its median's interval was then (benchmarks/budget.py).
                   "stopped_by": measured.stopped_by or "fixed"}
        if measured.ci_rel_halfwidth is not None:
            metrics["ci_rel_halfwidth"] = measured.ci_rel_halfwidth
        eager_key = eager_keys.get(stub["approach"])
        if eager_key is not None:
            ratio, low, high = bootstrap_ratio(timed[eager_key].samples, measured.samples)
            metrics["speedup_vs_eager"] = ratio
            metrics["speedup_vs_eager_ci"] = [low, high]
        known_cost = get_approach(stub["approach"]).known_cost(workload, stub["mode"], stub["steps_per_call"],
                                                                  device_kind=device.kind)
        if known_cost:
            metrics["known_cost"] = known_cost
        if measured.inject_fraction:
            metrics["injected_slowdown"] = measured.inject_fraction
            metrics["injected_s_per_step"] = measured._inject_s / measured.steps_per_call
        records.append({**stub, "metrics": metrics})
    return records


# --- the roofline and the harness's own memory (issue 12) ---------------------------------------------------

ROOF_PREFIX = "roof:"  # a roof probe's key among a group's timed configurations


def _add_roof_probes(context: Context, device, timed: dict, blocks: list) -> list:
    """Add the device's roof probes (:mod:`tfbench.benchmarks.roofline`) to the group as one more block,
    so the peaks a record is divided by were measured in the same rotating rounds as the record."""
    from tfbench.benchmarks.roofline import roof_probes
    from tfbench.benchmarks.timing import Timed

    tf = context.tf
    # On the CPU, as many matmuls at once as the inter-op pool runs ops: one would use one core of N.
    parallel = max(1, tf.config.threading.get_inter_op_parallelism_threads()) if device.kind == "cpu" else 1
    probes = roof_probes(device, parallel=parallel, tf=tf)
    for probe in probes:
        timed[ROOF_PREFIX + probe.name] = Timed(probe.call)
    blocks.append([ROOF_PREFIX + probe.name for probe in probes])
    return probes


def _roofs(probes: list, timed: dict):
    from tfbench.benchmarks.roofline import Roofs

    if not probes:
        return None
    return Roofs.from_samples(probes, {p.name: timed.pop(ROOF_PREFIX + p.name).samples for p in probes})


def _roofline_metrics(workload, record: dict, roofs) -> dict:
    """The record against its group's roofs: exact FLOPs and bytes of its step, the floor, MFU."""
    from tfbench.benchmarks.roofline import step_floor
    from tfbench.errors import Unsupported
    from tfbench.implementations.costs import step_costs
    from tfbench.implementations.interface import TrainConfig

    metrics = {"roofs": roofs.to_json()}
    try:
        ops = step_costs(workload, record["batch_size"], TrainConfig().optimizer.name)
    except Unsupported as error:  # a layer without a cost model: the roofs alone
        return {**metrics, "floor_unavailable": str(error)}
    median = record["metrics"]["step_time_s"]["median"]
    floor = step_floor(ops, roofs)
    model_flops = sum(op.flops for op in ops if op.is_model_flops)
    return {**metrics, "model_flops_per_step": model_flops,
            "elementwise_flops_per_step": sum(op.flops for op in ops if not op.is_model_flops),
            "min_bytes_per_step": sum(op.bytes for op in ops),
            "floor_s": floor.seconds, "floor_compute_s": floor.compute_s, "floor_memory_s": floor.memory_s,
            "fraction_of_floor": floor.seconds / median, "binding_roof": floor.binding_roof,
            "mfu": model_flops / median / (roofs.peak_gflops * 1e9)}


def _preplaced_bytes(bank_x, bank_y, calls_of: dict) -> int:
    """Bytes of the batches the harness places on the device before any configuration is built: the bank,
    and each K's stacks of K batches (copies, so that a call's input is one contiguous tensor)."""
    tensors = [bank_x, bank_y] + [t for xs, ys in calls_of.values() for t in xs + ys]
    return int(sum(t.shape.num_elements() * t.dtype.size for t in tensors))
