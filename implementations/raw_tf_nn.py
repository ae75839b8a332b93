"""The network from raw ``tf.Variable``s and ``tf.nn`` ops: no Keras layers, no Keras model.

The style of the ConvolutionNetwork class of "Do it! 딥러닝 입문" ch. 8-4
(``tf.nn.conv2d`` + bias -> ``tf.nn.relu`` -> ``tf.nn.max_pool2d`` ->
``tf.reshape`` -> ``tf.matmul``), and of the raw tf.Variable MLP of a blog
post run on an M1 Mac: every weight is a ``tf.Variable`` you create, the
forward pass is written op by op, the loss is
``tf.nn.softmax_cross_entropy_with_logits`` on one-hot labels, and only the
optimizer comes from ``keras.optimizers``. Use it to see what the layers do,
or when you need an op no layer offers.

Under a ``tf.distribute`` strategy the ``tf.Variable``s are created under
``strategy.scope()`` (so each becomes a variable mirrored on every replica),
and :meth:`RawTfNn.replica_step` divides its summed cross-entropy by the
*global* batch with ``tf.nn.compute_average_loss``: the optimizer sums the
replicas' gradients.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from tfbench.implementations import precision
from tfbench.implementations.interface import LoopTrainer
from tfbench.implementations.workloads import NUM_CLASSES, BatchNorm, Conv2D, Dense, Flatten, MaxPool, ReLU


class RawTfNn(LoopTrainer):
    name = "raw_tf_nn"
    summary = "tf.Variable weights, tf.nn.conv2d / max_pool2d / tf.matmul, softmax_cross_entropy_with_logits"
    source = '"Do it! 딥러닝 입문" ch. 8-4 (ConvolutionNetwork); a raw tf.Variable MLP blog post'

    @classmethod
    def unsupported(cls, workload, mode, strategy="none", steps_per_call=1):
        if workload.has(BatchNorm):
            return ("batch normalization's moving statistics are not part of the raw tf.nn tutorials; "
                    "use custom_tape or keras_fit for this network")
        return super().unsupported(workload, mode, strategy, steps_per_call)

    def _build(self, weights):
        specs = self.workload.param_specs()
        self.params = [tf.Variable(w, name=spec.name.replace("/", "_")) for w, spec in zip(weights, specs)]
        self.optimizer = self.config.optimizer.make()
        self.optimizer.build(self.params)
        # Mixed precision by hand: the variables above stay float32 (the master copy the optimizer updates),
        # forward casts them to the compute dtype; float16 scales its loss (implementations/precision.py).
        self.loss_scale = (precision.DynamicLossScale() if precision.needs_loss_scaling(self.config.precision)
                           else None)

    def forward(self, x):
        policy = self.config.precision
        # Under float32 both casts return their input untouched: no op is added.
        params = (precision.cast_for_compute(p, policy) for p in self.params)
        x = precision.cast_for_compute(x, policy)
        for spec in self.workload.layers:
            if isinstance(spec, Conv2D):
                kernel, bias = next(params), next(params)
                x = tf.nn.conv2d(x, kernel, strides=spec.strides, padding=spec.padding.upper()) + bias
                if spec.activation == "relu":
                    x = tf.nn.relu(x)
            elif isinstance(spec, ReLU):
                x = tf.nn.relu(x)
            elif isinstance(spec, MaxPool):
                x = tf.nn.max_pool2d(x, ksize=spec.pool_size, strides=spec.strides or spec.pool_size,
                                     padding=spec.padding.upper())
            elif isinstance(spec, Flatten):
                x = tf.reshape(x, [-1, int(np.prod(x.shape[1:]))])
            elif isinstance(spec, Dense):
                kernel, bias = next(params), next(params)
                x = tf.matmul(x, kernel) + bias
                if spec.activation == "relu":
                    x = tf.nn.relu(x)
        return x if policy == "float32" else tf.cast(x, tf.float32)  # the loss in float32

    def train_step(self, x, y):
        with tf.GradientTape() as tape:
            logits = self.forward(x)
            # The tutorial's loss: softmax cross-entropy against one-hot labels, averaged.
            loss = tf.reduce_mean(
                tf.nn.softmax_cross_entropy_with_logits(labels=tf.one_hot(y, NUM_CLASSES), logits=logits))
            objective = loss if self.loss_scale is None else self.loss_scale.scale(loss)
        grads = tape.gradient(objective, self.params)
        if self.loss_scale is None:
            self.optimizer.apply_gradients(zip(grads, self.params))
        else:  # unscaled, and applied only if finite
            self.loss_scale.apply(grads, lambda unscaled: self.optimizer.apply_gradients(zip(unscaled, self.params)))
        return loss, logits

    def replica_step(self, x, y):
        with tf.GradientTape() as tape:
            logits = self.forward(x)
            per_example = tf.nn.softmax_cross_entropy_with_logits(labels=tf.one_hot(y, NUM_CLASSES), logits=logits)
            # Summed over this replica's slice, divided by the global batch: the optimizer adds up the
            # replicas' gradients, which is then the gradient of the mean over the global batch.
            loss = tf.nn.compute_average_loss(per_example)
        grads = tape.gradient(loss, self.params)
        self.optimizer.apply_gradients(zip(grads, self.params))
        return loss, logits

    def variables_in_order(self):
        return self.params


APPROACH = RawTfNn
