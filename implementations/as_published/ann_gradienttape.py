"""The full script of "ANN with GradientTape" (after Hands-On Machine Learning 2nd ed. ch. 12), as published.

A subclassed model, Dense 256 relu -> 128 relu -> 10 softmax (Keras's default Glorot initialisers), on
Fashion-MNIST divided by 255.0 (float64 arrays). 20 epochs of ``60000 // 32`` batches sliced in order from
NumPy, never shuffled; every step reshapes its batch to 784 and one-hot encodes its labels with
``tf.one_hot``; eager. It prints the epoch number, and after each epoch the last batch's loss tensor.

Its bugs, kept: ``Adam(1e-8)`` (the text says 1e-4) and ``cross_entropy(preds, y_batch)``, the arguments
swapped (Keras losses take ``(y_true, y_pred)``). It also reads ``trainable_variables`` before the tape, so
on the very first step the model has none yet and that step updates nothing. The script reports no
accuracy; :meth:`Loop.result` measures the test accuracy the recipe reports.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
from tensorflow import keras

from tfbench.implementations.as_published import PublishedLoop


class ANN(keras.Model):
    def __init__(self, **kwargs):
        super().__init__()
        self.input_layer = keras.layers.Dense(256, activation="relu")
        self.hidden_layer = keras.layers.Dense(128, activation="relu")
        self.output_layer = keras.layers.Dense(10, activation="softmax")

    def call(self, input):
        x = self.input_layer(input)
        x = self.hidden_layer(x)
        return self.output_layer(x)


class Loop(PublishedLoop):
    recipe = "ann_gradienttape"
    title = "ANN with GradientTape"
    epochs = 20
    batch_size = 32
    metric = "test_accuracy"

    def __init__(self, data, *, seed=0, out=None):
        super().__init__(data, seed=seed, out=out)
        self.x_train, self.x_test = data.x_train / 255.0, data.x_test / 255.0
        self.y_train = data.y_train
        self.classifier = ANN()
        self.cross_entropy = keras.losses.CategoricalCrossentropy(from_logits=False)
        self.optimizer = keras.optimizers.Adam(1e-8)
        self.steps_per_epoch = len(self.x_train) // self.batch_size

    def begin_epoch(self, epoch):
        self.print("epoch :", epoch)

    def train_step(self, batch):
        x_batch = self.x_train[batch * self.batch_size:(batch + 1) * self.batch_size]
        y_batch = self.y_train[batch * self.batch_size:(batch + 1) * self.batch_size]
        x_batch = x_batch.reshape(-1, 28 * 28)
        y_batch = tf.one_hot(y_batch, 10)
        trainable_params = self.classifier.trainable_variables
        with tf.GradientTape() as tape:
            preds = self.classifier(x_batch)
            self.losses = self.cross_entropy(preds, y_batch)  # swapped, as published
        grads = tape.gradient(self.losses, trainable_params)
        if trainable_params:  # Keras 2, which the tutorial ran, took an empty list as a no-op; Keras 3 raises
            self.optimizer.apply_gradients(zip(grads, trainable_params))
        return self.losses

    def end_epoch(self, epoch):
        self.print("loss :", self.losses)
        return {"loss": float(self.losses)}

    def result(self):
        predictions = self.classifier(self.x_test.reshape(-1, 28 * 28)).numpy()
        return {"test_accuracy": float(np.mean(predictions.argmax(axis=1) == self.data.y_test))}
