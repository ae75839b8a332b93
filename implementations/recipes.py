"""The documented recipes: each tutorial's own configuration, as data.

A recipe names the approach, the network, the optimizer, batch size, epochs,
dataset and split a tutorial used, the accuracy it reports, and notes on
where this suite departs from it (mostly: the tutorial's bugs, fixed).
``tfbench train --recipe NAME`` runs one and prints the reproduced figure
beside the documented one; the harness runs them all.
"""

from __future__ import annotations

from dataclasses import dataclass

from tfbench.errors import ConfigError
from tfbench.implementations.interface import SAMPLING, OptimizerSpec

METRICS = ("test_accuracy", "val_accuracy", "train_accuracy")


@dataclass(frozen=True)
class Recipe:
    name: str
    title: str
    source: str
    approach: str
    workload: str
    optimizer: OptimizerSpec
    batch_size: int
    epochs: int
    dataset: str
    documented_metric: str  # which accuracy the tutorial reports
    documented_accuracy: float | None  # None: the tutorial reports none
    notes: str
    upper_optimizer: OptimizerSpec | None = None
    validation_fraction: float = 0.0
    split_seed: int = 42
    sampling: str = "shuffle"
    train_limit: int | None = None
    mode: str = "function"

    def __post_init__(self) -> None:
        if self.documented_metric not in METRICS:
            raise ConfigError(f"recipe {self.name}: documented_metric must be one of {METRICS}")
        if self.documented_metric == "val_accuracy" and not self.validation_fraction:
            raise ConfigError(f"recipe {self.name}: a validation accuracy needs a validation split")
        if self.sampling not in SAMPLING:
            raise ConfigError(f"recipe {self.name}: unknown sampling {self.sampling!r}")


RECIPES: dict[str, Recipe] = {r.name: r for r in [
    Recipe(
        name="ann_gradienttape",
        title="ANN with GradientTape",
        source="a Korean tutorial based on Hands-On Machine Learning 2nd ed. ch. 12",
        approach="custom_tape", workload="mlp",
        optimizer=OptimizerSpec("adam", 1e-4), batch_size=32, epochs=20, dataset="fashion_mnist",
        documented_metric="test_accuracy", documented_accuracy=None,
        notes=("784-256-128-10 with a softmax output and CategoricalCrossentropy; the tutorial reports no "
               "accuracy. Its full script has two bugs, fixed here: Adam(1e-8), a learning rate too small to "
               "learn anything (its text says 1e-4), and cross_entropy(preds, y_batch), arguments swapped: "
               "Keras losses take (y_true, y_pred)."),
    ),
    Recipe(
        name="doit_raw_cnn",
        title='Raw tf.nn ConvolutionNetwork ("Do it! 딥러닝 입문" ch. 8-4)',
        source='"Do it! 딥러닝 입문" ch. 8-4',
        approach="raw_tf_nn", workload="cnn",
        optimizer=OptimizerSpec("sgd", 0.01), batch_size=128, epochs=20, dataset="fashion_mnist",
        validation_fraction=0.2, split_seed=42,
        documented_metric="val_accuracy", documented_accuracy=0.8807,
        notes=("10 3x3 kernels, 100 hidden units, SGD 0.01, batch 128, 20 epochs, a stratified 80/20 split "
               "(random_state 42), shuffled each epoch, as in the book."),
    ),
    Recipe(
        name="raw_mlp_metal",
        title="Raw tf.Variable MLP (run on an M1 MacBook Air with tensorflow-metal)",
        source="a blog post on TensorFlow with tensorflow-metal on an M1 MacBook Air",
        approach="raw_tf_nn", workload="mlp_100_30",
        optimizer=OptimizerSpec("sgd", 0.01), batch_size=32, epochs=10, dataset="mnist",
        documented_metric="test_accuracy", documented_accuracy=None,
        notes=("[784, 100, 30, 10] with ReLU and SGD 0.01. The original takes full-batch steps with a "
               "sigmoid cross-entropy on flattened one-hot labels, which its author saw as 'poor "
               "performance' and reported no accuracy; implemented with softmax cross-entropy and "
               "minibatches of 32 for 10 epochs."),
    ),
    Recipe(
        name="homl_custom_loop",
        title="Custom training loop (Hands-On ML 2nd ed. ch. 12, exercise 10)",
        source="Hands-On Machine Learning 2nd ed. ch. 12, exercise 10",
        approach="custom_tape", workload="homl_cnn",
        optimizer=OptimizerSpec("nadam", 0.01), batch_size=32, epochs=10, dataset="fashion_mnist",
        validation_fraction=0.3, sampling="random",
        documented_metric="train_accuracy", documented_accuracy=0.88,
        notes=("Conv2D(128, 3, strides 2) -> MaxPool(3) -> BatchNormalization -> Dense 100 -> 10, Nadam "
               "0.01, random batches of 32 (with replacement), 70/30 split. The book reports training "
               "accuracy 0.82 after epoch 1, rising to about 0.88."),
    ),
    Recipe(
        name="homl_dual_optimizer",
        title="Two optimizers on one persistent tape (Hands-On ML 2nd ed. ch. 12, exercise 10)",
        source="Hands-On Machine Learning 2nd ed. ch. 12, exercise 10",
        approach="dual_optimizer_tape", workload="homl_cnn_dual",
        optimizer=OptimizerSpec("adam", 2e-3), upper_optimizer=OptimizerSpec("nadam", 1e-3),
        batch_size=32, epochs=5, dataset="fashion_mnist", validation_fraction=0.3, sampling="random",
        train_limit=5000,
        documented_metric="train_accuracy", documented_accuracy=0.85,
        notes=("Lower block (conv 128 2x2 /2 relu, max-pool 3, batch norm) with Adam 0.002, upper block "
               "(dense 100, dense 10) with Nadam 1e-3, 5 epochs on 5,000 samples. The book reports training "
               "accuracy 0.85 but validation accuracy 0.10: its loop calls the model without training=True, "
               "so BatchNormalization's moving statistics never update. Fixed here: validation accuracy "
               "comes out close to training accuracy."),
    ),
    Recipe(
        name="dlwp_naive",
        title="NaiveDense / NaiveSequential (Deep Learning with Python ch. 2)",
        source="Deep Learning with Python ch. 2",
        approach="naive_sequential", workload="mlp_512",
        optimizer=OptimizerSpec("sgd", 1e-3), batch_size=128, epochs=10, dataset="mnist",
        sampling="sequential",
        documented_metric="test_accuracy", documented_accuracy=0.82,
        notes=("784 -> 512 relu -> 10 softmax, SGD 1e-3 by assign_sub, batches of 128 in order "
               "(BatchGenerator), 10 epochs; the book reports test accuracy 0.82. Logits + softmax "
               "cross-entropy instead of a softmax layer + cross-entropy (the same function, stabler)."),
    ),
]}


def get_recipe(name: str) -> Recipe:
    try:
        return RECIPES[name]
    except KeyError:
        raise ConfigError(f"unknown recipe {name!r}; choose one of: {', '.join(RECIPES)}") from None
