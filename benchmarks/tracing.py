"""Counting the traces of a compiled training step over one epoch, the way a user's loop calls it.

The retracing questions users bring to issue trackers ("my custom loop retraces every step") come from two
habits of the tutorials: a dataset whose size leaves a smaller last batch (a new input shape), and a Python
number (the step index, a learning rate) passed into the ``tf.function``'d step, which TensorFlow treats as
part of the function's cache key *by value*: every new number is a new trace.

:func:`user_step` writes that step around an approach's own ``train_step`` (forward, loss, gradients,
update: unchanged), with one of the fixes applied (:data:`FIXES`), and :func:`run_epoch` calls it over one
epoch, reading TensorFlow's own counter (``experimental_get_tracing_count()``) around every call. The input
signature of a call is what TensorFlow *should* need to trace for: the tensors' shapes and dtypes, and the
*type* of a Python argument, not its value. So a trace per Python value shows as more than one trace per
signature, which is the pathology; a trace per new shape (the partial batch) is one per signature, and
costs one trace more than ``drop_remainder=True``.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

# What each record applies. "none": plain tf.function, Python step index, partial last batch.
FIXES = ("none", "reduce_retracing", "input_signature", "drop_remainder", "tensor_scalar")
# The tutorials' habit: log the loss every N steps from inside the step, branching on the step index.
LOG_EVERY = 4
# Calls after the epoch on an already-traced signature: a steady step time even when every epoch call traced.
STEADY_CALLS = 3


def signature_of(args: Sequence) -> tuple:
    """The input signature of a call: each tensor's shape and dtype, each Python value's type only."""
    parts = []
    for arg in args:
        shape = getattr(arg, "shape", None)
        if shape is not None and hasattr(arg, "dtype"):
            parts.append((tuple(shape), str(arg.dtype)))
        else:
            parts.append(type(arg).__name__)
    return tuple(parts)


def user_step(tf, train_step: Callable, fix: str, jit_compile: bool) -> Callable:
    """The tutorials' compiled step around ``train_step(x, y) -> (loss, logits)``, with ``fix`` applied.

    It takes ``(x, y, step_index)`` and, as the tutorials do, logs the loss every :data:`LOG_EVERY` steps
    from inside the step: it keeps it in a variable (``tf.print``, the tutorials' other way, has no XLA
    kernel: ``StringFormat`` fails under ``jit_compile=True``). With a Python ``step_index`` the ``if`` is
    decided at trace time (so every value is traced anew); with a tensor, autograph makes it a ``tf.cond``.
    """
    logged = tf.Variable(0.0, trainable=False)

    def step(x, y, step_index):
        loss, _ = train_step(x, y)
        if step_index % LOG_EVERY == 0:
            logged.assign(loss)
        return loss

    options: dict = {"jit_compile": jit_compile}
    if fix == "reduce_retracing":
        options["reduce_retracing"] = True
    elif fix == "input_signature":
        # Any batch size; the Python step index is converted to this scalar tensor on every call.
        options["input_signature"] = [tf.TensorSpec([None, 28, 28, 1], tf.float32), tf.TensorSpec([None], tf.int32),
                                      tf.TensorSpec([], tf.int64)]
    return tf.function(step, **options)


def epoch_batches(num_examples: int, batch_size: int, drop_remainder: bool) -> list[tuple[int, int]]:
    """(start, stop) of each batch of one epoch in order; the last one smaller unless ``drop_remainder``."""
    stops = range(batch_size, num_examples + (0 if drop_remainder else batch_size), batch_size)
    return [(stop - batch_size, min(stop, num_examples)) for stop in stops if stop - batch_size < num_examples]


@dataclass
class EpochTrace:
    """One epoch of calls: each call's seconds, whether it traced or compiled, and the trace counts."""

    call_s: list[float] = field(default_factory=list)
    traced: list[bool] = field(default_factory=list)
    signatures: set = field(default_factory=set)
    trace_count: int = 0
    nested_trace_count: int | None = None
    epoch_wall_s: float = 0.0
    steady_s: list[float] = field(default_factory=list)  # the extra calls on a traced signature

    def metrics(self) -> dict:
        """The record's metrics (see results.schema.json, kind ``retracing``)."""
        steady = [s for s, t in zip(self.call_s, self.traced) if not t] + self.steady_s
        steady_step = statistics.median(steady) if steady else None
        # A call that traced or compiled costs what it took beyond a steady step.
        tracing = sum(s - (steady_step or 0.0) for s, t in zip(self.call_s, self.traced) if t)
        metrics = {"trace_count": self.trace_count, "input_signatures": len(self.signatures),
                   "traces_per_signature": self.trace_count / len(self.signatures) if self.signatures else None,
                   "tracing_s": max(0.0, tracing), "epoch_wall_s": self.epoch_wall_s,
                   "epoch_steps": len(self.call_s), "steady_step_s": steady_step}
        if self.nested_trace_count is not None:
            metrics["nested_trace_count"] = self.nested_trace_count
        return metrics


def run_epoch(call: Callable[[int], object], arguments: Callable[[int], Sequence], steps: int,
              counter: Callable[[], int], *, compiles_per_shape: bool = False,
              steady_call: Callable[[], object] | None = None,
              clock: Callable[[], float] = time.perf_counter) -> EpochTrace:
    """Call ``call(i)`` for the epoch's ``steps`` steps, forcing each result; read ``counter()`` around each.

    A call *traced* if the counter rose, or (``compiles_per_shape``: XLA, which compiles a program per new
    input shape even where no new trace is made) if it is the first with its signature (``arguments(i)``).
    ``steady_call`` repeats an already-traced call :data:`STEADY_CALLS` times after the epoch, for a steady
    step time.
    """
    trace = EpochTrace()
    start = clock()
    for i in range(steps):
        before, signature = counter(), signature_of(arguments(i))
        new_signature = signature not in trace.signatures
        trace.signatures.add(signature)
        began = clock()
        float(call(i))  # forces the step
        trace.call_s.append(clock() - began)
        trace.traced.append(counter() > before or (compiles_per_shape and new_signature))
    trace.epoch_wall_s = clock() - start
    trace.trace_count = counter()
    if steady_call is not None:
        for _ in range(STEADY_CALLS):
            began = clock()
            float(steady_call())
            trace.steady_s.append(clock() - began)
    return trace
