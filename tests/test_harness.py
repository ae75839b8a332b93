"""The benchmark harness: statistics, honest timing order, devices, results files, resume, failures.

No timing assertions: clocks are fake, or only the shape of real results is checked.
"""

import json
import subprocess
import sys
import textwrap
from types import SimpleNamespace

import numpy as np
import pytest

from tfbench.benchmarks import devices
from tfbench.benchmarks.cli import main
from tfbench.benchmarks.results import ResultsFile, is_noisy, load, make_record, summarize, validate
from tfbench.benchmarks.timing import Timed, bootstrap_ratio, measure_interleaved
from tfbench.errors import UsageError

# --- statistics ------------------------------------------------------------------------------------------


def test_summary_statistics_of_known_samples():
    summary = summarize([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0])
    assert summary["median"] == 5.5 and summary["n"] == 10 and summary["mean"] == 5.5
    assert summary["p10"] == pytest.approx(1.9) and summary["p90"] == pytest.approx(9.1)
    assert summary["iqr"] == pytest.approx(4.5) and summary["stdev"] == pytest.approx(np.std(range(1, 11), ddof=1))
    assert summary["samples"] == [float(v) for v in range(1, 11)]
    assert is_noisy(summary)  # IQR 4.5 on a median of 5.5
    assert not is_noisy(summarize([1.0, 1.01, 0.99, 1.0, 1.02]))


def test_speedup_is_a_ratio_of_medians_with_an_interval():
    eager = [10.0, 10.5, 9.5, 10.2, 9.8] * 4
    compiled = [1.0, 1.05, 0.95, 1.02, 0.98] * 4
    ratio, low, high = bootstrap_ratio(eager, compiled)
    assert ratio == pytest.approx(10.0)
    assert low <= ratio <= high and high - low < 1.5


class FakeClock:
    """A clock that only moves when the fake work says so."""

    def __init__(self):
        self.now = 0.0
        self.events = []

    def __call__(self):
        self.events.append("clock")
        return self.now


def fake_call(clock, durations, name):
    """Each call 'queues' work: its duration is added only when the result is forced."""
    state = {"calls": 0}

    class Loss:
        def __float__(self):
            clock.events.append(f"force {name}")
            clock.now += durations(state["calls"])
            state["calls"] += 1
            return 0.5

    def call():
        clock.events.append(f"call {name}")
        return Loss()

    return call


def test_samples_on_a_fake_clock_are_per_step_and_exclude_the_first_call():
    clock = FakeClock()
    # First call 2.0 s (tracing); every later call of K=4 steps takes 0.04 s.
    timed = Timed(fake_call(clock, lambda i: 2.0 if i == 0 else 0.04, "a"), steps_per_call=4)
    measure_interleaved({"a": timed}, rounds=3, round_budget_s=0.22, warmup=2, clock=clock)
    assert timed.first_call_s == pytest.approx(2.0)
    assert timed.samples and all(s == pytest.approx(0.01) for s in timed.samples)
    assert len(timed.samples) == 3 * 5  # a 0.22 s budget holds 5 calls of 0.04 s, in each of 3 rounds


def test_the_device_is_synchronised_before_the_clock_is_read():
    clock = FakeClock()
    timed = Timed(fake_call(clock, lambda i: 0.01, "a"))
    measure_interleaved({"a": timed}, rounds=1, round_budget_s=0.02, warmup=0,
                        sync=lambda: clock.events.append("sync"), clock=clock)
    # Every timed call: clock, call, force the value, sync the device, and only then the clock.
    pattern = ["clock", "call a", "force a", "sync", "clock"]
    events = clock.events
    assert events[:5] == pattern
    for start in range(0, len(events), 5):
        assert events[start:start + 5] == pattern


def test_blocks_run_back_to_back_and_each_member_takes_its_turn_first():
    clock = FakeClock()
    names = ["f/a", "f/b", "f/c", "x/a", "x/b", "x/c", "ref"]
    configs = {name: Timed(fake_call(clock, lambda i: 0.01, name)) for name in names}
    orders = []
    measure_interleaved(configs, rounds=3, round_budget_s=0.02, warmup=0, clock=clock, on_order=orders.append,
                        blocks=[["f/a", "f/b", "f/c"], ["x/a", "x/b", "x/c"], ["ref"]])
    assert orders == [["f/a", "f/b", "f/c", "x/a", "x/b", "x/c", "ref"],
                      ["x/b", "x/c", "x/a", "ref", "f/b", "f/c", "f/a"],
                      ["ref", "f/c", "f/a", "f/b", "x/c", "x/a", "x/b"]]
    with pytest.raises(ValueError, match="exactly once"):
        measure_interleaved(configs, rounds=1, round_budget_s=0.02, blocks=[["f/a"]], clock=clock)


def test_modes_are_measured_interleaved_in_a_rotating_order():
    clock = FakeClock()
    configs = {name: Timed(fake_call(clock, lambda i: 0.01, name)) for name in ("eager", "function", "xla")}
    orders = []
    measure_interleaved(configs, rounds=4, round_budget_s=0.02, warmup=0, clock=clock, on_order=orders.append)
    assert orders == [["eager", "function", "xla"], ["function", "xla", "eager"],
                      ["xla", "eager", "function"], ["eager", "function", "xla"]]
    forced = [e.split()[1] for e in clock.events if e.startswith("force")]
    # After the first calls and probes, each round runs one config's samples, then the next's.
    assert forced[6:12] == ["eager", "eager", "function", "function", "xla", "xla"]


def test_an_injected_slowdown_is_real_work_in_the_timed_region():
    clock = FakeClock()

    def spin_clock():  # the spin loop reads the clock; let each read advance it
        clock.now += 0.001
        return clock.now

    timed = Timed(fake_call(clock, lambda i: 0.01, "a"), inject_fraction=0.5)
    measure_interleaved({"a": timed}, rounds=1, round_budget_s=0.05, warmup=2, clock=spin_clock)
    assert timed._inject_s == pytest.approx(0.5 * np.median([0.011, 0.011]), rel=0.2)
    assert np.median(timed.samples) > 0.01 * 1.4


# --- results files -------------------------------------------------------------------------------------


def test_results_round_trip_and_are_written_atomically(tmp_path):
    path = tmp_path / "run.json"
    results = ResultsFile.create(path, run_id="r1", config={"profile": "quick"}, environment={"python": "3.11"})
    record = make_record("step_time", approach="custom_tape", workload="mlp", mode="function", steps_per_call=1,
                         device="cpu", batch_size=32, dataset="synthetic",
                         metrics={"step_time_s": summarize([0.001, 0.0011, 0.0012])})
    results.add(record)
    again = ResultsFile.open(path)
    assert again.records == [record] and again.document["run_id"] == "r1"
    assert record["id"] == "step_time/custom_tape/mlp/function/k1/cpu/b32/synthetic/"
    assert not list(tmp_path.glob(".*tmp")), "no temporary file left behind"
    results.add({**record, "status": "failed", "reason": "boom"})  # same id: replaced, not duplicated
    assert [r["status"] for r in ResultsFile.open(path).records] == ["failed"]


@pytest.mark.parametrize(("content", "message"), [
    ('{"schema_version": 1, "environment": {}, "records": [', "not valid JSON"),
    ('{"schema_version": 99, "environment": {}, "records": []}', "schema_version 99"),
    ('{"schema_version": 1, "records": []}', "missing 'environment'"),
    ('{"schema_version": 1, "environment": {}, "records": [{"kind": "step_time"}]}',
     r"records\[0\]: missing 'approach'"),
])
def test_bad_results_files_are_named_in_one_clear_error(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(Exception, match=message) as error:
        load(path)
    assert str(path) in str(error.value)


# --- devices -----------------------------------------------------------------------------------------


def fake_tf(gpus=(), details=None, build=None):
    calls = []
    physical = [SimpleNamespace(name=f"/physical_device:GPU:{i}", device_type="GPU") for i in range(len(gpus))]
    experimental = SimpleNamespace(
        get_device_details=lambda gpu: {"device_name": gpus[int(gpu.name[-1])], **(details or {})},
        set_memory_growth=lambda gpu, value: calls.append(("memory_growth", gpu.name, value)),
        get_memory_info=lambda name: {"current": 10, "peak": 1234},
        reset_memory_stats=lambda name: calls.append(("reset", name)),
    )
    tf = SimpleNamespace(
        config=SimpleNamespace(list_physical_devices=lambda kind: physical if kind == "GPU" else [],
                               experimental=experimental),
        sysconfig=SimpleNamespace(get_build_info=lambda: build or {"is_cuda_build": False}),
        test=SimpleNamespace(experimental=SimpleNamespace(sync_devices=lambda: calls.append(("sync",)))),
    )
    return tf, calls


def test_detects_cuda_gpus_with_their_cuda_versions():
    tf, calls = fake_tf(gpus=["NVIDIA A100-SXM4-40GB"], build={"cuda_version": "12.5", "cudnn_version": "9"})
    found = devices.detect(tf, system="Linux", machine="x86_64", metal_version=None)
    assert [d.name for d in found] == ["cpu", "gpu:0"]
    gpu = found[1]
    assert gpu.kind == "gpu" and gpu.tf_device == "/GPU:0" and gpu.description == "NVIDIA A100-SXM4-40GB"
    assert gpu.details["cuda_version"] == "12.5" and gpu.unsupported_reason("xla") is None
    assert devices.enable_memory_growth(tf) == ["/physical_device:GPU:0"]
    assert ("memory_growth", "/physical_device:GPU:0", True) in calls
    devices.synchronize(gpu, tf)
    devices.synchronize(found[0], tf)  # the CPU needs no sync
    assert calls.count(("sync",)) == 1
    assert devices.peak_memory_bytes(gpu, tf) == 1234


def test_apple_silicon_gpu_is_metal_and_xla_on_it_is_unsupported_not_failed():
    tf, _ = fake_tf(gpus=["METAL"])
    found = devices.detect(tf, system="Darwin", machine="arm64", metal_version="1.2.0")
    metal = found[1]
    assert metal.name == "metal:0" and metal.kind == "metal" and metal.details["tensorflow_metal"] == "1.2.0"
    assert "does not support XLA" in metal.unsupported_reason("xla")
    assert metal.unsupported_reason("function") is None
    assert devices.select(found, "auto") == [metal]
    assert devices.select(found, "metal") == [metal]


def test_device_choice():
    tf, _ = fake_tf()
    cpu_only = devices.detect(tf, system="Linux", machine="x86_64", metal_version=None)
    assert devices.select(cpu_only, "auto") == cpu_only == devices.select(cpu_only, "all")
    with pytest.raises(UsageError, match="no gpu device here"):
        devices.select(cpu_only, "gpu")
    with pytest.raises(UsageError, match="unknown device 'tpu'"):
        devices.select(cpu_only, "tpu")


def test_the_suite_places_records_on_several_devices_with_logical_cpus(tmp_path):
    # A fresh process: logical devices must be configured before TensorFlow's runtime starts.
    # The second logical CPU stands in for a GPU, so the GPU path (sync, memory stats) runs for real.
    script = textwrap.dedent(f"""
        import tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        from tfbench.benchmarks import devices
        from tfbench.benchmarks.cli import main
        devices.detect = lambda tf=None, **kw: [devices.Device("cpu", "cpu", "/CPU:0", "logical 0"),
                                                devices.Device("gpu:0", "gpu", "/CPU:1", "logical 1 as a GPU")]
        raise SystemExit(main(["run", "--device", "all", "--approach", "raw_tf_nn", "--workload", "mlp",
                               "--mode", "function", "--steps-per-call", "1", "--batch-size", "16",
                               "--stages", "step_time", "--samples", "4", "--quiet",
                               "--output", "{tmp_path / 'multi.json'}"]))
    """)
    process = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert process.returncode == 0, process.stderr[-2000:]
    document = load(tmp_path / "multi.json")
    assert sorted(r["device"] for r in document["records"]) == ["cpu", "gpu:0"]
    assert all(r["status"] == "ok" for r in document["records"])
    assert {d["name"] for d in document["devices"]} == {"cpu", "gpu:0"}


# --- runs ------------------------------------------------------------------------------------------------


TINY = ["run", "--approach", "custom_tape", "naive_sequential", "--workload", "mlp", "cnn", "--batch-size", "8",
        "--steps-per-call", "1", "2", "--stages", "step_time", "--samples", "4", "--quiet"]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    path = tmp_path_factory.mktemp("run") / "tiny.json"
    assert main(TINY + ["--output", str(path)]) == 0
    return load(path)


def test_a_tiny_real_run_writes_a_valid_results_file(tiny_run):
    validate(tiny_run)
    assert tiny_run["complete"] is True
    env = tiny_run["environment"]
    for key in ("tensorflow", "keras", "numpy", "python", "cpu_model", "cpu_count", "threads", "machine_id",
                "tf_build_info", "git_commit"):
        assert key in env
    assert tiny_run["devices"][0]["peak_gflops"] > 0
    records = tiny_run["records"]
    # 2 approaches x 2 workloads x (eager K1, function K1/K2, xla K1/K2)
    assert len(records) == 20
    unsupported = [r for r in records if r["status"] == "unsupported"]
    assert {(r["approach"], r["workload"]) for r in unsupported} == {("naive_sequential", "cnn")}
    ok = [r for r in records if r["status"] == "ok"]
    assert len(ok) == 15
    for record in ok:
        metrics = record["metrics"]
        assert metrics["step_time_s"]["n"] == 4 and len(metrics["step_time_s"]["samples"]) == 4
        assert metrics["first_call_s"] > 0 and metrics["throughput_sps"] > 0 and metrics["peak_memory_bytes"] > 0
        assert 0 < metrics["fraction_of_floor"] and 0 < metrics["mfu"] and metrics["speedup_vs_eager"] > 0
        assert metrics["binding_roof"] in ("compute", "memory") and metrics["harness_preplaced_bytes"] > 0
        low, high = metrics["speedup_vs_eager_ci"]
        assert low <= metrics["speedup_vs_eager"] <= high
        # what actually ran, read back: the compiled step's jit_compile follows the mode
        assert record["effective"]["jit_compile"] is {"eager": None, "function": False, "xla": True}[record["mode"]]
    # the same network and initial weights for every approach of a workload (the fairness the suite promises)
    for workload in ("mlp", "cnn"):
        assert len({r["effective"]["init_weights_sha256"] for r in ok if r["workload"] == workload}) == 1


def test_a_failing_record_is_recorded_and_the_run_goes_on(tmp_path, monkeypatch):
    from tfbench import implementations
    original = implementations.build

    def sometimes_fails(approach, workload, config=None, weights=None):
        if approach == "custom_tape" and config.mode == "xla":
            raise MemoryError("out of memory (simulated)\nsecond line")
        return original(approach, workload, config, weights)

    monkeypatch.setattr(implementations, "build", sometimes_fails)
    path = tmp_path / "failing.json"
    assert main(["run", "--approach", "custom_tape", "raw_tf_nn", "--workload", "mlp", "--mode", "function", "xla",
                 "--steps-per-call", "1", "--batch-size", "8", "--stages", "step_time", "--samples", "3",
                 "--quiet", "--output", str(path)]) == 3  # a failed record: exit 3, results written
    records = {(r["approach"], r["mode"]): r for r in load(path)["records"]}
    # The failing configuration only: the rest of its group (same approach, other approaches) is measured.
    assert records["custom_tape", "xla"]["status"] == "failed"
    assert records["custom_tape", "xla"]["reason"] == "MemoryError: out of memory (simulated)"
    assert [records[key]["status"] for key in [("custom_tape", "function"), ("raw_tf_nn", "function"),
                                               ("raw_tf_nn", "xla")]] == ["ok"] * 3


def test_a_failing_job_is_recorded_and_the_run_goes_on(tmp_path, monkeypatch):
    from tfbench.benchmarks.stages import step_time

    original = step_time.run

    def sometimes_fails(context, job):
        if job.params["batch_size"] == 8:
            raise RuntimeError("measurement broke (simulated)")
        return original(context, job)

    monkeypatch.setattr(step_time, "run", sometimes_fails)
    path = tmp_path / "failing.json"
    assert main(["run", "--approach", "raw_tf_nn", "--workload", "mlp", "--mode", "function", "--steps-per-call",
                 "1", "--batch-size", "8", "16", "--stages", "step_time", "--samples", "3", "--quiet",
                 "--output", str(path)]) == 3
    records = {r["batch_size"]: r for r in load(path)["records"]}
    assert records[8]["status"] == "failed" and records[8]["reason"] == "RuntimeError: measurement broke (simulated)"
    assert records[16]["status"] == "ok"


def test_approaches_of_one_workload_and_batch_size_are_timed_in_one_group(tmp_path, monkeypatch):
    from tfbench.benchmarks import plan, timing
    from tfbench.implementations.custom_tape import CustomTape

    orders = []
    monkeypatch.setattr(timing, "measure_interleaved", _recording(timing.measure_interleaved, orders))
    monkeypatch.setattr(CustomTape, "known_cost", classmethod(
        lambda cls, w, mode, k, device_kind="cpu": f"costly {k}" if mode == "xla" else None))
    path = tmp_path / "grouped.json"
    assert main(["run", "--approach", "custom_tape", "raw_tf_nn", "--workload", "mlp", "--mode", "eager", "xla",
                 "--steps-per-call", "1", "2", "--batch-size", "8", "--stages", "step_time", "--samples", "2",
                 "--quiet", "--output", str(path)]) == 0
    # One group; the approaches of one mode and K side by side, so they are timed back to back (in
    # the first round; then each block and each approach inside it takes its turn first).
    assert len(orders) == 1
    assert orders[0][0] == [("custom_tape", "eager", 1), ("raw_tf_nn", "eager", 1), ("custom_tape", "xla", 1),
                            ("raw_tf_nn", "xla", 1), ("custom_tape", "xla", 2), ("raw_tf_nn", "xla", 2)]
    assert orders[0][1][:2] == [("raw_tf_nn", "xla", 1), ("custom_tape", "xla", 1)]
    records = load(path)["records"]
    # Each approach's compiled records against its own eager record; its harness overhead measured once.
    assert all(r["metrics"]["speedup_vs_eager"] > 0 for r in records if r["mode"] == "xla")
    with_overhead = [(r["approach"], r["steps_per_call"]) for r in records
                     if "harness_overhead_fraction" in r["metrics"]]
    assert sorted(with_overhead) == [("custom_tape", 1), ("raw_tf_nn", 1)]
    # The approach's own account of its extra work, stored with the records it applies to.
    assert sorted((r["approach"], r["mode"], r["metrics"]["known_cost"]) for r in records
                  if "known_cost" in r["metrics"]) == [("custom_tape", "xla", "costly 1"),
                                                       ("custom_tape", "xla", "costly 2")]
    # The gate keeps one group per approach, the grouping it was calibrated under.
    assert plan.PROFILES["gate"].interleave_approaches is False
    orders.clear()
    # (gate-mini: the former two-record gate; the gate profile groups every approach the same way)
    assert main(["run", "--profile", "gate-mini", "--samples", "2", "--quiet",
                 "--output", str(tmp_path / "g.json")]) == 0
    assert [{key[0] for order in rounds for key in order} for rounds in orders] == [{"custom_tape"}, {"keras_fit"}]


def _recording(measure, orders):
    """measure_interleaved, noting each group's configurations as (approach, mode, K)."""
    def recording(configs, **kwargs):
        rounds = []  # one list of round orders per group
        orders.append(rounds)

        def on_order(order):
            # A record id reads step_time/<approach>/<workload>/<mode>/k<K>/...; the reference kernel has none.
            ids = [key.split("/") for key in order if key.startswith("step_time/")]
            rounds.append([(parts[1], parts[3], int(parts[4][1:])) for parts in ids])
        return measure(configs, on_order=on_order, **kwargs)
    return recording


def test_an_interrupted_run_keeps_its_records_and_resume_completes_it(tmp_path, monkeypatch):
    from tfbench.benchmarks.stages import step_time

    original = step_time.run
    calls = []

    def interrupted(context, job):
        calls.append(job.params["batch_size"])
        if len(calls) == 2:
            raise KeyboardInterrupt
        return original(context, job)

    monkeypatch.setattr(step_time, "run", interrupted)
    path = tmp_path / "interrupted.json"
    argv = ["run", "--approach", "custom_tape", "raw_tf_nn", "--workload", "mlp", "--mode", "eager", "function",
            "--steps-per-call", "1", "--batch-size", "8", "16", "--stages", "step_time", "--samples", "3",
            "--quiet"]
    assert main(argv + ["--output", str(path)]) == 130
    partial = json.loads(path.read_text())  # a valid file, marked incomplete, with the first job's records
    assert partial["complete"] is False
    assert sorted((r["approach"], r["batch_size"]) for r in partial["records"]) == \
        [("custom_tape", 8)] * 2 + [("raw_tf_nn", 8)] * 2

    monkeypatch.setattr(step_time, "run", original)
    done_before = {r["id"]: r["metrics"] for r in partial["records"]}
    assert main(["run", "--resume", str(path), "--quiet"]) == 0
    finished = load(path)
    assert finished["complete"] is True
    assert sorted((r["approach"], r["batch_size"]) for r in finished["records"]) == \
        sorted([("custom_tape", 8), ("raw_tf_nn", 8), ("custom_tape", 16), ("raw_tf_nn", 16)] * 2)
    # What was measured before is kept as it was, not measured again.
    assert {r["id"]: r["metrics"] for r in finished["records"] if r["id"] in done_before} == done_before
    assert finished["run_id"] == partial["run_id"]


def test_accuracy_without_the_dataset_is_skipped_loudly_or_fatal_when_required(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("TFBENCH_DATA_DIR", raising=False)
    argv = ["run", "--approach", "raw_tf_nn", "--workload", "mlp", "--stages", "accuracy", "--quiet",
            "--data-dir", str(tmp_path / "empty")]
    (tmp_path / "empty").mkdir()
    path = tmp_path / "skipped.json"
    assert main(argv + ["--output", str(path)]) == 0
    record = load(path)["records"][0]
    assert record["status"] == "skipped" and str(tmp_path / "empty") in record["reason"]
    assert "SKIPPED" in capsys.readouterr().err
    assert main(argv + ["--require-accuracy", "--output", str(tmp_path / "fatal.json")]) == 2
    assert not (tmp_path / "fatal.json").exists()


def test_harness_overhead_compares_the_timed_call_with_a_bare_loop():
    from tfbench.benchmarks.timing import harness_overhead

    clock = FakeClock()
    timed = Timed(fake_call(clock, lambda i: 0.01, "a"))
    # The fake sync costs 1 ms that a bare loop does not pay: the harness adds 10% here.
    overhead = harness_overhead(timed, rounds=2, calls=5, sync=lambda: setattr(clock, "now", clock.now + 0.001),
                                clock=clock)
    assert overhead == pytest.approx(0.1)


def test_results_files_get_ordinary_permissions(tmp_path):
    import os

    from tfbench.benchmarks.results import write_json_atomic

    path = tmp_path / "r.json"
    write_json_atomic(path, {"a": 1})
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_thread_pools_default_to_the_cores_and_a_resumed_run_keeps_its_own(monkeypatch):
    from tfbench.benchmarks import environment
    from tfbench.benchmarks.plan import PROFILES
    from tfbench.benchmarks.runner import parse_threads

    monkeypatch.setattr(environment, "cpu_count", lambda: 6)
    assert parse_threads(None, PROFILES["full"]) == {"intra_op": 6, "inter_op": 6}
    # The gate keeps the one-thread-per-op setting it was calibrated under.
    assert parse_threads(None, PROFILES["gate"]) == {"intra_op": 1, "inter_op": 6}
    assert parse_threads("3,1", PROFILES["gate"]) == {"intra_op": 3, "inter_op": 1}
    recorded = {"intra_op": 1, "inter_op": 2}
    assert parse_threads(None, PROFILES["quick"], recorded=recorded) == recorded
    assert parse_threads("2,2", PROFILES["quick"], recorded=recorded) == {"intra_op": 2, "inter_op": 2}
    with pytest.raises(UsageError, match="INTRA,INTER"):
        parse_threads("2", PROFILES["quick"])


def test_the_progress_line_names_each_approach_of_a_mixed_group():
    from tfbench.benchmarks.suite import describe

    def timed(approach, mode, median):
        return make_record("step_time", approach=approach, workload="mlp", mode=mode, steps_per_call=1,
                           device="cpu", batch_size=32, dataset="synthetic",
                           metrics={"step_time_s": summarize([median])})

    one = describe([timed("raw_tf_nn", "eager", 0.012), timed("raw_tf_nn", "xla", 0.0006)])
    assert one == "step_time raw_tf_nn mlp b32 cpu: eager/K1 12 ms; xla/K1 0.6 ms"
    mixed = describe([timed("raw_tf_nn", "xla", 0.0006), timed("keras_fit", "xla", 0.001)])
    assert mixed == "step_time all approaches mlp b32 cpu: raw_tf_nn xla/K1 0.6 ms; keras_fit xla/K1 1 ms"
