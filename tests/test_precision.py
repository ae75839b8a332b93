"""Mixed precision: each style's wiring (16-bit compute, float32 master weights, float16 loss scaling), the
hand-written loss scale, the verdict, the device probe, the CPU flags, a tiny real stage run and its report."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from tfbench.benchmarks.cli import main
from tfbench.benchmarks.environment import cpu_flags
from tfbench.benchmarks.results import load, validate
from tfbench.benchmarks.stages import mixed_precision
from tfbench.benchmarks.stages.mixed_precision import policy_unsupported, verdict
from tfbench.errors import ConfigError
from tfbench.implementations.interface import TrainConfig


def _build(approach, precision, workload="mlp"):
    from tfbench.implementations import build

    return build(approach, workload, TrainConfig(precision=precision))


def test_an_unknown_precision_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown precision 'float8'; choose one of: float32, mixed_bfloat16"):
        TrainConfig(precision="float8")


@pytest.mark.parametrize("approach", ["custom_tape", "keras_fit", "dual_optimizer_tape"])
def test_a_keras_style_computes_in_bfloat16_on_float32_weights_and_emits_float32_logits(approach):
    import tensorflow as tf

    trainer = _build(approach, "mixed_bfloat16")
    layers = [layer for layer in trainer.model._flatten_layers(include_self=False) if layer.weights]
    dense = [layer for layer in layers if layer.__class__.__name__ == "Dense"]
    assert dense and all(layer.compute_dtype == "bfloat16" for layer in dense)
    assert all(v.dtype == "float32" for v in trainer.variables_in_order())  # the master copy
    logits = trainer.forward(tf.zeros((2, 28, 28, 1))) if hasattr(trainer, "forward") else \
        trainer.model(tf.zeros((2, 28, 28, 1)))
    assert logits.dtype == tf.float32
    float32 = _build(approach, "float32")
    assert all(layer.compute_dtype == "float32" for layer in float32.model._flatten_layers(include_self=False))


def test_float16_in_the_keras_styles_scales_the_loss_with_a_loss_scale_optimizer():
    import keras

    lso = keras.optimizers.LossScaleOptimizer
    assert isinstance(_build("custom_tape", "mixed_float16").optimizer, lso)
    assert isinstance(_build("keras_fit", "mixed_float16").model.optimizer, lso)
    dual = _build("dual_optimizer_tape", "mixed_float16")
    assert isinstance(dual.lower_optimizer, lso) and isinstance(dual.upper_optimizer, lso)
    assert not isinstance(_build("custom_tape", "mixed_bfloat16").optimizer, lso)  # bfloat16 needs none
    assert not isinstance(_build("keras_fit", "float32").model.optimizer, lso)


def _casts(trainer, precision_dtype):
    import tensorflow as tf

    graph = tf.function(trainer.forward).get_concrete_function(tf.TensorSpec((4, 28, 28, 1), tf.float32)).graph
    return [op for op in graph.get_operations() if op.type == "Cast" and op.get_attr("DstT") == precision_dtype]


@pytest.mark.parametrize("approach", ["raw_tf_nn", "naive_sequential"])
def test_a_raw_style_casts_its_float32_weights_and_scales_the_float16_loss_by_hand(approach):
    import tensorflow as tf

    from tfbench.implementations.precision import DynamicLossScale

    bf16 = _build(approach, "mixed_bfloat16")
    # The input and every weight tensor cast to bfloat16; the variables themselves stay float32.
    assert len(_casts(bf16, tf.bfloat16)) == 1 + len(bf16.variables_in_order())
    assert all(v.dtype == tf.float32 for v in bf16.variables_in_order())
    assert bf16.loss_scale is None
    assert _casts(_build(approach, "float32"), tf.bfloat16) == []
    assert not [op for op in tf.function(_build(approach, "float32").forward).get_concrete_function(
        tf.TensorSpec((4, 28, 28, 1), tf.float32)).graph.get_operations() if op.type == "Cast"]
    fp16 = _build(approach, "mixed_float16")
    assert isinstance(fp16.loss_scale, DynamicLossScale) and len(_casts(fp16, tf.float16)) >= 1
    # A real float16 step trains: the loss is finite and the float32 weights moved.
    import numpy as np

    from tfbench.implementations.datasets import synthetic

    train, _ = synthetic(16, 1, seed=0)
    before = fp16.get_weights()
    loss = float(fp16.steps(tf.constant(train.x.reshape(2, 8, 28, 28, 1)), tf.constant(train.y.reshape(2, 8))))
    assert np.isfinite(loss) and any(not np.array_equal(a, b) for a, b in zip(before, fp16.get_weights()))


def test_the_hand_written_loss_scale_skips_overflowing_steps_halves_and_grows():
    import tensorflow as tf

    from tfbench.implementations.precision import DynamicLossScale

    scale = DynamicLossScale(initial_scale=8.0, growth_steps=2)
    applied = []
    assert float(scale.scale(tf.constant(2.0))) == 16.0
    scale.apply([tf.constant([8.0, 16.0])], lambda grads: applied.append([g.numpy().tolist() for g in grads]))
    assert applied == [[[1.0, 2.0]]] and float(scale.value) == 8.0  # unscaled; one good step
    scale.apply([tf.constant([float("inf"), 1.0])], lambda grads: applied.append("overflowed"))
    assert applied == [[[1.0, 2.0]]] and float(scale.value) == 4.0 and int(scale.good_steps) == 0
    for _ in range(2):
        scale.apply([tf.constant([4.0])], lambda grads: applied.append("ok"))
    assert float(scale.value) == 8.0 and int(scale.good_steps) == 0  # two finite steps: doubled


@pytest.mark.parametrize(("ratio", "interval", "delta", "diverged", "expected"), [
    (0.80, [0.75, 0.85], 0.001, False, "pays"),
    (0.80, [0.70, 1.02], 0.0, False, "no gain"),  # faster, but the interval reaches 1
    (0.97, [0.95, 0.99], 0.0, False, "no gain"),  # surely faster, by less than 5%
    (1.30, [1.20, 1.40], 0.0, False, "slower"),
    (1.30, [0.98, 1.40], 0.0, False, "no gain"),
    (0.80, [0.75, 0.85], -0.02, False, "hurts accuracy"),  # two points lost outweigh the speed
    (0.80, [0.75, 0.85], -0.005, False, "pays"),  # half a point is within the threshold
    (0.80, [0.75, 0.85], None, True, "hurts accuracy"),
    (0.80, None, None, False, "pays"),  # no interval: the ratio alone
])
def test_the_verdict_thresholds(ratio, interval, delta, diverged, expected):
    assert verdict(ratio, interval, delta, diverged) == expected


class _FakeTf:
    """Just enough TensorFlow for the probe; ``cast`` fails for ``broken`` dtypes as a plugin would."""

    float32 = "float32"

    def __init__(self, broken):
        self.broken = broken
        self.nn = SimpleNamespace(relu=lambda x: x, conv2d=lambda x, k, s, p: x, max_pool2d=lambda x, *a: x)

    def device(self, name):
        import contextlib

        return contextlib.nullcontext()

    def cast(self, x, dtype):
        if dtype in self.broken:
            # As TensorFlow words a missing kernel: the cause, then the kernels that do exist.
            raise RuntimeError(f"in user code:\n\n  File probe\nNo OpKernel was registered to support Op "
                               f"'Conv2D' with these attrs: [T=DT_{dtype.upper()}]\nRegistered kernels:\n"
                               "  device='GPU'; T in [DT_FLOAT]")
        return 1.0

    def Variable(self, value):
        return 1.0

    def ones(self, shape):
        return 1.0

    def function(self, fn):
        return fn

    def reduce_sum(self, value):
        return value

    matmul = reshape = staticmethod(lambda x, y: x)
    reduce_mean = staticmethod(lambda x: x)

    class GradientTape:
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def gradient(self, loss, variables):
            return [1.0 for _ in variables]


def test_a_policy_the_device_cannot_run_is_unsupported_with_the_error():
    gpu = SimpleNamespace(name="metal:0", tf_device="/GPU:0", kind="metal")
    fake = _FakeTf(broken={"bfloat16"})
    reason = policy_unsupported(fake, gpu, "mixed_bfloat16")
    assert reason == ("metal:0 cannot compute in bfloat16: RuntimeError: No OpKernel was registered to support Op "
                      "'Conv2D' with these attrs: [T=DT_BFLOAT16]")
    assert policy_unsupported(fake, gpu, "mixed_float16") is None
    assert policy_unsupported(_FakeTf(broken={"float32"}), gpu, "float32") is None  # the baseline is not probed


def test_the_real_cpu_runs_every_policy():
    import tensorflow as tf

    cpu = SimpleNamespace(name="cpu", tf_device="/CPU:0", kind="cpu")
    assert [policy_unsupported(tf, cpu, p) for p in mixed_precision.POLICIES] == [None, None, None]


def test_cpu_flags_keep_the_decisive_features_in_order():
    info = lambda: {"flags": ["sse2", "avx512_bf16", "FMA", "avx2", "amx_bf16", "hypervisor"]}  # noqa: E731
    assert cpu_flags(info) == ["avx2", "fma", "avx512_bf16", "amx_bf16"]
    assert cpu_flags(lambda: {}) == []
    assert cpu_flags(lambda: (_ for _ in ()).throw(OSError("no /proc"))) == []


@pytest.fixture(scope="module")
def tiny_precision(tmp_path_factory):
    path = tmp_path_factory.mktemp("precision") / "precision.json"
    empty = tmp_path_factory.mktemp("no_data")
    assert main(["run", "--approach", "naive_sequential", "--workload", "mlp", "--batch-size", "8", "--stages",
                 "mixed_precision", "--samples", "2", "--quiet", "--data-dir", str(empty),
                 "--output", str(path)]) == 0
    return path, empty


def test_a_tiny_real_run_records_each_policy_against_float32(tiny_precision):
    path, empty = tiny_precision
    document = load(path)
    validate(document)
    assert isinstance(document["environment"]["cpu_flags"], list)
    records = {r["variant"]: r for r in document["records"]}
    assert set(records) == {"float32", "mixed_bfloat16", "mixed_float16"}
    for policy, record in records.items():
        metrics = record["metrics"]
        assert record["status"] == "ok" and metrics["precision_policy"] == policy
        assert metrics["loss_scaling"] is (policy == "mixed_float16")
        assert metrics["step_time_s"]["n"] == 2
        # No dataset in the data directory: step times are measured, the accuracy is not, and says why.
        assert "test_accuracy" not in metrics and str(empty) in record["reason"]
    for policy in ("mixed_bfloat16", "mixed_float16"):
        metrics = records[policy]["metrics"]
        low, high = metrics["vs_float32_ci"]
        assert low <= metrics["vs_float32"] <= high and metrics["verdict"] in ("pays", "no gain", "slower")


def test_an_unsupported_policy_is_recorded_with_its_reason(tmp_path, monkeypatch):
    original = mixed_precision.policy_unsupported
    monkeypatch.setattr(mixed_precision, "policy_unsupported", lambda tf, device, policy: (
        "cpu cannot compute in float16: (simulated)" if policy == "mixed_float16" else original(tf, device, policy)))
    path = tmp_path / "unsupported.json"
    assert main(["run", "--approach", "naive_sequential", "--workload", "mlp", "--batch-size", "8", "--stages",
                 "mixed_precision", "--samples", "2", "--quiet", "--dataset", "synthetic",
                 "--output", str(path)]) == 0
    document = load(path)
    validate(document)
    records = {r["variant"]: r for r in document["records"]}
    assert records["mixed_float16"]["status"] == "unsupported"
    assert records["mixed_float16"]["reason"] == "cpu cannot compute in float16: (simulated)"
    # The synthetic dataset: accuracy measured after the quick profile's one epoch, the delta beside it.
    bf16 = records["mixed_bfloat16"]["metrics"]
    assert 0 <= bf16["test_accuracy"] <= 1 and bf16["epochs"] == 1
    assert bf16["accuracy_delta"] == pytest.approx(bf16["test_accuracy"]
                                                   - records["float32"]["metrics"]["test_accuracy"])


def test_the_report_gives_each_policy_its_ratio_delta_verdict_and_the_cpu_flags(tiny_precision, tmp_path):
    from tfbench.reports.data import load_results
    from tfbench.reports.precision import plot_precision, section

    frame = load_results(tiny_precision[0])
    text = "\n".join(section(frame))
    assert "| mlp" in text and "mixed_bfloat16" in text and "baseline" in text
    assert "CPU features that decide it" in text and "accuracy not measured" in text
    assert plot_precision(frame, tmp_path / "p.png").stat().st_size > 0
    assert plot_precision(frame.iloc[0:0], tmp_path / "none.png") is None


def test_the_report_names_what_decides_it_on_a_gpu():
    import pandas as pd

    from tfbench.reports.precision import gpu_lines

    records = pd.DataFrame([
        {"device_kind": "gpu", "env_gpu_info": [{"name": "NVIDIA T4", "compute_capability": "7.5"}]},
        {"device_kind": "metal", "env_gpu_info": [{"name": "Apple M2", "compute_capability": None}]},
        {"device_kind": "cpu", "env_gpu_info": []}])
    lines = gpu_lines(records)
    assert lines[0] == "GPUs:" and "NVIDIA T4: compute capability 7.5" in lines[2]
    assert "Apple M2: no compute capability reported" in lines[3]
    assert gpu_lines(records[records["device_kind"] == "cpu"]) == []
