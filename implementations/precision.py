"""Mixed precision for every approach: the policies, and the pieces the raw styles write by hand.

Three policies, by Keras's names: ``float32`` (the default: nothing changes), ``mixed_bfloat16`` and
``mixed_float16``. In a mixed policy the weights stay float32 (the *master copy* the optimizer updates) and
the layers compute in the 16-bit type; logits go back to float32 before the loss, as Keras's
mixed-precision guide advises for the last layer. float16 has a narrow exponent range, so small gradients
underflow to zero: its loss is multiplied by a *loss scale* before the gradients are taken and the
gradients divided by it afterwards; a step whose scaled gradients overflowed is skipped and the scale
halved (dynamic loss scaling). bfloat16 has float32's exponent range and needs no scaling.

The Keras styles get all of this from Keras: a ``dtype`` policy on each layer, and (float16, hand-written
loops) a ``keras.optimizers.LossScaleOptimizer`` whose ``scale_loss`` and ``apply`` do the scaling. The raw
styles (``raw_tf_nn``, ``naive_sequential``) have no layers to hold a policy: they cast by hand
(:func:`cast_for_compute`) and scale by hand (:class:`DynamicLossScale`), the same algorithm as Keras's.

Not an approach (no ``APPROACH``): the registry does not list it.
"""

from __future__ import annotations

from tfbench.errors import ConfigError

PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")
COMPUTE_DTYPES = {"float32": "float32", "mixed_bfloat16": "bfloat16", "mixed_float16": "float16"}
# Keras's LossScaleOptimizer defaults, used by the hand-written scale too, so both styles scale alike.
INITIAL_SCALE = 2.0 ** 15
GROWTH_STEPS = 2000


def check(precision: str) -> str:
    if precision not in PRECISIONS:
        raise ConfigError(f"unknown precision {precision!r}; choose one of: {', '.join(PRECISIONS)}")
    return precision


def compute_dtype(precision: str) -> str:
    """The dtype the layers compute in under ``precision`` (the variables are float32 in all three)."""
    return COMPUTE_DTYPES[check(precision)]


def needs_loss_scaling(precision: str) -> bool:
    return check(precision) == "mixed_float16"


def cast_for_compute(tensor, precision: str):
    """``tensor`` in the compute dtype; float32 is returned untouched (no Cast op: float32 numerics stay
    bit-identical to a build without precision at all)."""
    if precision == "float32":
        return tensor
    import tensorflow as tf

    return tf.cast(tensor, compute_dtype(precision))


def keras_optimizer(optimizer, precision: str):
    """``optimizer`` wrapped in a ``LossScaleOptimizer`` under float16 (Keras's guide, custom loops)."""
    if not needs_loss_scaling(precision):
        return optimizer
    import keras

    return keras.optimizers.LossScaleOptimizer(optimizer, initial_scale=INITIAL_SCALE,
                                               dynamic_growth_steps=GROWTH_STEPS)


class DynamicLossScale:
    """Dynamic loss scaling by hand, for the raw styles: Keras's ``LossScaleOptimizer`` algorithm.

    ``scale(loss)`` multiplies the loss (inside the tape); ``apply(grads, update)`` divides the gradients by
    the scale and, only if all of them are finite, calls ``update(unscaled grads)``; after
    :data:`GROWTH_STEPS` finite steps in a row the scale doubles, after an overflow it halves.
    """

    def __init__(self, initial_scale: float = INITIAL_SCALE, growth_steps: int = GROWTH_STEPS):
        import tensorflow as tf

        self.value = tf.Variable(initial_scale, dtype=tf.float32, trainable=False, name="loss_scale")
        self.good_steps = tf.Variable(0, dtype=tf.int64, trainable=False, name="loss_scale_good_steps")
        self.growth_steps = growth_steps

    def scale(self, loss):
        return loss * self.value

    def apply(self, grads, update) -> None:
        import tensorflow as tf

        unscaled = [g / self.value for g in grads]
        finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(g)) for g in unscaled])

        def finite_step():
            update(unscaled)
            grow = tf.equal(self.good_steps, self.growth_steps - 1)
            self.value.assign(tf.where(grow, self.value * 2.0, self.value))
            self.good_steps.assign(tf.where(grow, tf.constant(0, tf.int64), self.good_steps + 1))
            return tf.constant(True)

        def overflow():  # skip the update: the gradients are garbage; try a smaller scale next step
            self.value.assign(self.value * 0.5)
            self.good_steps.assign(0)
            return tf.constant(False)

        tf.cond(finite, finite_step, overflow)
