"""The workload's layer specs as Keras layers, for the approaches built on Keras.

Kernels and biases are set from the workload's common initial weights after
the model is built, so the Keras initialisers used here never matter.
"""

from __future__ import annotations

import keras

from tfbench.implementations.workloads import BatchNorm, Conv2D, Dense, Flatten, LayerSpec, MaxPool, ReLU


def conv_bias_cost(workload, mode: str, device_kind: str = "cpu") -> str | None:
    """The measured cost of Keras's convolution bias under plain ``tf.function``, shared by the approaches
    built on Keras layers (see ``Trainer.known_cost``); None where it does not apply. A fact of oneDNN's
    CPU kernels, so stated for the CPU only."""
    if mode == "function" and workload.has(Conv2D) and device_kind == "cpu":
        return ("Keras adds a convolution's bias with BiasAdd, which oneDNN fuses into the filter gradient "
                "(Conv2DBackpropFilterWithBias in the profile); here that measured slower than raw_tf_nn's "
                "plain `+ bias` (8% in a stand-alone step)")
    return None


def keras_layer(spec: LayerSpec, precision: str = "float32") -> keras.layers.Layer:
    """The Keras layer of ``spec``; under a mixed ``precision`` it carries that dtype policy (float32
    weights, 16-bit compute). float32 passes no ``dtype`` at all: the layer is exactly the default one."""
    policy = {} if precision == "float32" else {"dtype": precision}
    if isinstance(spec, Dense):
        return keras.layers.Dense(spec.units, activation=spec.activation, **policy)
    if isinstance(spec, Conv2D):
        return keras.layers.Conv2D(spec.filters, spec.kernel_size, strides=spec.strides,
                                   padding=spec.padding, activation=spec.activation, **policy)
    if isinstance(spec, MaxPool):
        return keras.layers.MaxPooling2D(spec.pool_size, strides=spec.strides, padding=spec.padding, **policy)
    if isinstance(spec, BatchNorm):
        return keras.layers.BatchNormalization(momentum=spec.momentum, epsilon=spec.epsilon, **policy)
    if isinstance(spec, ReLU):
        return keras.layers.ReLU(**policy)
    if isinstance(spec, Flatten):
        return keras.layers.Flatten(**policy)
    raise TypeError(f"no Keras layer for {spec!r}")


def float32_output(precision: str) -> list[keras.layers.Layer]:
    """Under a mixed policy, a last layer that casts the logits back to float32 (Keras's mixed-precision
    guide: the loss and softmax in float32); nothing under float32. It holds no weights."""
    return [] if precision == "float32" else [keras.layers.Activation("linear", dtype="float32", name="to_float32")]
