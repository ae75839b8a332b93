"""pytest-benchmark view of the suite: one benchmark per approach x workload x mode.

For users used to pytest-benchmark::

    pytest benchmarks --benchmark-json=base.json
    pytest benchmarks --benchmark-compare=0001 --benchmark-compare-fail=median:10%

Each benchmark is one optimizer step on device-resident synthetic batches,
its loss forced before the clock stops. (The test suite runs these with
``--benchmark-disable``: executed once, not measured.) ``tfbench run`` is the
fuller harness: interleaved modes, speedups, rooflines, accuracy.
"""

from __future__ import annotations

import pytest

from tfbench.implementations import approaches
from tfbench.implementations.workloads import WORKLOADS

BATCH_SIZE = 128
CASES = [pytest.param(name, workload, mode, id=f"{name}-{workload}-{mode}",
                      marks=[pytest.mark.skip(reason=reason)] if (reason := cls.unsupported(WORKLOADS[workload], mode))
                      else [])
         for name, cls in approaches().items() for workload in ("mlp", "cnn") for mode in ("eager", "function", "xla")]


@pytest.fixture(scope="module")
def batches():
    import tensorflow as tf

    from tfbench.implementations.datasets import synthetic

    train, _ = synthetic(4 * BATCH_SIZE, 1, seed=0)
    xs = tf.constant(train.x.reshape(4, 1, BATCH_SIZE, 28, 28, 1))
    ys = tf.constant(train.y.reshape(4, 1, BATCH_SIZE))
    return list(xs), list(ys)


@pytest.mark.parametrize(("approach", "workload", "mode"), CASES)
def test_train_step(benchmark, batches, approach, workload, mode):
    from tfbench.implementations import build
    from tfbench.implementations.interface import TrainConfig

    trainer = build(approach, workload, TrainConfig(mode=mode))
    call = trainer.runner(*batches)
    float(call())  # the first call traces/compiles: not part of the measurement
    loss = benchmark(lambda: float(call()))
    assert loss == loss  # not NaN
