"""The one interface every training approach implements.

An approach is a subclass of :class:`Trainer` in its own module, with a name,
a summary and the tutorial it comes from. What a harness can do with any
approach (:class:`Trainer`): run K optimizer steps in one call and force the
result (:meth:`~Trainer.steps`, :meth:`~Trainer.runner`), evaluate loss and
accuracy, fit N epochs with a per-epoch history, count the trainable
parameters, and get/set the weights in the workload's common order. An
approach that cannot run a workload or a mode says why in
:meth:`Trainer.unsupported` instead of failing halfway.

Approaches with a hand-written step derive from :class:`LoopTrainer`, which
compiles that step for the mode (``eager`` / ``function`` / ``xla``), runs K
steps inside one compiled call and evaluates, the same way for everybody, so
that only the loop style differs. They write three pieces of their own style:

* ``_build(weights)``: the variables (from the common initial weights) and optimizer(s);
* ``train_step(x, y) -> (loss, logits)``: one optimizer step, the part a tutorial shows;
* ``forward(x)`` and ``variables_in_order()``: inference, and the weights in common order.

``keras_fit`` derives from :class:`Trainer` directly: Keras's own compiled
``train_function`` (what ``fit`` runs) is its step.

Under a ``tf.distribute`` strategy (``TrainConfig.strategy``, ``replicas``;
see :mod:`implementations.distribute`) the variables are created under
``strategy.scope()``, and a hand-written loop adds a fourth piece beside its
single-device step: ``replica_step(x, y)``, one replica's share of a step,
whose loss is divided by the *global* batch. :class:`LoopTrainer` runs it
with ``strategy.run`` on distributed batches, K steps per compiled call.
"""

from __future__ import annotations

import itertools
import math
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from tfbench.errors import ConfigError, TrainingDiverged, Unsupported
from tfbench.implementations import distribute, precision
from tfbench.implementations.workloads import Workload

MODES = ("eager", "function", "xla")
OPTIMIZERS = ("sgd", "adam", "nadam", "rmsprop")
SAMPLING = ("shuffle", "random", "sequential")


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
    # tf.distribute: "none" (one device), "mirrored" (one process, several devices) or "multiworker"
    # (several processes, TF_CONFIG); replicas is the number in sync across all of them.
    strategy: str = "none"
    replicas: int = 1
    # The dtype policy (implementations/precision.py): float32, mixed_bfloat16 or mixed_float16.
    precision: str = "float32"

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"unknown mode {self.mode!r}; choose one of: {', '.join(MODES)}")
        if not isinstance(self.steps_per_call, int) or self.steps_per_call < 1:
            raise ConfigError(f"steps per call must be an integer >= 1, got {self.steps_per_call!r}")
        distribute.validate(self.strategy, self.replicas)
        precision.check(self.precision)


def epoch_batches(num_examples: int, batch_size: int, rng: np.random.Generator,
                  sampling: str = "shuffle") -> list[np.ndarray]:
    """Index arrays of one epoch's batches.

    ``shuffle``: a fresh permutation each epoch, the last batch possibly
    smaller (``fit(shuffle=True)``, the tutorials' generators). ``random``:
    ``num_examples // batch_size`` batches drawn with replacement, as in
    Hands-On ML's ``random_batch`` (``np.random.randint``). ``sequential``: in
    order, no shuffling, as Deep Learning with Python's ``BatchGenerator``.
    """
    if sampling == "sequential":
        return [np.arange(start, min(start + batch_size, num_examples))
                for start in range(0, num_examples, batch_size)]
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
        reason = self.unsupported(workload, config.mode, config.strategy, config.steps_per_call)
        if reason:
            where = f"{workload.name}/{config.mode}" + (f" under {config.strategy}" if config.strategy != "none"
                                                        else "")
            raise Unsupported(f"{self.name} cannot run {where}: {reason}")
        self.workload = workload
        self.config = config
        # None on one device; else the strategy, under whose scope every variable is created (mirrored).
        self.strategy = distribute.make_strategy(config.strategy, config.replicas)
        weights = list(weights) if weights is not None else workload.init_weights(config.seed)
        if self.strategy is None:
            self._build(weights)
        else:
            with self.strategy.scope():
                self._build(weights)

    @classmethod
    def unsupported(cls, workload: Workload, mode: str, strategy: str = "none",
                    steps_per_call: int = 1) -> str | None:
        """Why this approach cannot run ``workload`` in ``mode`` (under ``strategy``, K steps per call), or
        None if it can."""
        if strategy != "none" and mode == "xla":
            # Measured here (TF 2.21; two logical CPUs, and two workers on loopback).
            return ("XLA compiles a function for one device: under MirroredStrategy, jit_compile=True around "
                    "strategy.run, or around one replica's step, reads the other replicas' variables from the "
                    "first device (InvalidArgumentError: Trying to access resource ... located in device CPU:1 "
                    "from CPU:0); under MultiWorkerMirroredStrategy, the distributed iterator that feeds the "
                    "K steps has no XLA kernel (IteratorGetNextAsOptional)")
        return None

    @classmethod
    def known_cost(cls, workload: Workload, mode: str, steps_per_call: int, device_kind: str = "cpu") -> str | None:
        """Why this approach is slower per step than the fastest in ``mode`` with K steps per call, where
        the cause is measured and lies in the style (or in how it runs K steps), not in noise; else None.

        ``device_kind`` ("cpu", "gpu", "metal"): a cost found in one device's kernels (oneDNN's, XLA's CPU
        backend) is stated for that kind of device only; what the style's code does is stated for all.
        The harness stores it with each step-time and breakdown record, and the report gives it as the
        reason where the approach falls more than 10% behind the fastest one.
        """
        return None

    @abstractmethod
    def _build(self, weights: list[np.ndarray]) -> None:
        """Create the network from ``weights`` (common order) and the optimizer(s)."""

    @abstractmethod
    def steps(self, xs, ys):
        """Run ``xs.shape[0]`` optimizer steps, K per compiled call; return the last loss, unforced.

        ``xs`` is a stack of batches ``(n, batch, 28, 28, 1)`` float32 and ``ys``
        ``(n, batch)`` int32. The caller forces the result (``float(loss)``)
        before it reads a clock.
        """

    @abstractmethod
    def evaluate(self, x: np.ndarray, y: np.ndarray, batch_size: int = 1000) -> tuple[float, float]:
        """Mean loss and accuracy over a dataset, in inference mode."""

    @abstractmethod
    def _train_epochs(self, x_all, y_all, plan: list[list[np.ndarray]],
                      epoch_done: Callable[[float, float, float], None]) -> None:
        """Train on ``plan`` (each epoch's batches of indices into the device-resident ``x_all``);
        after each epoch call ``epoch_done(mean loss, accuracy, training seconds)``, adding
        ``where="at step N"`` if the loss was not finite and the approach knows where it first was not."""

    @abstractmethod
    def variables_in_order(self) -> list:
        """Every weight variable (trainable or not) in the workload's common order."""

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

    def fit(self, x: np.ndarray, y: np.ndarray, *, epochs: int, batch_size: int,
            eval_sets: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None, seed: int = 0,
            sampling: str = "shuffle", on_epoch: Callable[[dict], None] | None = None) -> list[dict]:
        """Train ``epochs`` epochs; return one history dict per epoch.

        Each dict holds ``epoch``, ``loss`` and ``accuracy`` (running means over
        the epoch, as the tutorials print them), ``train_time_s`` (training
        only, result forced) and ``eval_time_s``, and ``<name>_loss`` /
        ``<name>_accuracy`` for each of ``eval_sets`` (e.g. ``{"val": ...,
        "test": ...}``). The batches depend only on ``seed``, so every approach
        sees the same batches in the same order.

        A loss that becomes NaN or infinite stops training at the end of that
        epoch with :class:`~tfbench.errors.TrainingDiverged`, naming the epoch
        (and, where the approach can tell, the step): a diverged run is a
        failure, never a result.
        """
        import tensorflow as tf

        if epochs < 1 or batch_size < 1:
            raise ConfigError(f"epochs and batch size must be >= 1, got {epochs} and {batch_size}")
        if sampling not in SAMPLING:
            raise ConfigError(f"unknown sampling {sampling!r}; choose one of: {', '.join(SAMPLING)}")
        rng = np.random.default_rng(seed)
        plan = [epoch_batches(len(x), batch_size, rng, sampling) for _ in range(epochs)]
        history: list[dict] = []

        def epoch_done(loss: float, accuracy: float, train_time: float, where: str | None = None) -> None:
            # `where`: the approach's own account of the first step whose loss was not finite, if it has one.
            if not math.isfinite(loss):
                epoch = len(history) + 1
                steps = len(plan[epoch - 1])
                at = f", {where} of {steps}" if where else f" ({steps} steps; {self.name} reports its loss per epoch)"
                raise TrainingDiverged(f"the training loss became {loss} in epoch {epoch} of {epochs}{at}; "
                                       "a lower learning rate may help", epoch=epoch, step=where, history=history)
            record = {"epoch": len(history) + 1, "loss": loss, "accuracy": accuracy, "train_time_s": train_time}
            start = time.perf_counter()
            for set_name, (set_x, set_y) in (eval_sets or {}).items():
                record[f"{set_name}_loss"], record[f"{set_name}_accuracy"] = self.evaluate(set_x, set_y)
            record["eval_time_s"] = time.perf_counter() - start
            history.append(record)
            if on_epoch:
                on_epoch(record)

        # Device-resident once; each call gathers its batches on the device.
        self._train_epochs(tf.constant(x), tf.constant(y), plan, epoch_done)
        return history

    def compiled_functions(self) -> list:
        """The ``tf.function`` objects that make up this approach's compiled training step, outermost first
        ([] in eager mode): what a diagnostic reads TensorFlow's own trace counter
        (``experimental_get_tracing_count()``) and resolved ``jit_compile`` from."""
        return []

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


class LoopTrainer(Trainer):
    """An approach with a hand-written step; this class compiles and drives it."""

    def __init__(self, workload: Workload, config: TrainConfig, weights: Sequence[np.ndarray] | None = None):
        super().__init__(workload, config, weights)
        if self.strategy is None:
            self._train_calls = self._compile(self._train_loop)
        else:
            self._distributed_calls = self._compile(self._distributed_train_loop)
        self._eval_batch = self._compile(self._eval_sums)

    @classmethod
    def known_cost(cls, workload, mode, steps_per_call, device_kind="cpu"):
        from tfbench.implementations.workloads import Conv2D

        if mode == "xla" and steps_per_call > 1 and workload.has(Conv2D) and device_kind == "cpu":
            # Measured (docs/performance.md, section 4): the MLP is fastest as one XLA loop, the
            # CNN is not; the cause lies inside XLA's CPU backend.
            return ("XLA compiles the K-step loop into one while-loop program, and inside it the convolution "
                    "and its gradients run ~1.8x slower than the same ops unrolled (max-pooling does not); "
                    "fit launches an XLA step K times instead, which avoids it")
        return None

    def compiled_functions(self) -> list:
        # The K-step call (K = 1: the plain step), on one device or under the strategy, is what every
        # training call goes through.
        if self.config.mode == "eager":
            return []
        return [self._train_calls if self.strategy is None else self._distributed_calls]

    @abstractmethod
    def train_step(self, x, y):
        """One optimizer step on a batch; returns ``(mean loss, logits)``."""

    @abstractmethod
    def replica_step(self, x, y):
        """One replica's share of a step under a strategy, on its slice of the global batch; returns
        ``(loss, logits)`` where ``loss`` is the replica's summed loss divided by the *global* batch
        (``tf.nn.compute_average_loss``), so that the all-reduce's sum of gradients is the mean's."""

    @abstractmethod
    def forward(self, x):
        """Logits for a batch, in inference mode."""

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

    def _distributed_train_loop(self, iterator, steps):
        """Under a strategy: ``steps`` steps, each on the next global batch from a distributed ``iterator``;
        returns the same (last loss, summed loss, correct predictions) as :meth:`_train_loop`."""
        import tensorflow as tf

        strategy = self.strategy
        add = tf.distribute.ReduceOp.SUM

        def one_replica(x, y):
            loss, logits = self.replica_step(x, y)
            correct = tf.reduce_sum(tf.cast(tf.equal(tf.argmax(logits, -1, output_type=y.dtype), y), tf.int32))
            return loss, tf.shape(y)[0], correct

        def one_step():
            x, y = next(iterator)
            loss, count, correct = strategy.run(one_replica, args=(x, y))
            # Each replica's loss is its share of the global mean: their sum is the mean.
            loss, count = strategy.reduce(add, loss, axis=None), strategy.reduce(add, count, axis=None)
            return loss, loss * tf.cast(count, loss.dtype), strategy.reduce(add, correct, axis=None)

        if steps == 1:  # K = 1: no loop at all, the plain compiled step.
            return one_step()
        loss, loss_sum, correct = tf.constant(0.0), tf.constant(0.0), tf.constant(0)
        # The same K-step loop as on one device: a tf.while_loop inside the compiled call.
        for _ in tf.range(steps):
            loss, batch_loss_sum, batch_correct = one_step()
            loss_sum += batch_loss_sum
            correct += batch_correct
        return loss, loss_sum, correct

    def _distributed_calls_on(self, iterator, steps: int):
        """Run ``steps`` steps from ``iterator``, K per compiled call; return each call's outputs."""
        k = self.config.steps_per_call
        return [self._distributed_calls(iterator, min(k, steps - start)) for start in range(0, steps, k)]

    def steps(self, xs, ys):
        if self.strategy is not None:
            iterator = distribute.distributed_batches(self.strategy, xs, ys)
            return self._distributed_calls_on(iterator, int(xs.shape[0]))[-1][0]
        return self._train_calls(xs, ys)[0]

    def runner(self, xs_calls, ys_calls):
        if self.strategy is None:
            return super().runner(xs_calls, ys_calls)
        import tensorflow as tf

        # Under a strategy the batches come through a distributed dataset, as the idiom has it; its
        # iterator prefetches each replica's slice to the replica's device.
        iterator = distribute.distributed_batches(self.strategy, tf.concat(list(xs_calls), 0),
                                                  tf.concat(list(ys_calls), 0), repeat=True)
        k = self.config.steps_per_call
        calls = self._distributed_calls

        def call():
            return calls(iterator, k)[0]

        return call

    def _eval_sums(self, x, y):
        import tensorflow as tf

        logits = self.forward(x)
        losses = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits)
        correct = tf.reduce_sum(tf.cast(tf.equal(tf.argmax(logits, -1, output_type=y.dtype), y), tf.int32))
        return tf.reduce_sum(losses), correct

    def evaluate(self, x: np.ndarray, y: np.ndarray, batch_size: int = 1000) -> tuple[float, float]:
        loss_sum, correct = 0.0, 0
        for start in range(0, len(x), batch_size):
            batch_loss, batch_correct = self._eval_batch(x[start:start + batch_size], y[start:start + batch_size])
            loss_sum += float(batch_loss)
            correct += int(batch_correct)
        return loss_sum / len(x), correct / len(x)

    def _train_epochs(self, x_all, y_all, plan, epoch_done) -> None:
        import tensorflow as tf

        k = self.config.steps_per_call
        for batches in plan:
            start = time.perf_counter()
            # Stacks of K equal-sized batches per call; a smaller last batch goes alone.
            full = [b for b in batches if len(b) == len(batches[0])]
            calls = [np.stack(full[i:i + k]) for i in range(0, len(full), k)]
            calls += [b[None] for b in batches[len(full):]]
            if self.strategy is None:
                outputs = [self._train_calls(tf.gather(x_all, index), tf.gather(y_all, index)) for index in calls]
            else:  # each call's global batches, split among the replicas
                outputs = [self._distributed_calls_on(distribute.distributed_batches(
                    self.strategy, tf.gather(x_all, index), tf.gather(y_all, index)), len(index))[0]
                    for index in calls]
            # One reduction per epoch, not a device sync per call; float() forces the work.
            loss_sum = float(tf.add_n([loss_sum for _, loss_sum, _ in outputs]))
            correct = int(tf.add_n([correct for _, _, correct in outputs]))
            seen = sum(len(b) for b in batches)
            mean_loss = loss_sum / seen
            where = None if math.isfinite(mean_loss) else _first_nonfinite_call(calls, outputs)
            epoch_done(mean_loss, correct / seen, time.perf_counter() - start, where=where)


def _first_nonfinite_call(calls: list[np.ndarray], outputs: list) -> str:
    """'at step N' (or 'in steps N-M', for a call of K steps) where a diverging epoch's loss first was not finite.

    Read only once an epoch has diverged, so a healthy epoch still costs one device sync.
    """
    step = 0
    for index, (_, loss_sum, _) in zip(calls, outputs):
        if not math.isfinite(float(loss_sum)):
            first, last = step + 1, step + len(index)
            return f"at step {first}" if first == last else f"in steps {first}-{last}"
        step += len(index)
    return "at an unknown step"
