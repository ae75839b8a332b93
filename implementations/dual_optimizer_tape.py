"""A persistent ``tf.GradientTape`` and two optimizers: one for the lower layers, one for the upper.

From Hands-On Machine Learning 2nd ed. ch. 12, exercise 10(b): the network is
two ``keras.Sequential`` blocks (lower: the conv block, or the first dense
layer of an MLP; upper: the rest). One forward pass is recorded on a
*persistent* tape, so that ``tape.gradient`` can be called twice, once per
block, each block's gradients going to its own optimizer (the book: Adam
2e-3 below, Nadam 1e-3 above). Use it for discriminative learning rates, or
to train part of a network with another optimizer. A persistent tape holds
its intermediate tensors until it is deleted, so it is released after use.

Under a ``tf.distribute`` strategy, both blocks and both optimizers are
created under ``strategy.scope()`` (each optimizer's state is mirrored on
every replica), and :meth:`DualOptimizerTape.replica_step` records the
replica's share of the loss, divided by the *global* batch, on the
persistent tape; each optimizer sums its block's gradients across replicas.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from tfbench.implementations import precision
from tfbench.implementations.interface import LoopTrainer, OptimizerSpec
from tfbench.implementations.keras_layers import conv_bias_cost, float32_output, keras_layer


class DualOptimizerTape(LoopTrainer):
    name = "dual_optimizer_tape"
    summary = "persistent tf.GradientTape, one optimizer for the lower layers and one for the upper"
    source = "Hands-On Machine Learning 2nd ed. ch. 12, exercise 10"
    # The book's optimizers, used when none are given (the benchmark gives both
    # blocks the same optimizer, so that only the loop style is compared).
    default_optimizers = (OptimizerSpec("adam", 2e-3), OptimizerSpec("nadam", 1e-3))

    @classmethod
    def known_cost(cls, workload, mode, steps_per_call, device_kind="cpu"):
        if mode == "eager":
            # Compiled, the graph holds the repeated backward ops twice too, but TensorFlow's graph optimizer
            # merges them: measured, the compiled step keeps pace with custom_tape's.
            return ("the persistent tape's two gradient calls each run the backward pass from the loss, so the "
                    "upper layers' backward pass runs twice, and two optimizers apply their updates one by one")
        return (conv_bias_cost(workload, mode, device_kind)
                or super().known_cost(workload, mode, steps_per_call, device_kind))

    def _build(self, weights):
        split, policy = self.workload.lower_layers, self.config.precision
        self.lower_layers = keras.Sequential([keras_layer(s, policy) for s in self.workload.layers[:split]],
                                             name="lower")
        self.upper_layers = keras.Sequential([keras_layer(s, policy) for s in self.workload.layers[split:]]
                                             + float32_output(policy), name="upper")
        self.model = keras.Sequential([keras.Input((28, 28, 1)), self.lower_layers, self.upper_layers])
        self.model.set_weights(weights)
        self.loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        # Under a strategy: one loss per example, averaged over the global batch in replica_step.
        self.per_example_loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction=None)
        # float16: each optimizer a LossScaleOptimizer with its own scale (Keras's mixed-precision guide).
        self.lower_optimizer = precision.keras_optimizer(self.config.optimizer.make(), policy)
        self.upper_optimizer = precision.keras_optimizer(
            (self.config.upper_optimizer or self.config.optimizer).make(), policy)
        self.lower_optimizer.build(self.lower_layers.trainable_variables)
        self.upper_optimizer.build(self.upper_layers.trainable_variables)

    def train_step(self, x, y):
        with tf.GradientTape(persistent=True) as tape:
            logits = self.model(x, training=True)  # training=True: BatchNormalization updates its statistics
            loss = self.loss_fn(y, logits)
            # float16: each optimizer's own scaled loss, recorded on the tape (its apply unscales).
            scaled = ([self.lower_optimizer.scale_loss(loss), self.upper_optimizer.scale_loss(loss)]
                      if precision.needs_loss_scaling(self.config.precision) else [loss, loss])
        for layers, optimizer, objective in ((self.lower_layers, self.lower_optimizer, scaled[0]),
                                             (self.upper_layers, self.upper_optimizer, scaled[1])):
            grads = tape.gradient(objective, layers.trainable_variables)
            optimizer.apply_gradients(zip(grads, layers.trainable_variables))
        del tape  # a persistent tape keeps the forward pass alive until released
        return loss, logits

    def replica_step(self, x, y):
        # One replica's share: each optimizer all-reduces (sums) its block's gradients over the replicas,
        # so the loss is divided by the global batch (compute_average_loss), not by this replica's slice.
        with tf.GradientTape(persistent=True) as tape:
            logits = self.model(x, training=True)
            loss = tf.nn.compute_average_loss(self.per_example_loss_fn(y, logits))
        for layers, optimizer in ((self.lower_layers, self.lower_optimizer),
                                  (self.upper_layers, self.upper_optimizer)):
            grads = tape.gradient(loss, layers.trainable_variables)
            optimizer.apply_gradients(zip(grads, layers.trainable_variables))
        del tape
        return loss, logits

    def forward(self, x):
        return self.model(x, training=False)

    def variables_in_order(self):
        return self.model.weights


APPROACH = DualOptimizerTape
