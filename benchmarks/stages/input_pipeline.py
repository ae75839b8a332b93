"""Input pipelines: one compiled step (custom_tape, mlp) fed four ways, timed interleaved.

* ``device_resident``: tensors already on the device (what the step-time stage does);
* ``tf_data_prefetch``: ``tf.data`` with shuffle, batch and prefetch;
* ``numpy_slicing``: the tutorials' way, a NumPy slice handed to the step each call;
* ``numpy_slicing_one_hot``: the same plus a per-step eager ``tf.one_hot``, as several tutorials do.
"""

from __future__ import annotations

from tfbench.benchmarks.results import is_noisy, summarize
from tfbench.benchmarks.stages.base import Context, Job

KIND = "input_pipeline"
# The `tfbench run` options this stage honours beyond the common ones (base.py).
# Always custom_tape on mlp in function mode at the profile's pipeline batch size.
FLAGS = ("samples", "budget")
PIPELINES = ("device_resident", "tf_data_prefetch", "numpy_slicing", "numpy_slicing_one_hot")


def jobs(context: Context) -> list[Job]:
    batch_size = context.plan.pipeline_batch_size
    return [Job(KIND, {"device": device},
                [context.stub(KIND, approach="custom_tape", workload="mlp", device=device.name, batch_size=batch_size,
                              variant=pipeline) for pipeline in PIPELINES])
            for device in context.devices]


def run(context: Context, job: Job) -> list[dict]:
    from tfbench.benchmarks import devices as dev
    from tfbench.benchmarks.timing import Timed, measure_interleaved
    from tfbench.implementations import build
    from tfbench.implementations.datasets import synthetic
    from tfbench.implementations.interface import TrainConfig

    tf, plan, device = context.tf, context.plan, job.params["device"]
    batch_size = plan.pipeline_batch_size
    train, _ = synthetic(100 * batch_size, 1, seed=plan.seed)
    x_np, y_np = train.x, train.y
    num_batches = len(x_np) // batch_size
    with tf.device(device.tf_device):
        trainer = build("custom_tape", "mlp", TrainConfig(mode="function", seed=plan.seed))

        def numpy_slices(one_hot: bool):
            state = {"i": 0}

            def call():
                start = (state["i"] % num_batches) * batch_size
                state["i"] += 1
                x_batch = x_np[start:start + batch_size]
                y_batch = y_np[start:start + batch_size]
                if one_hot:
                    # The tutorials encode labels per step, eagerly, outside the compiled step; our
                    # step takes integer labels, so this measures that per-step cost on its own.
                    tf.one_hot(y_batch, 10).numpy()
                return trainer.steps(x_batch[None], y_batch[None])

            return call

        dataset = (tf.data.Dataset.from_tensor_slices((x_np, y_np)).shuffle(10_000, seed=plan.seed)
                   .batch(batch_size, drop_remainder=True).batch(1).repeat().prefetch(tf.data.AUTOTUNE))
        iterator = iter(dataset)
        bank_x = tf.constant(x_np[:16 * batch_size].reshape(16, 1, batch_size, 28, 28, 1))
        bank_y = tf.constant(y_np[:16 * batch_size].reshape(16, 1, batch_size))
        calls = {
            "device_resident": trainer.runner(list(bank_x), list(bank_y)),
            "tf_data_prefetch": lambda: trainer.steps(*next(iterator)),
            "numpy_slicing": numpy_slices(one_hot=False),
            "numpy_slicing_one_hot": numpy_slices(one_hot=True),
        }
        timed = {s["id"]: Timed(calls[s["variant"]]) for s in job.stubs}
        measure_interleaved(timed, sync=lambda: dev.synchronize(device, tf), **context.sampling())
    records = []
    for stub in job.stubs:
        summary = summarize(timed[stub["id"]].samples)
        records.append({**stub, "metrics": {"step_time_s": summary, "noisy": is_noisy(summary),
                                            "throughput_sps": batch_size / summary["median"]}})
    return records
