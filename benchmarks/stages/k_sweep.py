"""The K sweep: where running more optimizer steps per compiled call stops paying.

Each call of a compiled step has a fixed cost (launching the function, Python, the sync), which K steps per
call share. The sweep times K = 1, 2, 4, ... up to the profile's ``k_sweep_max`` (64 in the full profile)
for each approach x workload in ``function`` and ``xla`` mode at batch 128, and finds the **knee**: the
smallest K from which on every doubling of K gains under 5% (:func:`knee`).

Timed as the step-time stage times (its device-resident batches and K-stacks, ``measure_interleaved``):
one job per device and workload, every configuration in one process; the K values of one approach and
mode form a block, timed back to back, so that the ratio of two K is measured on the same machine state.

Noise: the knee is found from the **medians**, and each doubling's ratio t(2K) / t(K) is stored with its
paired block-bootstrap interval (``k_doubling_ratios``), beside each median's own interval
(``k_step_time_ci``): a knee whose deciding ratio's interval straddles 0.95 is a knee within the noise.
"""

from __future__ import annotations

import time

from tfbench.benchmarks.stages.base import Context, Job, failure, split_supported

KIND = "k_sweep"
FLAGS = ("approach", "workload", "mode", "batch_size", "samples")
MODES = ("function", "xla")  # eager has no call to amortise
BATCH_SIZE = 128
GAIN = 0.05  # a doubling of K that saves less than this fraction of the step time has stopped paying


def k_values(k_max: int) -> list[int]:
    """1, 2, 4, ... up to ``k_max`` (``k_max`` itself last if it is no power of two)."""
    values, k = [], 1
    while k < k_max:
        values.append(k)
        k *= 2
    return values + [k_max]


def knee(ks: list[int], medians: list[float | None], gain: float = GAIN) -> int | None:
    """The smallest K from which on each next measured K is less than ``gain`` faster per step; None when
    the last step of the sweep still gains ``gain`` or more (or fewer than two K were measured).

    K values whose median is None (failed) are left out: the next measured K stands in for the doubling.
    """
    curve = [(k, t) for k, t in zip(ks, medians) if t is not None]
    if len(curve) < 2:
        return None
    found = None
    for (k, t), (_, t_next) in zip(curve, curve[1:]):
        if t_next > (1 - gain) * t:  # this doubling gains under `gain`
            found = k if found is None else found
        else:  # it still pays: the knee, if any, lies further on
            found = None
    return found


def median_interval(samples: list[float]) -> list[float]:
    """[low, high]: the block-bootstrap interval of the samples' median (the step-time stage's bootstrap,
    with a denominator of ones, so that autocorrelated samples are resampled in blocks the same way)."""
    from tfbench.benchmarks.timing import bootstrap_ratio

    _, low, high = bootstrap_ratio(samples, [1.0] * len(samples))
    return [low, high]


def batch_size(plan) -> int:
    """Batch 128 when the plan has it (the full profile has four), else its smallest (a --batch-size run)."""
    return BATCH_SIZE if BATCH_SIZE in plan.batch_sizes else min(plan.batch_sizes)


def config_name(record_id: str, k: int) -> str:
    return f"{record_id}@K{k}"


def jobs(context: Context) -> list[Job]:
    plan, found = context.plan, []
    modes = [m for m in plan.modes if m in MODES]
    for device in context.devices:
        for workload in plan.workloads:
            stubs = [context.stub(KIND, approach=approach, workload=workload, mode=mode, device=device.name,
                                  batch_size=batch_size(plan))
                     for mode in modes for approach in plan.approaches]
            if stubs:
                found.append(Job(KIND, {"workload": workload, "device": device}, stubs))
    return found


def warmup_calls(warmup: int, k: int) -> int:
    """Warm-up calls at K: the profile's warm-up in steps, at least one call (a K=64 CNN call is ~1 s)."""
    return max(1, min(warmup, 16 // k))


def run(context: Context, job: Job) -> list[dict]:
    from tfbench.benchmarks import devices as dev
    from tfbench.benchmarks.stages.step_time import call_stacks, device_batches
    from tfbench.benchmarks.timing import Timed, first_and_warmup, measure_interleaved
    from tfbench.implementations import build, get_approach
    from tfbench.implementations.interface import TrainConfig
    from tfbench.implementations.workloads import get_workload

    tf, plan, device = context.tf, context.plan, job.params["device"]
    workload = get_workload(job.params["workload"])
    sync = lambda: dev.synchronize(device, tf)  # noqa: E731
    records, metas = split_supported(job.stubs, lambda stub: get_approach(stub["approach"]).unsupported(
        workload, stub["mode"]) or device.unsupported_reason(stub["mode"]))
    if not metas:
        return records
    ks = k_values(plan.k_sweep_max)
    size = batch_size(plan)
    # One call of the largest K: every K cycles through the same batches (their values do not change a
    # step's time), so the sweep holds one bank, not one per K.
    bank_x, bank_y = device_batches(tf, device, size, max(ks), plan.seed)
    timed, errors, blocks = {}, {}, []
    with tf.device(device.tf_device):
        calls_of = {k: call_stacks(tf, bank_x, bank_y, k) for k in ks}
        for record_key, stub in metas.items():
            block = []
            for k in ks:
                try:
                    trainer = build(stub["approach"], workload,
                                    TrainConfig(mode=stub["mode"], steps_per_call=k, seed=plan.seed))
                    measured = Timed(trainer.runner(*calls_of[k]), steps_per_call=k)
                    first_and_warmup(measured, warmup_calls(plan.warmup, k), sync, time.perf_counter)
                except Exception as error:  # this K fails (e.g. out of memory); the sweep goes on
                    errors[(record_key, k)] = failure(error)
                    continue
                timed[config_name(record_key, k)] = measured
                block.append(config_name(record_key, k))
            if block:
                blocks.append(block)
        if timed:
            sampling = context.sampling()
            if not plan.samples:  # half the profile's rounds, one call at least: 7 K x every configuration
                sampling.update(rounds=max(3, plan.rounds // 2), min_per_round=1)
            measure_interleaved(timed, sync=sync, blocks=blocks, **sampling)
    return records + [sweep_record(stub, ks, timed, errors) for stub in metas.values()]


def sweep_record(stub: dict, ks: list[int], timed: dict, errors: dict) -> dict:
    """One approach x mode's sweep from its timed configurations (:func:`config_name` -> Timed) and the
    errors of the K that could not be built (``(record id, K) -> reason``)."""
    from tfbench.benchmarks.timing import bootstrap_ratio

    key = stub["id"]
    samples = {}
    for k in ks:
        measured = timed.get(config_name(key, k))
        if measured is None or not measured.samples:
            continue
        if measured.nonfinite:
            errors[(key, k)] = measured.nonfinite_reason
            continue
        samples[k] = measured.samples
    if not samples:
        reasons = "; ".join(f"K={k}: {errors[(key, k)]}" for k in ks if (key, k) in errors)
        return {**stub, "status": "failed", "reason": reasons or "no K could be timed"}
    import numpy as np

    medians = [float(np.median(samples[k])) if k in samples else None for k in ks]
    measured_ks = [k for k in ks if k in samples]
    ratios = []
    for k, k_next in zip(measured_ks, measured_ks[1:]):
        ratio, low, high = bootstrap_ratio(samples[k_next], samples[k])
        ratios.append([ratio, low, high])
    metrics = {"k_values": ks, "k_step_time_s": medians,
               "k_step_time_ci": [median_interval(samples[k]) if k in samples else None for k in ks],
               "k_doubling_ratios": ratios, "knee_k": knee(ks, medians)}
    failed = [f"K={k}: {errors[(key, k)]}" for k in ks if (key, k) in errors]
    return {**stub, "metrics": metrics, "reason": "; ".join(failed) if failed else None}
