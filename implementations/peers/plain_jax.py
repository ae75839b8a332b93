"""The plain-JAX reference: the workload's network and one training step written in JAX by hand.

What a JAX user would write for the suite's step (forward, softmax cross-entropy, gradient, optimizer update)
with nothing between the step and XLA: the parameters are a tuple of arrays, the step is a pure function
compiled by ``jax.jit`` with the parameters and optimizer state *donated* (XLA updates them in place, as
TensorFlow's resource variables are), and K steps per call are one ``lax.scan`` inside that one compiled call.

Fair by construction: the layers come from the workload's specs (:mod:`implementations.workloads`), the
initial weights are the suite's NumPy draw (``Workload.init_weights``), and the optimizer is Keras 3's
update written out, so the same weights and batches give the same weights after N steps (tests/test_peers.py):

* Adam (Keras 3 ``optimizers/adam.py``): ``alpha = lr * sqrt(1 - b2^t) / (1 - b1^t)``,
  ``m += (g - m)(1 - b1)``, ``v += (g^2 - v)(1 - b2)``, ``w -= alpha * m / (sqrt(v) + eps)``: epsilon is added
  to sqrt(v) *after* the bias correction went into alpha (not to the corrected sqrt(v_hat) of the paper);
  b1 0.9, b2 0.999, eps 1e-7, Keras's defaults;
* SGD: ``w -= lr * g`` (Keras's default momentum 0).

Only the layers the step-time workloads use are written (Dense, Conv2D, ReLU, MaxPool, Flatten); a workload
with BatchNorm is :class:`~tfbench.errors.Unsupported` here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial

import numpy as np

from tfbench.errors import Unsupported
from tfbench.implementations.workloads import Conv2D, Dense, Flatten, MaxPool, ReLU, Workload

ADAM = {"beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7}  # Keras 3's defaults
OPTIMIZERS = ("adam", "sgd")


def unsupported(workload: Workload, optimizer: str = "adam") -> str | None:
    """Why the plain-JAX step cannot run ``workload`` with ``optimizer``, or None."""
    other = [type(spec).__name__ for spec in workload.layers if not isinstance(spec, (Dense, Conv2D, ReLU, MaxPool,
                                                                                      Flatten))]
    if other:
        return f"the plain-JAX reference writes Dense, Conv2D, ReLU, MaxPool and Flatten only, not {other[0]}"
    if optimizer not in OPTIMIZERS:
        return f"the plain-JAX reference writes Keras's Adam and SGD only, not {optimizer}"
    return None


def forward(workload: Workload, params: Sequence, x):
    """Logits of a batch ``x`` (batch, 28, 28, 1) NHWC, the kernels HWIO as Keras keeps them."""
    import jax
    from jax import lax

    params = iter(params)
    for spec in workload.layers:
        if isinstance(spec, Dense):
            x = x @ next(params) + next(params)
            x = jax.nn.relu(x) if spec.activation == "relu" else x
        elif isinstance(spec, Conv2D):
            kernel, bias = next(params), next(params)
            x = lax.conv_general_dilated(x, kernel, (spec.strides, spec.strides), spec.padding.upper(),
                                         dimension_numbers=("NHWC", "HWIO", "NHWC")) + bias
            x = jax.nn.relu(x) if spec.activation == "relu" else x
        elif isinstance(spec, ReLU):
            x = jax.nn.relu(x)
        elif isinstance(spec, MaxPool):
            stride = spec.strides or spec.pool_size
            x = lax.reduce_window(x, -np.inf, lax.max, (1, spec.pool_size, spec.pool_size, 1), (1, stride, stride, 1),
                                  spec.padding.upper())
        elif isinstance(spec, Flatten):
            x = x.reshape(x.shape[0], -1)  # row-major NHWC, as keras.layers.Flatten
    return x


def loss_fn(workload: Workload, params, x, y):
    """Softmax cross-entropy of the logits, averaged over the batch (SparseCategoricalCrossentropy(from_logits))."""
    import jax
    import jax.numpy as jnp

    logp = jax.nn.log_softmax(forward(workload, params, x))
    return -jnp.mean(jnp.take_along_axis(logp, y[:, None].astype(jnp.int32), axis=1))


def init_state(params: Sequence, optimizer: str = "adam"):
    """The optimizer's state: (step count, m, v) for Adam, the step count alone for SGD."""
    import jax.numpy as jnp

    step = jnp.zeros((), jnp.float32)
    if optimizer == "sgd":
        return (step,)
    return step, tuple(jnp.zeros_like(p) for p in params), tuple(jnp.zeros_like(p) for p in params)


def update(params, grads, state, optimizer: str, learning_rate: float):
    """One optimizer update, Keras 3's arithmetic in Keras's order (see the module docstring)."""
    import jax.numpy as jnp

    step = state[0] + 1
    if optimizer == "sgd":
        return tuple(p - learning_rate * g for p, g in zip(params, grads)), (step,)
    b1, b2, eps = ADAM["beta_1"], ADAM["beta_2"], ADAM["epsilon"]
    alpha = learning_rate * jnp.sqrt(1 - b2 ** step) / (1 - b1 ** step)
    m = tuple(m + (g - m) * (1 - b1) for m, g in zip(state[1], grads))
    v = tuple(v + (jnp.square(g) - v) * (1 - b2) for v, g in zip(state[2], grads))
    params = tuple(p - (mi * alpha) / (jnp.sqrt(vi) + eps) for p, mi, vi in zip(params, m, v))
    return params, (step, m, v)


def make_step(workload: Workload, steps_per_call: int = 1, optimizer: str = "adam",
              learning_rate: float = 1e-3) -> Callable:
    """``step(params, state, xs, ys) -> (params, state, last loss)``: K steps over the stacks ``xs`` (K, batch,
    28, 28, 1) and ``ys`` (K, batch) in one compiled call; ``params`` and ``state`` are donated."""
    import jax
    from jax import lax

    grad_fn = jax.value_and_grad(partial(loss_fn, workload))

    def one(carry, batch):
        params, state = carry
        loss, grads = grad_fn(params, *batch)
        params, state = update(params, grads, state, optimizer, learning_rate)
        return (params, state), loss

    def steps(params, state, xs, ys):
        (params, state), losses = lax.scan(one, (params, state), (xs, ys), length=steps_per_call)
        return params, state, losses[-1]

    return jax.jit(steps, donate_argnums=(0, 1))


class PlainJax:
    """The reference row: the workload's network and step in JAX, from the suite's initial weights."""

    name = "plain_jax"

    def __init__(self, workload: Workload, steps_per_call: int = 1, optimizer: str = "adam",
                 learning_rate: float = 1e-3, weights: Sequence[np.ndarray] | None = None, seed: int = 0):
        import jax.numpy as jnp

        reason = unsupported(workload, optimizer)
        if reason:
            raise Unsupported(reason)
        self.workload, self.steps_per_call, self.optimizer = workload, steps_per_call, optimizer
        weights = list(weights) if weights is not None else workload.init_weights(seed)
        self.params = tuple(jnp.asarray(w) for w in weights)
        self.state = init_state(self.params, optimizer)
        self.step = make_step(workload, steps_per_call, optimizer, learning_rate)

    def steps(self, xs, ys):
        """Run ``xs.shape[0]`` steps, K per call; return the last loss, unforced (a jax.Array)."""
        loss = None
        for start in range(0, int(xs.shape[0]), self.steps_per_call):
            end = start + self.steps_per_call
            self.params, self.state, loss = self.step(self.params, self.state, xs[start:end], ys[start:end])
        return loss

    def runner(self, xs_calls: Sequence, ys_calls: Sequence) -> Callable[[], object]:
        """The next K steps on pre-placed stacks, cycling; the loss comes back blocked on (forced)."""
        calls = list(zip(xs_calls, ys_calls))
        position = [0]

        def call():
            xs, ys = calls[position[0] % len(calls)]
            position[0] += 1
            self.params, self.state, loss = self.step(self.params, self.state, xs, ys)
            return loss.block_until_ready()

        return call

    def weights(self) -> list[np.ndarray]:
        return [np.asarray(p) for p in self.params]

    def compiled_hlo(self, xs, ys) -> str:
        """The optimized HLO XLA:CPU runs for one call (to count its fusions against TensorFlow's XLA step)."""
        return self.step.lower(self.params, self.state, xs, ys).compile().as_text()
