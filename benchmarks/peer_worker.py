"""The peer stage's JAX process: Keras 3 on its JAX backend and plain JAX, driven round by round over a pipe.

Keras chooses its backend when it is first imported, and the suite's own process has imported it on
TensorFlow, so the JAX rows run here, in a process started with ``KERAS_BACKEND=jax``
(:class:`PeerWorker` starts it). The stage sends one JSON request a line on stdin and reads one JSON answer
a line back; this process measures only when asked, so the TensorFlow process and this one take turns, round
by round, and never time at the same moment (the ratio is of the two measured alternately, each on the whole
machine).

Requests (``op``): ``build`` a configuration (first call and warm-up timed, the calls per round sized from a
probe), ``round`` (time the named configurations in the order given), ``cross_check`` (keras-benchmarks'
callback ms/step over ``fit``), ``agree`` (N steps from the shared weights, the weights written to a file),
``hlo`` (the compiled HLO's op and fusion counts), ``drop``, ``quit``. An error answers ``{"error": ...}``
and the worker goes on.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

# --- the worker side ---------------------------------------------------------------------------------------


def _batches(batch_size: int, batches: int, seed: int):
    """The step-time stage's synthetic batches (stages/step_time.device_batches), as NumPy stacks."""
    from tfbench.implementations.datasets import synthetic

    train, _ = synthetic(batches * batch_size, 1, seed=seed)
    return (train.x.reshape(batches, batch_size, 28, 28, 1).astype(np.float32),
            train.y.reshape(batches, batch_size).astype(np.int32))


def _trainer(peer: str, workload, k: int, seed: int, weights=None):
    if peer == "plain_jax":
        from tfbench.implementations.peers.plain_jax import PlainJax

        return PlainJax(workload, k, weights=weights, seed=seed)
    from tfbench.implementations.peers.keras_jax import KerasJax

    return KerasJax(workload, k, weights=weights, seed=seed)


def hlo_counts(text: str) -> dict:
    """Counts in an optimized HLO module's text: the fusions, and the ops outside any fusion (by opcode) that
    XLA runs as kernels of their own: those of the entry computation and of the loops' bodies and conditions.
    Fused computations (``calls=``) and reducers' scalar computations (``to_apply=``) are not kernels."""
    import re

    inner = set(re.findall(r"(?:calls|to_apply)=%?([\w.\-]+)", text))
    counts, counting = {}, False
    for line in text.splitlines():
        header = re.match(r"^(?:ENTRY )?%?([\w.\-]+) .*\{$", line)
        if header:
            counting = header.group(1) not in inner
            continue
        op = re.match(r"^\s+(?:ROOT )?%?[\w.\-]+ = .*? ([a-z][\w\-]*)\(", line)
        if op and counting:
            opcode = op.group(1)
            if opcode in ("parameter", "constant", "get-tuple-element", "tuple", "bitcast"):
                continue
            counts[opcode] = counts.get(opcode, 0) + 1
    return {"fusions": counts.get("fusion", 0), "unfused_ops": sum(v for k, v in counts.items() if k != "fusion"),
            "by_opcode": counts}


class Worker:
    def __init__(self):
        self.timed: dict = {}
        self.trainers: dict = {}
        self.per_round: dict = {}
        self.banks: dict = {}

    def build(self, request: dict) -> dict:
        import jax

        from tfbench.benchmarks.timing import Timed, first_and_warmup
        from tfbench.implementations.workloads import get_workload

        workload, k, batch_size = get_workload(request["workload"]), request["k"], request["batch_size"]
        bank_key = (batch_size, request["bank"], request["seed"])
        if bank_key not in self.banks:
            self.banks = {bank_key: _batches(batch_size, request["bank"], request["seed"])}  # one group at a time
        xs, ys = self.banks[bank_key]
        calls = len(xs) // k
        xs_calls = [jax.device_put(xs[i * k:(i + 1) * k]) for i in range(calls)]
        ys_calls = [jax.device_put(ys[i * k:(i + 1) * k]) for i in range(calls)]
        trainer = _trainer(request["peer"], workload, k, request["seed"])
        timed = Timed(trainer.runner(xs_calls, ys_calls), steps_per_call=k)
        first_and_warmup(timed, request["warmup"], lambda: None, time.perf_counter)
        probe = timed.timed_call(lambda: None, time.perf_counter)
        self.per_round[request["key"]] = int(np.clip(request["budget_s"] / max(probe, 1e-9), request["min"],
                                                     request["max"]))
        self.timed[request["key"]], self.trainers[request["key"]] = timed, trainer
        return {"first_call_s": timed.first_call_s, "jax": jax.__version__,
                "devices": [str(d) for d in jax.devices()]}

    def round(self, request: dict) -> dict:
        samples = {}
        for key in request["keys"]:
            timed = self.timed[key]
            samples[key] = [timed.timed_call(lambda: None, time.perf_counter) / timed.steps_per_call
                            for _ in range(self.per_round[key])]
            if timed.nonfinite:
                samples[key + ":nonfinite"] = timed.nonfinite_reason
        return {"samples": samples}

    def cross_check(self, request: dict) -> dict:
        trainer = self.trainers[request["key"]]
        xs, ys = next(iter(self.banks.values()))
        x, y = xs.reshape(-1, 28, 28, 1), ys.reshape(-1)
        return {"ms_per_step": trainer.fit_ms_per_step(x, y, xs.shape[1])}

    def agree(self, request: dict) -> dict:
        from tfbench.implementations.workloads import get_workload

        workload = get_workload(request["workload"])
        xs, ys = _batches(request["batch_size"], request["steps"], request["seed"])
        weights = {}
        for peer in ("plain_jax", "keras_jax"):
            trainer = _trainer(peer, workload, 1, request["seed"], weights=workload.init_weights(request["seed"]))
            trainer.steps(xs, ys)
            weights[peer] = trainer.weights()
        np.savez(request["path"], **{f"{peer}_{i}": w for peer, ws in weights.items() for i, w in enumerate(ws)})
        return {"weights": {peer: len(ws) for peer, ws in weights.items()}}

    def hlo(self, request: dict) -> dict:
        import jax

        from tfbench.implementations.peers.plain_jax import PlainJax
        from tfbench.implementations.workloads import get_workload

        k = request["k"]
        trainer = PlainJax(get_workload(request["workload"]), k, seed=request["seed"])
        xs, ys = _batches(request["batch_size"], k, request["seed"])
        return hlo_counts(trainer.compiled_hlo(jax.device_put(xs), jax.device_put(ys)))

    def drop(self, request: dict) -> dict:
        for key in request["keys"]:
            self.timed.pop(key, None)
            self.trainers.pop(key, None)
        return {}


def serve(lines, answer) -> None:
    """Answer each request line until ``quit`` (or the end of input)."""
    from tfbench.benchmarks.stages.base import failure

    worker = Worker()
    for line in lines:
        request = json.loads(line)
        if request["op"] == "quit":
            break
        try:
            reply = getattr(worker, request["op"])(request)
        except Exception as error:  # this request fails; the stage records it and the worker goes on
            reply = {"error": failure(error)}
        answer(json.dumps(reply))


def main() -> None:
    # The protocol has stdout to itself: whatever JAX or Keras print goes to stderr.
    protocol = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    serve(sys.stdin, lambda text: protocol.write(text + "\n"))


# --- the stage's side --------------------------------------------------------------------------------------


def worker_env() -> dict:
    """The worker's environment: Keras on JAX, XLA:CPU on the CPU only, its thread count stated.

    XLA:CPU runs its ops on an Eigen pool as large as the machine's cores, as TensorFlow's intra-op pool is
    by default here; ``--xla_cpu_multi_thread_eigen`` keeps it multi-threaded and the pool's size follows the
    cores the process may use (so both processes get the same cores, one at a time)."""
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}
    env["XLA_FLAGS"] = " ".join(filter(None, [os.environ.get("XLA_FLAGS", ""),
                                              "--xla_cpu_multi_thread_eigen=true"]))
    here = str(Path(__file__).resolve().parents[1])  # a source checkout: tfbench/ beside implementations/
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [here, os.environ.get("PYTHONPATH", "")]))
    return env


class WorkerGone(RuntimeError):
    """The worker process ended while a request was under way."""


class PeerWorker:
    """The JAX worker process, one request at a time."""

    def __init__(self, stderr=None):
        self.env = worker_env()
        self.process = subprocess.Popen([sys.executable, "-m", "tfbench.benchmarks.peer_worker"], env=self.env,
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, text=True,
                                        bufsize=1)

    def request(self, op: str, **fields) -> dict:
        self.process.stdin.write(json.dumps({"op": op, **fields}) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise WorkerGone(f"the JAX worker ended (exit status {self.process.wait()}) during {op!r}")
        return json.loads(line)

    def close(self) -> None:
        if self.process.poll() is None:
            try:
                self.process.stdin.write(json.dumps({"op": "quit"}) + "\n")
                self.process.stdin.close()
                self.process.wait(timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                self.process.kill()
                self.process.wait()

    def __enter__(self) -> PeerWorker:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


if __name__ == "__main__":
    main()
