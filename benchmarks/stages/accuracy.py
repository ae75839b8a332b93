"""Accuracy: each approach trained in function mode on the real dataset, with time-to-accuracy (evaluation
time excluded). Runs on the first chosen device; a dataset that cannot be had skips the stage's records."""

from __future__ import annotations

from tfbench.benchmarks.stages.base import Context, Job, unsupported

KIND = "accuracy"
# The `tfbench run` options this stage honours beyond the common ones (base.py).
# Function mode at the profile's accuracy batch size; trained for epochs, not timed samples.
FLAGS = ("approach", "workload", "dataset", "data_dir", "no_verify", "require_accuracy", "budget")


def jobs(context: Context) -> list[Job]:
    plan, device = context.plan, context.devices[0]
    return [Job(KIND, {"approach": approach, "workload": workload, "device": device},
                [context.stub(KIND, approach=approach, workload=workload, device=device.name,
                              batch_size=plan.accuracy_batch_size, dataset=plan.dataset)])
            for workload in plan.workloads for approach in plan.approaches]


def run(context: Context, job: Job) -> list[dict]:
    from tfbench.benchmarks.training import train
    from tfbench.implementations import get_approach
    from tfbench.implementations.interface import TrainConfig
    from tfbench.implementations.workloads import get_workload

    plan, params = context.plan, job.params
    reason = get_approach(params["approach"]).unsupported(get_workload(params["workload"]), "function")
    if reason:
        return unsupported(job.stubs, reason)
    data, skipped = context.dataset_or_skip(plan.dataset, job.stubs)
    if skipped:
        return skipped
    # A budgeted run may train fewer epochs, or on a share of the training set (benchmarks/budget.py).
    epochs, fraction = context.training_size(job, plan.accuracy_epochs)
    if fraction < 1:
        data = subset(data, fraction)
    with context.tf.device(params["device"].tf_device):
        result = train(params["approach"], params["workload"], TrainConfig(mode="function", seed=plan.seed),
                       data, epochs=epochs, batch_size=plan.accuracy_batch_size, seed=plan.seed)
    if fraction < 1:
        result["train_fraction"] = fraction
    return [{**job.stubs[0], "metrics": result}]


def subset(data, fraction: float):
    """``data`` with the first ``fraction`` of its training set (the same examples for every approach)."""
    from dataclasses import replace

    from tfbench.implementations.datasets import Split

    keep = max(1, int(len(data.train.y) * fraction))
    return replace(data, train=Split(data.train.x[:keep], data.train.y[:keep]),
                   source=f"{data.source}; the first {keep} training examples (the run's budget)")
