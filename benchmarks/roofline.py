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

from benchmarks.devices import Device, synchronize


def matmul_gflops(device: Device, *, size: int = 2048, repeats: int = 10, tf=None) -> dict:
    """Best GFLOP/s of ``size``^3 float32 matmuls on ``device`` (2 n^3 FLOPs each)."""
    if tf is None:
        import tensorflow as tf
    with tf.device(device.tf_device):
        a = tf.random.stateless_uniform((size, size), seed=(1, 2))
        b = tf.random.stateless_uniform((size, size), seed=(3, 4))
        # Summing the product gives a scalar to force cheaply (n^2 adds next to 2 n^3 FLOPs).
        product = tf.function(lambda a, b: tf.reduce_sum(tf.linalg.matmul(a, b)))
        for _ in range(2):
            float(product(a, b))
        seconds = []
        for _ in range(repeats):
            start = time.perf_counter()
            float(product(a, b))
            synchronize(device, tf)
            seconds.append(time.perf_counter() - start)
    rates = [2 * size**3 / s / 1e9 for s in seconds]
    # A peak is the best the device showed: on a shared machine the median
    # understates it, and a roofline fraction over 100% would follow.
    return {"peak_gflops": float(np.max(rates)), "peak_gflops_median": float(np.median(rates)),
            "peak_size": size, "peak_samples_gflops": rates}
