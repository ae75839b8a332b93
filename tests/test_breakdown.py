"""Where a step's time goes: trace parsing, op categories, a real profiled step, and the report's section."""

import json

import pytest

from tfbench.benchmarks.results import make_record
from tfbench.benchmarks.stages.breakdown import CATEGORIES, categorize, op_events, summarize_trace


@pytest.mark.parametrize("name, op_type, category", [
    ("while/body/_1/while/Relu", "_MklNativeFusedConv2D", "conv"),  # conv + bias + ReLU, fused by oneDNN
    ("gradient_tape/Conv2DBackpropFilter", "_MklNativeConv2DBackpropFilter", "conv"),
    ("gradient_tape/MaxPool2d/MaxPoolGrad", "_MklNativeMaxPoolGrad", "pool"),
    ("gradient_tape/MatMul/MatMul", "_MklMatMul", "matmul"),
    ("dense/Relu", "_MklNativeFusedMatMul", "matmul"),
    ("while/adam/Sub_11", "Sub", "optimizer"),  # the optimizer's name scope, whatever the op
    ("while/SGD/AssignSubVariableOp", "AssignSubVariableOp", "optimizer"),
    ("gradient_tape/ReluGrad", "ReluGrad", "elementwise"),
    ("softmax_cross_entropy_with_logits", "SoftmaxCrossEntropyWithLogits", "elementwise"),
    ("strided_slice", "StridedSlice", "copies"),
    ("Conv2DBackpropFilter.8", "Conv2DBackpropFilter.8", "conv"),  # XLA thunks: the HLO name twice
    ("wrapped_reduce-window.3", "wrapped_reduce-window.3", "pool"),
    ("MatMul_1.28", "MatMul_1.28", "matmul"),
    ("dynamic-slice_bitcast_fusion", "dynamic-slice_bitcast_fusion", "copies"),
    ("broadcast_maximum_fusion.1", "broadcast_maximum_fusion.1", "elementwise"),
    ("convert.3", "convert.3", "elementwise"),  # a cast, not a convolution
])
def test_ops_fall_into_their_category(name, op_type, category):
    assert categorize(name, op_type) == category


def _event(tid, ts, dur, frame=None, name=None, hlo=None):
    event = {"ph": "X", "pid": 1, "tid": tid, "ts": ts, "dur": dur, "name": name or "x", "args": {}}
    if frame is not None:
        event["sf"] = frame
    if hlo is not None:
        event["args"]["hlo_op"] = hlo
    return event


def test_a_trace_is_split_by_category_and_the_time_no_op_covered_is_the_rest():
    frames = {"1": {"name": "dense/MatMul:_MklMatMul"}, "2": {"name": "adam/Sub:Sub"},
              "3": {"name": "while/Merge:Merge"}, "4": {"name": "gradient_tape/ReluGrad:ReluGrad"}}
    trace = {"stackFrames": frames, "traceEvents": [
        _event(10, 0, 400, "1", "_MklMatMul"),  # matmul, 0-400 us, thread 10
        _event(11, 100, 200, "2", "Sub"),  # the optimizer alongside on thread 11: overlaps the matmul
        _event(10, 500, 100, "4", "ReluGrad"),  # element-wise, 500-600 us
        _event(10, 650, 50, "3", "Merge"),  # control flow: not an op's work
        _event(12, 0, 900, None, "ExecutorState::Process"),  # not an op at all
        _event(10, 700, 100, None, "while.5", hlo="while.5"),  # an XLA loop holding a thunk
        _event(10, 720, 50, None, "MatMul.3", hlo="MatMul.3"),
        {"ph": "M", "pid": 1, "tid": 10, "name": "thread_name", "args": {"name": "tf_Compute"}},
    ]}
    assert [e[4] for e in op_events(trace)] == ["_MklMatMul", "Sub", "ReluGrad", "MatMul.3"]
    # Two steps in 2 ms of wall time: 1 ms a step, of which ops covered 0-400, 500-600 and 720-770 us.
    result = summarize_trace(trace, wall_s=2e-3, steps=2)
    assert result["profiled_step_s"] == pytest.approx(1e-3)
    assert result["ops_wall_s"] == pytest.approx(550e-6 / 2)
    assert result["thread_s"]["matmul"] == pytest.approx(450e-6 / 2)
    assert result["thread_s"]["optimizer"] == pytest.approx(200e-6 / 2)
    breakdown = result["breakdown_s"]
    assert set(breakdown) == set(CATEGORIES)
    assert sum(breakdown.values()) == pytest.approx(1e-3)
    assert breakdown["rest"] == pytest.approx(1e-3 - 275e-6)
    # The covered wall time is shared out in proportion to the ops' own times (450 : 200 : 100).
    assert breakdown["matmul"] == pytest.approx(275e-6 * 450 / 750)
    assert breakdown["optimizer"] == pytest.approx(275e-6 * 200 / 750)


def test_an_xla_container_keeps_only_its_own_time_out_of_the_ops():
    # The graph op that launches the compiled function, and the XLA module: both hold the thunks.
    trace = {"stackFrames": {"1": {"name": "__inference_f_1:__inference_f_1"}},
             "traceEvents": [_event(2, 0, 1000, "1", "__inference_f_1"),
                             _event(1, 0, 1000, None, "__inference_f_1", hlo="__inference_f_1"),
                             _event(1, 100, 300, None, "fusion", hlo="multiply_add_fusion.2")]}
    result = summarize_trace(trace, wall_s=1e-3, steps=1)
    assert result["ops_wall_s"] == pytest.approx(300e-6)
    assert result["breakdown_s"]["elementwise"] == pytest.approx(300e-6)


def test_a_trace_without_ops_is_an_error_not_an_empty_breakdown():
    with pytest.raises(ValueError, match="no op events"):
        summarize_trace({"traceEvents": [_event(1, 0, 10, None, "python")]}, wall_s=1e-3, steps=1)


def test_a_real_profiled_step_shows_its_matmuls_and_its_optimizer():
    import tempfile

    import tensorflow as tf

    from tfbench.benchmarks.stages.breakdown import profile_calls
    from tfbench.implementations import build
    from tfbench.implementations.interface import TrainConfig
    from tfbench.implementations.workloads import get_workload

    trainer = build("raw_tf_nn", get_workload("mlp"), TrainConfig(mode="function", steps_per_call=2))
    call = trainer.runner([tf.zeros((2, 16, 28, 28, 1))], [tf.zeros((2, 16), tf.int32)])
    float(call())
    with tempfile.TemporaryDirectory() as logdir:
        trace, wall = profile_calls(call, 2, logdir, lambda: None, tf)
    result = summarize_trace(trace, wall, 4)
    assert result["thread_s"]["matmul"] > 0 and result["thread_s"]["optimizer"] > 0
    assert result["thread_s"]["conv"] == 0 and result["thread_s"]["pool"] == 0  # an MLP
    assert sum(result["breakdown_s"].values()) == pytest.approx(result["profiled_step_s"])


# --- the report --------------------------------------------------------------------------------------------


def _breakdown(approach, mode, parts_ms, known_cost=None):
    metrics = {"profiled_step_s": sum(parts_ms.values()) / 1e3,
               "breakdown_s": {c: parts_ms.get(c, 0.0) / 1e3 for c in CATEGORIES}}
    if known_cost:
        metrics["known_cost"] = known_cost
    return make_record("breakdown", approach=approach, workload="cnn", mode=mode, steps_per_call=16, device="cpu",
                       batch_size=128, dataset="synthetic", metrics=metrics)


def _frame(tmp_path, records):
    from tfbench.reports.data import load_results

    document = {"schema_version": 1, "run_id": "r1", "created": "2026-11-23T00:00:00+00:00", "complete": True,
                "config": {"profile": "quick"}, "environment": {"machine_id": "box"},
                "devices": [{"name": "cpu", "kind": "cpu", "description": "CPU"}], "records": records}
    path = tmp_path / "results.json"
    path.write_text(json.dumps(document))
    return load_results([path])


def test_the_report_shows_each_gap_to_the_fastest_as_a_difference_by_category(tmp_path):
    from tfbench.reports.breakdown import breakdown_section, plot_breakdown

    frame = _frame(tmp_path, [
        _breakdown("raw_tf_nn", "function", {"conv": 1.0, "pool": 0.5, "matmul": 0.5, "rest": 0.2}),
        _breakdown("custom_tape", "function", {"conv": 1.3, "pool": 0.5, "matmul": 0.5, "rest": 0.4},
                   known_cost="Keras adds the bias with BiasAdd"),
        _breakdown("keras_fit", "function", {"conv": 1.0, "pool": 0.5, "matmul": 0.55, "rest": 0.2}),
        _breakdown("raw_tf_nn", "xla", {"conv": 5.0, "pool": 3.0, "rest": 0.1}),
    ])
    text = "\n".join(breakdown_section(frame))
    assert "### cnn on cpu @ box, batch 128" in text
    rows = [line for line in text.splitlines() if line.startswith("| custom_tape ") and "raw_tf_nn" in line]
    assert len(rows) == 1  # custom_tape is 1.23x behind; keras_fit (1.02x) is within 10%
    assert "1.23x" in rows[0] and "+0.500 ms" in rows[0]
    assert "conv +0.300 ms" in rows[0] and "rest (no op running) +0.200 ms" in rows[0]
    assert "BiasAdd" in rows[0]
    assert not [line for line in text.splitlines() if line.startswith("| keras_fit ") and "raw_tf_nn" in line]
    assert plot_breakdown(frame, tmp_path / "breakdown_cnn.png", "cnn") is not None
    assert (tmp_path / "breakdown_cnn.png").stat().st_size > 1000
    assert plot_breakdown(frame, tmp_path / "none.png", "mlp") is None


def test_eager_ops_count_their_kernels_and_leave_dispatch_to_the_rest():
    trace = {"traceEvents": [
        _event(1, 0, 100, None, "EagerLocalExecute: MatMul"),  # dispatch + kernel
        _event(1, 40, 50, None, "EagerKernelExecute"),  # the kernel: 50 us of matmul
        _event(1, 100, 30, None, "EagerLocalExecute: AssignSubVariableOp"),
        _event(1, 110, 10, None, "EagerKernelExecute"),
        _event(1, 200, 500, None, "EagerLocalExecute: __inference_f_5"),  # a tf.function: traced as graph ops
        _event(1, 210, 480, None, "EagerKernelExecute"),
    ]}
    assert [(e[2], e[4]) for e in op_events(trace)] == [(50, "MatMul"), (10, "AssignSubVariableOp")]
    result = summarize_trace(trace, wall_s=1e-3, steps=1)
    assert result["thread_s"]["matmul"] == pytest.approx(50e-6) and result["thread_s"]["optimizer"] == pytest.approx(
        10e-6)
    assert result["breakdown_s"]["rest"] == pytest.approx(1e-3 - 60e-6)


def test_the_breakdown_stage_writes_one_record_per_approach_and_mode(tmp_path):
    from tfbench.benchmarks.cli import main
    from tfbench.benchmarks.results import load

    path = tmp_path / "breakdown.json"
    assert main(["run", "--approach", "raw_tf_nn", "naive_sequential", "--workload", "cnn", "--mode", "function",
                 "--batch-size", "8", "--steps-per-call", "2", "--stages", "breakdown", "--quiet",
                 "--output", str(path)]) == 0
    records = {r["approach"]: r for r in load(path)["records"]}
    assert records["naive_sequential"]["status"] == "unsupported"  # dense layers only
    measured = records["raw_tf_nn"]
    assert measured["kind"] == "breakdown" and measured["status"] == "ok", measured["reason"]
    assert (measured["batch_size"], measured["steps_per_call"]) == (8, 2)
    metrics = measured["metrics"]
    assert metrics["thread_s"]["conv"] > 0 and metrics["thread_s"]["pool"] > 0
    assert sum(metrics["breakdown_s"].values()) == pytest.approx(metrics["profiled_step_s"])


def test_the_breakdown_table_has_each_categorys_floor_from_the_groups_roofs(tmp_path):
    from tfbench.benchmarks.roofline import Roofs, step_floor
    from tfbench.implementations.costs import step_costs
    from tfbench.implementations.workloads import get_workload
    from tfbench.reports.breakdown import breakdown_section, floor_by_category

    # slow compute and fast memory: every op with FLOPs is bound by compute, so a category's floor is its FLOPs
    roofs = {"peak_gflops": 100.0, "bandwidth_gbs": {"262144": 1000.0, "67108864": 1000.0}}
    step = make_record("step_time", approach="raw_tf_nn", workload="cnn", mode="function", steps_per_call=16,
                       device="cpu", batch_size=128, dataset="synthetic",
                       metrics={"step_time_s": {"median": 3e-3}, "roofs": roofs})
    frame = _frame(tmp_path, [
        step,
        _breakdown("raw_tf_nn", "function", {"conv": 1.0, "pool": 0.5, "matmul": 2.0, "optimizer": 0.3}),
        _breakdown("raw_tf_nn", "xla", {"conv": 5.0, "pool": 3.0, "elementwise": 1.0}),
    ])
    record = frame[frame["kind"] == "breakdown"].iloc[0]
    floor = floor_by_category(frame, record)
    ops = step_costs(get_workload("cnn"), 128)
    matmul_flops = sum(op.flops for op in ops if op.category == "matmul")
    assert floor["matmul"] == pytest.approx(matmul_flops / 100e9)
    assert floor["copies"] == floor["rest"] == 0
    assert sum(floor.values()) == pytest.approx(step_floor(ops, Roofs(100.0, {256 << 10: 1000.0})).seconds)
    text = "\n".join(breakdown_section(frame))
    floor_rows = [line for line in text.splitlines() if line.startswith("| *floor* ")]
    assert len(floor_rows) == 1 and f"{matmul_flops / 100e9 * 1e3:.3g}" in floor_rows[0]
    # the fastest compiled step is function mode; its matmuls (2 ms against ~1.5 ms) are not its worst excess
    sentence = next(line for line in text.splitlines() if "furthest from their floors" in line)
    assert "raw_tf_nn function K=16" in sentence
    assert sentence.index("conv 1.00 ms") < sentence.index("matmul 2.00 ms")


def test_without_step_time_roofs_the_breakdown_has_no_floor_row(tmp_path):
    from tfbench.reports.breakdown import breakdown_section

    frame = _frame(tmp_path, [_breakdown("raw_tf_nn", "function", {"conv": 1.0, "matmul": 2.0})])
    text = "\n".join(breakdown_section(frame))
    assert "*floor*" not in text and "furthest from their floors" not in text
