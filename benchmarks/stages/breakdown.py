"""Where a step's time goes: one compiled call per approach x mode, traced by TensorFlow's profiler.

For each workload (at one batch size: 128 where the plan has it) every approach and mode runs a few calls
of K steps under ``tf.profiler.experimental.start``/``stop``. TensorFlow's own converter (the one the
TensorBoard profile plugin calls; the separate ``xprof`` package does the same but brings a cloud-storage
stack with it) turns the trace into Chrome trace-event JSON, a documented format: one event per op with its
thread, start and duration, and in graph mode the op's name and type. Each op's own time (its duration less
that of ops nested in it) goes to one category:

* ``conv``, ``pool``, ``matmul``: convolutions and their gradients, max-pooling and its gradient, matmuls;
* ``optimizer``: the update, the ops under the optimizer's name scope and variable assignments (under XLA
  the update is fused with other element-wise work, and in eager mode ops carry no name scope, so there
  only its variable assignments count here and its arithmetic shows as ``elementwise``);
* ``copies``: ops that only move or lay out data (identity, slicing, concatenation, broadcasting, copies);
* ``elementwise``: every other op (bias, ReLU and its gradient, the loss, casts, reductions).

Ops run on several threads at once, so their times add up to more than the wall time they cover. A
category's share of the step is therefore its share of the ops' summed time, scaled to the wall time during
which at least one op ran; ``rest`` is the step time that no op covered: dispatch, the executor's control
flow (while-loop bookkeeping), Python and the iterator. The step time is the profiled calls' wall time per
step, under the profiler (which adds a little to each op).
"""

from __future__ import annotations

import json
import re
import time
from collections import defaultdict
from pathlib import Path

from tfbench.benchmarks.stages.base import Context, Job, failure, unsupported

KIND = "breakdown"
# The `tfbench run` options this stage honours beyond the common ones (base.py).
# Profiled for a fixed wall time (PROFILED_SECONDS), not a sample count: --samples does not apply.
FLAGS = ("approach", "workload", "mode", "batch_size", "steps_per_call")
CATEGORIES = ("conv", "pool", "matmul", "elementwise", "optimizer", "copies", "rest")
PREFERRED_BATCH_SIZE = 128
MAX_K = 16
PROFILED_SECONDS = 0.3  # wall time of profiled calls per configuration, at least two calls

# Op types that are the executor's own control flow: their time is dispatch, not work ("rest").
CONTROL_TYPES = {"Enter", "Exit", "Merge", "Switch", "NextIteration", "LoopCond", "While", "StatelessWhile",
                 "If", "StatelessIf", "PartitionedCall", "StatefulPartitionedCall", "NoOp", "Const",
                 "_Arg", "_Retval"}
# XLA events that hold other thunks (the whole compiled function, a loop): their own time is waiting and loop
# bookkeeping ("rest").
XLA_CONTAINERS = re.compile(r"^((while|call|conditional)(\.\d+)?|_*a?_?inference_.*|cluster_.*)$")
COPY_TYPES = {"Identity", "IdentityN", "Snapshot", "Copy", "CopyHost", "_Send", "_Recv", "_HostSend",
              "_HostRecv", "StridedSlice", "Slice", "GatherV2", "ConcatV2", "Concat", "Transpose", "Reshape",
              "ExpandDims", "Squeeze", "Tile", "Pack", "Unpack", "ReadVariableOp", "TensorListGetItem",
              "TensorListSetItem", "TensorListFromTensor", "TensorListStack", "BroadcastTo"}
OPTIMIZER_SCOPE = re.compile(r"(^|/)(adam|nadam|rmsprop|sgd|SGD|Adam|Nadam|RMSprop)(_\d+)?/")
XLA_COPY_OPS = {"copy", "concatenate", "bitcast", "slice", "dynamic-slice", "dynamic-update-slice", "transpose",
                "broadcast", "reshape", "pad", "wrapped"}


def categorize(name: str, op_type: str) -> str:
    """The category of one op from its name (its scope) and type (an XLA thunk: its HLO name twice)."""
    kind = op_type.removeprefix("_MklNative").removeprefix("_Mkl").removeprefix("_Fused").lower()
    if OPTIMIZER_SCOPE.search(name) or op_type.startswith("ResourceApply") or op_type in (
            "AssignAddVariableOp", "AssignSubVariableOp", "AssignVariableOp"):
        return "optimizer"
    if re.search(r"conv[23]d|convolution|depthwiseconv", kind):
        return "conv"
    if re.search(r"pool|reduce-window|select-and-scatter", kind):
        return "pool"
    if re.search(r"matmul|(^|[_.])dot([_.]|$)|einsum|gemm", kind):
        return "matmul"
    if op_type in COPY_TYPES or (op_type == name and _only_moves_data(kind)):
        return "copies"
    return "elementwise"


def _only_moves_data(hlo_name: str) -> bool:
    """An XLA thunk built of data-movement ops only: ``copy.3``, ``dynamic-slice_bitcast_fusion``."""
    parts = hlo_name.split(".")[0].removesuffix("_fusion").split("_")
    return all(part in XLA_COPY_OPS for part in parts)


def op_events(trace: dict) -> list[tuple]:
    """(thread, start µs, duration µs, name, type) of every op and XLA thunk in a Chrome trace-event document.

    Graph ops carry their ``name:type`` in the trace's stack frames; XLA thunks carry ``hlo_op``. The
    executor's control flow and XLA's container thunks are left out: their time is not an op's work.
    """
    frames = trace.get("stackFrames") or {}
    found = []
    for event in trace.get("traceEvents", []):
        if event.get("ph") != "X" or "dur" not in event:
            continue
        args = event.get("args") or {}
        if "hlo_op" in args:
            name = op_type = str(args["hlo_op"])
            if XLA_CONTAINERS.match(name):
                continue
        else:
            frame = frames.get(str(event.get("sf")), {}).get("name", "")
            if ":" not in frame or frame.split(":")[-1] != event.get("name"):
                continue  # not an op: a profiler, executor or Python event
            name, op_type = frame.rsplit(":", 1)
            if op_type in CONTROL_TYPES or XLA_CONTAINERS.match(op_type):
                continue  # control flow, or the op that launches a whole compiled function
        found.append(((event.get("pid"), event.get("tid")), float(event["ts"]), float(event["dur"]), name, op_type))
    return found + _eager_kernels(trace)


EAGER_OP = "EagerLocalExecute: "


def _eager_kernels(trace: dict) -> list[tuple]:
    """Ops run eagerly: the kernel (``EagerKernelExecute``) inside each ``EagerLocalExecute: <type>`` event.

    Eager ops carry no name scope, so only their type tells what they are; the time around the kernel (input
    checks, placement, the Python call) is dispatch and stays in "rest". A tf.function called eagerly is
    one such op, whose own ops are traced as graph ops: it is left out here."""
    spans = defaultdict(list)
    for event in trace.get("traceEvents", []):
        if event.get("ph") != "X" or "dur" not in event:
            continue
        name = str(event.get("name", ""))
        if name.startswith(EAGER_OP) or name == "EagerKernelExecute":
            spans[(event.get("pid"), event.get("tid"))].append(
                (float(event["ts"]), float(event["dur"]), name.removeprefix(EAGER_OP)))
    found = []
    for thread, events in spans.items():
        op_type, op_end = None, float("-inf")
        for start, duration, name in sorted(events, key=lambda e: (e[0], -e[1])):
            if name != "EagerKernelExecute":
                op_type, op_end = name, start + duration
            elif op_type is not None and start < op_end and not op_type.startswith("__inference"):
                if op_type not in CONTROL_TYPES and op_type != "_EagerConst":
                    found.append((thread, start, duration, op_type, op_type))
    return found


def _self_times(events: list[tuple]) -> list[float]:
    """Each event's duration less the durations of the events nested directly in it on the same thread."""
    own = [duration for _, _, duration, _, _ in events]
    by_thread = defaultdict(list)
    for index, (thread, start, duration, _, _) in enumerate(events):
        by_thread[thread].append((start, -duration, index))
    for items in by_thread.values():
        stack: list[tuple[float, int]] = []  # (end, index)
        for start, negative, index in sorted(items):
            while stack and stack[-1][0] <= start:
                stack.pop()
            if stack:
                own[stack[-1][1]] -= -negative
            stack.append((start - negative, index))
    return [max(0.0, value) for value in own]


def _covered(events: list[tuple]) -> float:
    """Wall time (µs) during which at least one op ran, on any thread."""
    total, end = 0.0, float("-inf")
    for start, stop in sorted((e[1], e[1] + e[2]) for e in events):
        if start > end:
            total += stop - start
            end = stop
        elif stop > end:
            total += stop - end
            end = stop
    return total


def summarize_trace(trace: dict, wall_s: float, steps: int) -> dict:
    """Per step: each category's share of the wall time (``breakdown_s``, summing to the step time), the
    ops' summed time per category (``thread_s``) and the wall time ops covered (``ops_wall_s``)."""
    events = op_events(trace)
    if not events:
        raise ValueError("the profiler's trace holds no op events")
    thread_us = dict.fromkeys(CATEGORIES[:-1], 0.0)
    for event, own in zip(events, _self_times(events)):
        thread_us[categorize(event[3], event[4])] += own
    step_s = wall_s / steps
    covered_s = min(_covered(events) / 1e6 / steps, step_s)
    total = sum(thread_us.values())
    breakdown = {category: covered_s * us / total if total else 0.0 for category, us in thread_us.items()}
    breakdown["rest"] = step_s - covered_s
    return {"profiled_step_s": step_s, "ops_wall_s": covered_s, "breakdown_s": breakdown,
            "thread_s": {category: us / 1e6 / steps for category, us in thread_us.items()},
            "profiled_steps": steps, "op_events": len(events)}


def read_trace(logdir: str | Path) -> dict:
    """The newest profile under ``logdir`` as a Chrome trace-event document, by TensorFlow's own converter."""
    from tensorflow.python.profiler.internal import _pywrap_profiler_plugin as converter

    runs = sorted(Path(logdir).glob("plugins/profile/*/*.xplane.pb"))
    if not runs:
        raise FileNotFoundError(f"no profile written under {logdir}")
    newest = [str(p) for p in runs if p.parent == runs[-1].parent]
    data, ok = converter.xspace_to_tools_data(newest, "trace_viewer@", {})
    if not ok:
        raise RuntimeError(f"the profiler's converter failed: {data[:200]!r}")
    return json.loads(data)


def profile_calls(call, calls: int, logdir: str, sync, tf) -> tuple[dict, float]:
    """Run ``call`` ``calls`` times under the profiler; (the trace, the calls' wall time in seconds)."""
    tf.profiler.experimental.start(logdir)
    try:
        start = time.perf_counter()
        for _ in range(calls):
            float(call())
            sync()
        wall = time.perf_counter() - start
    finally:
        tf.profiler.experimental.stop()
    return read_trace(logdir), wall


# --- the stage -------------------------------------------------------------------------------------------


def batch_size(plan) -> int:
    return PREFERRED_BATCH_SIZE if PREFERRED_BATCH_SIZE in plan.batch_sizes else plan.batch_sizes[0]


def steps_per_call(plan, mode: str) -> int:
    """K of the profiled call: 1 in eager mode, else the plan's largest K up to 16 (one compiled call)."""
    if mode == "eager":
        return 1
    return max([k for k in plan.steps_per_call if k <= MAX_K] or [min(plan.steps_per_call)])


def jobs(context: Context) -> list[Job]:
    plan, found = context.plan, []
    for device in context.devices:
        for workload in plan.workloads:
            stubs = [context.stub(KIND, approach=approach, workload=workload, mode=mode,
                                  steps_per_call=steps_per_call(plan, mode), device=device.name,
                                  batch_size=batch_size(plan))
                     for mode in plan.modes for approach in plan.approaches]
            found.append(Job(KIND, {"workload": workload, "device": device}, stubs))
    return found


def run(context: Context, job: Job) -> list[dict]:
    import tempfile

    from tfbench.benchmarks import devices as dev
    from tfbench.benchmarks.stages.step_time import device_batches
    from tfbench.benchmarks.timing import Timed, first_and_warmup
    from tfbench.implementations import build, get_approach
    from tfbench.implementations.interface import TrainConfig
    from tfbench.implementations.workloads import get_workload

    tf, plan, device = context.tf, context.plan, job.params["device"]
    workload = get_workload(job.params["workload"])
    sync = lambda: dev.synchronize(device, tf)  # noqa: E731
    size = job.stubs[0]["batch_size"]
    max_k = max(s["steps_per_call"] for s in job.stubs)
    bank_x, bank_y = device_batches(tf, device, size, 2 * max_k, plan.seed)
    records = []
    for stub in job.stubs:
        approach = get_approach(stub["approach"])
        reason = approach.unsupported(workload, stub["mode"]) or device.unsupported_reason(stub["mode"])
        if reason:
            records += unsupported([stub], reason)
            continue
        k = stub["steps_per_call"]
        try:
            with tf.device(device.tf_device):
                trainer = build(stub["approach"], workload, TrainConfig(mode=stub["mode"], steps_per_call=k,
                                                                        seed=plan.seed))
                call = trainer.runner([bank_x[i * k:(i + 1) * k] for i in range(2)],
                                      [bank_y[i * k:(i + 1) * k] for i in range(2)])
                timed = Timed(call, steps_per_call=k)
                first_and_warmup(timed, plan.warmup, sync, time.perf_counter)
                probe = timed.timed_call(sync, time.perf_counter)
                calls = int(min(max(2, PROFILED_SECONDS / max(probe, 1e-6)), 50))
                with tempfile.TemporaryDirectory(prefix="tfbench-profile-") as logdir:
                    trace, wall = profile_calls(call, calls, logdir, sync, tf)
            metrics = summarize_trace(trace, wall, calls * k)
        except Exception as error:  # this configuration fails; the others are profiled
            records.append({**stub, "status": "failed", "reason": failure(error)})
            continue
        known_cost = approach.known_cost(workload, stub["mode"], k, device_kind=device.kind)
        if known_cost:
            metrics["known_cost"] = known_cost
        records.append({**stub, "metrics": metrics})
    return records
