"""The memory-aware roofline: roofs from probe samples, per-op floors, and per-record memory."""

import math

import pytest

from tfbench.benchmarks import devices
from tfbench.benchmarks.roofline import Probe, Roofs, bandwidth_probes, matmul_probe, step_floor
from tfbench.implementations.costs import OpCost, step_costs
from tfbench.implementations.workloads import get_workload

KIB, MIB = 1 << 10, 1 << 20


def op(name, flops, nbytes, category="elementwise"):
    return OpCost(name, 0, "forward", category, flops, nbytes)


def test_roofs_keep_each_probes_best_rate_and_the_better_way_per_size():
    probes = [Probe("matmul_2048", "compute", 2e9, lambda: 0.0),
              Probe("matmul_512", "compute", 1e8, lambda: 0.0),
              Probe("stream_a", "memory", 1e9, lambda: 0.0, size=256 * KIB),
              Probe("stream_b", "memory", 1e9, lambda: 0.0, size=256 * KIB),
              Probe("stream_c", "memory", 1e9, lambda: 0.0, size=64 * MIB)]
    samples = {"matmul_2048": [0.02, 0.01, 0.04], "matmul_512": [0.002], "stream_a": [0.1, 0.05],
               "stream_b": [0.02], "stream_c": [0.1]}
    roofs = Roofs.from_samples(probes, samples)
    assert roofs.peak_gflops == pytest.approx(200)  # 2 GFLOP in the best 10 ms
    assert roofs.bandwidth_gbs == {256 * KIB: pytest.approx(50), 64 * MIB: pytest.approx(10)}
    assert roofs.by_probe["matmul_512"] == pytest.approx(50)  # the small matmul ran at a quarter of the big one
    assert roofs.to_json()["bandwidth_gbs"] == {"262144": pytest.approx(50), "67108864": pytest.approx(10)}


def test_an_op_gets_the_bandwidth_of_the_largest_probed_size_not_above_its_own():
    roofs = Roofs(100.0, {256 * KIB: 200.0, 4 * MIB: 100.0, 64 * MIB: 20.0})
    assert roofs.bandwidth_at(10 * KIB) == 200  # smaller than any probe: the smallest probe's
    assert roofs.bandwidth_at(1 * MIB) == 200
    assert roofs.bandwidth_at(4 * MIB) == 100
    assert roofs.bandwidth_at(63 * MIB) == 100
    assert roofs.bandwidth_at(512 * MIB) == 20
    # A noisy probe that measured less at a smaller size never raises a larger op's floor.
    assert Roofs(100.0, {256 * KIB: 50.0, 4 * MIB: 100.0}).bandwidth_at(8 * MIB) == 100


def test_step_floor_is_the_sum_of_each_ops_slower_roof():
    roofs = Roofs(100.0, {256 * KIB: 200.0, 64 * MIB: 20.0})
    ops = [op("matmul", 1e9, 1 * MIB, "matmul"),  # 10 ms of compute, 5 us of memory: compute
           op("pool", 1e6, 128 * MIB, "pool"),  # 10 us of compute, 6.7 ms of memory: memory
           op("relu", 1e6, 0)]  # fused: compute only
    floor = step_floor(ops, roofs)
    assert floor.compute_s == pytest.approx(1e-2 + 1e-5)
    assert floor.memory_s == pytest.approx(128 * MIB / 20e9)
    assert floor.seconds == pytest.approx(floor.compute_s + floor.memory_s)
    assert floor.binding_roof == "compute"
    assert [roof for _, _, roof in floor.per_op] == ["compute", "memory", "compute"]


def test_the_cnn_floor_is_bound_by_memory_and_the_mlp_floor_by_compute_on_a_cpu_like_device():
    # Roofs of the order measured on the 2-core CPU (docs/performance.md): 450 GFLOP/s, 25-220 GB/s.
    roofs = Roofs(450.0, {256 * KIB: 220.0, 1 * MIB: 180.0, 4 * MIB: 120.0, 16 * MIB: 100.0, 64 * MIB: 25.0})
    assert step_floor(step_costs(get_workload("cnn"), 1024), roofs).binding_roof == "memory"
    assert step_floor(step_costs(get_workload("mlp"), 1024), roofs).binding_roof == "compute"


def test_roofs_refuse_a_missing_or_zero_rate():
    with pytest.raises(ValueError, match="positive"):
        Roofs(0.0, {KIB: 1.0})
    with pytest.raises(ValueError, match="positive"):
        Roofs(1.0, {})


def test_probes_run_and_count_their_work():
    import tensorflow as tf

    cpu = devices.detect(tf)[0]
    matmul = matmul_probe(cpu, size=64, parallel=2, tf=tf)
    assert matmul.work == 2 * 2 * 64**3 and math.isfinite(float(matmul.call()))
    streams = bandwidth_probes(cpu, sizes=(64 * KIB,), tf=tf)
    assert [p.name for p in streams] == ["stream_64KiB_graph", "stream_64KiB_xla"]
    for probe in streams:
        # 64 KiB per op (32 KiB read, 32 KiB written), as many ops as fit 128 MiB, at most 512.
        assert probe.size == 64 * KIB and probe.work == 512 * 64 * KIB
        assert math.isfinite(float(probe.call()))


def test_metal_has_no_xla_stream_probe():
    import tensorflow as tf

    metal_like = devices.Device("metal:0", "metal", "/CPU:0", "stand-in")
    assert [p.name for p in bandwidth_probes(metal_like, sizes=(64 * KIB,), tf=tf)] == ["stream_64KiB_graph"]


# --- per-record memory ------------------------------------------------------------------------------------


def _record_memory(workload: str, batch_size: int) -> int:
    """Build, first-call and warm up one configuration the way the step-time stage does; its own peak."""
    import tensorflow as tf

    from tfbench.implementations import build
    from tfbench.implementations.interface import TrainConfig

    cpu = devices.detect(tf)[0]
    x = tf.zeros((2, batch_size, 28, 28, 1))
    y = tf.zeros((2, batch_size), tf.int32)
    window = devices.start_memory_window(cpu, tf)
    trainer = build("raw_tf_nn", get_workload(workload), TrainConfig(mode="function"))
    run = trainer.runner([x[:1], x[1:]], [y[:1], y[1:]])
    for _ in range(2):
        float(run())
    return devices.record_peak_memory(cpu, window, tf)


def test_two_records_of_very_different_sizes_get_different_peaks():
    # Large first: a process-wide high-water mark would give the small record the large one's figure.
    large = _record_memory("cnn", 256)
    small = _record_memory("mlp", 8)
    # The CNN at batch 256 holds its 256x28x28x10 activations (8 MB each) and their gradients.
    assert large > 20 * MIB
    assert small < large / 4


def test_gpu_memory_is_the_allocators_peak_above_what_was_held_at_the_start():
    from types import SimpleNamespace

    state = {"current": 100, "peak": 100}
    calls = []

    def reset(name):
        calls.append(name)
        state["peak"] = state["current"]

    tf = SimpleNamespace(config=SimpleNamespace(experimental=SimpleNamespace(
        reset_memory_stats=reset, get_memory_info=lambda name: dict(state))))
    gpu = devices.Device("gpu:0", "gpu", "/GPU:0", "fake")
    window = devices.start_memory_window(gpu, tf)
    assert calls == ["GPU:0"] and window == devices.MemoryWindow("allocator", 100)
    state.update(current=150, peak=900)
    assert devices.record_peak_memory(gpu, window, tf) == 800


def test_a_device_without_memory_statistics_gives_no_figure_rather_than_a_process_wide_one():
    from types import SimpleNamespace

    def unsupported(name):
        raise ValueError("no memory stats")

    tf = SimpleNamespace(config=SimpleNamespace(experimental=SimpleNamespace(
        reset_memory_stats=unsupported, get_memory_info=unsupported)))
    metal = devices.Device("metal:0", "metal", "/GPU:0", "fake")
    assert devices.start_memory_window(metal, tf) is None
    assert devices.record_peak_memory(metal, None, tf) is None
