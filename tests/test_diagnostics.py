"""Diagnostics (issue 24): retracing counted by TensorFlow's counter, memory slopes told from noise, the
effective settings read back, and the report section that shows them."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tfbench.benchmarks import environment, memory_growth, tracing
from tfbench.benchmarks.results import make_record, validate
from tfbench.reports.data import load_results
from tfbench.reports.diagnostics import plot_memory_growth, section, settings_differences


@pytest.fixture(scope="module")
def tf():
    import tensorflow as tf

    return tf


# --- retracing -----------------------------------------------------------------------------------------


def _planted_epoch(tf, fix: str):
    """A step that sums its batch, called over 5 full batches of 4 and a last batch of 2 with the step index
    as a Python int (the planted retracing) or with the record's fix."""
    x = tf.random.uniform((22, 28, 28, 1))
    y = tf.zeros((22,), tf.int32)
    step = tracing.user_step(tf, lambda a, b: (tf.reduce_sum(a), a), fix, jit_compile=False)
    bounds = tracing.epoch_batches(22, 4, drop_remainder=fix == "drop_remainder")
    batches = [(x[a:b], y[a:b]) for a, b in bounds]

    def arguments(i):
        return (*batches[i], tf.constant(i, tf.int64) if fix == "tensor_scalar" else i)

    return tracing.run_epoch(lambda i: step(*arguments(i)), arguments, len(batches),
                             step.experimental_get_tracing_count, steady_call=lambda: step(*arguments(0)))


def test_a_python_step_index_retraces_every_step_and_a_tensor_fixes_it(tf):
    planted = _planted_epoch(tf, "none").metrics()
    assert planted["epoch_steps"] == 6 and planted["input_signatures"] == 2  # full batches and the partial one
    assert planted["trace_count"] == 6 and planted["traces_per_signature"] > 1
    fixed = _planted_epoch(tf, "tensor_scalar").metrics()
    assert fixed["trace_count"] == 2 and fixed["traces_per_signature"] == 1
    signature = _planted_epoch(tf, "input_signature").metrics()
    assert signature["trace_count"] == 1
    # reduce_retracing generalises shapes, not Python values: still a trace per step
    assert _planted_epoch(tf, "reduce_retracing").metrics()["trace_count"] == 6
    dropped = _planted_epoch(tf, "drop_remainder").metrics()
    assert dropped["epoch_steps"] == 5 and dropped["input_signatures"] == 1


def test_epoch_metrics_split_tracing_from_steady_calls():
    # epoch start; three calls (begin, end each); epoch end; three steady calls
    clock = iter([0.0, 0.0, 2.0, 2.0, 2.1, 2.1, 2.9, 2.9, 3.0, 3.1, 3.1, 3.2, 3.2, 3.3]).__next__
    counts = iter([0, 1, 1, 1, 1, 2, 2]).__next__  # before and after each call, then the epoch's total
    trace = tracing.run_epoch(lambda i: 1.0, lambda i: ([[0]] * (2 if i < 2 else 1),), 3, counts,
                              steady_call=lambda: 1.0, clock=clock)
    metrics = trace.metrics()
    assert trace.traced == [True, False, True]
    assert metrics["steady_step_s"] == pytest.approx(0.1)
    assert metrics["tracing_s"] == pytest.approx((2.0 - 0.1) + (0.8 - 0.1))
    assert metrics["epoch_wall_s"] == pytest.approx(2.9) and metrics["trace_count"] == 2


def test_keras_fit_exposes_its_compiled_step(tf):
    from tfbench.implementations import build
    from tfbench.implementations.interface import TrainConfig

    trainer = build("keras_fit", "mlp", TrainConfig(mode="xla"))
    functions = trainer.compiled_functions()
    assert len(functions) == 2 and all(hasattr(f, "experimental_get_tracing_count") for f in functions)
    assert environment.resolved_jit_compile(functions) is True
    assert build("raw_tf_nn", "mlp", TrainConfig(mode="eager")).compiled_functions() == []


def test_retracing_stage_records_validate(tf, tmp_path):
    from tfbench.benchmarks.devices import Device
    from tfbench.benchmarks.plan import build_plan
    from tfbench.benchmarks.stages import retracing
    from tfbench.benchmarks.stages.base import Context

    plan = build_plan("full", approaches=["raw_tf_nn"], modes=["eager", "function"], stages=["retracing"])
    cpu = Device("cpu", "cpu", "/CPU:0", "test cpu")
    context = Context(plan=plan, devices=[cpu], results=None, log=lambda *a, **k: None, tf=tf)
    job, published = retracing.jobs(context)
    assert {r["status"] for r in retracing.run(context, published)} == {"unsupported"}  # eager loops
    job.stubs = [s for s in job.stubs if s["variant"] in ("none", "tensor_scalar")]
    records = retracing.run(context, job)
    by_key = {(r["mode"], r["variant"]): r for r in records}
    assert by_key[("eager", "none")]["status"] == "unsupported"
    none, fixed = by_key[("function", "none")], by_key[("function", "tensor_scalar")]
    assert none["metrics"]["traces_per_signature"] > 1 and fixed["metrics"]["traces_per_signature"] == 1
    assert none["effective"]["jit_compile"] is False
    validate({"schema_version": 1, "environment": {}, "records": records})


# --- memory growth ---------------------------------------------------------------------------------------


def _curve(per_step: float, steps: int = 1000, seed: int = 0) -> list[tuple[int, float]]:
    """RSS-like: a warm-up rise, page-sized jitter, and ``per_step`` bytes of growth."""
    rng = np.random.default_rng(seed)
    base = 300e6 + np.minimum(np.arange(steps), 50) * 20e3
    jitter = rng.integers(-8, 9, steps) * 4096.0
    return [(i, float(base[i] + jitter[i] + per_step * i)) for i in range(steps)]


def test_a_planted_leak_is_flagged_and_a_clean_loop_is_not():
    leak = memory_growth.growth(_curve(8192))  # 8 KiB a step: 8 MiB over the run
    assert leak.flagged and leak.ci[0] > 0 and leak.slope == pytest.approx(8192, rel=0.1)
    clean = memory_growth.growth(_curve(0))
    assert not clean.flagged and clean.ci[0] < 100 < 1000 < 8192
    slight = memory_growth.growth(_curve(100))  # real but 100 KB over the run: below the noise floor
    assert not slight.flagged


def test_a_real_python_leak_shows_in_rss():
    kept, curve = [], []
    for step in range(1000):
        kept.append(bytearray(16384))  # the planted leak: a list that grows each step
        curve.append((step, memory_growth.rss_bytes()))
    assert memory_growth.growth(curve).flagged
    clean = []
    for step in range(1000):
        scratch = bytearray(16384)
        clean.append((step, memory_growth.rss_bytes() + 0 * len(scratch)))
    assert not memory_growth.growth(clean).flagged


def test_the_gpu_path_reads_the_allocator_and_falls_back_to_rss():
    from tfbench.benchmarks.devices import Device

    readings = iter([100, 100, 200])

    class Experimental:
        @staticmethod
        def get_memory_info(name):
            assert name == "GPU:0"
            return {"current": next(readings), "peak": 0}

    class FakeTF:
        class config:
            experimental = Experimental

    gpu = Device("gpu:0", "gpu", "/GPU:0", "fake gpu")
    source, read = memory_growth.memory_reader(gpu, FakeTF, rss=lambda: 5)
    assert source == "allocator" and read() == 100 and read() == 200

    class NoStats:
        class config:
            class experimental:
                @staticmethod
                def get_memory_info(name):
                    raise ValueError("no stats")

    source, read = memory_growth.memory_reader(gpu, NoStats, rss=lambda: 5)
    assert source == "rss" and read() == 5


def test_subsample_keeps_ends_and_at_most_200_points():
    points = memory_growth.subsample([(i, i * 2) for i in range(1000)])
    assert len(points) <= 200 and points[0] == [0.0, 0.0] and points[-1] == [999.0, 1998.0]


# --- effective settings and the report ---------------------------------------------------------------------


def test_env_flags_keep_tensorflow_variables_only():
    flags = environment.env_flags({"XLA_FLAGS": "--xla_cpu_fast_math", "TF_ENABLE_ONEDNN_OPTS": "0",
                                   "TF_CLI_CONFIG_FILE": "/x", "TF_TOKEN_app": "secret", "HOME": "/root"})
    assert flags == {"TF_ENABLE_ONEDNN_OPTS": "0", "XLA_FLAGS": "--xla_cpu_fast_math"}
    assert environment.onednn_enabled({"TF_ENABLE_ONEDNN_OPTS": "0"}) is False
    assert environment.onednn_enabled({}, build_default=lambda: True) is True


def _effective(**change) -> dict:
    base = {"jit_compile": True, "dtype_policy": "float32", "onednn": True, "env_flags": {}, "intra_op": 2,
            "inter_op": 2, "determinism": False, "backend": "tensorflow", "init_weights_sha256": "a" * 64,
            "first_batch_sha256": "b" * 64}
    return {**base, **change}


def _run_file(path, run_id: str, records: list[dict]) -> str:
    document = {"schema_version": 1, "run_id": run_id, "created": f"2026-12-0{run_id[-1]}T00:00:00+00:00",
                "updated": f"2026-12-0{run_id[-1]}T00:00:00+00:00", "complete": True, "config": {"profile": "full"},
                "environment": {"machine_id": "m1"}, "devices": [{"name": "cpu", "kind": "cpu"}],
                "records": records}
    validate(json.loads(json.dumps(document)))
    path.write_text(json.dumps(document))
    return str(path)


def _records(effective: dict, leak: bool) -> list[dict]:
    key = dict(workload="mlp", device="cpu", dataset="synthetic")
    step = make_record("step_time", approach="custom_tape", mode="xla", steps_per_call=1, batch_size=128, **key,
                       metrics={"step_time_s": {"median": 0.01, "p10": 0.01, "p90": 0.01, "iqr": 0.0, "mean": 0.01,
                                                "stdev": 0.0, "n": 3, "samples": [0.01] * 3}})
    step["effective"] = effective
    retrace = [make_record("retracing", approach="custom_tape", mode="function", steps_per_call=1, batch_size=128,
                           variant=fix, **key,
                           metrics={"fix": fix, "trace_count": traces, "input_signatures": 2,
                                    "traces_per_signature": traces / 2, "tracing_s": traces * 0.3,
                                    "epoch_wall_s": traces * 0.3 + 0.05, "epoch_steps": 9, "steady_step_s": 0.005})
               for fix, traces in (("none", 9), ("tensor_scalar", 2))]
    curve = _curve(8192 if leak else 0)
    found = memory_growth.growth(curve)
    memory = make_record("memory_growth", approach="keras_fit" if leak else "raw_tf_nn", mode="function",
                         steps_per_call=1, batch_size=32, variant="step", **key,
                         metrics={"growth_unit": "step", **found.metrics(),
                                  "memory_curve": memory_growth.subsample(curve)})
    return [step, *retrace, memory]


def test_section_names_retracing_fix_flagged_slope_and_differing_settings(tmp_path):
    first = _run_file(tmp_path / "a.json", "run1", _records(_effective(), leak=True))
    second = _run_file(tmp_path / "b.json", "run2", _records(_effective(jit_compile=False), leak=False))
    frame = load_results([first, second])
    differences = settings_differences(frame)
    assert differences == [("step_time/custom_tape/mlp/xla/k1/cpu/b128/synthetic/", "jit_compile", [True, False])]
    text = "\n".join(section(load_results([first])))
    assert "custom_tape (function) retraces 4.5 times per signature" in text
    assert "`tensor_scalar` brings it to 2 trace(s) and saves 2.10 s of 2.75 s" in text
    assert "Above noise: keras_fit (function)" in text
    assert "No two records of the same key" in text
    both = "\n".join(section(frame))
    assert "jit_compile" in both and "not comparable" in both
    assert "did not start from the same initial weights" not in both
    unfair = _records(_effective(), leak=False)
    unfair[1]["effective"] = _effective(init_weights_sha256="c" * 64)
    unfair[1]["approach"], unfair[1]["id"] = "raw_tf_nn", unfair[1]["id"].replace("custom_tape", "raw_tf_nn")
    unfair[0]["effective"] = _effective()
    text = "\n".join(section(load_results([_run_file(tmp_path / "c.json", "run3", unfair)])))
    assert "did not start from the same initial weights (custom_tape / raw_tf_nn)" in text
    assert plot_memory_growth(frame, tmp_path / "memory.png").stat().st_size > 0
    assert plot_memory_growth(frame[frame["kind"] == "step_time"], tmp_path / "none.png") is None


def test_memory_growth_stage_records_validate(tf, monkeypatch):
    from tfbench.benchmarks.devices import Device
    from tfbench.benchmarks.plan import build_plan
    from tfbench.benchmarks.stages import memory_growth as stage
    from tfbench.benchmarks.stages.base import Context

    monkeypatch.setattr(stage, "STEPS", 40)
    monkeypatch.setattr(stage, "FIT_CALLS", 4)
    monkeypatch.setattr(stage, "BUILDS", 4)
    plan = build_plan("full", approaches=["raw_tf_nn"], modes=["function"], stages=["memory_growth"])
    cpu = Device("cpu", "cpu", "/CPU:0", "test cpu")
    [job] = stage.jobs(Context(plan=plan, devices=[cpu], results=None, log=print, tf=tf))
    records = stage.run(Context(plan=plan, devices=[cpu], results=None, log=lambda *a, **k: None, tf=tf), job)
    assert [(r["variant"], r["status"], r["metrics"]["growth_unit"]) for r in records] == [
        ("step", "ok", "step"), ("fit_call", "ok", "fit_call"), ("build", "ok", "build"),
        ("build_clear_session", "ok", "build")]
    assert len(records[0]["metrics"]["memory_curve"]) == 40 and records[0]["metrics"]["growth_units"] == 40
    assert all(r["effective"]["jit_compile"] is False for r in records)
    validate({"schema_version": 1, "environment": {}, "records": records})
