"""The roofline: the device's dense float32 matmul rate, measured in the same run.

A training step of these networks is mostly matmuls (and a convolution,
itself a matmul), so ``peak rate / FLOPs per training sample`` is the most
samples per second the device could train; a record's throughput is reported
as a fraction of it. Measured, not taken from a datasheet: on this 2-core CPU
it is about 200 GFLOP/s at 2048^3.
"""

from __future__ import annotations

import time

import numpy as np

from tfbench.benchmarks.devices import Device, synchronize


def matmul_gflops(device: Device, *, size: int = 2048, repeats: int = 10, parallel: int = 1, tf=None) -> dict:
    """Best GFLOP/s of ``parallel`` independent ``size``^3 float32 matmuls run at once on ``device``.

    ``parallel`` matches the inter-op thread pool: with one thread per op and
    N ops side by side, a single matmul would use one core of N.
    """
    if tf is None:
        import tensorflow as tf
    with tf.device(device.tf_device):
        pairs = [(tf.random.stateless_uniform((size, size), seed=(1, i)),
                  tf.random.stateless_uniform((size, size), seed=(2, i))) for i in range(parallel)]
        # Summing each product gives a scalar to force cheaply (n^2 adds next to 2 n^3 FLOPs).
        products = tf.function(lambda pairs: tf.add_n([tf.reduce_sum(tf.linalg.matmul(a, b)) for a, b in pairs]))
        for _ in range(2):
            float(products(pairs))
        seconds = []
        for _ in range(repeats):
            start = time.perf_counter()
            float(products(pairs))
            synchronize(device, tf)
            seconds.append(time.perf_counter() - start)
    rates = [parallel * 2 * size**3 / s / 1e9 for s in seconds]
    # A peak is the best the device showed: on a shared machine the median
    # understates it, and a roofline fraction over 100% would follow.
    return {"peak_gflops": float(np.max(rates)), "peak_gflops_median": float(np.median(rates)),
            "peak_size": size, "peak_parallel": parallel, "peak_samples_gflops": rates}
