"""MultiWorkerMirroredStrategy on one machine: worker processes on loopback ports, bounded in time.

A multi-worker cluster is several processes, each told by ``TF_CONFIG`` the addresses of all workers and
its own index (TensorFlow's "Multi-worker training with Keras" guide). On a real cluster you start one per
machine yourself (docs/distribute.md). Here, :func:`launch` starts N local workers on 127.0.0.1 (free ports, found by
binding port 0), waits for all of them with a deadline, and stops the rest with a one-line error as soon as
one dies, when a port is taken, or when the deadline passes: a worker left alone would otherwise wait in an
all-reduce until its collective timeout.

Two things run on such workers (``python -m tfbench.benchmarks.multiworker ...``):

* ``run``: the ``distributed`` stage of a stored plan (``tfbench run --strategy multiworker`` without a
  ``TF_CONFIG`` launches this, one worker per replica); the first worker writes the results file.
* ``check``: 20 SGD steps of one approach at a global batch split among the workers; the first worker saves
  the weights, to compare with one process at the same global batch (the two-worker parity test).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from tfbench.errors import TfbenchError

# The default bound on a local multiworker run (two TensorFlow processes start in ~10 s each here).
DEFAULT_TIMEOUT_S = 900

HOST = "127.0.0.1"  # loopback only: a local cluster never listens on the network


class WorkerError(TfbenchError):
    """A worker died, a port was taken, or the workers ran out of time; the message says which."""


def free_ports(count: int) -> list[int]:
    """``count`` distinct free TCP ports on loopback, found by binding port 0 (all held until all are found)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((HOST, 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def check_free(ports: Sequence[int]) -> None:
    """Raise :class:`WorkerError` naming the first port on loopback that something else holds."""
    for port in ports:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((HOST, port))
            except OSError:
                raise WorkerError(f"port {port} on {HOST} is taken; free it or let the suite pick free ports") \
                    from None


def tf_configs(ports: Sequence[int]) -> list[str]:
    """One ``TF_CONFIG`` per worker of a loopback cluster on ``ports``."""
    cluster = {"worker": [f"{HOST}:{port}" for port in ports]}
    return [json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
            for index in range(len(ports))]


def _last_error_line(path: Path) -> str:
    """The most telling line of a worker's stderr: the last exception line, else the last line."""
    lines = [line.strip() for line in path.read_text(errors="replace").splitlines() if line.strip()]
    errors = [line for line in lines if "Error" in line or "error:" in line]
    return (errors or lines or ["(no output)"])[-1][:300]


def launch(command: Callable[[int], list[str]], workers: int, *, timeout_s: float,
           ports: Sequence[int] | None = None, env: dict | None = None) -> None:
    """Run ``command(index)`` as worker ``index`` of a ``workers``-process loopback cluster; wait for all.

    Returns when every worker exited with status 0. Raises :class:`WorkerError` (after stopping the
    others) when one exits otherwise, when a port is taken, or after ``timeout_s`` seconds.
    """
    ports = list(ports) if ports is not None else free_ports(workers)
    check_free(ports)
    logs = Path(tempfile.mkdtemp(prefix="tfbench-workers-"))
    processes = []
    try:
        for index, tf_config in enumerate(tf_configs(ports)):
            worker_env = {**os.environ, **(env or {}), "TF_CONFIG": tf_config}
            with open(logs / f"worker{index}.err", "wb") as stderr:
                processes.append(subprocess.Popen(command(index), env=worker_env, stdout=subprocess.DEVNULL,
                                                  stderr=stderr))
        deadline = time.monotonic() + timeout_s
        while any(p.poll() is None for p in processes):
            for index, process in enumerate(processes):
                if process.poll() not in (None, 0):
                    line = _last_error_line(logs / f"worker{index}.err")
                    if "Could not start gRPC server" in line or "Address already in use" in line:
                        raise WorkerError(f"worker {index} could not listen on {HOST}:{ports[index]} (the port "
                                          f"is taken): {line}")
                    raise WorkerError(f"worker {index} of {workers} died (exit status {process.returncode}): "
                                      f"{line}")
            if time.monotonic() > deadline:
                raise WorkerError(f"the {workers} workers did not finish within {timeout_s:g} s; stopped them")
            time.sleep(0.1)
        for index, process in enumerate(processes):  # the last one may have failed as the loop ended
            if process.returncode != 0:
                raise WorkerError(f"worker {index} of {workers} died (exit status {process.returncode}): "
                                  f"{_last_error_line(logs / f'worker{index}.err')}")
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
        for file in logs.iterdir():
            file.unlink()
        logs.rmdir()


def worker_command(*arguments: str) -> list[str]:
    """This module run as a worker, with the same Python and the same ``tfbench`` on its path."""
    return [sys.executable, "-m", "tfbench.benchmarks.multiworker", *arguments]


def is_chief(tf_config: dict) -> bool:
    """The worker that writes the results: the chief if the cluster has one, else worker 0."""
    task = tf_config["task"]
    return task["type"] == "chief" or ("chief" not in tf_config["cluster"] and task["index"] == 0)


def cluster_replicas(given: Sequence[int] | None) -> tuple[int, ...]:
    """``--replicas`` of a multiworker run, checked before TensorFlow starts.

    With ``TF_CONFIG`` set (this process is one worker of a cluster) the cluster decides: one replica per
    worker on CPUs, a multiple with GPUs. Without it, the suite launches that many local workers (default 2).
    """
    from tfbench.errors import ConfigError
    from tfbench.implementations.distribute import cluster_size, parse_tf_config

    if given is not None and len(given) != 1:
        raise ConfigError(f"a multiworker run has one replica count, the cluster's; got {list(given)}")
    if not os.environ.get("TF_CONFIG"):
        return (given[0] if given else 2,)
    workers = cluster_size(parse_tf_config(os.environ["TF_CONFIG"]))
    if given and given[0] % workers:
        raise ConfigError(f"--replicas {given[0]} does not match the TF_CONFIG cluster of {workers} workers "
                          f"(one replica per worker, or per GPU of each)")
    return (given[0] if given else workers,)


def other_worker() -> bool:
    """Whether this process is a worker of a ``TF_CONFIG`` cluster other than the one that writes the results."""
    from tfbench.implementations.distribute import parse_tf_config

    return bool(os.environ.get("TF_CONFIG")) and not is_chief(parse_tf_config(os.environ["TF_CONFIG"]))


def run_plan(plan, *, threads: dict, device: str, output: Path | None, timeout_s: float):
    """Run a multiworker plan and return the results file (``output``; a scratch file on a non-chief worker).

    With ``TF_CONFIG`` set, this process is one worker of a cluster: it measures beside the others. Without
    it, ``plan.replicas[0]`` local workers on loopback run the plan, and the first one writes ``output``.
    """
    from tfbench.benchmarks.results import ResultsFile
    from tfbench.benchmarks.suite import execute

    if os.environ.get("TF_CONFIG"):
        if not other_worker():
            return execute(plan, threads=threads, device=device, output=output)
        with tempfile.TemporaryDirectory(prefix="tfbench-worker-") as scratch:
            return execute(plan, threads=threads, device=device, output=Path(scratch) / "results.json")
    with tempfile.TemporaryDirectory(prefix="tfbench-plan-") as scratch:
        plan_file = Path(scratch) / "plan.json"
        plan_file.write_text(json.dumps(plan.to_dict()))
        arguments = ("run", "--plan", str(plan_file), "--output", str(output), "--device", device,
                     "--threads", f"{threads['intra_op']},{threads['inter_op']}")
        launch(lambda index: worker_command(*arguments), plan.replicas[0], timeout_s=timeout_s)
    return ResultsFile.open(output)


# --- what a worker runs --------------------------------------------------------------------------------------


def _run(args: argparse.Namespace) -> int:
    from tfbench.benchmarks.plan import Plan
    from tfbench.benchmarks.suite import execute
    from tfbench.implementations.distribute import parse_tf_config

    plan = Plan.from_dict(json.loads(Path(args.plan).read_text()))
    threads = dict(zip(("intra_op", "inter_op"), map(int, args.threads.split(","))))
    chief = is_chief(parse_tf_config(os.environ.get("TF_CONFIG")))
    with tempfile.TemporaryDirectory(prefix="tfbench-worker-") as scratch:
        # Every worker measures (the all-reduce needs them all); only the chief's file is kept.
        output = Path(args.output) if chief else Path(scratch) / "results.json"
        execute(plan, threads=threads, device=args.device, output=output)
    return 0


def check_weights(approach: str, workload: str, *, strategy: str, replicas: int, global_batch: int,
                  steps: int = 20, learning_rate: float = 0.05, seed: int = 1, mode: str = "function",
                  steps_per_call: int = 1):
    """Weights after ``steps`` SGD steps on fixed synthetic global batches (one device when ``strategy`` is
    ``none``); the same batches whatever the strategy, so the results must agree."""
    import numpy as np
    import tensorflow as tf

    from tfbench.implementations import build
    from tfbench.implementations.interface import OptimizerSpec, TrainConfig

    trainer = build(approach, workload, TrainConfig(mode=mode, steps_per_call=steps_per_call,
                                                    optimizer=OptimizerSpec("sgd", learning_rate),
                                                    strategy=strategy, replicas=replicas))
    rng = np.random.default_rng(seed)
    xs = tf.constant(rng.random((steps, global_batch, 28, 28, 1), dtype=np.float32))
    ys = tf.constant(rng.integers(0, 10, (steps, global_batch)).astype(np.int32))
    trainer.steps(xs, ys)
    return trainer.get_weights()


def _check(args: argparse.Namespace) -> int:
    import numpy as np

    from tfbench.implementations.distribute import cluster_size, make_strategy, parse_tf_config

    tf_config = parse_tf_config(os.environ.get("TF_CONFIG"))
    make_strategy("multiworker", cluster_size(tf_config))  # first, before any other TensorFlow work
    weights = check_weights(args.approach, args.workload, strategy="multiworker",
                            replicas=cluster_size(tf_config), global_batch=args.global_batch, steps=args.steps,
                            mode=args.mode, steps_per_call=args.steps_per_call)
    if is_chief(tf_config):
        np.savez(args.output, *weights)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tfbench.benchmarks.multiworker",
                                     description="one worker of a multi-worker cluster (TF_CONFIG set)")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="the distributed stage of a stored plan")
    run.add_argument("--plan", required=True)
    run.add_argument("--output", required=True)
    run.add_argument("--device", default="auto")
    run.add_argument("--threads", required=True, metavar="INTRA,INTER")
    check = sub.add_parser("check", help="SGD steps at a global batch; the chief saves the weights (.npz)")
    check.add_argument("--approach", required=True)
    check.add_argument("--workload", default="mlp")
    check.add_argument("--mode", default="function")
    check.add_argument("--steps-per-call", type=int, default=1)
    check.add_argument("--global-batch", type=int, required=True)
    check.add_argument("--steps", type=int, default=20)
    check.add_argument("--output", required=True)
    args = parser.parse_args(argv)
    try:
        return {"run": _run, "check": _check}[args.command](args)
    except TfbenchError as error:
        print(f"tfbench worker: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
