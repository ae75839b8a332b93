"""``NaiveDense`` / ``NaiveSequential`` of Deep Learning with Python ch. 2, trained as a blog post on the book ran it.

784 -> 512 relu -> 10 softmax; kernels from ``tf.random.uniform(minval=0, maxval=0.1)``, biases zero.
MNIST as float32 / 255, flattened. ``BatchGenerator`` walks the training set in order, ``ceil(60000 / 128)``
batches (the last one of 96), never shuffled; the model outputs probabilities and the loss is
``sparse_categorical_crossentropy`` on them; a ``keras.optimizers.SGD(1e-3)`` applies the gradients; eager.
Every 100th batch it prints the loss (formatting the tensor waits for it). The book's figure is the test
accuracy after 10 epochs, 0.82.
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf
from tensorflow import keras

from tfbench.implementations.as_published import PublishedLoop


class NaiveDense:
    def __init__(self, input_size, output_size, activation):
        self.activation = activation
        self.W = tf.Variable(tf.random.uniform((input_size, output_size), minval=0, maxval=1e-1))
        self.b = tf.Variable(tf.zeros((output_size,)))

    def __call__(self, inputs):
        return self.activation(tf.matmul(inputs, self.W) + self.b)

    @property
    def weights(self):
        return [self.W, self.b]


class NaiveSequential:
    def __init__(self, layers):
        self.layers = layers

    def __call__(self, inputs):
        x = inputs
        for layer in self.layers:
            x = layer(x)
        return x

    @property
    def weights(self):
        return [w for layer in self.layers for w in layer.weights]


class BatchGenerator:
    def __init__(self, images, labels, batch_size=128):
        self.index, self.images, self.labels, self.batch_size = 0, images, labels, batch_size
        self.num_batches = math.ceil(len(images) / 128)

    def next(self):
        images = self.images[self.index:self.index + self.batch_size]
        labels = self.labels[self.index:self.index + self.batch_size]
        self.index += self.batch_size
        return images, labels


class Loop(PublishedLoop):
    recipe = "dlwp_naive"
    title = "Deep Learning with Python ch. 2"
    epochs = 10
    batch_size = 128
    metric = "test_accuracy"

    def __init__(self, data, *, seed=0, out=None):
        super().__init__(data, seed=seed, out=out)
        self.train_images = data.x_train.reshape(len(data.x_train), 28 * 28).astype("float32") / 255
        self.test_images = data.x_test.reshape(len(data.x_test), 28 * 28).astype("float32") / 255
        self.model = NaiveSequential([NaiveDense(28 * 28, 512, tf.nn.relu), NaiveDense(512, 10, tf.nn.softmax)])
        self.optimizer = keras.optimizers.SGD(learning_rate=1e-3)
        self.steps_per_epoch = math.ceil(len(self.train_images) / 128)

    def begin_epoch(self, epoch):
        self.print(f"epoch {epoch}")
        self.batch_generator = BatchGenerator(self.train_images, self.data.y_train)

    def train_step(self, batch):
        images_batch, labels_batch = self.batch_generator.next()
        with tf.GradientTape() as tape:
            predictions = self.model(images_batch)
            average_loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(labels_batch, predictions))
        gradients = tape.gradient(average_loss, self.model.weights)
        self.optimizer.apply_gradients(zip(gradients, self.model.weights))  # the book's update_weights
        if batch % 100 == 0:
            self.print(f"batch {batch} loss: {average_loss:.2f}")
        return average_loss

    def result(self):
        predicted_labels = np.argmax(self.model(self.test_images).numpy(), axis=1)
        return {"test_accuracy": float(np.mean(predicted_labels == self.data.y_test))}
