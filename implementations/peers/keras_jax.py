"""``keras_fit`` on Keras 3's JAX backend: the same ``keras.Sequential``, ``compile`` and batches as the
TensorFlow style, with JAX under it.

Keras picks its backend once, when it is first imported (``KERAS_BACKEND``), so this module refuses to run
in a process whose Keras is on another backend: the peer stage runs it in a worker process of its own
(:mod:`tfbench.benchmarks.peer_worker`).

What is timed is what ``fit`` runs per call on the JAX backend (Keras 3.15, ``backend/jax/trainer.py``):
``logs, state = model.train_function(state, iterator)``, the state being the tuple of every variable's value
(trainable, non-trainable, optimizer, metrics) and the iterator yielding device-resident batches. The step is
``jax.jit``-compiled with the state donated; with K = ``steps_per_execution`` > 1 Keras calls that one-step
function K times from a Python loop (JAX's trainer does not compile the K steps into one call, unlike its
TensorFlow trainer's ``tf.while_loop``). The loss is forced (``float``) before the clock stops.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Sequence

import numpy as np

from tfbench.implementations.workloads import INPUT_SHAPE, Workload


def require_jax_backend():
    """Keras, checked to be on its JAX backend (KERAS_BACKEND=jax set before Keras was imported)."""
    import keras

    if keras.backend.backend() != "jax":
        raise RuntimeError(f"Keras here runs on {keras.backend.backend()!r}: set KERAS_BACKEND=jax before Keras "
                           "is imported (the peer stage runs this in a worker process of its own)")
    return keras


class KerasJax:
    """``keras_fit``'s model and compile on the JAX backend, from the suite's initial weights."""

    name = "keras_fit"

    def __init__(self, workload: Workload, steps_per_call: int = 1, optimizer: str = "adam",
                 learning_rate: float = 1e-3, weights: Sequence[np.ndarray] | None = None, seed: int = 0):
        from tfbench.implementations.interface import OptimizerSpec

        keras = require_jax_backend()
        from tfbench.implementations.keras_layers import keras_layer

        self.workload, self.steps_per_call = workload, steps_per_call
        self.model = keras.Sequential([keras.Input(INPUT_SHAPE)] + [keras_layer(s) for s in workload.layers])
        self.model.set_weights(list(weights) if weights is not None else workload.init_weights(seed))
        # The same compile as implementations/keras_fit.py in its xla mode: on JAX every step is jit-compiled.
        self.model.compile(optimizer=OptimizerSpec(optimizer, learning_rate).make(),
                           loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                           metrics=["accuracy"], jit_compile=True, steps_per_execution=steps_per_call)
        self.model.optimizer.build(self.model.trainable_variables)
        self.model._symbolic_build(data_batch=(np.zeros((1, *INPUT_SHAPE), np.float32), np.zeros((1,), np.int32)))
        self.model.make_train_function()
        self._state = None

    def _get_state(self):
        # What fit takes at the start of an epoch (backend/jax/trainer.py), the model's variables then purged.
        return self.model._get_jax_state(trainable_variables=True, non_trainable_variables=True,
                                         optimizer_variables=True, metrics_variables=True,
                                         purge_model_variables=True)

    def _sync(self) -> None:
        """Write the state fit's loop carries back into the model's variables (what fit does at the end)."""
        if self._state is None:
            return
        trainable, non_trainable, optimizer_vars, metrics_vars = self._state
        self.model._jax_state = {"trainable_variables": trainable, "non_trainable_variables": non_trainable,
                                 "optimizer_variables": optimizer_vars, "metrics_variables": metrics_vars}
        self.model._jax_state_synced = False
        self.model.jax_state_sync()
        self.model._jax_state = None
        self._state = None

    def runner(self, xs_calls: Sequence, ys_calls: Sequence) -> Callable[[], object]:
        """The next K steps of fit's loop on pre-placed batches (cycled), the loss returned forced."""
        batches = itertools.cycle([(x, y) for xs, ys in zip(xs_calls, ys_calls) for x, y in zip(xs, ys)])
        if self._state is None:
            self._state = self._get_state()
        train_function = self.model.train_function

        def call():
            logs, self._state = train_function(self._state, batches)
            return float(logs["loss"])

        return call

    def steps(self, xs, ys) -> float:
        """Run ``xs.shape[0]`` steps, K per call, through ``train_function``; the last running-mean loss."""
        call = self.runner([xs], [ys])
        loss = None
        for _ in range(0, int(xs.shape[0]), self.steps_per_call):
            loss = call()
        return loss

    def fit_ms_per_step(self, x: np.ndarray, y: np.ndarray, batch_size: int) -> float:
        """keras-benchmarks' method: ``fit`` itself over ``x``, a callback reading the clock at each batch's end;
        the mean ms per step after the first call (compilation) is left out."""
        self._sync()
        return fit_ms_per_step(self.model, x, y, batch_size, self.steps_per_call)

    def weights(self) -> list[np.ndarray]:
        self._sync()
        return [np.asarray(w) for w in self.model.get_weights()]


def fit_ms_per_step(model, x: np.ndarray, y: np.ndarray, batch_size: int, steps_per_call: int) -> float | None:
    """ms per step of ``model.fit`` over ``x`` as a Keras callback sees it (keras-team/keras-benchmarks'
    ``BenchmarkMetricsCallback``): the clock at the end of each call of K steps, the first call excluded.
    Backend-agnostic: the TensorFlow ``keras_fit`` row is cross-checked by the same code."""
    import keras

    class Clock(keras.callbacks.Callback):
        marks: list[float] = []

        def on_train_batch_end(self, batch, logs=None):
            self.marks.append(time.perf_counter())

    clock = Clock()
    clock.marks = []
    model.fit(x, y, batch_size=batch_size, epochs=1, shuffle=False, verbose=0, callbacks=[clock])
    if len(clock.marks) < 2:
        return None
    return 1e3 * (clock.marks[-1] - clock.marks[0]) / ((len(clock.marks) - 1) * steps_per_call)
