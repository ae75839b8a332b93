"""Keras ``compile`` + ``fit``: the network as a ``keras.Sequential``, the loop left to Keras.

The first style every Keras tutorial teaches (Deep Learning with Python
ch. 2-3, Hands-On ML ch. 10): declare the layers, ``compile`` with an
optimizer, a loss and metrics, call ``fit``. Use it whenever the standard
step (forward, loss, gradients, one optimizer) is what you need: it is the
least code, and close to a hand-written loop in speed, except under XLA
(see :meth:`KerasFit.known_cost`).

How the modes map onto ``compile``:

* ``eager``: ``run_eagerly=True``;
* ``function``: ``jit_compile=False``, set explicitly: Keras 3's default
  ``"auto"`` turns XLA on whenever a GPU is present;
* ``xla``: ``jit_compile=True``.

Steps per call K is ``steps_per_execution``: Keras runs K steps inside one
compiled call, pulling batches from a ``tf.data`` iterator, which amortises
the fixed cost of each call. The harness times ``model.train_function``,
the compiled function ``fit`` itself calls once per K steps.

Under a ``tf.distribute`` strategy, ``fit`` needs only ``strategy.scope()``
around building and compiling the model: Keras then splits each global
batch among the replicas, runs its step with ``strategy.run`` and scales the
loss by the global batch itself. What it cannot do here (Keras 3.15, TF 2.21;
see :meth:`KerasFit.unsupported`): XLA and K > 1 steps per call under a
strategy, and MultiWorkerMirroredStrategy at all.
"""

from __future__ import annotations

import time

import keras
import tensorflow as tf

from tfbench.implementations import distribute, precision
from tfbench.implementations.interface import Trainer
from tfbench.implementations.keras_layers import conv_bias_cost, float32_output, keras_layer
from tfbench.implementations.workloads import INPUT_SHAPE


class _EpochTimer(keras.callbacks.Callback):
    """Hands each epoch's training metrics and time to the shared history code."""

    def __init__(self, epoch_done):
        super().__init__()
        self.epoch_done = epoch_done

    epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        # Keras has already turned logs into Python floats here: the work is done.
        self.epoch_done(float(logs["loss"]), float(logs["accuracy"]), time.perf_counter() - self.start)


class KerasFit(Trainer):
    name = "keras_fit"
    summary = "keras.Sequential + compile + fit (steps_per_execution as steps per call)"
    source = "Deep Learning with Python ch. 2-3; Hands-On Machine Learning 2nd ed. ch. 10"

    @classmethod
    def unsupported(cls, workload, mode, strategy="none", steps_per_call=1):
        if strategy == "multiworker":
            # Measured here with two workers on loopback, in every mode; the workaround users report is
            # the legacy tf-keras (Keras 2).
            return ("Keras 3's fit reduces its scalar logs across workers with strategy.reduce(MEAN, axis=0), "
                    "which fails under MultiWorkerMirroredStrategy (ValueError: Invalid reduction dimension 0 "
                    "for input with 0 dimensions; tensorflow/tensorflow#72388)")
        if strategy != "none" and mode == "function" and steps_per_call > 1:
            # Measured here: fit and train_function both fail from the second step of one call.
            return ("under a strategy, Keras 3's steps_per_execution loop runs each step inside a tf.cond, and "
                    "the optimizer's cross-replica merge_call fails there (InvalidArgumentError: You must feed "
                    "a value for placeholder tensor; keras-team/keras#19246): K = 1 only")
        return super().unsupported(workload, mode, strategy, steps_per_call)

    @classmethod
    def known_cost(cls, workload, mode, steps_per_call, device_kind="cpu"):
        # What fit's own loop (keras/src/backend/tensorflow/trainer.py, Keras 3) adds to each step.
        if mode == "xla" and steps_per_call > 1:
            return ("fit pulls each batch from a tf.data iterator, which XLA cannot compile, so Keras compiles "
                    "only the step with XLA and calls it K times from a plain tf.function loop: K XLA launches "
                    "per call, where a hand-written loop compiles all K steps into one")
        if mode == "xla":
            return ("fit calls its XLA-compiled step from a plain tf.function that pulls the batch from a "
                    "tf.data iterator: two calls per step, where a hand-written loop makes one")
        loop = ("each step pulls its batch from a tf.data iterator through a tf.distribute strategy and "
                "updates fit's metric variables (running loss and accuracy): more small ops per step")
        return "; ".join(filter(None, [loop, conv_bias_cost(workload, mode, device_kind)]))

    def _build(self, weights):
        policy = self.config.precision  # float32 unless a mixed-precision run asks (implementations/precision.py)
        layers = [keras_layer(spec, policy) for spec in self.workload.layers] + float32_output(policy)
        self.model = keras.Sequential([keras.Input(INPUT_SHAPE), *layers])
        self.model.set_weights(weights)
        mode = self.config.mode
        self.model.compile(
            # float16: wrapped in a LossScaleOptimizer here (compile would do it only for a model whose own
            # policy is mixed_float16; the Sequential's is not, its layers' are), so fit scales the loss.
            optimizer=precision.keras_optimizer(self.config.optimizer.make(), policy),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=["accuracy"],
            run_eagerly=mode == "eager",
            jit_compile=mode == "xla",
            steps_per_execution=self.config.steps_per_call,
        )
        # fit() would build these on its first call; the harness calls train_function directly.
        self.model.optimizer.build(self.model.trainable_variables)
        if self.strategy is not None:
            # What fit() does first under a strategy (Keras 3's TF trainer, _maybe_symbolic_build): create
            # the metric variables now, under the scope, since the compiled step may not create any.
            self.model._symbolic_build(data_batch=(tf.zeros((1, *INPUT_SHAPE)), tf.zeros((1,), tf.int32)))
        self.model.make_train_function()

    def _batches(self, xs, ys, repeat=False):
        """fit's data path: an iterator over the batches; under a strategy, split among the replicas."""
        if self.strategy is not None:
            return distribute.distributed_batches(self.strategy, xs, ys, repeat=repeat)
        dataset = tf.data.Dataset.from_tensor_slices((xs, ys))
        return iter(dataset.repeat() if repeat else dataset)

    def steps(self, xs, ys):
        iterator = self._batches(xs, ys)
        logs = None
        for _ in range(0, int(xs.shape[0]), self.config.steps_per_call):
            logs = self.model.train_function(iterator)  # K steps per call
        # Keras's "loss" is the running mean since the metrics were last reset;
        # forcing it forces every step before it.
        return logs["loss"]

    def runner(self, xs_calls, ys_calls):
        # fit's own data path: batches pulled from a repeated tf.data iterator.
        xs = tf.concat(list(xs_calls), axis=0)
        ys = tf.concat(list(ys_calls), axis=0)
        iterator = self._batches(xs, ys, repeat=True)
        train_function = self.model.train_function

        def call():
            return train_function(iterator)["loss"]

        return call

    def evaluate(self, x, y, batch_size=1000):
        logs = self.model.evaluate(x, y, batch_size=batch_size, verbose=0, return_dict=True)
        return float(logs["loss"]), float(logs["accuracy"])

    def _train_epochs(self, x_all, y_all, plan, epoch_done):
        # One fit() call for all epochs, as a user would write it, fed the
        # shared batch plan (so keras_fit sees the same batches as every other
        # approach) through tf.data. Each pass over the dataset yields the
        # current epoch's batches and then *ends*: given steps_per_epoch
        # instead, Keras runs ceil(steps / steps_per_execution) full calls
        # and an epoch spills into the next one when K does not divide it.
        # The dataset states its length (every epoch of the plan has the same
        # number of batches). A generator's length is otherwise unknown, and
        # Keras then finds the end of each epoch by one more train_function
        # call that fails for want of data: it warns "Your input ran out of
        # data" every epoch, and with K = 1 that failing call still advances
        # the optimizer's step counter, so Adam's bias correction ran one step
        # ahead per epoch and keras_fit's weights left the other approaches'.
        timer = _EpochTimer(epoch_done)

        def epoch_indices():
            yield from plan[timer.epoch]

        dataset = (tf.data.Dataset.from_generator(epoch_indices,
                                                  output_signature=tf.TensorSpec([None], tf.int64))
                   .apply(tf.data.experimental.assert_cardinality(len(plan[0])))
                   .map(lambda index: (tf.gather(x_all, index), tf.gather(y_all, index)))
                   .prefetch(tf.data.AUTOTUNE))
        self.model.fit(dataset, epochs=len(plan), shuffle=False, verbose=0, callbacks=[timer])  # planned order

    def compiled_functions(self):
        # Keras 3 (keras/src/backend/tensorflow/trainer.py, make_train_function) hands out a plain Python
        # closure; the tf.functions are in its closure cells: multi_step_on_iterator (reduce_retracing=True)
        # around one_step_on_data (reduce_retracing=True, jit_compile=model.jit_compile).
        return tf_functions_in(self.model.train_function)

    def variables_in_order(self):
        return self.model.weights


def tf_functions_in(fn, depth: int = 4) -> list:
    """Every ``tf.function`` reachable from ``fn`` through closure cells (wrappers included), outermost first."""
    found, seen, frontier = [], set(), [fn]
    for _ in range(depth + 1):
        following = []
        for item in frontier:
            if id(item) in seen or item is None:
                continue
            seen.add(id(item))
            if hasattr(item, "experimental_get_tracing_count"):
                found.append(item)
                item = getattr(item, "python_function", None)  # what it wraps may hold more
            for cell in getattr(item, "__closure__", None) or ():
                try:
                    value = cell.cell_contents
                except ValueError:  # a cell not yet filled
                    continue
                if callable(value):
                    following.append(value)
        frontier = following
    return found


APPROACH = KerasFit
