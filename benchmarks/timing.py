"""Honest timing: force the result, synchronise the device, *then* read the clock.

The method (after nanoGPT's ``bench.py``, and against the mistake of Keras's
own custom-loop benchmark, which adds up loss tensors without waiting):

1. the first call (tracing, XLA compilation) is timed on its own;
2. warm-up calls follow, untimed;
3. each timed sample is one call of K steps: ``float(loss)`` makes the host
   wait for the value, ``sync()`` waits for every queued device op, and only
   then is the clock read; the sample is divided by K;
4. the configurations that are compared (eager / function / xla, K=1 / K=16)
   are measured *interleaved*, round by round in a rotating order, so that
   the machine's drift hits all of them alike and their ratio is fair.

The clock and the sync are arguments, so tests use a fake clock.

One hidden hook serves the regression gate's duet schedule (``tfbench ab
--schedule duet``), which runs the baseline's and the candidate's processes at
the same time: when the environment variable ``TFBENCH_ROUND_BARRIER`` holds
two file descriptors ``READY,GO`` (pipes the gate passes to the process),
:func:`measure_interleaved` waits at a barrier before each round: it writes one
line naming the round to READY, then blocks until the gate writes one byte to
GO, so that both processes start each round together. Unset (every normal
run), the hook does nothing, outside the timed calls either way.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

Clock = Callable[[], float]


def force(result) -> float:
    """Wait for a loss tensor's value (the host cannot read it before the work that makes it is done)."""
    return float(result)


def spin(seconds: float, clock: Clock = time.perf_counter) -> None:
    """Busy-wait: real work on the core, for injecting a known slowdown (gate calibration)."""
    end = clock() + seconds
    while clock() < end:
        pass


@dataclass
class Timed:
    """One configuration being measured: a call of ``steps_per_call`` steps."""

    call: Callable[[], object]
    steps_per_call: int = 1
    # Busy-work added to every timed call, as a fraction of the warm-up call time (regression injection).
    inject_fraction: float = 0.0
    first_call_s: float | None = None
    samples: list[float] = field(default_factory=list)  # seconds per step
    calls: int = 0  # calls made so far: the first, the warm-up, the timed ones
    nonfinite_call: int | None = None  # the first call whose loss was NaN or infinite
    # Why sampling stopped (precision | max_samples | budget | fixed) and the median interval's relative
    # half-width then (benchmarks/budget.py).
    stopped_by: str | None = None
    ci_rel_halfwidth: float | None = None
    _inject_s: float = 0.0

    @property
    def nonfinite(self) -> bool:
        return self.nonfinite_call is not None

    @property
    def nonfinite_reason(self) -> str | None:
        """A failed record's reason: where the loss first was not finite (calls count from the first)."""
        if self.nonfinite_call is None:
            return None
        k, n = self.steps_per_call, self.nonfinite_call
        steps = f"step {n}" if k == 1 else f"steps {(n - 1) * k + 1}-{n * k}"
        return f"the loss became NaN or infinite at call {n} ({steps}, counting the first call and the warm-up)"

    def timed_call(self, sync: Callable[[], None], clock: Clock) -> float:
        start = clock()
        value = force(self.call())
        sync()
        if self._inject_s:
            spin(self._inject_s, clock)
        elapsed = clock() - start
        self.calls += 1
        if not np.isfinite(value) and self.nonfinite_call is None:
            self.nonfinite_call = self.calls
        return elapsed


def first_and_warmup(timed: Timed, warmup: int, sync: Callable[[], None], clock: Clock) -> None:
    """Time the first call on its own (trace/compile), then run ``warmup`` calls untimed."""
    timed.first_call_s = timed.timed_call(sync, clock)
    warm = [timed.timed_call(sync, clock) for _ in range(warmup)]
    if timed.inject_fraction and warm:
        # Sized on the steady state: the later half of the warm-up, once caches and allocators settled.
        timed._inject_s = timed.inject_fraction * float(np.median(warm[len(warm) // 2:]))


def reference_kernel() -> Callable[[], float]:
    """A fixed TensorFlow computation, timed beside the records to gauge this process's speed.

    On a shared machine a whole process runs fast or slow (thread placement,
    memory layout, neighbours): its two gate records' medians correlate 0.74
    from process to process, while a NumPy matmul timed in the same processes
    tracked them far less well. This kernel runs in TensorFlow's own thread
    pools, as the records do: an MLP-sized forward pass, never changed by the
    suite's code. The regression gate divides each run's step times by its
    reference time (``tfbench compare``). It would move with TensorFlow
    itself, so ``tfbench ab`` does not normalise when two Pythons (two
    TensorFlow installs) are compared.
    """
    import tensorflow as tf

    rng = np.random.default_rng(0)
    x = tf.constant(rng.random((128, 784), dtype=np.float32))
    w1 = tf.constant(rng.random((784, 256), dtype=np.float32) / 28)
    w2 = tf.constant(rng.random((256, 128), dtype=np.float32) / 16)
    forward = tf.function(lambda: tf.reduce_sum(tf.nn.relu(tf.nn.relu(x @ w1) @ w2)))
    return lambda: float(forward())


def measure_interleaved(configs: dict[str, Timed], *, rounds: int, round_budget_s: float = 0.08,
                        min_per_round: int = 2, max_per_round: int = 200, warmup: int = 3,
                        sync: Callable[[], None] = lambda: None, clock: Clock = time.perf_counter,
                        blocks: list[list[str]] | None = None, on_order: Callable[[list[str]], None] | None = None,
                        stopping=None, time_budget_s: float | None = None,
                        on_sampled: Callable[[float], None] | None = None) -> dict[str, Timed]:
    """Measure every configuration in ``rounds`` rounds, in a rotating order.

    In each round each configuration gets about ``round_budget_s`` seconds of
    calls (at least ``min_per_round``), sized from its warm-up, so a 30 ms
    eager step and a 0.3 ms compiled step both get useful sample counts.

    ``blocks`` groups configurations that are compared with each other (the
    approaches of one mode and K): a block's members run back to back, the
    blocks rotate from round to round, and so do the members inside each
    block, so that no configuration always runs first after a change of
    block (a position that ran up to 1.45x slower here). Without blocks each
    configuration is its own block.

    With a ``stopping`` rule (:class:`tfbench.benchmarks.budget.StoppingRule`)
    the rounds go on, at least ``rounds`` of them, until each configuration
    has stopped: when its median's interval is narrow enough, at its sample
    cap, or when the group has spent ``time_budget_s`` seconds sampling (each
    configuration still gets the rule's minimum samples). A stopped
    configuration drops out of the later rounds; the others keep their order.
    ``on_sampled`` is told the seconds the sampling took.
    """
    names = list(configs)
    blocks = blocks or [[name] for name in names]
    if sorted(n for block in blocks for n in block) != sorted(names):
        raise ValueError("blocks must hold each configuration exactly once")
    for name in names:
        if configs[name].first_call_s is None:  # the caller may have warmed a configuration up already
            first_and_warmup(configs[name], warmup, sync, clock)
    started = clock() if on_sampled else 0.0
    probes = {name: configs[name].timed_call(sync, clock) for name in names}
    if stopping is not None:
        _measure_until_stopped(configs, blocks, probes, rounds=rounds, rule=stopping, time_budget_s=time_budget_s,
                               sync=sync, clock=clock, on_order=on_order)
    else:
        per_round = {name: int(np.clip(round_budget_s / max(probes[name], 1e-9), min_per_round, max_per_round))
                     for name in names}
        for r in range(rounds):
            order = [name for block in _rotated(blocks, r) for name in _rotated(block, r)]
            round_barrier(f"round {r + 1}/{rounds}: {' '.join(order)}")
            if on_order:
                on_order(order)
            for name in order:
                timed = configs[name]
                for _ in range(per_round[name]):
                    timed.samples.append(timed.timed_call(sync, clock) / timed.steps_per_call)
        from tfbench.benchmarks.budget import rel_halfwidth

        for timed in configs.values():
            timed.stopped_by, timed.ci_rel_halfwidth = "fixed", _finite(rel_halfwidth(timed.samples))
    if on_sampled:
        on_sampled(clock() - started)
    return configs


def _finite(value: float) -> float | None:
    return None if not np.isfinite(value) else float(value)


def _measure_until_stopped(configs: dict[str, Timed], blocks: list[list[str]], probes: dict[str, float], *,
                           rounds: int, rule, time_budget_s: float | None, sync: Callable[[], None],
                           clock: Clock, on_order) -> None:
    """The sequential rounds of :func:`measure_interleaved` (see there): each round gives each configuration
    still sampling about a thirtieth of its share of the time, at least one call, and checks the rule after."""
    from tfbench.benchmarks.budget import rel_halfwidth, stop_reason

    names = list(configs)
    start = clock()
    # Each configuration's share of the group's time, in at least `rounds` (and about thirty) rounds; without a
    # time budget, enough for the rule's minimum in `rounds` rounds.
    share = (time_budget_s / len(names)) if time_budget_s else rule.min_samples * max(probes.values())
    chunk = {name: int(np.clip(share / max(rounds, 30) / max(probes[name], 1e-9),
                               max(1, -(-rule.min_samples // rounds)), rule.max_samples)) for name in names}
    active = set(names)
    r = 0
    while active:
        order = [name for block in _rotated(blocks, r) for name in _rotated(block, r) if name in active]
        round_barrier(f"round {r + 1}: {' '.join(order)}")
        if on_order:
            on_order(order)
        for name in order:
            timed = configs[name]
            for _ in range(min(chunk[name], rule.max_samples - len(timed.samples))):
                timed.samples.append(timed.timed_call(sync, clock) / timed.steps_per_call)
        r += 1
        over_budget = time_budget_s is not None and clock() - start >= time_budget_s
        for name in order:
            timed = configs[name]
            reason = stop_reason(timed.samples, rule) if r >= rounds or len(timed.samples) >= rule.max_samples \
                else None
            if reason is None and over_budget and len(timed.samples) >= rule.min_samples:
                reason = "budget"
            if reason:
                timed.stopped_by, timed.ci_rel_halfwidth = reason, _finite(rel_halfwidth(timed.samples))
                active.discard(name)


ROUND_BARRIER_ENV = "TFBENCH_ROUND_BARRIER"


def round_barrier(label: str) -> None:
    """Wait for the gate's go before a round, if the gate asked for it (``TFBENCH_ROUND_BARRIER``; see the module
    docstring). ``label`` names the round and its order, so the gate can check that both processes are at the
    same point. Exits the process if the gate has gone (its end of the pipe closed): nobody would release it."""
    spec = os.environ.get(ROUND_BARRIER_ENV)
    if not spec:
        return
    ready_fd, go_fd = (int(part) for part in spec.split(","))
    try:
        os.write(ready_fd, (label.replace("\n", " ") + "\n").encode())
        released = os.read(go_fd, 1)
    except OSError as error:
        released, reason = b"", error.strerror
    else:
        reason = "the gate closed it"
    if not released:
        raise SystemExit(f"tfbench: the round barrier is gone ({reason}); stopping")


def _rotated(items: list, r: int) -> list:
    return items[r % len(items):] + items[:r % len(items)]


def harness_overhead(timed: Timed, *, rounds: int = 5, calls: int = 20, sync: Callable[[], None] = lambda: None,
                     clock: Clock = time.perf_counter) -> float:
    """The harness's timed call against a bare ``perf_counter`` loop around the same call, interleaved.

    Returns median(harness) / median(bare) - 1: what the harness's own
    bookkeeping adds to a sample (about 0 means it measures the step, not itself).
    """
    harness, bare = [], []
    for _ in range(rounds * calls):  # alternate call by call, so drift hits both alike
        harness.append(timed.timed_call(sync, clock))
        start = clock()
        float(timed.call())
        bare.append(clock() - start)
    return float(np.median(harness) / np.median(bare) - 1)


BOOTSTRAP_BLOCKS = 10  # contiguous blocks per sample series in bootstrap_ratio


def bootstrap_ratio(numerator: list[float], denominator: list[float], *, resamples: int = 2000,
                    confidence: float = 0.95, seed: int = 0) -> tuple[float, float, float]:
    """median(numerator) / median(denominator) with a paired block-bootstrap percentile interval.

    Consecutive timing samples are autocorrelated (the machine's speed drifts
    from round to round), so resampling single samples as if independent gives
    intervals far too narrow. Each series, in time order, is cut into
    :data:`BOOTSTRAP_BLOCKS` contiguous blocks of equal share; the two series
    were measured interleaved round by round, so block j of one covers the same
    span of time as block j of the other. A resample draws block indices with
    replacement, the *same* ones for both series (the drift they shared stays
    shared), and takes the ratio of the medians of the drawn samples.
    """
    num, den = np.asarray(numerator, float), np.asarray(denominator, float)
    if num.size == 0 or den.size == 0:
        raise ValueError("bootstrap_ratio needs samples on both sides")
    blocks = min(BOOTSTRAP_BLOCKS, num.size, den.size)
    drawn = np.random.default_rng(seed).integers(0, blocks, size=(resamples, blocks))
    ratios = _block_medians(num, blocks, drawn) / _block_medians(den, blocks, drawn)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(ratios, [tail, 100 - tail])
    return float(np.median(num) / np.median(den)), float(low), float(high)


def _block_medians(series: np.ndarray, blocks: int, drawn: np.ndarray) -> np.ndarray:
    """The median of each resample of ``series``'s contiguous blocks (``drawn``: resamples x block indices).

    Blocks are of equal size: the last ``len(series) % blocks`` samples are left out of the resamples (at most
    ``blocks - 1``; the point estimate keeps them)."""
    size = series.size // blocks
    table = series[:blocks * size].reshape(blocks, size)
    return np.median(table[drawn].reshape(drawn.shape[0], -1), axis=1)
