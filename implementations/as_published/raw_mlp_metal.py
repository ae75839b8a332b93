"""The raw tf.Variable MLP of a blog post run on an M1 MacBook Air with tensorflow-metal, as published.

[784, 100, 30, 10] with ReLU, kernels from ``tf.random.normal(stddev=0.1)``, biases ``tf.zeros([1, n])``.
The "epochs" are 5 full-batch steps on all 60,000 training images, reshaped but never scaled (the forward
pass casts the uint8 pixels, 0-255, to float32). The loss is ``sigmoid_cross_entropy_with_logits`` on the
logits and the one-hot labels both flattened to one column, left unreduced, so the tape differentiates
its sum over 600,000 terms. ``backward`` creates a new SGD(0.01) optimizer on every call. After each step
the post scores the whole training set again (scikit-learn's micro-averaged F1, which for one label per
image is the accuracy, computed here with NumPy) and prints it when ``epoch % 10 == 0``. It reports no
accuracy ("poor performance"); :meth:`Loop.result` also measures the test accuracy the recipe reports.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
from tensorflow import keras

from tfbench.implementations.as_published import PublishedLoop


class Network:
    def __init__(self, n_layers):
        self.W1 = tf.Variable(tf.random.normal([n_layers[0], n_layers[1]], stddev=0.1), name="W1")
        self.b1 = tf.Variable(tf.zeros([1, n_layers[1]]))
        self.W2 = tf.Variable(tf.random.normal([n_layers[1], n_layers[2]], stddev=0.1), name="W2")
        self.b2 = tf.Variable(tf.zeros([1, n_layers[2]]))
        self.W3 = tf.Variable(tf.random.normal([n_layers[2], n_layers[3]], stddev=0.1), name="W3")
        self.b3 = tf.Variable(tf.zeros([1, n_layers[3]]))
        self.params = [self.W1, self.b1, self.W2, self.b2, self.W3, self.b3]

    def forward(self, x):
        X_tf = tf.cast(x, dtype=tf.float32)
        Z1 = tf.nn.relu(tf.matmul(X_tf, self.W1) + self.b1)
        Z2 = tf.nn.relu(tf.matmul(Z1, self.W2) + self.b2)
        Z3 = tf.matmul(Z2, self.W3) + self.b3
        tf.nn.sigmoid(Z3)  # computed and discarded, as in the post
        return Z3

    def loss(self, y_true, logits):
        y_true_tf = tf.cast(tf.reshape(y_true, (-1, 1)), dtype=tf.float32)
        logits_tf = tf.cast(tf.reshape(logits, (-1, 1)), dtype=tf.float32)
        return tf.nn.sigmoid_cross_entropy_with_logits(y_true_tf, logits_tf)

    def backward(self, x, y):
        optimizer = keras.optimizers.SGD(learning_rate=0.01)  # a new optimizer every call
        with tf.GradientTape() as tape:
            current_loss = self.loss(y, self.forward(x))
        grads = tape.gradient(current_loss, self.params)
        optimizer.apply_gradients(zip(grads, self.params))


class Loop(PublishedLoop):
    recipe = "raw_mlp_metal"
    title = "a raw tf.Variable MLP blog post (M1 MacBook Air, tensorflow-metal)"
    epochs = 5
    metric = "test_accuracy"
    steps_per_epoch = 1
    batch_size = 60000  # all of MNIST's training set; set from the data in __init__

    def __init__(self, data, *, seed=0, out=None):
        super().__init__(data, seed=seed, out=out)
        self.batch_size = len(data.x_train)  # full batch
        self.X = tf.reshape(data.x_train, [len(data.x_train), 784])
        self.y_one_hot = tf.one_hot(data.y_train, depth=10)
        self.net = Network([784, 100, 30, 10])

    def train_step(self, batch):
        self.net.backward(self.X, self.y_one_hot)
        predicted = tf.math.argmax(self.net.forward(self.X), 1).numpy()
        self.acc = float(np.mean(predicted == tf.math.argmax(self.y_one_hot, 1).numpy()))  # = micro F1
        if len(self.history) % 10 == 0:
            self.print(f"accuracy score : {self.acc * 100}")
        return self.acc

    def end_epoch(self, epoch):
        return {"accuracy": self.acc}

    def result(self):
        test = tf.reshape(self.data.x_test, [len(self.data.x_test), 784])
        predicted = tf.math.argmax(self.net.forward(test), 1).numpy()
        return {"train_accuracy": self.acc, "test_accuracy": float(np.mean(predicted == self.data.y_test))}
