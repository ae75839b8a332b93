"""Mixed precision: does ``mixed_bfloat16`` or ``mixed_float16`` pay, per approach, on this device?

For each device and workload, every approach under each policy (``float32``, ``mixed_bfloat16``,
``mixed_float16``; see :mod:`tfbench.implementations.precision` for how each style does it) is timed in
function mode, K=1, batch 128, interleaved in one process: an approach's three policies form a block timed
back to back, so ``vs_float32`` (policy median / float32 median) is a ratio measured side by side, with a
paired block-bootstrap interval. Then each is trained from the same initial weights on the real dataset for
the profile's ``precision_epochs`` (function mode), and ``accuracy_delta`` is its test accuracy minus
float32's after the same epochs. Without the dataset the step times are still recorded, the accuracy not
(the record's reason says why).

The verdict (:func:`verdict`): **hurts accuracy** if the accuracy fell more than 1 point (or training
diverged); else **pays** if the policy is at least 5% faster with the whole interval below 1; **slower** if
at least 5% slower with the whole interval above 1; else **no gain**.

A policy the device cannot run (a probe of its ops in the compute dtype fails: :func:`policy_unsupported`)
is recorded ``unsupported`` with the error. The same code runs on a GPU or an Apple GPU (tensorflow-metal):
the timing and training run under the device's ``tf.device`` and sync.
"""

from __future__ import annotations

import re
import time

from tfbench.benchmarks.stages.base import Context, Job, failure

KIND = "mixed_precision"
FLAGS = ("approach", "workload", "batch_size", "samples", "dataset", "data_dir", "no_verify")
POLICIES = ("float32", "mixed_bfloat16", "mixed_float16")
MODE = "function"
BATCH_SIZE = 128
ACCURACY_DROP = 0.01  # more than a point of test accuracy lost: hurts accuracy
SPEED_MARGIN = 0.05  # at least 5% faster (slower), with the whole interval below (above) 1


def verdict(vs_float32: float, interval: list[float] | None, accuracy_delta: float | None,
            diverged: bool = False) -> str:
    """pays / no gain / slower / hurts accuracy, by the thresholds of the module docstring."""
    if diverged or (accuracy_delta is not None and accuracy_delta < -ACCURACY_DROP):
        return "hurts accuracy"
    low, high = interval if interval else (vs_float32, vs_float32)
    if vs_float32 <= 1 - SPEED_MARGIN and high < 1:
        return "pays"
    if vs_float32 >= 1 + SPEED_MARGIN and low > 1:
        return "slower"
    return "no gain"


def policy_unsupported(tf, device, policy: str) -> str | None:
    """Why ``device`` cannot run ``policy``, or None: a tiny convolution, matmul, bias add and ReLU, forward
    and backward, in the policy's compute dtype under ``tf.function`` (what every approach's step uses).

    A kernel TensorFlow lacks for a dtype on a device (e.g. a plugin's, such as tensorflow-metal's) fails
    here with its own error, which becomes the reason."""
    from tfbench.implementations.precision import compute_dtype

    if policy == "float32":
        return None
    dtype = compute_dtype(policy)

    try:
        with tf.device(device.tf_device):
            kernel = tf.Variable(tf.ones((3, 3, 1, 4)))  # float32 master weights, as the approaches keep
            dense = tf.Variable(tf.ones((64, 10)))

            def probe():
                x = tf.cast(tf.ones((2, 8, 8, 1)), dtype)
                with tf.GradientTape() as tape:
                    h = tf.nn.relu(tf.nn.conv2d(x, tf.cast(kernel, dtype), 1, "SAME"))
                    h = tf.nn.max_pool2d(h, 2, 2, "VALID")
                    logits = tf.matmul(tf.reshape(h, (2, -1)), tf.cast(dense, dtype)) + tf.cast(1.0, dtype)
                    loss = tf.reduce_mean(tf.cast(logits, tf.float32))
                return tape.gradient(loss, [kernel, dense])

            grads = tf.function(probe)()
            [float(tf.reduce_sum(g)) for g in grads]
    except Exception as error:
        return f"{device.name} cannot compute in {dtype}: {type(error).__name__}: {_cause(error)}"[:500]
    return None


def _cause(error: BaseException) -> str:
    """The line of a TensorFlow error that says what is missing: errors raised inside a function start with
    "in user code:" and a missing kernel ("No OpKernel was registered to support Op 'Conv2D' ... T=DT_BFLOAT16")
    is followed by the list of the kernels that are registered; else the last line."""
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    telling = [line for line in lines if re.search(r"OpKernel|No registered|not supported|Unimplemented", line)]
    return (telling or lines or [""])[0 if telling else -1]


def batch_size(plan) -> int:
    return BATCH_SIZE if BATCH_SIZE in plan.batch_sizes else min(plan.batch_sizes)


def jobs(context: Context) -> list[Job]:
    plan, found = context.plan, []
    for device in context.devices:
        for workload in plan.workloads:
            stubs = [context.stub(KIND, approach=approach, workload=workload, mode=MODE, device=device.name,
                                  batch_size=batch_size(plan), dataset=plan.dataset, variant=policy)
                     for approach in plan.approaches for policy in POLICIES]
            found.append(Job(KIND, {"workload": workload, "device": device}, stubs))
    return found


def run(context: Context, job: Job) -> list[dict]:
    from tfbench.benchmarks import devices as dev
    from tfbench.benchmarks.stages.step_time import bank_size, call_stacks, device_batches
    from tfbench.benchmarks.timing import Timed, first_and_warmup, measure_interleaved
    from tfbench.implementations import build, get_approach
    from tfbench.implementations.interface import TrainConfig
    from tfbench.implementations.workloads import get_workload

    tf, plan, device = context.tf, context.plan, job.params["device"]
    workload = get_workload(job.params["workload"])
    sync = lambda: dev.synchronize(device, tf)  # noqa: E731
    probed = {policy: policy_unsupported(tf, device, policy) for policy in POLICIES}
    records, metas = [], {}
    for stub in job.stubs:
        reason = (get_approach(stub["approach"]).unsupported(workload, MODE) or device.unsupported_reason(MODE)
                  or probed[stub["variant"]])
        if reason:
            records.append({**stub, "status": "unsupported", "reason": reason})
        else:
            metas[stub["id"]] = stub
    if not metas:
        return records
    size = batch_size(plan)
    bank_x, bank_y = device_batches(tf, device, size, bank_size(size, 1), plan.seed)
    timed, blocks = {}, {}
    with tf.device(device.tf_device):
        calls = call_stacks(tf, bank_x, bank_y, 1)
        for key, stub in list(metas.items()):
            try:
                trainer = build(stub["approach"], workload,
                                TrainConfig(mode=MODE, seed=plan.seed, precision=stub["variant"]))
                timed[key] = Timed(trainer.runner(*calls))
                first_and_warmup(timed[key], plan.warmup, sync, time.perf_counter)
            except Exception as error:  # this policy fails to build or run; the others go on
                records.append({**metas.pop(key), "status": "failed", "reason": failure(error)})
                timed.pop(key, None)
                continue
            blocks.setdefault(stub["approach"], []).append(key)
        if timed:
            measure_interleaved(timed, sync=sync, blocks=list(blocks.values()), **context.sampling())
    accuracy = _accuracies(context, metas, device)
    return records + _records(metas, timed, accuracy)


def _accuracies(context: Context, metas: dict, device) -> dict:
    """Record id -> (test accuracy or None, diverged?, reason or None, epochs): each policy trained to accuracy."""
    from tfbench.benchmarks.training import train
    from tfbench.errors import TrainingDiverged
    from tfbench.implementations.interface import TrainConfig

    plan = context.plan
    data, skipped = context.dataset_or_skip(plan.dataset, list(metas.values()))
    if skipped:
        return {key: (None, False, f"accuracy not measured: {skipped[0]['reason']}", None) for key in metas}
    epochs = plan.precision_epochs or plan.accuracy_epochs
    found = {}
    for key, stub in metas.items():
        try:
            with context.tf.device(device.tf_device):
                result = train(stub["approach"], stub["workload"],
                               TrainConfig(mode=MODE, seed=plan.seed, precision=stub["variant"]), data,
                               epochs=epochs, batch_size=plan.accuracy_batch_size, seed=plan.seed)
            found[key] = (result["test_accuracy"], False, None, epochs)
        except TrainingDiverged as error:
            found[key] = (None, True, f"training diverged: {error}", epochs)
        except Exception as error:
            found[key] = (None, False, f"accuracy not measured: {failure(error)}", None)
    return found


def _records(metas: dict, timed: dict, accuracy: dict) -> list[dict]:
    from tfbench.benchmarks.results import is_noisy, summarize
    from tfbench.benchmarks.timing import bootstrap_ratio

    baseline = {stub["approach"]: key for key, stub in metas.items() if stub["variant"] == "float32"}
    records = []
    for key, stub in metas.items():
        measured = timed.get(key)
        if measured is None:
            continue
        if measured.nonfinite:
            records.append({**stub, "status": "failed", "reason": measured.nonfinite_reason})
            continue
        summary = summarize(measured.samples)
        test_accuracy, diverged, reason, epochs = accuracy.get(key, (None, False, None, None))
        policy = stub["variant"]
        metrics = {"step_time_s": summary, "noisy": is_noisy(summary), "first_call_s": measured.first_call_s,
                   "throughput_sps": stub["batch_size"] / summary["median"], "precision_policy": policy,
                   "loss_scaling": policy == "mixed_float16"}
        if test_accuracy is not None:  # absent, not null, when it was not measured (the reason says why)
            metrics.update(test_accuracy=test_accuracy, epochs=epochs)
        base = baseline.get(stub["approach"])
        if policy == "float32":
            metrics.update(vs_float32=1.0, accuracy_delta=0.0 if test_accuracy is not None else None)
        elif base is not None and base in timed and not timed[base].nonfinite:
            ratio, low, high = bootstrap_ratio(measured.samples, timed[base].samples)
            base_accuracy = accuracy.get(base, (None,))[0]
            delta = (test_accuracy - base_accuracy) if None not in (test_accuracy, base_accuracy) else None
            metrics.update(vs_float32=ratio, vs_float32_ci=[low, high], accuracy_delta=delta,
                           verdict=verdict(ratio, [low, high], delta, diverged))
        else:
            metrics.update(vs_float32=None, accuracy_delta=None)
            reason = "; ".join(filter(None, [reason, "no float32 record of this approach to compare with"]))
        records.append({**stub, "metrics": metrics, "reason": reason})
    return records
