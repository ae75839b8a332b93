"""Planted code changes for ``tfbench calibrate-gate``: real changes to what a training step computes.

The busy-wait of ``--inject-slowdown`` adds time on the critical path of every step, which any thread setting
sees. A pull request can also slow a step in other shapes, and the gate must be calibrated on them too:

* ``extra_op``: every optimizer update also computes an independent matmul that nothing in the step waits
  for: off the critical path. It reads the first weight matrix ``W`` (rows x cols) and computes ``W[:, :k]^T
  W[:, :k]``, with ``k`` sized so that its FLOPs are :data:`EXTRA_OP_FRACTION` of the training step's (6 x
  parameters in weight matrices x the gate's batch of 128, which is exact for the gate's MLP). Its result goes
  to a variable of its own, so TensorFlow cannot prune it, and the weights' update does not depend on it.
  Where a core is idle (one thread per op, ops side by side on two cores) it runs beside the step for free;
  on one busy core it costs its full time. Both gate approaches (``custom_tape`` and ``keras_fit``) update
  through ``keras.optimizers.Optimizer.apply``, which is where it is planted.
* ``broken``: building the ``custom_tape`` approach raises, as a pull request that breaks it would: the gate
  must report it broken, every time.
* ``no_update``: every optimizer update is skipped (``Optimizer.apply`` returns at once): the step gets faster
  by not doing its work. The gate must say "changed results" (the results check, :mod:`benchmarks.gate.checks`),
  not "improved".

Used as the process's entry point in place of the CLI: ``python -m tfbench.benchmarks.gate.plant PLANT run
...`` installs the change, then runs ``tfbench`` with the remaining arguments.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

PLANTS = {
    "extra_op": "an independent matmul of ~10 % of the step's FLOPs in every update, off the critical path",
    "broken": "building custom_tape raises (a pull request that breaks an approach)",
    "no_update": "every optimizer update is skipped: a faster step that no longer trains",
}
EXTRA_OP_FRACTION = 0.10
GATE_BATCH_SIZE = 128
BROKEN_APPROACH = "custom_tape"
SINKS: dict = {}  # id(optimizer) -> the variable that receives its extra op's result (so it is not pruned)


def extra_op_columns(rows: int, step_flops: float, fraction: float = EXTRA_OP_FRACTION) -> int:
    """``k`` such that the matmul ``W[:, :k]^T W[:, :k]`` (2 x rows x k^2 FLOPs) is ``fraction`` of the step."""
    return max(1, round((fraction * step_flops / (2.0 * rows)) ** 0.5))


def plant_extra_op() -> Callable[[], None]:
    """Plant the extra op; returns the function that removes it. Its results land in :data:`SINKS`."""
    import keras
    import tensorflow as tf

    # The class that defines apply (BaseOptimizer in Keras 3): every optimizer's update goes through it.
    owner = next(cls for cls in keras.optimizers.Optimizer.__mro__ if "apply" in vars(cls))
    original = owner.apply
    sinks = SINKS

    def apply(self, grads, trainable_variables=None):
        variables = list(trainable_variables if trainable_variables is not None else self._trainable_variables)
        matrices = [v for v in variables if len(v.shape) == 2]
        if matrices:
            weights = matrices[0]
            step_flops = 6.0 * GATE_BATCH_SIZE * sum(int(v.shape[0]) * int(v.shape[1]) for v in matrices)
            k = min(int(weights.shape[1]), extra_op_columns(int(weights.shape[0]), step_flops))
            if id(self) not in sinks:
                with tf.init_scope():  # made once, outside any traced function
                    sinks[id(self)] = tf.Variable(0.0, trainable=False, name="planted_extra_op")
            block = tf.convert_to_tensor(weights)[:, :k]
            sinks[id(self)].assign(tf.reduce_sum(tf.matmul(block, block, transpose_a=True)))
        return original(self, grads, trainable_variables)

    owner.apply = apply
    return lambda: setattr(owner, "apply", original)


def plant_broken() -> Callable[[], None]:
    """Plant the failure; returns the function that removes it."""
    import tfbench.implementations as implementations

    original = implementations.build

    def build(name, *args, **kwargs):
        if name == BROKEN_APPROACH:
            raise RuntimeError(f"planted failure: {BROKEN_APPROACH} is broken")
        return original(name, *args, **kwargs)

    implementations.build = build
    return lambda: setattr(implementations, "build", original)


def plant_no_update() -> Callable[[], None]:
    """Plant the skipped update; returns the function that removes it."""
    import keras

    owner = next(cls for cls in keras.optimizers.Optimizer.__mro__ if "apply" in vars(cls))
    original = owner.apply

    def apply(self, grads, trainable_variables=None):
        return None  # the weights stay as they are: nothing is learnt, and the step is cheaper

    owner.apply = apply
    return lambda: setattr(owner, "apply", original)


def install(plant: str) -> Callable[[], None]:
    """Plant ``plant`` in this process; returns the function that removes it."""
    return {"extra_op": plant_extra_op, "broken": plant_broken, "no_update": plant_no_update}[plant]()


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in PLANTS:
        print(f"usage: python -m {__spec__.name} {{{','.join(PLANTS)}}} TFBENCH_ARGS...", file=sys.stderr)
        return 2
    install(argv[0])
    from tfbench.benchmarks.cli import main as tfbench_main

    return tfbench_main(argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
