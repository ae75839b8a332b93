"""``NaiveDense`` and ``NaiveSequential``: a dense network written from scratch.

Deep Learning with Python ch. 2 ("The engine of neural networks:
gradient-based optimization") rebuilds Keras in a page: a ``NaiveDense``
layer holds ``W`` and ``b`` as ``tf.Variable``s and computes
``activation(matmul(x, W) + b)``; ``NaiveSequential`` chains layers and
gathers their weights; ``one_training_step`` records the forward pass on a
``tf.GradientTape`` and ``update_weights`` subtracts ``learning_rate *
gradient`` from each weight. The book's ``BatchGenerator`` walks the data in
order: here that is the shared batch plan with ``sampling="sequential"``.

Differences from the book, on purpose: the last layer emits logits and the
loss is softmax cross-entropy on them (the book applies a softmax, then a
cross-entropy: the same function, less stable); with an optimizer other than
SGD, a ``keras.optimizers`` instance does the update, as the book suggests.
Dense layers only: the book builds no convolution, so ``cnn`` is unsupported.

Under a ``tf.distribute`` strategy there is no optimizer to all-reduce the
gradients when plain SGD is used: :meth:`NaiveSequentialTrainer.replica_step`
sums them across replicas itself (``ReplicaContext.all_reduce``), and every
replica then subtracts the same update from its copy of the weights.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from tfbench.implementations import precision
from tfbench.implementations.interface import LoopTrainer
from tfbench.implementations.workloads import Dense, Flatten


class NaiveDense:
    def __init__(self, W: np.ndarray, b: np.ndarray, activation, policy: str = "float32"):
        self.W = tf.Variable(W)
        self.b = tf.Variable(b)
        self.activation = activation
        self.policy = policy  # mixed precision: W and b stay float32, the layer computes in 16 bits

    def __call__(self, inputs):
        W, b = (precision.cast_for_compute(w, self.policy) for w in (self.W, self.b))  # float32: W, b themselves
        return self.activation(tf.matmul(inputs, W) + b)

    @property
    def weights(self):
        return [self.W, self.b]


class NaiveSequential:
    def __init__(self, layers):
        self.layers = layers

    def __call__(self, inputs):
        x = inputs
        for layer in self.layers:
            x = layer(x)
        return x

    @property
    def weights(self):
        weights = []
        for layer in self.layers:
            weights += layer.weights
        return weights


def update_weights(gradients, weights, learning_rate):
    for g, w in zip(gradients, weights):
        w.assign_sub(g * learning_rate)


class NaiveSequentialTrainer(LoopTrainer):
    name = "naive_sequential"
    summary = "from-scratch NaiveDense / NaiveSequential, GradientTape, weights updated by assign_sub"
    source = "Deep Learning with Python ch. 2"

    @classmethod
    def unsupported(cls, workload, mode, strategy="none", steps_per_call=1):
        others = sorted({type(s).__name__ for s in workload.layers if not isinstance(s, (Dense, Flatten))})
        if others:
            return (f"NaiveSequential has dense layers only (Deep Learning with Python ch. 2 builds no "
                    f"{', '.join(others)})")
        return super().unsupported(workload, mode, strategy, steps_per_call)

    def _build(self, weights):
        dense_specs = [s for s in self.workload.layers if isinstance(s, Dense)]
        pairs = zip(weights[0::2], weights[1::2])
        self.model = NaiveSequential([
            NaiveDense(W, b, tf.nn.relu if spec.activation == "relu" else tf.identity, self.config.precision)
            for spec, (W, b) in zip(dense_specs, pairs)
        ])
        # float16: the loss scaled by hand (implementations/precision.py), as the book's update is by hand.
        self.loss_scale = (precision.DynamicLossScale() if precision.needs_loss_scaling(self.config.precision)
                           else None)
        self.learning_rate = self.config.optimizer.learning_rate
        # Plain SGD is the book's update_weights; anything else needs an optimizer's state.
        self.optimizer = None if self.config.optimizer.name == "sgd" else self.config.optimizer.make()
        if self.optimizer is not None:
            self.optimizer.build(self.model.weights)

    def forward(self, x):
        policy = self.config.precision
        logits = self.model(precision.cast_for_compute(tf.reshape(x, [-1, 28 * 28]), policy))  # 784-long vectors
        return logits if policy == "float32" else tf.cast(logits, tf.float32)  # the loss in float32

    def train_step(self, x, y):
        with tf.GradientTape() as tape:
            logits = self.forward(x)
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits))
            objective = loss if self.loss_scale is None else self.loss_scale.scale(loss)
        gradients = tape.gradient(objective, self.model.weights)
        if self.loss_scale is None:
            self._update(gradients)
        else:  # unscaled, and applied only if finite
            self.loss_scale.apply(gradients, self._update)
        return loss, logits

    def _update(self, gradients):
        if self.optimizer is None:
            update_weights(gradients, self.model.weights, self.learning_rate)
        else:
            self.optimizer.apply_gradients(zip(gradients, self.model.weights))

    def replica_step(self, x, y):
        with tf.GradientTape() as tape:
            logits = self.forward(x)
            per_example = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits)
            loss = tf.nn.compute_average_loss(per_example)  # this replica's sum / the global batch
        gradients = tape.gradient(loss, self.model.weights)
        if self.optimizer is None:
            # The book's update by hand: first sum the replicas' gradients (what an optimizer would do),
            # which makes them the gradients of the mean over the global batch, the same on every replica.
            gradients = tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, gradients)
            update_weights(gradients, self.model.weights, self.learning_rate)
        else:
            self.optimizer.apply_gradients(zip(gradients, self.model.weights))
        return loss, logits

    def variables_in_order(self):
        return self.model.weights


APPROACH = NaiveSequentialTrainer
