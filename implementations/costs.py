"""What one training step computes and moves: exact FLOPs and minimum bytes, op by op.

A training step of a workload (forward pass, loss, backward pass, optimizer
update) is listed as the ops it needs, each with

* ``flops``: floating-point operations of the whole batch. Matmul and
  convolution FLOPs are 2 per multiply-accumulate, counted the way TensorFlow's
  own cost registry counts them (``tf.compat.v1.profiler``; a "same"
  convolution's taps on the zero padding included, as the kernels compute
  them). Element-wise work (bias, ReLU, pooling, softmax and loss, optimizer
  update) is 1 FLOP per arithmetic operation or comparison per element, an
  ``exp``, ``log`` or ``sqrt`` counted as one, and is kept apart from the
  matmul/convolution FLOPs (``category``);
* ``bytes``: the fewest bytes it must read and write in float32, from the
  workload's shapes. An element-wise op that can run inside the kernel that
  produces its input (a bias or ReLU after a matmul or convolution, a bias
  gradient inside the weight gradient that reads the same output gradient)
  moves no tensor of its own: it is charged only what it adds (its bias
  vector, the activation a ReLU gradient must read). That is what oneDNN's
  and XLA's fused kernels do, so the figure stays a lower bound.

Only the gradients a step needs are counted: the weight gradients of every
layer with parameters and the input gradients of every layer that has a
layer with parameters before it. The first layer's input gradient (with
respect to the images) is never computed, which the usual "3 x forward"
convention (Kaplan et al. 2020's 6N per token) counts anyway: for ``mlp``
that convention gives 1.41 MFLOP per training sample where 1.01 MFLOP is
computed.

This module does not import TensorFlow.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tfbench.errors import Unsupported
from tfbench.implementations.workloads import (
    INPUT_SHAPE,
    NUM_CLASSES,
    BatchNorm,
    Conv2D,
    Dense,
    Flatten,
    MaxPool,
    ReLU,
    Workload,
)

FLOAT32 = 4  # bytes
PHASES = ("forward", "backward", "optimizer")
CATEGORIES = ("matmul", "conv", "pool", "elementwise", "loss", "optimizer")
# FLOPs and tensors read + written per parameter of one update (Keras 3's update_step, default settings):
# adam: m += (g - m)(1 - b1): 3; v += (g^2 - v)(1 - b2): 4; w -= m alpha / (sqrt(v) + eps): 5.
# sgd (no momentum): w -= lr g: 2. rmsprop (no momentum, not centred): v = rho v + (1 - rho) g^2: 4;
# w -= lr g / sqrt(v + eps): 5. nadam: adam's two moments (7), m_hat (6), v_hat (1), the update (5).
# Tensors: the gradient, the weights and each slot are read; the weights and each slot are written.
OPTIMIZER_COSTS = {"adam": (12, 7), "sgd": (2, 3), "rmsprop": (9, 5), "nadam": (19, 7)}


@dataclass(frozen=True)
class OpCost:
    """One op of a training step, for the whole batch."""

    name: str  # e.g. "dense_1 weight gradient"
    layer: int  # index of the workload's layer spec; -1 for the loss and the optimizer
    phase: str  # "forward" | "backward" | "optimizer"
    category: str  # "matmul" | "conv" | "pool" | "elementwise" | "loss" | "optimizer"
    flops: int
    bytes: int  # the fewest bytes read + written, float32

    @property
    def is_model_flops(self) -> bool:
        """Matmul and convolution FLOPs: what MFU counts."""
        return self.category in ("matmul", "conv")


def _elements(shape: tuple[int, ...]) -> int:
    return int(np.prod(shape))


def step_costs(workload: Workload, batch_size: int, optimizer: str = "adam") -> list[OpCost]:
    """Every op of one training step of ``workload`` at ``batch_size``, in execution order.

    Raises :class:`Unsupported` for an optimizer or activation without a cost model.
    """
    if optimizer not in OPTIMIZER_COSTS:
        raise Unsupported(f"no cost model for the {optimizer!r} optimizer")
    b = batch_size
    shapes = workload.layer_output_shapes()
    in_shapes = [INPUT_SHAPE] + shapes[:-1]
    has_params = [isinstance(spec, (Dense, Conv2D)) for spec in workload.layers]
    forward: list[OpCost] = []
    backward: list[OpCost] = []  # built front to back, run back to front
    names: dict[str, int] = {}
    for index, (spec, in_shape, out_shape) in enumerate(zip(workload.layers, in_shapes, shapes)):
        kind = type(spec).__name__.lower()
        names[kind] = names.get(kind, 0) + 1
        label = f"{kind}_{names[kind]}"
        e_in, e_out = b * _elements(in_shape), b * _elements(out_shape)
        # The input gradient is needed only if a layer with parameters lies before this one.
        needs_input_grad = any(has_params[:index])
        layer_backward: list[OpCost] = []

        def op(name, phase, category, flops, nbytes, into, label=label, index=index):
            into.append(OpCost(f"{label} {name}", index, phase, category, int(flops), int(nbytes)))

        if isinstance(spec, (Dense, Conv2D)):
            if isinstance(spec, Dense):
                category, weights = "matmul", in_shape[0] * spec.units
                macs = b * in_shape[0] * spec.units
                channels = spec.units
            else:
                category = "conv"
                weights = spec.kernel_size**2 * in_shape[-1] * spec.filters
                macs = e_out * spec.kernel_size**2 * in_shape[-1]
                channels = spec.filters
            op(category, "forward", category, 2 * macs, FLOAT32 * (e_in + weights + e_out), forward)
            op("bias", "forward", "elementwise", e_out, FLOAT32 * channels, forward)
            if spec.activation == "relu":
                op("relu", "forward", "elementwise", e_out, 0, forward)
                # dZ = dA * (A > 0): a comparison and a select per element; reads the saved activation.
                op("relu gradient", "backward", "elementwise", 2 * e_out, FLOAT32 * e_out, layer_backward)
            elif spec.activation is not None:
                raise Unsupported(f"no cost model for the {spec.activation!r} activation")
            op("weight gradient", "backward", category, 2 * macs, FLOAT32 * (e_in + e_out + weights),
               layer_backward)
            # A sum over the batch (and positions) of the output gradient, read by the weight gradient too.
            op("bias gradient", "backward", "elementwise", e_out, FLOAT32 * channels, layer_backward)
            if needs_input_grad:
                op("input gradient", "backward", category, 2 * macs, FLOAT32 * (e_out + weights + e_in),
                   layer_backward)
        elif isinstance(spec, ReLU):
            op("relu", "forward", "elementwise", e_out, 0, forward)
            if needs_input_grad:
                # Fused into a max-pool gradient after it, which reads this activation anyway.
                pooled = index + 1 < len(workload.layers) and isinstance(workload.layers[index + 1], MaxPool)
                op("relu gradient", "backward", "elementwise", 2 * e_out, 0 if pooled else FLOAT32 * e_out,
                   layer_backward)
        elif isinstance(spec, MaxPool):
            window = spec.pool_size**2
            op("max-pool", "forward", "pool", e_out * (window - 1), FLOAT32 * (e_in + e_out), forward)
            if needs_input_grad:
                # Routes each output gradient to its window's maximum, found again from the input.
                op("max-pool gradient", "backward", "pool", e_out * (window - 1),
                   FLOAT32 * (2 * e_in + e_out), layer_backward)
        elif isinstance(spec, BatchNorm):
            channels = in_shape[-1]
            # Training mode, per element: mean (1), variance (subtract, square, add: 3), normalise (subtract,
            # multiply by the per-channel 1/sqrt: 2), scale and shift (2); per channel: 1/sqrt(var + eps) (3)
            # and the two moving statistics (3 each). Reads the input, writes the output, reads 4 vectors.
            op("batch-norm", "forward", "elementwise", 8 * e_out + 9 * channels,
               FLOAT32 * (e_in + e_out + 4 * channels), forward)
            # Per element: sum(dy) (1), sum(dy * x_hat) with x_hat recomputed (4), and
            # dx = k (dy - mean(dy) - x_hat mean(dy x_hat)) (4). Reads dy and x, writes dx.
            op("batch-norm gradient", "backward", "elementwise", 9 * e_out + 4 * channels,
               FLOAT32 * (3 * e_out + 2 * channels), layer_backward)
        elif isinstance(spec, Flatten):
            pass  # a reshape: no data moves
        else:
            raise Unsupported(f"workload {workload.name!r}: no cost model for {kind} layers")
        # Within a layer the backward runs activation gradient first, then the weight and input gradients.
        backward = layer_backward + backward
    logits = b * NUM_CLASSES
    # Softmax cross-entropy on integer labels, per logit: max, subtract, exp, sum (4); per sample: log and
    # subtract the label's logit (2); the batch mean: b adds and a divide. Reads logits and labels.
    loss = [OpCost("loss", -1, "forward", "loss", logits * 4 + 2 * b + b + 1, FLOAT32 * (logits + b + 1))]
    # Its gradient, from the same kernel: softmax (a divide per logit), minus the one-hot label (1 per sample),
    # times 1/b (1 per logit); writes the logits' gradient.
    loss.append(OpCost("loss gradient", -1, "backward", "loss", 2 * logits + b, FLOAT32 * logits))
    flops_per_param, tensors = OPTIMIZER_COSTS[optimizer]
    update = [OpCost(f"{optimizer} update {p.name}", p.layer, "optimizer", "optimizer",
                     flops_per_param * _elements(p.shape), FLOAT32 * tensors * _elements(p.shape))
              for p in workload.param_specs() if p.trainable]
    return forward + loss + backward + update


@dataclass(frozen=True)
class StepCost:
    """Totals of one training step at one batch size."""

    batch_size: int
    model_flops: int  # matmul + convolution FLOPs (what MFU counts)
    elementwise_flops: int  # everything else: bias, ReLU, pooling, loss, optimizer
    bytes: int  # sum of the ops' minimum bytes

    @property
    def model_flops_per_sample(self) -> float:
        return self.model_flops / self.batch_size


def step_cost(workload: Workload, batch_size: int, optimizer: str = "adam") -> StepCost:
    ops = step_costs(workload, batch_size, optimizer)
    return StepCost(batch_size, sum(o.flops for o in ops if o.is_model_flops),
                    sum(o.flops for o in ops if not o.is_model_flops), sum(o.bytes for o in ops))


def model_flops_per_sample(workload: Workload) -> int:
    """Exact matmul + convolution FLOPs of one training sample (they scale with the batch; the rest need not)."""
    return step_cost(workload, 1).model_flops
