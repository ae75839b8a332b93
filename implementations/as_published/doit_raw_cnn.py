"""The ConvolutionNetwork of "Do it! 딥러닝 입문" ch. 8-4, trained as the book trains it.

Raw ``tf.Variable`` weights from ``glorot_uniform`` (biases from ``np.zeros``), ``tf.nn.conv2d`` 3x3x10 ->
relu -> 2x2 max-pool -> 100 relu -> 10, softmax cross-entropy on one-hot labels, SGD 0.01, batch 128,
20 epochs, eager. The data: scikit-learn's stratified 80/20 split (random_state 42, reproduced by
:func:`implementations.recipes.sklearn_stratified_split`), one-hot labels, images divided by 255 (float64).
Each epoch the generator permutes and copies the whole training set and yields ``len(x) // 128`` slices.
Per step it prints a dot, trains, and then runs ``get_loss`` on the same batch: a second forward pass
whose ``.numpy()`` waits for the result. After each epoch it computes the validation loss; at the end,
``score`` gives the validation accuracy the book reports (0.8807).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
from tensorflow import keras

from tfbench.implementations.as_published import PublishedLoop
from tfbench.implementations.recipes import sklearn_stratified_split


class ConvolutionNetwork:
    def __init__(self, n_kernels=10, units=10, batch_size=32, learning_rate=0.1):
        self.n_kernels, self.units, self.batch_size, self.lr = n_kernels, units, batch_size, learning_rate
        self.losses, self.val_losses = [], []

    def forpass(self, x):
        c_out = tf.nn.conv2d(x, self.conv_w, strides=1, padding="SAME") + self.conv_b
        r_out = tf.nn.relu(c_out)
        p_out = tf.nn.max_pool2d(r_out, ksize=2, strides=2, padding="VALID")
        f_out = tf.reshape(p_out, [x.shape[0], -1])
        a1 = tf.nn.relu(tf.matmul(f_out, self.w1) + self.b1)
        return tf.matmul(a1, self.w2) + self.b2

    def init_weights(self, input_shape, n_classes):
        g = keras.initializers.GlorotUniform()
        self.conv_w = tf.Variable(g((3, 3, 1, self.n_kernels)))
        self.conv_b = tf.Variable(np.zeros(self.n_kernels), dtype=float)
        self.w1 = tf.Variable(g((14 * 14 * self.n_kernels, self.units)))
        self.b1 = tf.Variable(np.zeros(self.units), dtype=float)
        self.w2 = tf.Variable(g((self.units, n_classes)))
        self.b2 = tf.Variable(np.zeros(n_classes), dtype=float)

    def gen_batch(self, x, y):
        bins = len(x) // self.batch_size
        indexes = np.random.permutation(np.arange(len(x)))
        x, y = x[indexes], y[indexes]
        for i in range(bins):
            yield x[self.batch_size * i:self.batch_size * (i + 1)], y[self.batch_size * i:self.batch_size * (i + 1)]

    def training(self, x, y):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(y, self.forpass(x)))
        weights_list = [self.conv_w, self.conv_b, self.w1, self.b1, self.w2, self.b2]
        grads = tape.gradient(loss, weights_list)
        self.optimizer.apply_gradients(zip(grads, weights_list))

    def get_loss(self, x, y):
        return tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(y, self.forpass(x))).numpy()

    def score(self, x, y):
        return np.mean(np.argmax(self.forpass(x).numpy(), axis=1) == np.argmax(y, axis=1))


class Loop(PublishedLoop):
    recipe = "doit_raw_cnn"
    title = '"Do it! 딥러닝 입문" ch. 8-4'
    epochs = 20
    batch_size = 128
    metric = "val_accuracy"

    def __init__(self, data, *, seed=0, out=None):
        super().__init__(data, seed=seed, out=out)
        train, val = sklearn_stratified_split(data.y_train, 0.2, 42)
        self.x_train = data.x_train[train].reshape(-1, 28, 28, 1) / 255
        self.x_val = data.x_train[val].reshape(-1, 28, 28, 1) / 255
        self.y_train = keras.utils.to_categorical(data.y_train[train])
        self.y_val = keras.utils.to_categorical(data.y_train[val])
        self.cn = ConvolutionNetwork(n_kernels=10, units=100, batch_size=self.batch_size, learning_rate=0.01)
        self.cn.init_weights(self.x_train.shape, self.y_train.shape[1])  # the start of fit()
        self.cn.optimizer = keras.optimizers.SGD(learning_rate=self.cn.lr)
        self.steps_per_epoch = len(self.x_train) // self.batch_size

    def begin_epoch(self, epoch):
        self.print("epoch", epoch, end=" ")
        self.batches, self.batch_losses = self.cn.gen_batch(self.x_train, self.y_train), []

    def train_step(self, batch):
        x_batch, y_batch = next(self.batches)
        self.print(".", end="")
        self.cn.training(x_batch, y_batch)
        self.batch_losses.append(self.cn.get_loss(x_batch, y_batch))
        return self.batch_losses[-1]

    def end_epoch(self, epoch):
        self.print()
        self.cn.losses.append(np.mean(self.batch_losses))
        self.cn.val_losses.append(self.cn.get_loss(self.x_val, self.y_val))
        return {"loss": float(self.cn.losses[-1]), "val_loss": float(self.cn.val_losses[-1])}

    def result(self):
        return {"val_accuracy": float(self.cn.score(self.x_val, self.y_val))}
