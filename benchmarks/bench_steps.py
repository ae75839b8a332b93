"""pytest-benchmark view of the suite, measured the way ``tfbench run`` measures step time.

One benchmark per approach x workload x mode x steps per call K of the ``quick`` profile (batch 128; K 1
and 16, eager only K 1), on the device ``tfbench run --device auto`` picks, with its thread pools. Each
timed call runs K optimizer steps on the same device-resident synthetic batches the harness uses
(:mod:`tfbench.benchmarks.stages.step_time`); the loss is forced and the device synchronised before the
clock stops. The first call (tracing, XLA compilation) and the profile's warm-up calls come before.

pytest-benchmark's figures are seconds per *call* of K steps. Each benchmark's ``extra_info`` holds
``approach``, ``workload``, ``mode``, ``steps_per_call``, ``batch_size``, ``device``, ``threads``,
``first_call_s`` and ``step_time_median_s`` (the median divided by K: what ``tfbench run`` stores as
``step_time_s.median``). Its group is the workload, batch, mode and K: the rows of one group are the
approaches to compare, as in one block of ``tfbench run``.

Recipe, from the repository's root (``-k`` narrows, e.g. ``-k "mlp and function"``)::

    pytest benchmarks --benchmark-autosave           # saves .benchmarks/<machine>/0001_<commit>_*.json
    # ... change the code ...
    pytest benchmarks --benchmark-compare=0001 --benchmark-compare-fail=median:10%
    pytest benchmarks --benchmark-json=bench.json    # or a JSON file of your own

The comparison fails (exit 1, "Performance has regressed") when a median moved more than 10%. On a shared
machine medians move that much from one process to the next; ``tfbench ab`` is the gate built for that
noise (docs/gate.md).

The test suite runs these with ``--benchmark-disable``: each call runs once, unmeasured. ``tfbench run`` is
the fuller harness: interleaved modes, speedups with intervals, rooflines, accuracy.
"""

from __future__ import annotations

import time

import pytest

from tfbench.benchmarks.plan import PROFILES
from tfbench.benchmarks.stages.step_time import configs
from tfbench.implementations import approaches
from tfbench.implementations.workloads import WORKLOADS

PROFILE = PROFILES["quick"]
[BATCH_SIZE] = PROFILE.batch_sizes
CASES = [pytest.param(name, workload, mode, k, id=f"{name}-{workload}-{mode}-k{k}",
                      marks=[pytest.mark.skip(reason=reason)] if (reason := cls.unsupported(WORKLOADS[workload], mode))
                      else [])
         for name, cls in approaches().items() for workload in PROFILE.workloads for mode, k in configs(PROFILE)]


@pytest.fixture(scope="module")
def runtime():
    """TensorFlow with ``tfbench run``'s thread pools (if its runtime is not up yet), and the device."""
    from tfbench.benchmarks import devices
    from tfbench.benchmarks.environment import cpu_count
    from tfbench.benchmarks.suite import set_up_tensorflow

    tf, threads = set_up_tensorflow({"intra_op": PROFILE.intra_op or cpu_count(), "inter_op": cpu_count()})
    [device, *_] = devices.select(devices.detect(tf), "auto")
    return tf, device, threads


@pytest.fixture(scope="module")
def bank(runtime):
    """The harness's device-resident batches, enough for two calls of the largest K."""
    from tfbench.benchmarks.stages.step_time import bank_size, device_batches

    tf, device, _ = runtime
    return device_batches(tf, device, BATCH_SIZE, bank_size(BATCH_SIZE, max(PROFILE.steps_per_call)), seed=0)


@pytest.mark.parametrize(("approach", "workload", "mode", "steps_per_call"), CASES)
def test_train_step(benchmark, runtime, bank, approach, workload, mode, steps_per_call):
    from tfbench.benchmarks.devices import synchronize
    from tfbench.benchmarks.stages.step_time import call_stacks
    from tfbench.benchmarks.timing import Timed, first_and_warmup, force
    from tfbench.implementations import build
    from tfbench.implementations.interface import TrainConfig

    tf, device, threads = runtime
    with tf.device(device.tf_device):
        trainer = build(approach, workload, TrainConfig(mode=mode, steps_per_call=steps_per_call, seed=0))
        call = trainer.runner(*call_stacks(tf, *bank, steps_per_call))
        warmed = Timed(call, steps_per_call=steps_per_call)
        first_and_warmup(warmed, 0 if benchmark.disabled else PROFILE.warmup, lambda: synchronize(device, tf),
                         time.perf_counter)

        def k_steps() -> float:
            loss = force(call())  # the host waits for the loss...
            synchronize(device, tf)  # ...and for every queued device op, before pytest-benchmark reads the clock
            return loss

        benchmark.group = f"{workload} b{BATCH_SIZE} {mode} K{steps_per_call}"
        benchmark.extra_info.update(approach=approach, workload=workload, mode=mode, steps_per_call=steps_per_call,
                                    batch_size=BATCH_SIZE, device=device.name, threads=threads,
                                    first_call_s=warmed.first_call_s)
        loss = benchmark(k_steps)
    if benchmark.stats is not None:  # None under --benchmark-disable
        benchmark.extra_info["step_time_median_s"] = benchmark.stats.stats.median / steps_per_call
    assert loss == loss  # not NaN
