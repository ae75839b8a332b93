"""The peer stage: plain JAX and Keras 3 on JAX agree with the TensorFlow styles from the same weights and
batches; a missing JAX gives unsupported rows with the install command; the plan, the HLO counter and the
report section. The agreement tests skip only when jax is not installed."""

from __future__ import annotations

import sys
from types import SimpleNamespace

import numpy as np
import pytest

from tfbench.benchmarks.plan import build_plan
from tfbench.benchmarks.results import make_record
from tfbench.errors import ConfigError
from tfbench.implementations.peers import INSTALL, jax_missing

STEPS, BATCH = 20, 32


# --- no JAX needed ---------------------------------------------------------------------------------------


def test_a_missing_jax_is_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "jax", None)  # what `import jax` meets when jax is not installed
    reason = jax_missing()
    assert reason is not None and INSTALL in reason


def test_without_jax_the_jax_rows_are_unsupported_and_nothing_is_imported(monkeypatch):
    from tfbench.benchmarks.stages import peer
    from tfbench.benchmarks.stages.base import Job

    monkeypatch.setitem(sys.modules, "jax", None)
    stubs = [make_record("peer", approach=a, workload="mlp", mode="xla", steps_per_call=1, device="cpu",
                         batch_size=32, dataset="synthetic", backend="jax") for a in ("keras_fit", "plain_jax")]
    context = SimpleNamespace(plan=build_plan("full"), tf=None)
    records = peer.run(context, Job("peer", {"workload": "mlp", "batch_size": 32, "device": None}, stubs))
    assert [r["status"] for r in records] == ["unsupported", "unsupported"]
    assert all(INSTALL in r["reason"] for r in records)


def test_plan_quick_leaves_the_peer_stage_to_full_and_backends_are_checked():
    assert "peer" not in build_plan("quick").stages
    assert "peer" in build_plan("full").stages
    assert build_plan("full", backends=["jax"]).backends == ("jax",)
    with pytest.raises(ConfigError, match="backend"):
        build_plan("full", backends=["torch"])


def test_jobs_key_the_jax_rows_apart_and_cap_k():
    from tfbench.benchmarks.stages import peer
    from tfbench.benchmarks.stages.base import Context

    plan = build_plan("full", workloads=["mlp"], batch_sizes=[32, 128], steps_per_call=[1, 16, 64])
    device = SimpleNamespace(name="cpu", kind="cpu")
    context = Context(plan=plan, devices=[device], results=None, log=print, tf=None)
    [job] = peer.jobs(context)  # b32 left to the step-time stage: b128 (and b1024) only
    ids = [s["id"] for s in job.stubs]
    assert len(ids) == len(set(ids)) == 2 * (len(peer.TF_STYLES) + len(peer.JAX_STYLES))  # K 1 and 16, not 64
    assert sum(i.endswith("/jax") for i in ids) == 2 * len(peer.JAX_STYLES)
    gpu_only = Context(plan=plan, devices=[SimpleNamespace(name="gpu:0", kind="gpu")], results=None, log=print,
                       tf=None)
    assert peer.jobs(gpu_only) == []
    assert peer.batch_sizes(build_plan("full", batch_sizes=[64])) == [64]
    assert peer.ks(plan, 1024) == [1] and peer.ks(plan, 128) == [1, 16]


def test_hlo_counter_counts_kernels_not_fused_or_reducer_computations():
    from tfbench.benchmarks.peer_worker import hlo_counts

    text = """HloModule m

%add (a: f32[], b: f32[]) -> f32[] {
  %a = f32[] parameter(0)
  %b = f32[] parameter(1)
  ROOT %s = f32[] add(f32[] %a, f32[] %b)
}

%fused_computation (p: f32[4]) -> f32[4] {
  %p = f32[4]{0} parameter(0)
  %m = f32[4]{0} multiply(f32[4]{0} %p, f32[4]{0} %p)
  ROOT %e = f32[4]{0} exponential(f32[4]{0} %m)
}

ENTRY %main (x: f32[4,4]) -> f32[] {
  %x = f32[4,4]{1,0} parameter(0)
  %d = f32[4,4]{1,0} dot(f32[4,4]{1,0} %x, f32[4,4]{1,0} %x), lhs_contracting_dims={1}, rhs_contracting_dims={0}
  %f = f32[4]{0} fusion(f32[4,4]{1,0} %d), kind=kLoop, calls=%fused_computation
  %z = f32[] constant(0)
  ROOT %r = f32[] reduce(f32[4]{0} %f, f32[] %z), dimensions={0}, to_apply=%add
}
"""
    counts = hlo_counts(text)
    assert counts["fusions"] == 1
    assert counts["by_opcode"] == {"dot": 1, "fusion": 1, "reduce": 1}
    assert counts["unfused_ops"] == 2


def _peer_frame(tmp_path, diff=1e-6):
    import json

    from tfbench.reports.data import load_results

    records = []
    for backend, approach, mode, median, ratio in (("tensorflow", "raw_tf_nn", "xla", 2e-3, 1.0),
                                                   ("tensorflow", "keras_fit", "function", 3e-3, 1.5),
                                                   ("jax", "keras_fit", "xla", 1.8e-3, 0.9),
                                                   ("jax", "plain_jax", "xla", 1.6e-3, 0.8)):
        record = make_record("peer", approach=approach, workload="mlp", mode=mode, steps_per_call=1, device="cpu",
                             batch_size=128, dataset="synthetic", backend=backend, metrics={
                                 "step_time_s": {"median": median, "p10": median, "p90": median, "iqr": 0.0,
                                                 "mean": median, "stdev": 0.0, "n": 3, "samples": [median] * 3},
                                 "vs_best_tensorflow": ratio, "vs_best_tensorflow_ci": [ratio - 0.1, ratio + 0.1],
                                 "fraction_of_floor": 0.3, "agreement_steps": 20, "agreement_tolerance": 5e-5,
                                 "agreement_max_abs_diff": 0.0 if approach == "raw_tf_nn" else diff})
        hlo = {"raw_tf_nn": {"fusions": 41, "unfused_ops": 12, "by_opcode": {"dot": 6}},
               "plain_jax": {"fusions": 47, "unfused_ops": 7, "by_opcode": {"dot": 4}}}.get(approach)
        if hlo:
            record["metrics"]["hlo_ops"] = hlo
        records.append(record)
    document = {"schema_version": 1, "run_id": "t", "created": "2026-01-01T00:00:00+00:00",
                "updated": "2026-01-01T00:00:00+00:00", "complete": True, "config": {"profile": "full"},
                "environment": {}, "devices": [{"name": "cpu", "kind": "cpu"}], "records": records}
    path = tmp_path / "peers.json"
    path.write_text(json.dumps(document))
    try:
        return load_results([path])
    except Exception as error:  # the file's required fields are the results module's: show what it wants
        pytest.fail(f"fixture rejected: {error}")


def test_report_section_and_chart(tmp_path):
    from tfbench.reports.peers import plot_peers, section

    frame = _peer_frame(tmp_path)
    text = "\n".join(section(frame))
    assert "raw_tf_nn xla" in text and "Keras 3 on JAX" in text and "plain JAX" in text
    assert "0.80x [0.70, 0.90]" in text and "30.0%" in text and "DISAGREES" not in text
    assert "| 41 " in text and "| 47 " in text and "| 7 " in text  # the HLO table: TF XLA's and JAX's counts
    assert plot_peers(frame, tmp_path / "peers.png").stat().st_size > 0
    bad = "\n".join(section(_peer_frame(tmp_path, diff=1e-3)))
    assert "DISAGREES" in bad


def test_report_without_peer_records_says_how_to_run_them(tmp_path):
    import pandas as pd

    from tfbench.reports.peers import plot_peers, section

    assert "--stages peer" in section(pd.DataFrame())[0]
    assert plot_peers(pd.DataFrame(), tmp_path / "none.png") is None


# --- agreement (jax installed) -------------------------------------------------------------------------


def _batches():
    from tfbench.benchmarks.peer_worker import _batches as batches

    return batches(BATCH, STEPS, seed=0)


def _tf_weights(workload, approach="raw_tf_nn", optimizer="adam"):
    import tensorflow as tf

    from tfbench.implementations import build
    from tfbench.implementations.interface import OptimizerSpec, TrainConfig

    rate = 1e-3 if optimizer == "adam" else 0.1
    xs, ys = _batches()
    trainer = build(approach, workload, TrainConfig(mode="function", optimizer=OptimizerSpec(optimizer, rate)))
    trainer.steps(tf.constant(xs), tf.constant(ys))
    return [np.asarray(v) for v in trainer.variables_in_order()]


@pytest.mark.parametrize("workload", ["mlp", "cnn"])
def test_plain_jax_ends_where_tensorflow_does(workload):
    pytest.importorskip("jax")
    from tfbench.benchmarks.stages.peer import AGREEMENT_TOLERANCE, max_abs_diff
    from tfbench.implementations.peers.plain_jax import PlainJax
    from tfbench.implementations.workloads import get_workload

    w = get_workload(workload)
    xs, ys = _batches()
    reference = _tf_weights(w)
    for k in (1, 4):  # one step per call, and K steps in one lax.scan
        plain = PlainJax(w, k)
        plain.steps(xs, ys)
        assert max_abs_diff(plain.weights(), reference) <= AGREEMENT_TOLERANCE
    assert max_abs_diff(_tf_weights(w, "keras_fit"), reference) <= AGREEMENT_TOLERANCE
    # The check can fail: one step fewer leaves the weights far outside the tolerance.
    short = PlainJax(w, 1)
    short.steps(xs[:-1], ys[:-1])
    assert max_abs_diff(short.weights(), reference) > 10 * AGREEMENT_TOLERANCE


def test_plain_jax_sgd_and_adam_epsilon_placement():
    pytest.importorskip("jax")
    import jax.numpy as jnp

    from tfbench.benchmarks.stages.peer import AGREEMENT_TOLERANCE, max_abs_diff
    from tfbench.implementations.peers import plain_jax
    from tfbench.implementations.workloads import get_workload

    w = get_workload("mlp")
    xs, ys = _batches()
    sgd = plain_jax.PlainJax(w, 1, optimizer="sgd", learning_rate=0.1)
    sgd.steps(xs, ys)
    assert max_abs_diff(sgd.weights(), _tf_weights(w, optimizer="sgd")) <= AGREEMENT_TOLERANCE
    # Keras adds epsilon to sqrt(v), not to the bias-corrected sqrt(v_hat): at step 1 with g = 1e-7 the two
    # placements give updates of 0.031 and 0.5 times lr.
    params, grads = (jnp.zeros(1),), (jnp.full(1, 1e-7),)
    updated, _ = plain_jax.update(params, grads, plain_jax.init_state(params), "adam", 1.0)
    g, eps = 1e-7, plain_jax.ADAM["epsilon"]
    keras_step = (np.sqrt(1 - 0.999) / (1 - 0.9)) * (0.1 * g) / (np.sqrt(0.001 * g * g) + eps)
    assert float(updated[0][0]) == pytest.approx(-keras_step, rel=1e-4)


def test_keras_on_jax_in_its_worker_agrees_and_is_timed(tmp_path):
    pytest.importorskip("jax")
    from tfbench.benchmarks.peer_worker import PeerWorker
    from tfbench.benchmarks.stages.peer import AGREEMENT_TOLERANCE, max_abs_diff
    from tfbench.implementations.workloads import get_workload

    path = tmp_path / "weights.npz"
    with PeerWorker() as worker:
        reply = worker.request("agree", workload="mlp", steps=STEPS, batch_size=BATCH, seed=0, path=str(path))
        assert "error" not in reply, reply
        built = worker.request("build", key="k", peer="keras_jax", workload="mlp", batch_size=16, k=2, seed=0,
                               bank=4, warmup=1, budget_s=0.0, min=2, max=2)
        assert "error" not in built, built
        samples = worker.request("round", keys=["k"])["samples"]["k"]
        assert len(samples) == 2 and all(s > 0 for s in samples)
        assert worker.request("cross_check", key="k")["ms_per_step"] > 0
        assert "error" in worker.request("build", key="x", peer="plain_jax", workload="homl_cnn", batch_size=16,
                                         k=1, seed=0, bank=2, warmup=1, budget_s=0.0, min=1, max=1)
    stored = np.load(path)
    reference = _tf_weights(get_workload("mlp"))
    for peer in ("keras_jax", "plain_jax"):
        weights = [stored[f"{peer}_{i}"] for i in range(reply["weights"][peer])]
        assert max_abs_diff(weights, reference) <= AGREEMENT_TOLERANCE


def test_a_worker_that_ends_is_a_worker_gone_error():
    from tfbench.benchmarks.peer_worker import PeerWorker, WorkerGone

    worker = PeerWorker()
    worker.process.kill()
    worker.process.wait()
    with pytest.raises((WorkerGone, BrokenPipeError)):
        worker.request("round", keys=[])
    worker.close()


def test_the_stage_end_to_end_writes_records_the_schema_accepts(tmp_path):
    pytest.importorskip("jax")
    import tfbench
    from tfbench.benchmarks.results import load

    results = tfbench.run("full", stages=["peer"], workloads=["mlp"], batch_sizes=[16], steps_per_call=[1],
                          samples=2, output=tmp_path / "peer.json")
    document = load(tmp_path / "peer.json")  # validated against the schema on the way in
    records = {(r["approach"], r["mode"], r["backend"]): r for r in document["records"]}
    assert len(records) == 6 and all(r["status"] == "ok" for r in records.values()), results.records
    for key, record in records.items():
        m = record["metrics"]
        assert m["agreement_max_abs_diff"] <= m["agreement_tolerance"], key
        assert m["vs_best_tensorflow"] > 0 and len(m["vs_best_tensorflow_ci"]) == 2
        assert 0 < m["fraction_of_floor"]
        assert record["effective"]["backend"] == key[2]
    assert records[("keras_fit", "xla", "jax")]["metrics"]["callback_ms_per_step"] > 0
    assert records[("plain_jax", "xla", "jax")]["metrics"]["hlo_ops"]["fusions"] > 0
    assert "--xla_cpu_multi_thread_eigen=true" in records[("plain_jax", "xla", "jax")]["effective"]["env_flags"][
        "XLA_FLAGS"]
