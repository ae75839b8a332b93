"""Exact FLOPs and minimum bytes of a training step, against hand counts and TensorFlow's own cost registry."""

from collections import Counter

import pytest

from tfbench.errors import Unsupported
from tfbench.implementations.costs import OPTIMIZER_COSTS, step_cost, step_costs
from tfbench.implementations.workloads import WORKLOADS, get_workload

MLP_FORWARD_MACS = 784 * 256 + 256 * 128 + 128 * 10
CNN_CONV_MACS = 28 * 28 * 10 * 9  # per sample: 28x28 positions, 10 filters of 3x3x1
CNN_DENSE_MACS = 1960 * 100 + 100 * 10


def test_mlp_counts_no_gradient_with_respect_to_the_images():
    # Forward and weight gradients of three layers, input gradients of the upper two only.
    expected = 2 * MLP_FORWARD_MACS + 2 * MLP_FORWARD_MACS + 2 * (256 * 128 + 128 * 10)
    assert get_workload("mlp").flops_per_sample == expected == 1_007_104
    # The "3 x forward" convention counts 784 x 256 more multiply-accumulates, twice over.
    assert 6 * get_workload("mlp").forward_macs() - expected == 2 * 784 * 256


def test_cnn_counts_the_convolution_twice_and_the_dense_layers_three_times():
    expected = 2 * 2 * CNN_CONV_MACS + 3 * 2 * CNN_DENSE_MACS
    assert get_workload("cnn").flops_per_sample == expected == 1_464_240


def test_per_op_costs_of_the_cnn_at_batch_128_by_hand():
    ops = {op.name: op for op in step_costs(get_workload("cnn"), 128)}
    conv = ops["conv2d_1 conv"]
    assert conv.flops == 2 * 128 * CNN_CONV_MACS
    assert conv.bytes == 4 * (128 * 784 + 90 + 128 * 7840)  # images + kernel + output
    assert "conv2d_1 input gradient" not in ops and "dense_1 input gradient" in ops
    assert ops["maxpool_1 max-pool"].flops == 128 * 1960 * 3  # 3 comparisons per 2x2 window
    assert ops["maxpool_1 max-pool"].bytes == 4 * (128 * 7840 + 128 * 1960)
    assert ops["maxpool_1 max-pool gradient"].bytes == 4 * (2 * 128 * 7840 + 128 * 1960)
    assert ops["relu_1 relu"].bytes == 0  # fused into the convolution
    assert ops["relu_1 relu gradient"].bytes == 0  # fused into the max-pool gradient, which reads it anyway
    assert ops["dense_1 relu gradient"].bytes == 4 * 128 * 100  # reads the saved activation
    adam = ops["adam update dense_1/kernel"]
    assert (adam.flops, adam.bytes) == (12 * 196_000, 4 * 7 * 196_000)
    # Element-wise work is counted apart from the matmul/convolution FLOPs.
    total = step_cost(get_workload("cnn"), 128)
    assert total.model_flops == 128 * get_workload("cnn").flops_per_sample
    assert total.elementwise_flops == sum(op.flops for op in ops.values() if not op.is_model_flops)
    assert total.elementwise_flops > 0 and total.bytes == sum(op.bytes for op in ops.values())


def test_phases_run_forward_then_backward_then_the_update_and_the_backward_runs_top_down():
    ops = step_costs(get_workload("cnn"), 4)
    phases = [op.phase for op in ops]
    assert phases == sorted(phases, key=("forward", "backward", "optimizer").index)
    backward_layers = [op.layer for op in ops if op.phase == "backward" and op.layer >= 0]
    assert backward_layers == sorted(backward_layers, reverse=True)


def test_optimizer_cost_scales_with_the_parameters_and_the_optimizer():
    mlp = get_workload("mlp")
    for name, (flops, tensors) in OPTIMIZER_COSTS.items():
        update = [op for op in step_costs(mlp, 32, name) if op.phase == "optimizer"]
        assert sum(op.flops for op in update) == flops * mlp.num_trainable_params
        assert sum(op.bytes for op in update) == 4 * tensors * mlp.num_trainable_params
    with pytest.raises(Unsupported, match="optimizer"):
        step_costs(mlp, 32, "adagrad")


def test_every_workload_has_a_cost_model():
    for workload in WORKLOADS.values():
        cost = step_cost(workload, 16)
        assert cost.model_flops > 0 and cost.bytes > 0


def _live_ops(graph):
    """The ops a call of a function graph runs: those its outputs and side effects depend on.

    TensorFlow builds a convolution's gradient as both its input and filter gradients; the unused one is
    pruned before the graph runs, so it is left out here too."""
    todo = [t.op for t in graph.outputs] + list(graph.control_outputs)
    live = set()
    while todo:
        op = todo.pop()
        if op.name in live:
            continue
        live.add(op.name)
        todo += [t.op for t in op.inputs] + list(op.control_inputs)
    return [op for op in graph.get_operations() if op.name in live]


@pytest.mark.parametrize("workload", ["mlp", "cnn"])
@pytest.mark.parametrize("approach", ["raw_tf_nn", "custom_tape"])
def test_matmul_and_conv_flops_match_tensorflows_own_count(approach, workload):
    """TensorFlow's cost registry (what ``tf.compat.v1.profiler`` sums) over the graph of a real training step."""
    import tensorflow as tf
    from tensorflow.python.framework import ops as tf_ops

    from tfbench.implementations import build
    from tfbench.implementations.interface import TrainConfig

    batch = 8
    trainer = build(approach, get_workload(workload), TrainConfig(mode="function"))
    graph = tf.function(trainer.train_step).get_concrete_function(
        tf.TensorSpec((batch, 28, 28, 1), tf.float32), tf.TensorSpec((batch,), tf.int32)).graph
    counted = Counter()
    for op in _live_ops(graph):
        if op.type in ("MatMul", "Conv2D", "Conv2DBackpropFilter", "Conv2DBackpropInput"):
            counted["conv" if op.type.startswith("Conv") else "matmul"] += int(
                tf_ops.get_stats_for_node_def(graph, op.node_def, "flops").value)
    ours = Counter()
    for op in step_costs(get_workload(workload), batch):
        if op.is_model_flops:
            ours[op.category] += op.flops
    assert counted == ours
