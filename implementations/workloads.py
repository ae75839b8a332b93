"""Workloads: the task, defined once, apart from how it is trained.

A workload owns the network (as a list of layer specs), the seeded
initialiser, the loss, the FLOP count of one training sample (``costs``) and the target
accuracy per dataset (the AlgoPerf workload/submission split). Every approach
in this package builds *the same* network from these specs in its own style,
and starts from the same weights, which is what makes the comparison fair.

All workloads take 28x28x1 float32 images in [0, 1] and integer labels 0-9,
and emit logits; the loss is softmax cross-entropy on the logits, averaged
over the batch. (Tutorials that put a softmax on the last layer and use
``CategoricalCrossentropy`` compute the same function less stably.)

This module does not import TensorFlow: the specs are plain data.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from tfbench.errors import ConfigError

INPUT_SHAPE = (28, 28, 1)
NUM_CLASSES = 10


# --- layer specs -------------------------------------------------------------


@dataclass(frozen=True)
class Flatten:
    """Flatten NHWC to (batch, H*W*C) in row-major order, as Keras and tf.reshape do."""


@dataclass(frozen=True)
class Dense:
    units: int
    activation: str | None = None  # "relu" or None (logits)


@dataclass(frozen=True)
class Conv2D:
    filters: int
    kernel_size: int
    strides: int = 1
    padding: str = "same"  # "same" or "valid", as in tf.nn.conv2d
    activation: str | None = None


@dataclass(frozen=True)
class MaxPool:
    pool_size: int
    strides: int | None = None  # None means pool_size, the Keras default
    padding: str = "valid"


@dataclass(frozen=True)
class ReLU:
    """A separate activation, for networks written as conv -> bias -> relu."""


@dataclass(frozen=True)
class BatchNorm:
    # Keras BatchNormalization defaults.
    momentum: float = 0.99
    epsilon: float = 1e-3


LayerSpec = Flatten | Dense | Conv2D | MaxPool | ReLU | BatchNorm


@dataclass(frozen=True)
class ParamSpec:
    """One weight tensor, in the common order every approach uses."""

    layer: int  # index of the layer spec it belongs to
    name: str  # e.g. "dense_1/kernel"
    shape: tuple[int, ...]
    init: str  # "glorot_uniform" | "zeros" | "ones"
    trainable: bool = True
    group: str = "lower"  # "lower" | "upper", for the dual-optimizer approach


def _out_size(size: int, window: int, stride: int, padding: str) -> int:
    if padding == "same":
        return math.ceil(size / stride)
    return (size - window) // stride + 1


@dataclass(frozen=True)
class Workload:
    """A network on 28x28x1 inputs plus what is needed to judge its training."""

    name: str
    description: str
    layers: tuple[LayerSpec, ...]
    # Layers [0, lower_layers) form the "lower" group trained by the first
    # optimizer of the dual-optimizer approach; the rest are "upper".
    lower_layers: int
    # Test accuracy that counts as "trained" for time-to-accuracy, per dataset.
    target_accuracy: dict[str, float] = field(default_factory=dict)
    # Main workloads are benchmarked; the others exist for the documented recipes.
    benchmark: bool = False
    source: str = ""

    def __post_init__(self) -> None:
        if not self.layers or not isinstance(self.layers[-1], Dense):
            raise ValueError(f"workload {self.name!r}: the last layer must be Dense (logits)")
        if self.layers[-1].units != NUM_CLASSES or self.layers[-1].activation is not None:
            raise ValueError(f"workload {self.name!r}: the last layer must emit {NUM_CLASSES} logits")
        if not 0 < self.lower_layers < len(self.layers):
            raise ValueError(f"workload {self.name!r}: lower_layers must split the network in two")

    # -- shapes -----------------------------------------------------------------

    def layer_output_shapes(self) -> list[tuple[int, ...]]:
        """Per-sample output shape of every layer."""
        shape: tuple[int, ...] = INPUT_SHAPE
        shapes = []
        for spec in self.layers:
            if isinstance(spec, Flatten):
                shape = (int(np.prod(shape)),)
            elif isinstance(spec, Dense):
                shape = (spec.units,)
            elif isinstance(spec, Conv2D):
                h, w, _ = shape
                shape = (
                    _out_size(h, spec.kernel_size, spec.strides, spec.padding),
                    _out_size(w, spec.kernel_size, spec.strides, spec.padding),
                    spec.filters,
                )
            elif isinstance(spec, MaxPool):
                h, w, c = shape
                stride = spec.strides or spec.pool_size
                shape = (
                    _out_size(h, spec.pool_size, stride, spec.padding),
                    _out_size(w, spec.pool_size, stride, spec.padding),
                    c,
                )
            shapes.append(shape)
        return shapes

    def param_specs(self) -> list[ParamSpec]:
        """Every weight tensor in the common order: layer by layer, Keras's order within a layer."""
        params: list[ParamSpec] = []
        in_shape: tuple[int, ...] = INPUT_SHAPE
        counts: dict[str, int] = {}
        for index, (spec, out_shape) in enumerate(zip(self.layers, self.layer_output_shapes())):
            group = "lower" if index < self.lower_layers else "upper"
            kind = type(spec).__name__.lower()
            counts[kind] = counts.get(kind, 0) + 1
            prefix = f"{kind}_{counts[kind]}"
            if isinstance(spec, Dense):
                if len(in_shape) != 1:
                    raise ValueError(f"workload {self.name!r}: Dense needs a Flatten before it")
                params += [
                    ParamSpec(index, f"{prefix}/kernel", (in_shape[0], spec.units), "glorot_uniform", group=group),
                    ParamSpec(index, f"{prefix}/bias", (spec.units,), "zeros", group=group),
                ]
            elif isinstance(spec, Conv2D):
                k = spec.kernel_size
                params += [
                    ParamSpec(index, f"{prefix}/kernel", (k, k, in_shape[-1], spec.filters), "glorot_uniform",
                              group=group),
                    ParamSpec(index, f"{prefix}/bias", (spec.filters,), "zeros", group=group),
                ]
            elif isinstance(spec, BatchNorm):
                channels = (in_shape[-1],)
                params += [
                    ParamSpec(index, f"{prefix}/gamma", channels, "ones", group=group),
                    ParamSpec(index, f"{prefix}/beta", channels, "zeros", group=group),
                    ParamSpec(index, f"{prefix}/moving_mean", channels, "zeros", trainable=False, group=group),
                    ParamSpec(index, f"{prefix}/moving_variance", channels, "ones", trainable=False, group=group),
                ]
            in_shape = out_shape
        return params

    @property
    def num_trainable_params(self) -> int:
        return sum(int(np.prod(p.shape)) for p in self.param_specs() if p.trainable)

    def has(self, *kinds: type) -> bool:
        return any(isinstance(spec, kinds) for spec in self.layers)

    # -- initial weights ----------------------------------------------------------

    def init_weights(self, seed: int = 0) -> list[np.ndarray]:
        """Glorot-uniform kernels and zero biases from one seeded NumPy generator.

        Drawn in NumPy, not by any framework, so every approach starts from
        bit-identical float32 weights whatever its own initialisers would do.
        """
        rng = np.random.default_rng(seed)
        weights = []
        for p in self.param_specs():
            if p.init == "glorot_uniform":
                # Keras's fans: for a conv kernel (kh, kw, in, out) the receptive field counts.
                receptive = int(np.prod(p.shape[:-2])) if len(p.shape) > 2 else 1
                fan_in, fan_out = p.shape[-2] * receptive, p.shape[-1] * receptive
                limit = math.sqrt(6.0 / (fan_in + fan_out))
                weights.append(rng.uniform(-limit, limit, size=p.shape).astype(np.float32))
            elif p.init == "ones":
                weights.append(np.ones(p.shape, np.float32))
            else:
                weights.append(np.zeros(p.shape, np.float32))
        return weights

    # -- cost ---------------------------------------------------------------------

    def forward_macs(self) -> int:
        """Multiply-accumulates of one forward pass (conv and dense layers only)."""
        macs = 0
        in_shape: tuple[int, ...] = INPUT_SHAPE
        for spec, out_shape in zip(self.layers, self.layer_output_shapes()):
            if isinstance(spec, Dense):
                macs += in_shape[0] * spec.units
            elif isinstance(spec, Conv2D):
                macs += out_shape[0] * out_shape[1] * spec.filters * spec.kernel_size**2 * in_shape[-1]
            in_shape = out_shape
        return macs

    @property
    def flops_per_sample(self) -> int:
        """Exact matmul and convolution FLOPs of one *training* sample (:mod:`implementations.costs`).

        Forward, weight gradients, and input gradients of every layer but the first (no gradient with
        respect to the images is computed); element-wise work is counted apart, in ``costs.step_costs``.
        The "3 x forward" convention (``6 * forward_macs()``) would count the first layer's input gradient.
        """
        from tfbench.implementations.costs import model_flops_per_sample

        return model_flops_per_sample(self)


# --- the workloads -----------------------------------------------------------

WORKLOADS: dict[str, Workload] = {}


def _register(workload: Workload) -> Workload:
    WORKLOADS[workload.name] = workload
    return workload


MLP = _register(Workload(
    name="mlp",
    description="784 -> 256 relu -> 128 relu -> 10",
    layers=(Flatten(), Dense(256, "relu"), Dense(128, "relu"), Dense(10)),
    lower_layers=2,  # flatten + the first dense layer
    target_accuracy={"mnist": 0.97, "fashion_mnist": 0.87, "synthetic": 0.95},
    benchmark=True,
    source="the ANN-with-GradientTape tutorial's network (after Hands-On ML 2nd ed. ch. 12)",
))

CNN = _register(Workload(
    name="cnn",
    description="conv 3x3x10 same + bias -> relu -> maxpool 2x2 -> flatten 1960 -> 100 relu -> 10",
    layers=(Conv2D(10, 3, padding="same"), ReLU(), MaxPool(2), Flatten(), Dense(100, "relu"), Dense(10)),
    lower_layers=3,  # the conv block
    target_accuracy={"mnist": 0.98, "fashion_mnist": 0.88, "synthetic": 0.95},
    benchmark=True,
    source='the raw tf.nn ConvolutionNetwork of "Do it! 딥러닝 입문" ch. 8-4',
))

_register(Workload(
    name="mlp_100_30",
    description="784 -> 100 relu -> 30 relu -> 10",
    layers=(Flatten(), Dense(100, "relu"), Dense(30, "relu"), Dense(10)),
    lower_layers=2,
    target_accuracy={"mnist": 0.95, "fashion_mnist": 0.85, "synthetic": 0.95},
    source="a raw tf.Variable MLP blog post (M1 MacBook Air, tensorflow-metal)",
))

_register(Workload(
    name="mlp_512",
    description="784 -> 512 relu -> 10",
    layers=(Flatten(), Dense(512, "relu"), Dense(10)),
    lower_layers=2,
    target_accuracy={"mnist": 0.95, "fashion_mnist": 0.85, "synthetic": 0.95},
    source="Deep Learning with Python ch. 2 (NaiveDense / NaiveSequential)",
))

_register(Workload(
    name="homl_cnn",
    description="conv 128 3x3 /2 same -> maxpool 3 -> batchnorm -> flatten -> 100 relu -> 10",
    layers=(Conv2D(128, 3, strides=2, padding="same"), MaxPool(3), BatchNorm(), Flatten(),
            Dense(100, "relu"), Dense(10)),
    lower_layers=3,
    target_accuracy={"mnist": 0.98, "fashion_mnist": 0.88, "synthetic": 0.95},
    source="Hands-On Machine Learning 2nd ed. ch. 12, exercise 10 (custom training loop)",
))

_register(Workload(
    name="homl_cnn_dual",
    description="lower: conv 128 2x2 /2 same relu -> maxpool 3 -> batchnorm; upper: flatten -> 100 relu -> 10",
    layers=(Conv2D(128, 2, strides=2, padding="same", activation="relu"), MaxPool(3), BatchNorm(), Flatten(),
            Dense(100, "relu"), Dense(10)),
    lower_layers=3,
    target_accuracy={"mnist": 0.98, "fashion_mnist": 0.85, "synthetic": 0.95},
    source="Hands-On Machine Learning 2nd ed. ch. 12, exercise 10 (two optimizers)",
))


def get_workload(name: str) -> Workload:
    try:
        return WORKLOADS[name]
    except KeyError:
        raise ConfigError(f"unknown workload {name!r}; choose one of: {', '.join(WORKLOADS)}") from None
