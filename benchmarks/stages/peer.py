"""Peers: the best TensorFlow styles beside Keras 3 on JAX and plain JAX, same networks, weights and batches.

Answers "would Keras on JAX be faster?" and whether a step's distance from its roofline floor is
TensorFlow's or XLA:CPU's. Per workload and batch size (one job), and per K <= 16, it times

* TensorFlow (this process): ``raw_tf_nn`` (the fastest hand-written loop, benchmarks/PERFORMANCE.md) and
  ``keras_fit``, each in ``function`` and ``xla`` mode;
* JAX (one worker process, :mod:`tfbench.benchmarks.peer_worker`, ``KERAS_BACKEND=jax``): ``keras_fit``'s
  model and compile on Keras's JAX backend, and the plain-JAX reference (:mod:`implementations.peers.plain_jax`),

in ONE interleaved run: round by round the two processes take turns (which one first rotates), each timing
its configurations while the other waits on its pipe, so both see the same machine state and neither shares
the cores while timing. Threads: TensorFlow's pools as the run sets them (``--threads``, default intra = inter
= cores); XLA:CPU's Eigen pool as large as the cores (``--xla_cpu_multi_thread_eigen=true``); both stated in
each record's ``effective``. Each record carries its median step time, its fraction of the roofline floor
(the roofs timed in the same rounds, the floor from implementations/costs.py: the same FLOPs for every row),
``vs_best_tensorflow`` (its time over the fastest TensorFlow configuration's at the same K, with a paired
bootstrap interval), the agreement of its weights with ``raw_tf_nn``'s after 20 Adam steps from the shared
weights, the keras-benchmarks callback ms/step for the two ``keras_fit`` rows, and for the two compiled
references (``raw_tf_nn`` xla, plain JAX) the op and fusion counts of their optimized HLO (``hlo_ops``).

Without JAX the JAX rows are ``unsupported`` with the install command. Only the CPU is measured: a GPU peer
would need jax's CUDA build.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import numpy as np

from tfbench.benchmarks.results import is_noisy, summarize
from tfbench.benchmarks.stages.base import Context, Job, failure, unsupported

KIND = "peer"
FLAGS = ("backend", "workload", "batch_size", "steps_per_call", "samples")
BACKENDS = ("tensorflow", "jax")
TF_STYLES = (("raw_tf_nn", "function"), ("raw_tf_nn", "xla"), ("keras_fit", "function"), ("keras_fit", "xla"))
JAX_STYLES = (("keras_fit", "xla"), ("plain_jax", "xla"))  # every JAX step is jit-compiled: mode xla
REFERENCE = ("raw_tf_nn", "function")  # the weights every other row is compared with
MAX_K = 16  # K = 64 adds compile time and nothing new: K = 16 already amortises a call (k_sweep stage)
# Of the full profile's batch sizes, the headline one and the compute-bound end: the stage stays under ~10
# minutes on 2 cores. A plan with none of these (e.g. --batch-size 64) is measured at its own.
PEER_BATCH_SIZES = (128, 1024)
AGREEMENT_STEPS = 20
AGREEMENT_BATCH = 32
# float32, 20 Adam steps at lr 1e-3 move the weights by ~2e-2; the styles differ by reduction order only
# (measured here: at most 5.3e-6, keras_fit's XLA step on the cnn; the others <= 1e-6), so 5e-5 fails any
# real difference (one step skipped or an epsilon misplaced moves them ~1e-3).
AGREEMENT_TOLERANCE = 5e-5
PREFIX = "roof:"


LARGE_BATCH = 1024  # from here one step takes tens of ms: K > 1 amortises nothing, and a call of 16 would
# take seconds (two a round, ten rounds, per configuration), so these batches are measured at K = 1 only


def ks(plan, batch_size: int | None = None) -> list[int]:
    if batch_size is not None and batch_size >= LARGE_BATCH:
        return [1]
    return [k for k in plan.steps_per_call if k <= MAX_K] or [1]


def batch_sizes(plan) -> list[int]:
    return [b for b in plan.batch_sizes if b in PEER_BATCH_SIZES] or list(plan.batch_sizes)


def jobs(context: Context) -> list[Job]:
    plan, found = context.plan, []
    backends = getattr(plan, "backends", BACKENDS)
    for device in context.devices:
        if device.kind != "cpu":
            continue
        for workload in plan.workloads:
            for batch_size in batch_sizes(plan):
                stubs = [context.stub(KIND, approach=approach, workload=workload, mode=mode, steps_per_call=k,
                                      device=device.name, batch_size=batch_size, backend=backend)
                         for k in ks(plan, batch_size)
                         for backend, styles in (("tensorflow", TF_STYLES), ("jax", JAX_STYLES))
                         if backend in backends for approach, mode in styles]
                found.append(Job(KIND, {"workload": workload, "batch_size": batch_size, "device": device}, stubs))
    return found


def jax_reason(workload) -> str | None:
    """Why the JAX rows of ``workload`` cannot run here, or None."""
    from tfbench.implementations.peers import jax_missing
    from tfbench.implementations.peers.plain_jax import unsupported as plain_unsupported

    return jax_missing() or plain_unsupported(workload)


def env_flags(context: Context, backend: str, worker_env: dict | None) -> dict:
    env = worker_env if backend == "jax" and worker_env else os.environ
    flags = {k: v for k, v in env.items() if k.startswith(("TF_", "XLA_", "JAX_", "KERAS_"))}
    if backend == "jax":
        flags.setdefault("XLA_CPU_THREADS", str(os.cpu_count()))  # the Eigen pool: one thread per core
    return flags


def run(context: Context, job: Job) -> list[dict]:
    from tfbench.benchmarks.peer_worker import WorkerGone
    from tfbench.implementations.workloads import get_workload

    workload = get_workload(job.params["workload"])
    jax_stubs = [s for s in job.stubs if s["backend"] == "jax"]
    tf_stubs = [s for s in job.stubs if s["backend"] == "tensorflow"]
    records = []
    reason = jax_reason(workload) if jax_stubs else None
    if reason:
        records += unsupported(jax_stubs, reason)
        jax_stubs = []
    if not tf_stubs and not jax_stubs:
        return records
    worker = None
    if jax_stubs:
        from tfbench.benchmarks.peer_worker import PeerWorker

        worker = PeerWorker()
    try:
        records += _measure(context, job, workload, tf_stubs, jax_stubs, worker)
    except WorkerGone as error:  # the JAX process died (out of memory, a crash in XLA): TensorFlow's rows alone
        records += [{**stub, "status": "failed", "reason": str(error)} for stub in jax_stubs]
        records += _measure(context, job, workload, tf_stubs, [], None) if tf_stubs else []
    finally:
        if worker is not None:
            worker.close()
    return records


def _measure(context: Context, job: Job, workload, tf_stubs: list, jax_stubs: list, worker) -> list[dict]:
    from tfbench.benchmarks.stages.step_time import (
        _add_roof_probes,
        _roofline_metrics,
        _roofs,
        bank_size,
        call_stacks,
        device_batches,
    )
    from tfbench.benchmarks.timing import Timed, _rotated, first_and_warmup
    from tfbench.implementations import build
    from tfbench.implementations.interface import TrainConfig

    tf, plan, device = context.tf, context.plan, job.params["device"]
    batch_size, sampling = job.params["batch_size"], context.sampling()
    budget = sampling["round_budget_s"]
    lo, hi = sampling.get("min_per_round", 2), sampling.get("max_per_round", 200)
    records, timed, per_round, trainers, firsts = [], {}, {}, {}, {}
    stubs = {s["id"]: s for s in tf_stubs + jax_stubs}
    bank = bank_size(batch_size, max(s["steps_per_call"] for s in stubs.values()))
    bank_x, bank_y = device_batches(tf, device, batch_size, bank, plan.seed)
    with tf.device(device.tf_device):
        for stub in tf_stubs:
            k = stub["steps_per_call"]
            try:
                trainer = build(stub["approach"], workload, TrainConfig(mode=stub["mode"], steps_per_call=k,
                                                                        seed=plan.seed))
                t = Timed(trainer.runner(*call_stacks(tf, bank_x, bank_y, k)), steps_per_call=k)
                first_and_warmup(t, plan.warmup, lambda: None, time.perf_counter)
                probe = t.timed_call(lambda: None, time.perf_counter)
            except Exception as error:
                records.append({**stub, "status": "failed", "reason": failure(error)})
                continue
            timed[stub["id"]], trainers[stub["id"]] = t, trainer
            per_round[stub["id"]] = int(np.clip(budget / max(probe, 1e-9), lo, hi))
        remote = []
        for stub in jax_stubs:
            reply = worker.request("build", key=stub["id"], peer="plain_jax" if stub["approach"] == "plain_jax"
                                   else "keras_jax", workload=workload.name, batch_size=batch_size,
                                   k=stub["steps_per_call"], seed=plan.seed, bank=bank, warmup=plan.warmup,
                                   budget_s=budget, min=lo, max=hi)
            if "error" in reply:
                records.append({**stub, "status": "failed", "reason": reply["error"]})
                continue
            firsts[stub["id"]] = reply["first_call_s"]
            timed[stub["id"]] = Timed(lambda: None, steps_per_call=stub["steps_per_call"])  # samples land here
            remote.append(stub["id"])
        probes = _add_roof_probes(context, device, timed, []) if plan.roofline else []
        roof_keys = [PREFIX + p.name for p in probes]
        for key in roof_keys:
            first_and_warmup(timed[key], 1, lambda: None, time.perf_counter)
            per_round[key] = int(np.clip(budget / max(timed[key].timed_call(lambda: None, time.perf_counter),
                                                      1e-9), lo, hi))
        nonfinite = {}
        for r in range(sampling["rounds"]):
            for k in _rotated(ks(plan, batch_size), r):
                local = [key for key in timed if key in per_round and key not in roof_keys
                         and stubs[key]["steps_per_call"] == k]
                jax_keys = [key for key in remote if stubs[key]["steps_per_call"] == k]
                for side in _rotated(["tensorflow", "jax"], r):
                    if side == "tensorflow":
                        for key in _rotated(local, r) if local else []:
                            t = timed[key]
                            t.samples += [t.timed_call(lambda: None, time.perf_counter) / k
                                          for _ in range(per_round[key])]
                    elif jax_keys:
                        reply = worker.request("round", keys=_rotated(jax_keys, r))
                        for key in jax_keys:
                            timed[key].samples += reply["samples"][key]
                            if key + ":nonfinite" in reply["samples"]:
                                nonfinite.setdefault(key, reply["samples"][key + ":nonfinite"])
            for key in roof_keys:
                t = timed[key]
                t.samples += [t.timed_call(lambda: None, time.perf_counter) for _ in range(per_round[key])]
        roofs = _roofs(probes, timed)
        cross = _cross_checks(trainers, remote, stubs, worker, bank_x, bank_y, batch_size)
        hlo = _hlo_counts(trainers, stubs, worker, workload, bank_x, bank_y, tf)
    agreement = agreement_diffs(context, workload, worker if jax_stubs else None,
                                [s for s in stubs.values() if s["id"] in timed])
    best = _best_tensorflow(timed, stubs)
    effective_env = worker.env if worker is not None else None
    for key, stub in stubs.items():
        if key not in timed:
            continue
        t = timed[key]
        if t.nonfinite or key in nonfinite:
            records.append({**stub, "status": "failed", "reason": t.nonfinite_reason or nonfinite[key]})
            continue
        summary = summarize(t.samples)
        metrics = {"step_time_s": summary, "throughput_sps": batch_size / summary["median"],
                   "first_call_s": t.first_call_s if stub["backend"] == "tensorflow" else firsts[key],
                   "agreement_steps": AGREEMENT_STEPS, "agreement_tolerance": AGREEMENT_TOLERANCE,
                   "agreement_max_abs_diff": agreement.get((stub["approach"], stub["mode"], stub["backend"]))}
        if is_noisy(summary):
            metrics["noisy"] = True
        ref = best.get(stub["steps_per_call"])
        if ref is not None:
            from tfbench.benchmarks.timing import bootstrap_ratio

            ratio, low, high = bootstrap_ratio(t.samples, timed[ref].samples)
            metrics.update(vs_best_tensorflow=ratio, vs_best_tensorflow_ci=[low, high])
        if key in cross:
            metrics["callback_ms_per_step"] = cross[key]
        if key in hlo:
            metrics["hlo_ops"] = hlo[key]
        if roofs is not None:
            metrics.update(_roofline_metrics(workload, {**stub, "metrics": metrics}, roofs))
        threads = {"intra_op": tf.config.threading.get_intra_op_parallelism_threads(),
                   "inter_op": tf.config.threading.get_inter_op_parallelism_threads()}
        effective = {"backend": stub["backend"], "jit_compile": stub["mode"] == "xla",
                     "env_flags": env_flags(context, stub["backend"], effective_env),
                     **(threads if stub["backend"] == "tensorflow" else {})}
        records.append({**stub, "metrics": metrics, "effective": effective})
    return records


def _best_tensorflow(timed: dict, stubs: dict) -> dict:
    """K -> the key of the TensorFlow configuration with the least median step time at that K."""
    best = {}
    for key, stub in stubs.items():
        if stub["backend"] != "tensorflow" or key not in timed or not timed[key].samples:
            continue
        k = stub["steps_per_call"]
        if k not in best or np.median(timed[key].samples) < np.median(timed[best[k]].samples):
            best[k] = key
    return best


def _cross_checks(trainers: dict, remote: list, stubs: dict, worker, bank_x, bank_y, batch_size: int) -> dict:
    """keras-benchmarks' callback ms/step over fit, for the keras_fit rows (after the timed rounds)."""
    from tfbench.implementations.peers.keras_jax import fit_ms_per_step

    found = {}
    x, y = bank_x.numpy().reshape(-1, 28, 28, 1), bank_y.numpy().reshape(-1)
    for key, trainer in trainers.items():
        if stubs[key]["approach"] == "keras_fit":
            try:
                found[key] = fit_ms_per_step(trainer.model, x, y, batch_size, stubs[key]["steps_per_call"])
            except Exception:  # the cross-check is optional: the record keeps its timed step
                pass
    for key in remote:
        if stubs[key]["approach"] == "keras_fit":
            reply = worker.request("cross_check", key=key)
            if reply.get("ms_per_step") is not None:
                found[key] = reply["ms_per_step"]
    return found


def _hlo_counts(trainers: dict, stubs: dict, worker, workload, bank_x, bank_y, tf) -> dict:
    """The optimized HLO's fusions and unfused ops of raw_tf_nn's XLA step and of plain JAX's, and the ops of
    raw_tf_nn's plain tf.function graph, per K."""
    from tfbench.benchmarks.peer_worker import hlo_counts

    found = {}
    for key, trainer in trainers.items():
        stub = stubs[key]
        if (stub["approach"], stub["mode"]) == ("raw_tf_nn", "function"):
            k = stub["steps_per_call"]
            try:
                graph = trainer._train_calls.get_concrete_function(bank_x[:k], bank_y[:k]).graph
                found[key] = graph_counts(graph)
            except Exception:  # the count is an explanation, not the measurement: the record goes without
                pass
        if (stub["approach"], stub["mode"]) == ("raw_tf_nn", "xla"):
            k = stub["steps_per_call"]
            try:
                text = trainer._train_calls.experimental_get_compiler_ir(bank_x[:k], bank_y[:k])(
                    stage="optimized_hlo")
                found[key] = hlo_counts(text)
            except Exception:  # TensorFlow builds without the compiler IR: the record goes without
                pass
    if worker is not None:
        for key, stub in stubs.items():
            if stub["approach"] == "plain_jax" and stub["backend"] == "jax":
                reply = worker.request("hlo", workload=workload.name, batch_size=stub["batch_size"],
                                       k=stub["steps_per_call"], seed=0)
                if "error" not in reply:
                    found[key] = reply
    return found


# Graph nodes that run no kernel of their own (or a trivial one): left out of the count of a graph's ops.
NOT_KERNELS = ("Const", "Placeholder", "NoOp", "Identity", "_Arg", "_Retval")


def graph_counts(graph) -> dict:
    """The ops of TensorFlow's traced step graph (``tf.function`` without XLA), by type: each runs as a kernel
    of its own (before Grappler's rewrites, which fuse a few, e.g. MatMul + BiasAdd + Relu on oneDNN), where
    XLA fuses element-wise chains (the Adam update, the loss) into a handful of loops."""
    counts: dict = {}
    for op in graph.get_operations():
        if op.type not in NOT_KERNELS:
            counts[op.type] = counts.get(op.type, 0) + 1
    return {"graph_ops": sum(counts.values()), "by_opcode": counts}


_AGREEMENT: dict = {}  # (workload, seed) -> {(approach, mode, backend): max abs diff}, once a process


def agreement_diffs(context: Context, workload, worker, stubs: list) -> dict:
    """Max abs difference of each style's weights from raw_tf_nn's (function) after AGREEMENT_STEPS Adam
    steps from the shared initial weights on the same synthetic batches; computed once per workload."""
    cache_key = (workload.name, context.plan.seed, worker is not None)
    if cache_key in _AGREEMENT:
        return _AGREEMENT[cache_key]
    weights = tensorflow_weights(context.tf, workload, context.plan.seed)
    if worker is not None:
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "weights.npz"
            reply = worker.request("agree", workload=workload.name, steps=AGREEMENT_STEPS,
                                   batch_size=AGREEMENT_BATCH, seed=context.plan.seed, path=str(path))
            if "error" not in reply:
                stored = np.load(path)
                for peer, count in reply["weights"].items():
                    approach = "plain_jax" if peer == "plain_jax" else "keras_fit"
                    weights[(approach, "xla", "jax")] = [stored[f"{peer}_{i}"] for i in range(count)]
    reference = weights[(*REFERENCE, "tensorflow")]
    diffs = {key: max_abs_diff(ws, reference) for key, ws in weights.items()}
    _AGREEMENT[cache_key] = diffs
    return diffs


def agreement_batches(seed: int, steps: int = AGREEMENT_STEPS, batch_size: int = AGREEMENT_BATCH):
    from tfbench.benchmarks.peer_worker import _batches

    return _batches(batch_size, steps, seed)


def tensorflow_weights(tf, workload, seed: int, styles=TF_STYLES) -> dict:
    """Each TensorFlow style's weights after AGREEMENT_STEPS steps (one call each, K = 1)."""
    from tfbench.implementations import build
    from tfbench.implementations.interface import TrainConfig

    xs, ys = agreement_batches(seed)
    found = {}
    for approach, mode in styles:
        trainer = build(approach, workload, TrainConfig(mode=mode, seed=seed))
        trainer.steps(tf.constant(xs), tf.constant(ys))
        found[(approach, mode, "tensorflow")] = [np.asarray(v) for v in trainer.variables_in_order()]
    return found


def max_abs_diff(weights: list, reference: list) -> float:
    if len(weights) != len(reference):
        raise ValueError(f"{len(weights)} weight tensors against the reference's {len(reference)}")
    return max(float(np.max(np.abs(np.asarray(a) - np.asarray(b)))) for a, b in zip(weights, reference))
