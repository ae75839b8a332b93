"""tf.distribute: every approach under a strategy ends where one device ends, bad input is one line, and local
workers stop by themselves.

Logical CPU devices must be set before TensorFlow's runtime starts, and this test process has started it, so
the MirroredStrategy checks run in a fresh process (as tests/test_harness.py does), once for all approaches.
"""

import json
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from tfbench.benchmarks.cli import main
from tfbench.benchmarks.multiworker import WorkerError, free_ports, launch, tf_configs, worker_command
from tfbench.benchmarks.results import load, record_id, validate
from tfbench.errors import ConfigError
from tfbench.implementations import approaches, get_approach
from tfbench.implementations.distribute import parse_tf_config
from tfbench.implementations.interface import TrainConfig
from tfbench.implementations.workloads import get_workload

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}
APPROACHES = list(approaches())
PER_REPLICA, REPLICAS, STEPS = 8, 2, 20


def mismatches(actual, expected) -> list[int]:
    """The weights that differ beyond float32 round-off (the parity check).

    Two replicas at batch 8 and one device at batch 16 compute the same gradient, but add it up in another
    order (two partial sums of 8 examples, then the all-reduce, against one sum of 16): a float32
    round-off of ~1e-7 relative per step. Measured here: at most 6e-8 absolute after 20 SGD steps. rtol
    1e-4 / atol 1e-6 (as the single-device parity tests) leaves room for that and nothing else: a
    replica loss divided by its own batch instead of the global one doubles the step, which moves the
    weights by ~1e-3.
    """
    return [index for index, (a, e) in enumerate(zip(actual, expected))
            if not np.allclose(a, e, rtol=1e-4, atol=1e-6)]


# Each approach in the modes and K it runs under a strategy: K=4 exercises the K-step loop inside one
# compiled call; keras_fit cannot run K > 1 compiled under a strategy, so its K-step loop is checked eagerly.
CASES = [(a, "function", 1) for a in APPROACHES] + [(a, "function", 4) for a in APPROACHES if a != "keras_fit"] \
    + [("keras_fit", "eager", 2)]

PARITY_SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np
    import tensorflow as tf
    from tfbench.benchmarks.devices import split_cpu
    split_cpu(4)
    from tfbench.benchmarks.multiworker import check_weights
    from tfbench.implementations.custom_tape import CustomTape

    class WrongScaling(CustomTape):
        # The mistake the parity check must catch: each replica divides by its own batch (reduce_mean),
        # so the all-reduce's sum of gradients is {replicas}x the mean's.
        def replica_step(self, x, y):
            with tf.GradientTape() as tape:
                logits = self.model(x, training=True)
                loss = tf.reduce_mean(self.per_example_loss_fn(y, logits))
            grads = tape.gradient(loss, self.model.trainable_variables)
            self.optimizer.apply_gradients(zip(grads, self.model.trainable_variables))
            return loss, logits

    out, cases = sys.argv[1], json.loads(sys.argv[2])
    results = {{}}
    batch = {per_replica} * {replicas}
    for approach in sorted({{c[0] for c in cases}}):
        results[approach + "/reference"] = check_weights(approach, "mlp", strategy="none", replicas=1,
                                                        global_batch=batch, steps={steps})
    for approach, mode, k in cases:
        results[f"{{approach}}/{{mode}}/{{k}}"] = check_weights(
            approach, "mlp", strategy="mirrored", replicas={replicas}, global_batch=batch, steps={steps},
            mode=mode, steps_per_call=k)
    # Four replicas in the same process as the two-replica strategies (a benchmark run measures 1, 2 and 4).
    results["custom_tape/function/1/x4"] = check_weights("custom_tape", "mlp", strategy="mirrored", replicas=4,
                                                         global_batch=batch, steps={steps})
    # fit(): whole epochs of shuffled batches (the last one short), on one device and on {replicas} replicas.
    from tfbench.implementations import build
    from tfbench.implementations.interface import OptimizerSpec, TrainConfig
    rng = np.random.default_rng(3)
    x, y = rng.random((72, 28, 28, 1), dtype=np.float32), rng.integers(0, 10, 72).astype(np.int32)
    for approach in ("custom_tape", "keras_fit"):
        for strategy, replicas in (("none", 1), ("mirrored", {replicas})):
            trainer = build(approach, "mlp", TrainConfig(optimizer=OptimizerSpec("sgd", 0.05), strategy=strategy,
                                                         replicas=replicas))
            trainer.fit(x, y, epochs=2, batch_size=16, seed=5)
            results[f"fit/{{approach}}/{{strategy}}"] = trainer.get_weights()
    import tfbench.implementations as registry
    registry.approaches()["custom_tape"] = WrongScaling
    results["wrong_scaling"] = check_weights("custom_tape", "mlp", strategy="mirrored", replicas={replicas},
                                             global_batch=batch, steps={steps})
    np.savez(out, **{{f"{{key}}|{{i}}": w for key, weights in results.items() for i, w in enumerate(weights)}})
""").format(replicas=REPLICAS, per_replica=PER_REPLICA, steps=STEPS)


def _unpack(path) -> dict[str, list[np.ndarray]]:
    stored = np.load(path)
    weights: dict[str, dict[int, np.ndarray]] = {}
    for name in stored.files:
        key, index = name.rsplit("|", 1)
        weights.setdefault(key, {})[int(index)] = stored[name]
    return {key: [by_index[i] for i in sorted(by_index)] for key, by_index in weights.items()}


@pytest.fixture(scope="module")
def mirrored(tmp_path_factory):
    """Every case's weights after 20 SGD steps on 2 logical CPUs, and each approach's on one device."""
    out = tmp_path_factory.mktemp("parity") / "weights.npz"
    process = subprocess.run([sys.executable, "-c", PARITY_SCRIPT, str(out), json.dumps(CASES)], cwd=ROOT,
                             env=ENV, capture_output=True, text=True, timeout=600)
    assert process.returncode == 0, process.stderr[-3000:]
    return _unpack(out)


@pytest.mark.parametrize(("approach", "mode", "k"), CASES, ids=[f"{a}-{m}-K{k}" for a, m, k in CASES])
def test_two_replicas_end_with_the_weights_of_one_device_at_the_global_batch(mirrored, approach, mode, k):
    distributed, reference = mirrored[f"{approach}/{mode}/{k}"], mirrored[f"{approach}/reference"]
    assert len(distributed) == len(reference) == 6
    assert not any(np.array_equal(w, w0) for w, w0 in zip(reference, get_workload("mlp").init_weights(0))), \
        "the reference trained"
    assert mismatches(distributed, reference) == [], f"{approach} {mode} K={k}: weights differ"


def test_four_replicas_agree_too_beside_two_replica_strategies_in_one_process(mirrored):
    # Each CPU MirroredStrategy once shared one collective group: a 4-replica all-reduce after a 2-replica one
    # aborted ("is joining a group with size 4, but that group has size 2").
    assert mismatches(mirrored["custom_tape/function/1/x4"], mirrored["custom_tape/reference"]) == []


@pytest.mark.parametrize("approach", ["custom_tape", "keras_fit"])
def test_fit_on_two_replicas_ends_where_fit_on_one_device_ends(mirrored, approach):
    # Two epochs of 72 examples in batches of 16: the last batch of each epoch (8) splits 4 + 4.
    assert mismatches(mirrored[f"fit/{approach}/mirrored"], mirrored[f"fit/{approach}/none"]) == []


def test_the_parity_check_catches_a_loss_divided_by_the_replica_batch(mirrored):
    # reduce_mean per replica: the summed gradient is twice the mean's, and the check says so.
    assert mismatches(mirrored["wrong_scaling"], mirrored["custom_tape/reference"]) != []
    assert mismatches(mirrored["custom_tape/function/1"], mirrored["custom_tape/reference"]) == []


# --- what cannot be distributed says why --------------------------------------------------------------------


@pytest.mark.parametrize("approach", APPROACHES)
def test_xla_under_a_strategy_is_unsupported_with_the_measured_reason(approach):
    cls, mlp = get_approach(approach), get_workload("mlp")
    assert "XLA compiles a function for one device" in cls.unsupported(mlp, "xla", "mirrored", 1)
    assert cls.unsupported(mlp, "xla") is None
    assert cls.unsupported(mlp, "function", "mirrored", 1) is None


def test_keras_fit_says_why_it_cannot_run_k_steps_or_multiworker_under_a_strategy():
    cls, mlp = get_approach("keras_fit"), get_workload("mlp")
    assert "keras-team/keras#19246" in cls.unsupported(mlp, "function", "mirrored", 4)
    assert cls.unsupported(mlp, "eager", "mirrored", 4) is None  # eager runs its K steps in Python
    assert "tensorflow/tensorflow#72388" in cls.unsupported(mlp, "function", "multiworker", 1)
    assert get_approach("custom_tape").unsupported(mlp, "function", "multiworker", 4) is None
    assert "dense layers only" in get_approach("naive_sequential").unsupported(get_workload("cnn"), "function",
                                                                               "mirrored", 1)


@pytest.mark.parametrize(("kwargs", "fragment"), [
    ({"strategy": "horovod"}, "unknown strategy 'horovod'"),
    ({"strategy": "mirrored", "replicas": 0}, "replicas must be an integer >= 1"),
    ({"replicas": 2}, "2 replicas need a strategy"),
])
def test_train_config_checks_the_strategy(kwargs, fragment):
    with pytest.raises(ConfigError, match=fragment):
        TrainConfig(**kwargs)


@pytest.mark.parametrize(("text", "fragment"), [
    (None, "needs TF_CONFIG"),
    ("{not json", "not valid JSON"),
    ('{"task": {"type": "worker", "index": 0}}', "'cluster' object"),
    ('{"cluster": {"worker": ["localhost"]}, "task": {"type": "worker", "index": 0}}', "host:port"),
    ('{"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "ps", "index": 0}}', "task must be"),
    ('{"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 2}}', "index 2"),
])
def test_a_malformed_tf_config_is_one_clear_error(text, fragment):
    with pytest.raises(ConfigError, match=fragment):
        parse_tf_config(text)


def test_loopback_clusters_get_a_valid_tf_config_per_worker():
    configs = [parse_tf_config(text) for text in tf_configs(free_ports(2))]
    assert [c["task"]["index"] for c in configs] == [0, 1]
    assert all(address.startswith("127.0.0.1:") for address in configs[0]["cluster"]["worker"])
    assert len(set(configs[0]["cluster"]["worker"])) == 2


# --- results: the new key fields, and old files --------------------------------------------------------------


def test_records_without_a_strategy_read_as_one_device_and_keep_their_id():
    old = {"kind": "step_time", "approach": "custom_tape", "workload": "mlp", "mode": "function",
           "steps_per_call": 1, "device": "cpu", "batch_size": 32, "dataset": "synthetic", "variant": "",
           "status": "ok", "reason": None, "metrics": {"step_time_s": {"median": 0.001}}}
    old_id = "step_time/custom_tape/mlp/function/k1/cpu/b32/synthetic/"
    document = validate({"schema_version": 1, "environment": {}, "records": [dict(old, id=old_id)]})
    record = document["records"][0]
    assert (record["strategy"], record["replicas"]) == ("none", 1) and record_id(record) == old_id
    assert record_id({**old, "strategy": "mirrored", "replicas": 2}) == old_id + "/mirroredx2"


# --- the command line ---------------------------------------------------------------------------------------


def assert_one_line_error(capsys, argv, *fragments):
    code = main(argv)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("tfbench: error: "), err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.mark.parametrize(("argv", "fragments"), [
    (["--strategy", "mirrored", "--replicas", "0"], ["--replicas", "must be >= 1"]),
    (["--strategy", "horovod"], ["--strategy", "horovod"]),
    (["--strategy", "mirrored", "--replicas", "64"], ["64 replicas are more than"]),
    (["--replicas", "2"], ["need a strategy"]),
    (["--strategy", "multiworker", "--replicas", "2", "4"], ["one replica count"]),
    (["--strategy", "multiworker", "--worker-timeout", "0"], ["--worker-timeout must be > 0"]),
])
def test_bad_strategy_input_is_one_line_and_exit_2(capsys, monkeypatch, argv, fragments):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    assert_one_line_error(capsys, ["run", *argv], *fragments)


@pytest.mark.parametrize(("tf_config", "replicas", "fragment"), [
    ("{oops", [], "TF_CONFIG is not valid JSON"),
    ('{"cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}, "task": {"type": "worker", "index": 5}}', [],
     "task index 5"),
    ('{"cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}, "task": {"type": "worker", "index": 0}}', ["3"],
     "does not match the TF_CONFIG cluster of 2"),
])
def test_a_malformed_tf_config_on_the_command_line_is_one_line_and_exit_2(capsys, monkeypatch, tf_config, replicas,
                                                                          fragment):
    monkeypatch.setenv("TF_CONFIG", tf_config)
    replicas_option = ["--replicas", *replicas] if replicas else []
    assert_one_line_error(capsys, ["run", "--strategy", "multiworker", *replicas_option], fragment)


def test_strategy_input_is_checked_before_tensorflow_is_imported():
    script = ("import sys; from tfbench.benchmarks.cli import main; code = main(['run', '--strategy', "
              "'multiworker']); assert 'tensorflow' not in sys.modules, 'imported'; sys.exit(code)")
    process = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env={**ENV, "TF_CONFIG": "[1, 2]"},
                             capture_output=True, text=True, timeout=120)
    assert process.returncode == 2, process.stderr
    assert process.stderr.strip().splitlines() == ["tfbench: error: TF_CONFIG must be a JSON object with a "
                                                   "'cluster' object"]


def test_more_replicas_than_gpus_is_a_usage_error():
    from tfbench.benchmarks.devices import Device
    from tfbench.benchmarks.plan import build_plan
    from tfbench.benchmarks.stages import distributed
    from tfbench.benchmarks.stages.base import Context
    from tfbench.errors import UsageError

    plan = build_plan(strategy="mirrored", replicas=[4], approaches=["custom_tape"], workloads=["mlp"])
    gpus = [Device(f"gpu:{i}", "gpu", f"/GPU:{i}", "fake") for i in range(2)]
    with pytest.raises(UsageError, match="4 replicas need as many gpu devices; found 2"):
        distributed.jobs(Context(plan=plan, devices=gpus, results=None, log=print, tf=None))
    cpu = Device("cpu", "cpu", "/CPU:0", "fake")
    with pytest.raises(UsageError, match="spans this machine's GPUs, not its CPU"):
        distributed.jobs(Context(plan=plan, devices=[cpu, *gpus], results=None, log=print, tf=None))
    two = build_plan(strategy="mirrored", replicas=[2], approaches=["custom_tape"], workloads=["mlp"])
    [job] = distributed.jobs(Context(plan=two, devices=gpus, results=None, log=print, tf=None))
    assert {(s["strategy"], s["replicas"]) for s in job.stubs} == {("none", 1), ("mirrored", 1), ("mirrored", 2)}
    assert all(s["device"] == "gpu:0" for s in job.stubs)


# --- the scaling arithmetic -------------------------------------------------------------------------------


def test_scaling_efficiency_and_cost_against_the_fastest():
    from tfbench.benchmarks.stages.distributed import _records
    from tfbench.benchmarks.timing import Timed
    from tfbench.implementations.distribute import STRATEGIES

    assert "mirrored" in STRATEGIES
    metas, timed = {}, {}
    # step time (s) per (approach, replicas): a at 1 replica 1 ms, at 2 replicas 1.25 ms; b always 2 ms.
    for approach, strategy, replicas, step in [("a", "none", 1, 0.8e-3), ("a", "mirrored", 1, 1e-3),
                                               ("a", "mirrored", 2, 1.25e-3), ("b", "mirrored", 1, 2e-3),
                                               ("b", "mirrored", 2, 2e-3)]:
        key = f"{approach}{strategy}{replicas}"
        metas[key] = {"approach": approach, "strategy": strategy, "replicas": replicas, "mode": "function",
                      "steps_per_call": 1, "workload": "mlp", "batch_size": 10, "status": "ok"}
        timed[key] = Timed(lambda: 0.0, first_call_s=1.0, samples=[step] * 3)
    records = {f"{r['approach']}{r['strategy']}{r['replicas']}": r["metrics"] for r in _records(metas, timed)}
    assert records["amirrored2"]["throughput_sps"] == pytest.approx(20 / 1.25e-3)
    # throughput(2) / (2 x throughput(1)) = (20 / 1.25) / (2 x 10 / 1) = 0.8
    assert records["amirrored2"]["scaling_efficiency"] == pytest.approx(0.8)
    assert records["bmirrored2"]["scaling_efficiency"] == pytest.approx(1.0)
    assert records["amirrored1"]["vs_single_device"] == pytest.approx(1.25)
    assert records["amirrored2"]["vs_fastest"] == 1.0 and records["bmirrored2"]["vs_fastest"] == pytest.approx(1.6)
    assert "scaling_efficiency" not in records["anone1"]


# --- runs ----------------------------------------------------------------------------------------------------


def test_tfbench_run_mirrored_two_replicas_writes_scaling_records(tmp_path):
    # A fresh process: the run splits the CPU into logical devices before TensorFlow starts.
    out = tmp_path / "mirrored.json"
    process = subprocess.run([sys.executable, "-m", "tfbench", "run", "--strategy", "mirrored", "--replicas", "2",
                              "--approach", "custom_tape", "raw_tf_nn", "--workload", "mlp", "--mode",
                              "function", "xla", "--steps-per-call", "1", "--batch-size", "8", "--samples", "3",
                              "--quiet", "--output", str(out)], cwd=ROOT, env=ENV, capture_output=True, text=True,
                             timeout=600)
    assert process.returncode == 0, process.stderr[-3000:]
    records = {(r["approach"], r["mode"], r["strategy"], r["replicas"]): r for r in load(out)["records"]}
    assert {r["kind"] for r in records.values()} == {"distributed"}
    for approach in ("custom_tape", "raw_tf_nn"):
        two = records[approach, "function", "mirrored", 2]
        assert two["status"] == "ok" and two["batch_size"] == 8 and two["metrics"]["global_batch_size"] == 16
        assert two["metrics"]["scaling_efficiency"] > 0 and two["metrics"]["vs_fastest"] >= 1
        assert records[approach, "function", "mirrored", 1]["metrics"]["vs_single_device"] > 0
        assert records[approach, "function", "none", 1]["status"] == "ok"
        assert records[approach, "xla", "mirrored", 2]["status"] == "unsupported"
        assert records[approach, "xla", "none", 1]["status"] == "ok"


def test_two_workers_on_loopback_end_with_the_weights_of_one_process(tmp_path):
    from tfbench.benchmarks.multiworker import check_weights

    out = tmp_path / "weights.npz"
    arguments = ("check", "--approach", "custom_tape", "--global-batch", "16", "--steps", str(STEPS),
                 "--steps-per-call", "4", "--output", str(out))
    start = time.monotonic()
    launch(lambda index: worker_command(*arguments), 2, timeout_s=300, env=ENV)
    assert time.monotonic() - start < 300
    stored = np.load(out)
    workers = [stored[f"arr_{i}"] for i in range(len(stored.files))]
    one_process = check_weights("custom_tape", "mlp", strategy="none", replicas=1, global_batch=16, steps=STEPS)
    assert mismatches(workers, one_process) == []


def test_tfbench_run_multiworker_launches_two_local_workers(tmp_path):
    out = tmp_path / "multiworker.json"
    process = subprocess.run([sys.executable, "-m", "tfbench", "run", "--strategy", "multiworker", "--replicas", "2",
                              "--approach", "raw_tf_nn", "keras_fit", "--workload", "mlp", "--mode", "function",
                              "--steps-per-call", "1", "--batch-size", "8", "--samples", "3", "--quiet",
                              "--worker-timeout", "300", "--output", str(out)],
                             cwd=ROOT, env={k: v for k, v in ENV.items() if k != "TF_CONFIG"}, capture_output=True,
                             text=True, timeout=400)
    assert process.returncode == 0, process.stderr[-3000:]
    records = {(r["approach"], r["strategy"]): r for r in load(out)["records"]}
    assert records["raw_tf_nn", "multiworker"]["status"] == "ok"
    assert records["raw_tf_nn", "multiworker"]["metrics"]["scaling_efficiency"] > 0  # against one device
    assert records["keras_fit", "multiworker"]["status"] == "unsupported"
    assert records["keras_fit", "none"]["status"] == "ok"


# --- the launcher stops by itself -----------------------------------------------------------------------------


def _python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def test_a_dead_worker_stops_the_others_with_one_clear_error():
    start = time.monotonic()
    with pytest.raises(WorkerError, match=r"worker 1 of 2 died \(exit status 1\): RuntimeError: boom"):
        launch(lambda index: _python("import time; time.sleep(60)") if index == 0 else
               _python("raise RuntimeError('boom')"), 2, timeout_s=60)
    assert time.monotonic() - start < 30, "the surviving worker was stopped, not waited for"


def test_a_taken_port_is_named():
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        with pytest.raises(WorkerError, match=f"port {taken} on 127.0.0.1 is taken"):
            launch(lambda index: _python("pass"), 2, timeout_s=10, ports=[taken, free_ports(1)[0]])


def test_workers_that_run_too_long_are_stopped():
    start = time.monotonic()
    with pytest.raises(WorkerError, match="did not finish within 1 s"):
        launch(lambda index: _python("import time; time.sleep(60)"), 2, timeout_s=1)
    assert time.monotonic() - start < 20


# --- the report ---------------------------------------------------------------------------------------------


def _distributed_results(path: Path) -> Path:
    from tfbench.benchmarks.results import make_record, summarize

    records = []
    for approach, strategy, replicas, step in [("custom_tape", "none", 1, 1e-3), ("raw_tf_nn", "none", 1, 1e-3),
                                               ("custom_tape", "mirrored", 1, 1.2e-3),
                                               ("custom_tape", "mirrored", 2, 2e-3),
                                               ("raw_tf_nn", "mirrored", 1, 1e-3),
                                               ("raw_tf_nn", "mirrored", 2, 1.6e-3)]:
        metrics = {"step_time_s": summarize([step] * 3), "noisy": False, "global_batch_size": 8 * replicas,
                   "throughput_sps": 8 * replicas / step}
        if strategy != "none":
            one = {"custom_tape": 1.2e-3, "raw_tf_nn": 1e-3}[approach]
            metrics["scaling_efficiency"] = (8 * replicas / step) / (replicas * 8 / one)
            metrics["vs_fastest"] = step / {1: 1e-3, 2: 1.6e-3}[replicas]
        records.append(make_record("distributed", approach=approach, workload="mlp", mode="function",
                                   steps_per_call=1, device="cpu", batch_size=8, dataset="synthetic",
                                   variant="mirrored_baseline" if strategy == "none" else "", strategy=strategy,
                                   replicas=replicas, metrics=metrics))
    document = {"schema_version": 1, "run_id": "r1", "created": "2026-11-23T00:00:00+00:00",
                "updated": "2026-11-23T00:00:00+00:00", "complete": True, "config": {"profile": "quick"},
                "environment": {"machine_id": "m1"}, "devices": [{"name": "cpu", "kind": "cpu"}],
                "records": records}
    path.write_text(json.dumps(document))
    return path


def test_the_report_shows_scaling_efficiency_and_says_logical_devices_share_the_cores(tmp_path):
    from tfbench.reports import write_report

    index = write_report([_distributed_results(tmp_path / "results.json")], tmp_path / "report")
    report = index.read_text()
    assert "](details/distributed.md)" in report and "](figures/scaling.png)" in report
    section = (index.parent / "details" / "distributed.md").read_text()  # the question's detail page
    assert "Logical CPU devices share the same cores" in section and "never a speed-up" in section
    rows = [line for line in section.splitlines() if line.startswith("| custom_tape")]
    assert len(rows) == 3 and "1 (no strategy)" in rows[0]
    assert "60%" in rows[2] and "1.25x" in rows[2]  # (16 / 2 ms) / (2 x 8 / 1.2 ms) = 0.6; 2 / 1.6 ms
    assert "- MirroredStrategy x2, mlp" in section and "raw_tf_nn 1.00x, custom_tape 1.25x" in section
    assert "![Scaling efficiency against replicas](../figures/scaling.png)" in section
    assert (tmp_path / "report" / "figures" / "scaling.png").stat().st_size > 10_000
    # The single-device sections do not count distributed records as step times.
    assert "Step time by approach and mode" not in report


def test_only_the_chief_or_worker_0_keeps_the_results(monkeypatch):
    from tfbench.benchmarks.multiworker import is_chief, other_worker

    workers = ["127.0.0.1:1", "127.0.0.1:2"]
    for index, expected in ((0, False), (1, True)):
        monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {"worker": workers},
                                                    "task": {"type": "worker", "index": index}}))
        assert other_worker() is expected
    with_chief = {"cluster": {"chief": ["127.0.0.1:3"], "worker": workers}, "task": {"type": "worker", "index": 0}}
    assert not is_chief(with_chief) and is_chief({**with_chief, "task": {"type": "chief", "index": 0}})
    monkeypatch.delenv("TF_CONFIG")
    assert other_worker() is False  # no cluster: this process launches the local workers and keeps the file
