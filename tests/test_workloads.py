"""Workloads: shapes, parameter counts, FLOPs and the seeded initialiser (no TensorFlow needed)."""

import math

import numpy as np
import pytest

from tfbench.errors import ConfigError
from tfbench.implementations.workloads import WORKLOADS, Dense, Flatten, Workload, get_workload


def test_mlp_and_cnn_are_the_tutorial_networks():
    mlp, cnn = get_workload("mlp"), get_workload("cnn")
    assert [p.shape for p in mlp.param_specs()] == [(784, 256), (256,), (256, 128), (128,), (128, 10), (10,)]
    assert [p.shape for p in cnn.param_specs()] == [(3, 3, 1, 10), (10,), (1960, 100), (100,), (100, 10), (10,)]
    assert cnn.layer_output_shapes()[2] == (14, 14, 10)  # 2x2 max-pool of 28x28x10
    assert mlp.num_trainable_params == 235_146
    assert cnn.num_trainable_params == 197_210


def test_flops_per_training_sample_match_the_hand_count():
    # 2 FLOPs per multiply-accumulate, forward + weight gradient everywhere, input gradient but the first
    # layer's (tests/test_costs.py checks the per-op counts against TensorFlow's own).
    assert get_workload("mlp").flops_per_sample == 6 * (784 * 256 + 256 * 128 + 128 * 10) - 2 * 784 * 256
    assert get_workload("cnn").flops_per_sample == 4 * 28 * 28 * 10 * 9 + 6 * (1960 * 100 + 100 * 10)


def test_initial_weights_are_seeded_glorot_uniform_with_zero_biases():
    workload = get_workload("cnn")
    first, again, other = workload.init_weights(0), workload.init_weights(0), workload.init_weights(1)
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    assert not np.array_equal(first[0], other[0])
    kernel = first[2]  # dense 1960 -> 100
    limit = math.sqrt(6 / (1960 + 100))
    assert kernel.dtype == np.float32 and np.abs(kernel).max() <= limit
    assert np.abs(kernel).max() > 0.9 * limit  # uniform over the whole range
    conv_limit = math.sqrt(6 / (9 * 1 + 9 * 10))  # Keras counts the receptive field in both fans
    assert np.abs(first[0]).max() <= conv_limit
    assert not first[1].any() and not first[3].any()


def test_batchnorm_weights_include_moving_statistics_as_non_trainable():
    specs = get_workload("homl_cnn").param_specs()
    names = [(p.name.split("/")[1], p.trainable) for p in specs if p.name.startswith("batchnorm")]
    assert names == [("gamma", True), ("beta", True), ("moving_mean", False), ("moving_variance", False)]


def test_lower_and_upper_groups_split_where_the_tutorial_does():
    groups = {p.name: p.group for p in get_workload("mlp").param_specs()}
    assert groups["dense_1/kernel"] == "lower" and groups["dense_2/kernel"] == "upper"
    cnn_groups = {p.name: p.group for p in get_workload("cnn").param_specs()}
    assert cnn_groups["conv2d_1/kernel"] == "lower" and cnn_groups["dense_1/kernel"] == "upper"


def test_every_workload_has_targets_for_the_real_datasets():
    for workload in WORKLOADS.values():
        assert {"mnist", "fashion_mnist"} <= set(workload.target_accuracy)


def test_bad_workloads_and_names_are_refused():
    with pytest.raises(ConfigError, match="unknown workload 'nope'.*mlp"):
        get_workload("nope")
    with pytest.raises(ValueError, match="10 logits"):
        Workload("bad", "", (Flatten(), Dense(5)), lower_layers=1)
