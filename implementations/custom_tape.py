"""A subclassed ``keras.Model`` trained by a hand-written ``tf.GradientTape`` loop.

The style of Hands-On Machine Learning 2nd ed. ch. 12 ("Custom Training
Loops") and of the ANN-with-GradientTape tutorial built on it: layers are
created in ``__init__``, the forward pass is written in ``call``, and each
step records the forward pass on a tape, takes the gradients and hands them to
``optimizer.apply_gradients``. Use it when ``fit`` does not do what you need
(several losses, unusual updates) and you still want Keras layers.

Modes: ``eager`` runs the step as plain Python; ``function`` wraps it in
``tf.function``; ``xla`` in ``tf.function(jit_compile=True)``.

Under a ``tf.distribute`` strategy (TensorFlow's "Custom training with
tf.distribute.Strategy" guide): the model and optimizer are created under
``strategy.scope()``, each replica runs :meth:`CustomTape.replica_step` on its
slice of the global batch (``strategy.run``), the loss keeps one value per
example and ``tf.nn.compute_average_loss`` divides their sum by the *global*
batch, and ``apply_gradients`` sums the replicas' gradients (all-reduce).
"""

from __future__ import annotations

import keras
import tensorflow as tf

from tfbench.implementations import precision
from tfbench.implementations.interface import LoopTrainer
from tfbench.implementations.keras_layers import conv_bias_cost, float32_output, keras_layer


class SubclassedModel(keras.Model):
    """The workload's network: layers made in ``__init__``, applied in ``call``."""

    def __init__(self, workload, policy: str = "float32"):
        super().__init__(name=workload.name)
        self.blocks = [keras_layer(spec, policy) for spec in workload.layers] + float32_output(policy)

    def call(self, x, training=False):
        for block in self.blocks:
            # BatchNormalization must be told it is training, or its moving
            # statistics never update: the bug in the Hands-On ML exercise
            # 10 loop that leaves validation accuracy at 0.10.
            x = block(x, training=training)
        return x


class CustomTape(LoopTrainer):
    name = "custom_tape"
    summary = "subclassed keras.Model + one tf.GradientTape per step + optimizer.apply_gradients"
    source = "Hands-On Machine Learning 2nd ed. ch. 12 (custom training loops)"

    @classmethod
    def known_cost(cls, workload, mode, steps_per_call, device_kind="cpu"):
        if mode == "eager":
            # Measured against raw_tf_nn, whose step differs only in these two (docs/performance.md).
            return ("in eager mode each Keras layer call runs Keras's `Layer.__call__` in Python (input checks, "
                    "autocasting, name scopes), and the Keras loss adds ops of its own; raw tf.nn ops skip both")
        return (conv_bias_cost(workload, mode, device_kind)
                or super().known_cost(workload, mode, steps_per_call, device_kind))

    def _build(self, weights):
        self.model = SubclassedModel(self.workload, self.config.precision)
        self.model(tf.zeros((1, 28, 28, 1)))  # a subclassed model creates its weights on first call
        self.model.set_weights(weights)
        self.loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        # Under a strategy: one loss per example, averaged over the global batch in replica_step.
        self.per_example_loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction=None)
        # float16: a LossScaleOptimizer (Keras's mixed-precision guide); otherwise the optimizer itself.
        self.optimizer = precision.keras_optimizer(self.config.optimizer.make(), self.config.precision)
        self.optimizer.build(self.model.trainable_variables)

    def train_step(self, x, y):
        with tf.GradientTape() as tape:
            logits = self.model(x, training=True)
            loss = self.loss_fn(y, logits)  # Keras losses take (y_true, y_pred)
            # float16: the loss times the loss scale (a LossScaleOptimizer's apply divides the gradients by
            # it again); every other optimizer's scale_loss returns the loss itself.
            scaled = self.optimizer.scale_loss(loss) if precision.needs_loss_scaling(self.config.precision) else loss
        grads = tape.gradient(scaled, self.model.trainable_variables)
        self.optimizer.apply_gradients(zip(grads, self.model.trainable_variables))
        return loss, logits

    def replica_step(self, x, y):
        # The same step on one replica's slice of the global batch. apply_gradients sums the replicas'
        # gradients, so the loss is divided by the global batch, not by this slice (reduce_mean would
        # make the step N times too large with N replicas).
        with tf.GradientTape() as tape:
            logits = self.model(x, training=True)
            loss = tf.nn.compute_average_loss(self.per_example_loss_fn(y, logits))
        grads = tape.gradient(loss, self.model.trainable_variables)
        self.optimizer.apply_gradients(zip(grads, self.model.trainable_variables))
        return loss, logits

    def forward(self, x):
        return self.model(x, training=False)

    def variables_in_order(self):
        return self.model.weights


APPROACH = CustomTape
