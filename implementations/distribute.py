"""Training on several replicas with ``tf.distribute``: the strategy, the per-replica batches, ``TF_CONFIG``.

What every training style shares when it scales out (the TensorFlow guides
"Distributed training with TensorFlow" and "Custom training with
tf.distribute.Strategy"; Hands-On Machine Learning 2nd ed. ch. 19):

* ``mirrored``: ``tf.distribute.MirroredStrategy``, one process, one replica
  per local device (GPUs, or logical CPU devices where there are none). Every
  variable created under ``strategy.scope()`` is copied to each replica and
  kept identical by summing the gradients across replicas (an all-reduce).
* ``multiworker``: ``tf.distribute.MultiWorkerMirroredStrategy``, one process
  per worker (machine), configured by the ``TF_CONFIG`` environment variable;
  the same all-reduce runs over the network.

The *global* batch is what one step of the single-device loop sees: with N
replicas, each replica gets a slice of ``global_batch / N`` examples
(:func:`distributed_batches`), computes its gradients, and the all-reduce
sums them. Each replica must therefore divide its summed loss by the global
batch (``tf.nn.compute_average_loss``); ``reduce_mean`` divides by the
replica's own batch, so the summed gradient is N times too large.

This module imports TensorFlow only inside functions: the CLI validates a
strategy and ``TF_CONFIG`` before TensorFlow starts.
"""

from __future__ import annotations

import json
import os
from functools import cache

from tfbench.errors import ConfigError

STRATEGIES = ("none", "mirrored", "multiworker")
# How long a collective (the all-reduce) waits for a peer before it fails: a dead worker then ends the
# others' runs with an error instead of a hang.
COLLECTIVE_TIMEOUT_S = 60


def validate(strategy: str, replicas: int) -> None:
    """Check a strategy name and replica count, without TensorFlow."""
    if strategy not in STRATEGIES:
        raise ConfigError(f"unknown strategy {strategy!r}; choose one of: {', '.join(STRATEGIES)}")
    if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 1:
        raise ConfigError(f"replicas must be an integer >= 1, got {replicas!r}")
    if strategy == "none" and replicas != 1:
        raise ConfigError(f"{replicas} replicas need a strategy (mirrored or multiworker); without one there is 1")


def parse_tf_config(text: str | None) -> dict:
    """``TF_CONFIG`` as a dict with a worker cluster and this process's task; a bad one is one clear error.

    The format (TensorFlow's "Multi-worker training with Keras" guide)::

        {"cluster": {"worker": ["host1:port", "host2:port"]}, "task": {"type": "worker", "index": 0}}
    """
    if not text:
        raise ConfigError("the multiworker strategy needs TF_CONFIG, e.g. "
                          '{"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
                          '"task": {"type": "worker", "index": 0}}')
    try:
        config = json.loads(text)
    except json.JSONDecodeError as error:
        raise ConfigError(f"TF_CONFIG is not valid JSON ({error.msg} at character {error.pos})") from None
    if not isinstance(config, dict) or not isinstance(config.get("cluster"), dict):
        raise ConfigError("TF_CONFIG must be a JSON object with a 'cluster' object")
    workers = config["cluster"].get("worker")
    if not isinstance(workers, list) or not workers or not all(_is_address(w) for w in workers):
        raise ConfigError(f"TF_CONFIG's cluster.worker must be a non-empty list of 'host:port', got {workers!r}")
    task = config.get("task")
    if not isinstance(task, dict) or task.get("type") not in ("worker", "chief"):
        raise ConfigError(f"TF_CONFIG's task must be {{'type': 'worker', 'index': i}}, got {task!r}")
    index = task.get("index")
    members = config["cluster"].get(task["type"], [])
    if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < len(members):
        raise ConfigError(f"TF_CONFIG's task index {index!r} is not one of the {len(members)} "
                          f"{task['type']}(s) of the cluster")
    return config


def _is_address(text: object) -> bool:
    host, _, port = str(text).rpartition(":")
    return isinstance(text, str) and bool(host) and port.isdigit() and 0 < int(port) < 65536


def cluster_size(config: dict) -> int:
    """Workers (and chief) in a parsed ``TF_CONFIG``: one replica each on a CPU-only machine."""
    return len(config["cluster"].get("worker", [])) + len(config["cluster"].get("chief", []))


def local_devices(replicas: int, tf=None) -> list[str]:
    """The first ``replicas`` local devices for a MirroredStrategy: the GPUs on a machine that has any, else
    the CPU's logical devices.

    Logical CPU devices (:func:`tfbench.benchmarks.devices.split_cpu`) stand in for GPUs on a machine
    without any; they share the same cores.
    """
    if tf is None:
        import tensorflow as tf
    gpus = tf.config.list_logical_devices("GPU")
    pool = gpus or tf.config.list_logical_devices("CPU")
    if len(pool) < replicas:
        found = f"{len(gpus)} GPU(s)" if gpus else f"{len(pool)} logical CPU device(s)"
        raise ConfigError(f"{replicas} replicas need {replicas} devices; found {found} (on a CPU, split it into "
                          f"logical devices before TensorFlow starts: tfbench run does so for --replicas)")
    return [device.name for device in pool[:replicas]]


@cache
def make_strategy(strategy: str, replicas: int):
    """The ``tf.distribute`` strategy of that name over ``replicas`` replicas (one per process and setting).

    A MultiWorkerMirroredStrategy must be the first thing a worker creates (it configures the collective
    ops of the whole process): make it before any other TensorFlow work, and this cache hands the same one
    to every trainer.
    """
    import tensorflow as tf

    validate(strategy, replicas)
    if strategy == "mirrored":
        devices = local_devices(replicas)
        if all("CPU" in name for name in devices):
            # On CPUs the default all-reduce is a collective op whose group key every MirroredStrategy of a
            # process shares: a second strategy of another size then aborts ("is joining a group with size 4,
            # but that group has size 2"; measured here). Reducing on one device and broadcasting lets 1, 2 and
            # 4 replicas run in one process; GPUs keep the default (NCCL).
            return tf.distribute.MirroredStrategy(devices, cross_device_ops=tf.distribute.ReductionToOneDevice())
        return tf.distribute.MirroredStrategy(devices)
    if strategy == "multiworker":
        parse_tf_config(os.environ.get("TF_CONFIG"))
        options = tf.distribute.experimental.CommunicationOptions(timeout_seconds=COLLECTIVE_TIMEOUT_S)
        made = tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
        if made.num_replicas_in_sync != replicas:
            raise ConfigError(f"the TF_CONFIG cluster has {made.num_replicas_in_sync} replicas in sync, "
                              f"not {replicas}: give --replicas {made.num_replicas_in_sync}")
        return made
    return None


def distributed_batches(strategy, xs, ys, repeat: bool = False):
    """An iterator over the global batches ``xs[i]``, ``ys[i]``, each split among the replicas.

    ``xs`` is ``(steps, global_batch, ...)``. Replica r of the whole cluster gets rows
    ``[r*b, (r+1)*b)`` of every global batch (``b = global_batch / replicas``), so N replicas see
    exactly the examples one device sees at the global batch. Built with
    ``distribute_datasets_from_function``: each worker's input pipeline yields the per-replica
    batches of its own replicas, which the strategy deals out one per replica per step.
    """
    import tensorflow as tf

    replicas = strategy.num_replicas_in_sync
    steps, global_batch = int(xs.shape[0]), int(xs.shape[1])
    if global_batch % replicas:
        raise ConfigError(f"a global batch of {global_batch} does not split evenly over {replicas} replicas")
    per_replica = global_batch // replicas

    def dataset_fn(context: tf.distribute.InputContext) -> tf.data.Dataset:
        local = replicas // context.num_input_pipelines  # replicas fed by this worker
        first = context.input_pipeline_id * local

        def mine(tensor):
            split = tf.reshape(tensor, [steps, replicas, per_replica, *tensor.shape[2:]])
            return tf.reshape(split[:, first:first + local], [steps * local, per_replica, *tensor.shape[2:]])

        dataset = tf.data.Dataset.from_tensor_slices((mine(xs), mine(ys)))
        return dataset.repeat() if repeat else dataset

    return iter(strategy.distribute_datasets_from_function(dataset_fn))
