"""Hands-On Machine Learning 2nd ed. ch. 12, exercise 10, as the notebook ran it (read by ``In [n]``).

Two loops on Fashion-MNIST. The custom loop (``In [209]``): Conv2D(128, 3, /2) -> MaxPool(3) ->
BatchNormalization -> Dense(100) -> Dense(10, softmax), Nadam 0.01, 10 epochs of ``len(x_train) // 32``
random batches drawn with replacement (``np.random.randint``), on all 60,000 images (``In [202]`` reloaded
them after the 70/30 split of ``In [160]``). Every step updates a Mean and a SparseCategoricalAccuracy and
prints a progress line. Batches are float64 NumPy arrays (pixels / 255.0) of shape (32, 28, 28): the model
adds the channel axis itself on every call.

The dual-optimizer loop (``In [254]``): a lower block (Conv2D(128, 2, /2, relu), MaxPool(3),
BatchNormalization) under Adam 0.002 and an upper block under Nadam 1e-3, one persistent tape, 5 epochs
of ``5000 // 32`` = 156 random batches from the first 5,000 images. (``In [252]`` computes ``n_steps``
before ``In [253]`` cuts the set, which would make 1,875, but the output says 156: it shows one progress
line per epoch, where 1,875 steps would end a line at every step past the 156th, and only 156 steps
reproduce its training accuracy, 0.648 after epoch 1; a cell not shown must have cut the set earlier.)
The model is called without ``training=True``, so BatchNormalization runs in inference mode for training
and validation alike. After every step the loop evaluates its 1,000 validation images. Those images are
the notebook's bug: they come from the split at ``In [160]`` of a training set already divided by 255,
and ``In [203]`` divides them again, so the network sees images in [0, 1/255] (the recipe's notes give
the experiment that shows it).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
from tensorflow import keras

from tfbench.implementations.as_published import PublishedLoop


def random_batch(image, label, batch_size):
    idx = np.random.randint(len(image), size=batch_size)
    return image[idx], label[idx]


class _Exercise10(PublishedLoop):
    title = "Hands-On Machine Learning 2nd ed. ch. 12, exercise 10"
    batch_size = 32
    metric = "train_accuracy"

    def print_process(self, iteration, total, loss, metrics=None):
        metrics = "-".join(f"{m.name}: {m.result():.4f}" for m in [loss] + (metrics or []))
        self.print(f"\r{iteration}/{total} - " + metrics, end="" if iteration < total else "\n")

    def begin_epoch(self, epoch):
        self.print(f"Epoch {epoch + 1}/{self.epochs}")

    def end_epoch(self, epoch):
        self.print_process(len(self.y_train), len(self.y_train), self.mean_loss, self.metrics)
        figures = {"loss": float(self.mean_loss.result()), "accuracy": float(self.metrics[0].result())}
        for metric in [self.mean_loss] + self.metrics:
            metric.reset_state()
        return figures

    def result(self):
        return {"train_accuracy": self.history[-1]["accuracy"]} if self.history else {}


class CustomLoop(_Exercise10):
    recipe = "homl_custom_loop"
    epochs = 10

    def __init__(self, data, *, seed=0, out=None):
        super().__init__(data, seed=seed, out=out)
        self.x_train, self.y_train = data.x_train / 255.0, data.y_train  # In [202], In [203]
        self.model = keras.Sequential([
            keras.Input((28, 28, 1)),
            keras.layers.Conv2D(128, kernel_size=(3, 3), strides=2, padding="same"),
            keras.layers.MaxPool2D(3), keras.layers.BatchNormalization(), keras.layers.Flatten(),
            keras.layers.Dense(100, activation="relu"), keras.layers.Dense(10, activation="softmax")])
        self.steps_per_epoch = len(self.x_train) // self.batch_size
        self.optimizer = keras.optimizers.Nadam(learning_rate=0.01)
        self.loss_fn = keras.losses.sparse_categorical_crossentropy
        self.mean_loss = keras.metrics.Mean()
        self.metrics = [keras.metrics.SparseCategoricalAccuracy()]

    def train_step(self, batch):
        x_batch, y_batch = random_batch(self.x_train, self.y_train, self.batch_size)
        with tf.GradientTape() as tape:
            output = self.model(x_batch, training=True)
            main_loss = tf.reduce_mean(self.loss_fn(y_batch, output))
            loss = tf.add_n([main_loss] + self.model.losses)
        gradients = tape.gradient(loss, self.model.trainable_variables)
        self.optimizer.apply_gradients(zip(gradients, self.model.trainable_variables))
        self.mean_loss(loss)
        for metric in self.metrics:
            metric(y_batch, output)
        self.print_process((batch + 1) * self.batch_size, len(self.y_train), self.mean_loss, self.metrics)
        return loss


class DualOptimizerLoop(_Exercise10):
    recipe = "homl_dual_optimizer"
    epochs = 5
    train_size, val_size = 5000, 1000  # In [253]

    def __init__(self, data, *, seed=0, out=None):
        super().__init__(data, seed=seed, out=out)
        self.x_train, self.y_train = (data.x_train / 255.0)[:self.train_size], data.y_train[:self.train_size]
        self.steps_per_epoch = len(self.x_train) // self.batch_size  # 156: what the output shows
        # In [160]: train_test_split(test_size=0.3), unseeded; x_val[:1000] keeps the first 1,000 of its draw.
        val = np.random.permutation(len(data.x_train))[:self.val_size]
        self.x_val, self.y_val = self.validation_images(data.x_train[val]), data.y_train[val]
        self.lower_layer = keras.Sequential([
            keras.Input((28, 28, 1)),
            keras.layers.Conv2D(128, kernel_size=(2, 2), strides=2, padding="same", activation="relu"),
            keras.layers.MaxPool2D(3), keras.layers.BatchNormalization()])
        self.upper_layer = keras.Sequential([
            keras.layers.Flatten(), keras.layers.Dense(100, activation="relu"),
            keras.layers.Dense(10, activation="softmax")])
        self.model = keras.Sequential([self.lower_layer, self.upper_layer])
        self.lower_optimizer = keras.optimizers.Adam(learning_rate=0.002)
        self.upper_optimizer = keras.optimizers.Nadam(learning_rate=1e-3)
        self.loss_fn = keras.losses.sparse_categorical_crossentropy
        self.mean_loss = keras.metrics.Mean()
        self.metrics = [keras.metrics.SparseCategoricalAccuracy()]

    @staticmethod
    def validation_images(raw: np.ndarray) -> np.ndarray:
        # Divided by 255 before the split of In [160], and again at In [203]: the notebook's 0.10.
        return raw / 255.0 / 255.0

    def train_step(self, batch):
        x_batch, y_batch = random_batch(self.x_train, self.y_train, self.batch_size)
        with tf.GradientTape(persistent=True) as tape:
            pred = self.model(x_batch)  # no training=True: BatchNormalization in inference mode
            main_loss = tf.reduce_mean(self.loss_fn(y_batch, pred))
            loss = tf.add_n([main_loss] + self.model.losses)
        for layers, optimizer in ((self.lower_layer, self.lower_optimizer),
                                  (self.upper_layer, self.upper_optimizer)):
            gradients = tape.gradient(loss, layers.trainable_variables)
            optimizer.apply_gradients(zip(gradients, layers.trainable_variables))
        self.mean_loss(loss)
        self.status = {"loss": self.mean_loss.result().numpy()}
        for metric in self.metrics:
            metric(y_batch, pred)
            self.status[metric.name] = metric.result().numpy()
        val_pred = self.model(self.x_val)  # the 1,000 validation images, after every step
        self.status["val_loss"] = np.mean(self.loss_fn(self.y_val, val_pred))
        self.status["val_accuracy"] = np.mean(keras.metrics.sparse_categorical_accuracy(
            tf.constant(self.y_val, dtype=tf.float32), val_pred))
        self.print_process((batch + 1) * self.batch_size, len(self.y_train), self.mean_loss, self.metrics)
        return loss

    def end_epoch(self, epoch):
        figures = super().end_epoch(epoch)
        self.print(f"val_loss = {self.status['val_loss']}, val_accuracy = {self.status['val_accuracy']}")
        return {**figures, "val_loss": float(self.status["val_loss"]),
                "val_accuracy": float(self.status["val_accuracy"])}

    def result(self):
        return {**super().result(), "val_accuracy": self.history[-1]["val_accuracy"]} if self.history else {}
