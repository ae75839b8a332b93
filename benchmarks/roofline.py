"""The roofline: how fast this device could run a training step, from its own measured roofs.

The model is Williams, Waterman & Patterson's roofline (CACM 2009): an op
can go no faster than its FLOPs at the device's peak compute rate, nor than
its bytes at the memory bandwidth it can stream. Per op of a training step
(:mod:`implementations.costs`, exact FLOPs and the fewest float32 bytes)::

    floor(op)   = max(flops / peak, bytes / bandwidth(at the op's size))
    floor(step) = sum of the ops' floors

Both roofs are measured in the same run, on the device, interleaved with the
records they divide (:func:`roof_probes`, timed in the same rotating rounds):

* **compute**: the best rate of ``parallel`` independent float32 matmuls
  (as many as the inter-op pool runs side by side), 512^3 to 2048^3. Every
  FLOP is charged at this rate, element-wise ones included, which can only
  lower a floor;
* **memory**: the best rate TensorFlow streams a float32 array through an
  element-wise op (read it, write the result), at working sets from 256 KiB
  (in a core's cache) to 64 MiB (main memory), each way TensorFlow runs such
  ops: one graph op after another in a ``tf.function``, and an XLA loop. An op
  is charged the bandwidth measured at the largest probed size not above its
  own bytes (the smallest size for smaller ops; a larger size's if that was
  faster): bandwidth falls as the working set grows, so this never
  overstates the op's time.

A floor is a lower bound: the ops are assumed to run one after another with
no dispatch cost, element-wise ops fused into their neighbours as
``costs`` states, and each at the better of its two roofs. A record's
``fraction_of_floor`` (floor / median step time) at or below 1 is what the
model predicts; above 1 would mean the model is wrong, not the record.

MFU (model FLOPs utilisation, as nanoGPT and PaLM use it) is the exact
matmul/convolution FLOPs of a step over the step time and the matmul peak.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from tfbench.benchmarks.devices import Device, synchronize

MATMUL_SIZE = 2048
MATMUL_SIZES = (512, 1024, 2048)
# Bytes read + written by one streaming op: in a core's L2, in L3, and in main memory on a typical CPU.
BANDWIDTH_SIZES = (256 << 10, 1 << 20, 4 << 20, 16 << 20, 64 << 20)
# Each bandwidth probe call moves about this much, so one call's fixed cost does not hide the bandwidth.
BYTES_PER_CALL = 128 << 20
MAX_OPS_PER_CALL = 512


def matmul_gflops(device: Device, *, size: int = MATMUL_SIZE, repeats: int = 10, parallel: int = 1,
                  tf=None) -> dict:
    """Best GFLOP/s of ``parallel`` independent ``size``^3 float32 matmuls run at once on ``device``.

    ``parallel`` matches the inter-op thread pool: with one thread per op and
    N ops side by side, a single matmul would use one core of N.
    """
    probe = matmul_probe(device, size=size, parallel=parallel, tf=tf)
    for _ in range(2):
        float(probe.call())
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        float(probe.call())
        synchronize(device, tf)
        seconds.append(time.perf_counter() - start)
    rates = [probe.work / s / 1e9 for s in seconds]
    # A peak is the best the device showed: on a shared machine the median
    # understates it, and a roofline fraction over 100% would follow.
    return {"peak_gflops": float(np.max(rates)), "peak_gflops_median": float(np.median(rates)),
            "peak_size": size, "peak_parallel": parallel, "peak_samples_gflops": rates}


@dataclass
class Probe:
    """A call whose best rate is one of the device's roofs: ``work`` FLOPs or bytes per call."""

    name: str  # "matmul_2048", "stream_256KiB_graph", ...
    roof: str  # "compute" | "memory"
    work: float
    call: Callable[[], object]
    size: int = 0  # bytes read + written per op (memory probes)


def matmul_probe(device: Device, *, size: int = MATMUL_SIZE, parallel: int = 1, tf=None) -> Probe:
    if tf is None:
        import tensorflow as tf
    with tf.device(device.tf_device):
        pairs = [(tf.random.stateless_uniform((size, size), seed=(1, i)),
                  tf.random.stateless_uniform((size, size), seed=(2, i))) for i in range(parallel)]
        # Summing each product gives a scalar to force cheaply (n^2 adds next to 2 n^3 FLOPs).
        products = tf.function(lambda pairs: tf.add_n([tf.reduce_sum(tf.linalg.matmul(a, b)) for a, b in pairs]))
    return Probe(f"matmul_{size}", "compute", parallel * 2 * size**3, lambda: products(pairs))


def _label(nbytes: int) -> str:
    return f"{nbytes >> 20}MiB" if nbytes >= 1 << 20 else f"{nbytes >> 10}KiB"


def bandwidth_probes(device: Device, sizes: Sequence[int] = BANDWIDTH_SIZES, tf=None) -> list[Probe]:
    """Streaming element-wise ops at each working set, as a graph op chain and (where XLA runs) an XLA loop.

    Each op reads ``size / 2`` bytes of float32 and writes as many. The chain alternates ``+`` and ``*``
    by scalars passed in as arguments: a chain of one associative op by constants would be folded into one
    op by TensorFlow's graph optimizer. The result is sliced outside the compiled call, so no compiler can
    skip computing the elements that are not returned.
    """
    if tf is None:
        import tensorflow as tf
    found = []
    for size in sizes:
        ops = int(np.clip(BYTES_PER_CALL // size, 8, MAX_OPS_PER_CALL))
        with tf.device(device.tf_device):
            x = tf.random.stateless_uniform((size // 8,), seed=(3, 4))
            scalars = [tf.constant(1.0 + 1e-6 * i) for i in range(ops)]
            graph = tf.function(_chain(ops), jit_compile=False)
            found.append(Probe(f"stream_{_label(size)}_graph", "memory", ops * size,
                               lambda f=graph, x=x, s=scalars: f(x, s)[0], size))
            if device.unsupported_reason("xla") is None:
                xla = tf.function(_loop(ops, tf), jit_compile=True)
                found.append(Probe(f"stream_{_label(size)}_xla", "memory", ops * size,
                                   lambda f=xla, x=x, s=scalars[0]: f(x, s)[0], size))
    return found


def _chain(ops: int) -> Callable:
    def chain(x, scalars):
        for i in range(ops):
            x = x * scalars[i] if i % 2 else x + scalars[i]
        return x
    return chain


def _loop(ops: int, tf) -> Callable:
    def loop(x, scalar):
        return tf.while_loop(lambda step, y: step < ops, lambda step, y: (step + 1, y * scalar), (0, x))[1]
    return loop


def roof_probes(device: Device, *, parallel: int = 1, matmul_sizes: Sequence[int] = MATMUL_SIZES,
                sizes: Sequence[int] = BANDWIDTH_SIZES, tf=None) -> list[Probe]:
    """The compute probes (matmuls of each size) and the memory probes of ``device``.

    The compute roof is the best rate over several matmul sizes, the small ones included: a call of a
    few milliseconds has as many chances as a training step to run in a quiet moment of a shared
    machine, where one 2048^3 call lasts long enough to share the cores with whatever else runs.
    """
    compute = [matmul_probe(device, size=size, parallel=parallel, tf=tf) for size in matmul_sizes]
    return compute + bandwidth_probes(device, sizes, tf=tf)


@dataclass(frozen=True)
class Roofs:
    """A device's measured roofs: peak matmul GFLOP/s and streaming GB/s per working-set size (bytes)."""

    peak_gflops: float
    bandwidth_gbs: dict[int, float]
    by_probe: dict[str, float] = field(default_factory=dict)  # each probe's best rate, GFLOP/s or GB/s

    def __post_init__(self) -> None:
        if not self.peak_gflops > 0 or not self.bandwidth_gbs or min(self.bandwidth_gbs.values()) <= 0:
            raise ValueError(f"roofs must be positive rates, got {self.peak_gflops} GFLOP/s and "
                             f"{self.bandwidth_gbs} GB/s")

    @classmethod
    def from_samples(cls, probes: Sequence[Probe], samples: dict[str, Sequence[float]]) -> Roofs:
        """The best rate of each probe (``samples``: seconds per call by probe name); memory probes of one
        size keep the better of their ways."""
        peak, bandwidth, by_probe = 0.0, {}, {}
        for probe in probes:
            rate = by_probe[probe.name] = probe.work / min(samples[probe.name]) / 1e9
            if probe.roof == "compute":
                peak = max(peak, rate)
            else:
                bandwidth[probe.size] = max(bandwidth.get(probe.size, 0.0), rate)
        return cls(peak, bandwidth, by_probe)

    def bandwidth_at(self, nbytes: float) -> float:
        """GB/s for an op moving ``nbytes``: what the largest probed size not above it reached (the smallest
        size's for smaller ops), or more if a larger size reached more. Bandwidth falls as the working set
        grows, so this bounds the op's rate from above even when a small probe measured low."""
        sizes = sorted(self.bandwidth_gbs)
        own = max([s for s in sizes if s <= nbytes] or sizes[:1])
        return max(self.bandwidth_gbs[s] for s in sizes if s >= own)

    def to_json(self) -> dict:
        return {"peak_gflops": self.peak_gflops,
                "bandwidth_gbs": {str(size): rate for size, rate in sorted(self.bandwidth_gbs.items())},
                "by_probe": dict(self.by_probe)}


@dataclass(frozen=True)
class Floor:
    """The least time a step can take under the roofline model, and what binds it."""

    seconds: float
    compute_s: float  # summed floors of the ops bound by compute
    memory_s: float  # summed floors of the ops bound by memory
    per_op: tuple[tuple[str, float, str], ...]  # (op name, floor seconds, "compute" | "memory")

    @property
    def binding_roof(self) -> str:
        return "compute" if self.compute_s >= self.memory_s else "memory"


def step_floor(ops: Sequence, roofs: Roofs) -> Floor:
    """Sum over ``ops`` (``costs.OpCost``) of max(flops / peak, bytes / bandwidth at the op's size)."""
    per_op, compute, memory = [], 0.0, 0.0
    for op in ops:
        compute_s = op.flops / (roofs.peak_gflops * 1e9)
        memory_s = op.bytes / (roofs.bandwidth_at(op.bytes) * 1e9) if op.bytes else 0.0
        if compute_s >= memory_s:
            compute += compute_s
            per_op.append((op.name, compute_s, "compute"))
        else:
            memory += memory_s
            per_op.append((op.name, memory_s, "memory"))
    return Floor(compute + memory, compute, memory, tuple(per_op))
