"""The one interface every training approach implements.

An approach is a subclass of :class:`Trainer` in its own module, with a name,
a summary, the tutorial it comes from, and three pieces of its own style:

* ``_build(weights)``: create the network's variables (from the workload's
  common initial weights) and the optimizer(s);
* ``train_step(x, y) -> (loss, logits)``: one optimizer step, the part a
  tutorial shows (a GradientTape, a persistent tape, ``fit``...);
* ``forward(x)`` and ``variables_in_order()``: inference and the weights in
  the workload's common order.

The base class does the rest the same way for everybody, so that only the
loop style differs between approaches: it compiles the step for the mode
(``eager`` / ``function`` / ``xla``), runs K steps inside one compiled call,
evaluates, and fits epochs with a shared batch order. An approach that cannot
run a workload or a mode says why in :meth:`Trainer.unsupported`.
"""

from __future__ import annotations

import itertools
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from implementations.errors import ConfigError, Unsupported
from implementations.workloads import Workload

MODES = ("eager", "function", "xla")
OPTIMIZERS = ("sgd", "adam", "nadam", "rmsprop")
SAMPLING = ("shuffle", "random")


@dataclass(frozen=True)
class OptimizerSpec:
    """An optimizer by name and learning rate, e.g. ``OptimizerSpec("adam", 1e-3)``."""

    name: str = "adam"
    learning_rate: float = 1e-3

    def __post_init__(self) -> None:
        if self.name not in OPTIMIZERS:
            raise ConfigError(f"unknown optimizer {self.name!r}; choose one of: {', '.join(OPTIMIZERS)}")
        if not self.learning_rate > 0:
            raise ConfigError(f"learning rate must be > 0, got {self.learning_rate}")

    @classmethod
    def parse(cls, text: str) -> OptimizerSpec:
        """Parse ``NAME:LR`` (``adam:1e-3``), or a bare name with its default rate."""
        name, _, rate = text.partition(":")
        try:
            return cls(name.strip().lower(), float(rate)) if rate else cls(name.strip().lower())
        except ValueError as error:
            raise ConfigError(f"bad optimizer {text!r}: {error} (write NAME:LR, e.g. adam:1e-3)") from None

    def make(self):
        """A fresh Keras optimizer (Keras 3 defaults for everything but the rate)."""
        import keras

        cls = {"sgd": keras.optimizers.SGD, "adam": keras.optimizers.Adam,
               "nadam": keras.optimizers.Nadam, "rmsprop": keras.optimizers.RMSprop}[self.name]
        return cls(learning_rate=self.learning_rate)

    def __str__(self) -> str:
        return f"{self.name}:{self.learning_rate:g}"


@dataclass(frozen=True)
class TrainConfig:
    """How to train: the mode, steps per compiled call, optimizer(s), seed."""

    mode: str = "function"
    steps_per_call: int = 1
    optimizer: OptimizerSpec = field(default_factory=OptimizerSpec)
    # Only the dual-optimizer approach uses a second optimizer, for the upper
    # layers; None means "the same settings as `optimizer`".
    upper_optimizer: OptimizerSpec | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"unknown mode {self.mode!r}; choose one of: {', '.join(MODES)}")
        if not isinstance(self.steps_per_call, int) or self.steps_per_call < 1:
            raise ConfigError(f"steps per call must be an integer >= 1, got {self.steps_per_call!r}")


def epoch_batches(num_examples: int, batch_size: int, rng: np.random.Generator,
                  sampling: str = "shuffle") -> list[np.ndarray]:
    """Index arrays of one epoch's batches.

    ``shuffle``: a fresh permutation each epoch, the last batch possibly
    smaller (``fit(shuffle=True)``, the tutorials' generators). ``random``:
    ``num_examples // batch_size`` batches drawn with replacement, as in
    Hands-On ML's ``random_batch`` (``np.random.randint``).
    """
    if sampling == "random":
        return [rng.integers(0, num_examples, size=batch_size) for _ in range(num_examples // batch_size)]
    order = rng.permutation(num_examples)
    return [order[start:start + batch_size] for start in range(0, num_examples, batch_size)]


class Trainer(ABC):
    """One approach to training, built for one workload and one :class:`TrainConfig`."""

    name: ClassVar[str]
    summary: ClassVar[str]
    source: ClassVar[str]

    def __init__(self, workload: Workload, config: TrainConfig, weights: Sequence[np.ndarray] | None = None):
        reason = self.unsupported(workload, config.mode)
        if reason:
            raise Unsupported(f"{self.name} cannot run {workload.name}/{config.mode}: {reason}")
        self.workload = workload
        self.config = config
        self._build(list(weights) if weights is not None else workload.init_weights(config.seed))
        self._train_calls = self._compile(self._train_loop)
        self._eval_batch = self._compile(self._eval_sums)

    # --- what each approach provides -------------------------------------------

    @classmethod
    def unsupported(cls, workload: Workload, mode: str) -> str | None:
        """Why this approach cannot run ``workload`` in ``mode``, or None if it can."""
        return None

    @abstractmethod
    def _build(self, weights: list[np.ndarray]) -> None:
        """Create the variables from ``weights`` (common order) and the optimizer(s)."""

    @abstractmethod
    def train_step(self, x, y):
        """One optimizer step on a batch; returns ``(mean loss, logits)``."""

    @abstractmethod
    def forward(self, x):
        """Logits for a batch, in inference mode."""

    @abstractmethod
    def variables_in_order(self) -> list:
        """Every weight variable (trainable or not) in the workload's common order."""

    # --- provided for everybody ---------------------------------------------------

    def _compile(self, fn: Callable) -> Callable:
        import tensorflow as tf

        if self.config.mode == "eager":
            return fn
        # jit_compile is set explicitly both ways: left as None, TF decides.
        return tf.function(fn, reduce_retracing=True, jit_compile=self.config.mode == "xla")

    def _train_loop(self, xs, ys):
        """Run ``len(xs)`` steps; return (last loss, summed loss, correct predictions)."""
        import tensorflow as tf

        def one(x, y):
            loss, logits = self.train_step(x, y)
            correct = tf.reduce_sum(tf.cast(tf.equal(tf.argmax(logits, -1, output_type=y.dtype), y), tf.int32))
            return loss, loss * tf.cast(tf.shape(y)[0], loss.dtype), correct

        if xs.shape[0] == 1:  # K = 1: no loop at all, the plain compiled step.
            return one(xs[0], ys[0])
        loss, loss_sum, correct = tf.constant(0.0), tf.constant(0.0), tf.constant(0)
        # Inside tf.function, autograph turns this into a tf.while_loop: K steps, one call.
        for i in tf.range(tf.shape(xs)[0]):
            loss, batch_loss_sum, batch_correct = one(xs[i], ys[i])
            loss_sum += batch_loss_sum
            correct += batch_correct
        return loss, loss_sum, correct

    def steps(self, xs, ys):
        """Run ``xs.shape[0]`` optimizer steps (one compiled call); return the last loss, unforced.

        ``xs`` is a stack of batches ``(K, batch, 28, 28, 1)`` and ``ys`` ``(K, batch)`` int32.
        The caller forces the result (``float(loss)``) before reading a clock.
        """
        return self._train_calls(xs, ys)[0]

    def runner(self, xs_calls: Sequence, ys_calls: Sequence) -> Callable[[], object]:
        """A zero-argument callable doing the next K steps on pre-placed data, returning the loss.

        The harness times this. ``xs_calls[i]`` is one call's stack of K
        batches, already on the device, so nothing but training is timed.
        """
        calls = itertools.cycle(list(zip(xs_calls, ys_calls)))

        def call():
            xs, ys = next(calls)
            return self.steps(xs, ys)

        return call

    def _eval_sums(self, x, y):
        import tensorflow as tf

        logits = self.forward(x)
        losses = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits)
        correct = tf.reduce_sum(tf.cast(tf.equal(tf.argmax(logits, -1, output_type=y.dtype), y), tf.int32))
        return tf.reduce_sum(losses), correct

    def evaluate(self, x: np.ndarray, y: np.ndarray, batch_size: int = 1000) -> tuple[float, float]:
        """Mean loss and accuracy over a dataset."""
        loss_sum, correct = 0.0, 0
        for start in range(0, len(x), batch_size):
            batch_loss, batch_correct = self._eval_batch(x[start:start + batch_size], y[start:start + batch_size])
            loss_sum += float(batch_loss)
            correct += int(batch_correct)
        return loss_sum / len(x), correct / len(x)

    def _train_epoch(self, x_all, y_all, batches: list[np.ndarray]) -> tuple[float, float]:
        """One epoch over ``batches``; returns the running mean loss and accuracy, as tutorials print."""
        import tensorflow as tf

        k = self.config.steps_per_call
        full = [b for b in batches if len(b) == len(batches[0])]
        rest = batches[len(full):]  # at most the last, smaller batch
        calls = [np.stack(full[i:i + k]) for i in range(0, len(full), k)] + [b[None] for b in rest]
        loss_sum, correct = 0.0, 0
        for index in calls:
            _, call_loss, call_correct = self._train_calls(tf.gather(x_all, index), tf.gather(y_all, index))
            loss_sum += float(call_loss)
            correct += int(call_correct)
        seen = sum(len(b) for b in batches)
        return loss_sum / seen, correct / seen

    def fit(self, x: np.ndarray, y: np.ndarray, *, epochs: int, batch_size: int,
            eval_sets: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None, seed: int = 0,
            sampling: str = "shuffle", on_epoch: Callable[[dict], None] | None = None) -> list[dict]:
        """Train ``epochs`` epochs; return one history dict per epoch.

        Each dict holds ``epoch``, ``loss`` and ``accuracy`` (running means over
        the epoch), ``train_time_s`` (training only, result forced) and
        ``eval_time_s``, and ``<name>_loss`` / ``<name>_accuracy`` for each of
        ``eval_sets`` (e.g. ``{"val": ..., "test": ...}``). The batch order
        depends only on ``seed``, so every approach sees the same batches.
        """
        import tensorflow as tf

        if epochs < 1 or batch_size < 1:
            raise ConfigError(f"epochs and batch size must be >= 1, got {epochs} and {batch_size}")
        if sampling not in SAMPLING:
            raise ConfigError(f"unknown sampling {sampling!r}; choose one of: {', '.join(SAMPLING)}")
        # Device-resident once; each call gathers its batches on the device.
        x_all, y_all = tf.constant(x), tf.constant(y)
        rng = np.random.default_rng(seed)
        history = []
        for epoch in range(1, epochs + 1):
            batches = epoch_batches(len(x), batch_size, rng, sampling)
            start = time.perf_counter()
            loss, accuracy = self._train_epoch(x_all, y_all, batches)  # returns floats: work is done
            train_time = time.perf_counter() - start
            record = {"epoch": epoch, "loss": loss, "accuracy": accuracy, "train_time_s": train_time}
            start = time.perf_counter()
            for set_name, (set_x, set_y) in (eval_sets or {}).items():
                record[f"{set_name}_loss"], record[f"{set_name}_accuracy"] = self.evaluate(set_x, set_y)
            record["eval_time_s"] = time.perf_counter() - start
            history.append(record)
            if on_epoch:
                on_epoch(record)
        return history

    def get_weights(self) -> list[np.ndarray]:
        return [np.array(v.numpy()) for v in self.variables_in_order()]

    def set_weights(self, weights: Sequence[np.ndarray]) -> None:
        variables = self.variables_in_order()
        if len(weights) != len(variables):
            raise ConfigError(f"expected {len(variables)} weight arrays, got {len(weights)}")
        for variable, value in zip(variables, weights):
            variable.assign(value)

    @property
    def num_trainable_params(self) -> int:
        return sum(int(np.prod(v.shape)) for v in self.variables_in_order() if v.trainable)
