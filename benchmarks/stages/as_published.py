"""As published: each tutorial's own loop against the same recipe done well.

For every recipe with a published loop (:mod:`tfbench.implementations.as_published`), one job on the first
chosen device answers two questions:

* *How slow is the loop the tutorial taught?* One optimizer step of the loop as published (its batching,
  per-step printing to ``os.devnull``, metric updates and evaluations, eager) is timed interleaved, in one
  process, with the recipe's fixed loop (its approach, network and optimizer, same batch size, batches
  already on the device) in eager mode and in each compiled mode and K. The best of those is the "best
  mode"; the ratios come with bootstrap intervals, like the step-time stage's speedups. A published sample
  that ends an epoch also holds that epoch's extra work (Do it!'s validation loss, a new permutation): the
  median is the typical step.
* *What did its bug cost?* A fresh copy of the loop trains for the plan's ``as_published_epochs`` (None: as
  many as published) and records the tutorial's own figure. Only a full-length run is a reproduction: a
  capped one says how many epochs it ran of how many. The fixed recipe's accuracy is the ``recipe`` stage's.
"""

from __future__ import annotations

import os
import time

from tfbench.benchmarks.results import is_noisy, summarize
from tfbench.benchmarks.stages.base import Context, Job, failure, skipped

KIND = "as_published"
# The `tfbench run` options this stage honours beyond the common ones (base.py).
# The fixed loop is timed in the plan's compiled modes and K; each tutorial keeps its own approach,
# network, dataset and batch size.
FLAGS = ("mode", "steps_per_call", "samples", "data_dir", "no_verify", "budget")
PUBLISHED = "published"
# K > 1 stacks K batches in one tensor; above this many bytes of images (a full-batch step of 60,000 images
# is 188 MB) only K = 1 is timed.
MAX_CALL_BYTES = 64 << 20


def jobs(context: Context) -> list[Job]:
    from tfbench.implementations.as_published import LOOPS, get_loop
    from tfbench.implementations.recipes import RECIPES

    device = context.devices[0]
    found = []
    for name in LOOPS:
        recipe, loop = RECIPES[name], get_loop(name)
        found.append(Job(KIND, {"recipe": recipe, "device": device},
                         [context.stub(KIND, approach=recipe.approach, workload=recipe.workload, mode="eager",
                                       device=device.name, batch_size=loop.batch_size, dataset=recipe.dataset,
                                       variant=name)]))
    return found


def fixed_configs(plan, batch_size: int) -> list[tuple[str, int]]:
    """(mode, K) of the fixed loop: eager K=1, and every compiled mode at each K whose call fits in memory."""
    return [(mode, k) for mode in ("eager", *[m for m in plan.modes if m != "eager"])
            for k in plan.steps_per_call
            if (k == 1 or mode != "eager") and (k == 1 or k * batch_size * 28 * 28 * 4 <= MAX_CALL_BYTES)]


def run(context: Context, job: Job) -> list[dict]:
    from tfbench.errors import DatasetError
    from tfbench.implementations.as_published import get_loop, raw_data

    recipe, stub = job.params["recipe"], job.stubs[0]
    if recipe.dataset in context.unavailable:
        return skipped(job.stubs, context.unavailable[recipe.dataset])
    try:
        data = raw_data(recipe.dataset, context.plan.data_dir, verify=context.plan.verify)
    except DatasetError as error:
        context.unavailable[recipe.dataset] = str(error)
        return skipped(job.stubs, str(error))
    loop_class = get_loop(recipe.name)
    with open(os.devnull, "w") as sink, context.tf.device(job.params["device"].tf_device):
        metrics = step_times(context, recipe, loop_class(data, seed=context.plan.seed, out=sink), data)
        step_s = metrics["published_step_time_s"]["median"]  # what a budgeted run sizes the training by
        metrics.update(accuracy(context, recipe, loop_class(data, seed=context.plan.seed, out=sink), job, step_s))
    return [{**stub, "metrics": metrics}]


def step_times(context: Context, recipe, loop, data) -> dict:
    """The published step against the fixed loop in every mode, interleaved; medians, ratios, the best mode."""
    import numpy as np

    from tfbench.benchmarks import devices as dev
    from tfbench.benchmarks.timing import Timed, bootstrap_ratio, first_and_warmup, measure_interleaved
    from tfbench.implementations import build
    from tfbench.implementations.interface import TrainConfig
    from tfbench.implementations.recipes import initial_weights
    from tfbench.implementations.workloads import get_workload

    tf, plan, device = context.tf, context.plan, context.devices[0]
    sync = lambda: dev.synchronize(device, tf)  # noqa: E731
    batch_size = loop.batch_size
    configs = fixed_configs(plan, batch_size)
    max_k = max(k for _, k in configs)
    # The fixed loop's batches: the tutorial's images (scaled to [0, 1]), on the device, as many distinct
    # ones as two calls of the largest K need, within the memory bound.
    batches = max(2 * max_k, min(16, max(1, MAX_CALL_BYTES // (batch_size * 28 * 28 * 4))))
    batches = min(batches, max(1, len(data.x_train) // batch_size))
    rng = np.random.default_rng(plan.seed)
    index = rng.permutation(len(data.x_train))[:batches * batch_size]
    images = (data.x_train[index] / np.float32(255)).astype(np.float32).reshape(batches, batch_size, 28, 28, 1)
    labels = data.y_train[index].astype(np.int32).reshape(batches, batch_size)
    with tf.device(device.tf_device):
        bank_x, bank_y = tf.constant(images), tf.constant(labels)
    workload = get_workload(recipe.workload)
    weights = initial_weights(recipe, workload, plan.seed)
    timed, failed = {PUBLISHED: Timed(loop.step)}, {}
    first_and_warmup(timed[PUBLISHED], plan.warmup, sync, time.perf_counter)
    for mode, k in configs:
        key = f"{mode}/k{k}"
        try:
            trainer = build(recipe.approach, workload, TrainConfig(
                mode=mode, steps_per_call=k, optimizer=recipe.optimizer, upper_optimizer=recipe.upper_optimizer,
                seed=plan.seed), weights)
            calls = max(1, batches // k)
            timed[key] = Timed(trainer.runner([bank_x[i * k:(i + 1) * k] for i in range(calls)],
                                              [bank_y[i * k:(i + 1) * k] for i in range(calls)]), steps_per_call=k)
            first_and_warmup(timed[key], plan.warmup, sync, time.perf_counter)
        except Exception as error:  # e.g. an XLA compile failure: the others are still measured
            failed[key] = failure(error)
            timed.pop(key, None)
    measure_interleaved(timed, sync=sync, **context.sampling())
    summaries = {key: summarize(t.samples) for key, t in timed.items()}
    compiled = [key for key in summaries if not key.startswith(("eager", PUBLISHED))]
    best = min(compiled or [k for k in summaries if k != PUBLISHED], key=lambda key: summaries[key]["median"])
    metrics = {"published_batch_size": batch_size, "published_step_time_s": summaries[PUBLISHED],
               "published_first_call_s": timed[PUBLISHED].first_call_s,
               "noisy": is_noisy(summaries[PUBLISHED]),  # the fixed loop's noise is marked in the report's table
               "fixed_step_time_s": summaries, "best_mode": best.split("/")[0],
               "best_steps_per_call": int(best.split("/k")[1]), "best_step_time_s": summaries[best]}
    if "eager/k1" in summaries:
        metrics["fixed_eager_step_time_s"] = summaries["eager/k1"]
        ratio, low, high = bootstrap_ratio(timed[PUBLISHED].samples, timed["eager/k1"].samples)
        metrics.update(published_over_fixed_eager=ratio, published_over_fixed_eager_ci=[low, high])
    ratio, low, high = bootstrap_ratio(timed[PUBLISHED].samples, timed[best].samples)
    metrics.update(published_over_best=ratio, published_over_best_ci=[low, high])
    if failed:
        metrics["failed_configs"] = failed
    if timed[PUBLISHED].nonfinite:
        metrics["published_nonfinite"] = True  # the published loss diverged while it was timed
    return metrics


def accuracy(context: Context, recipe, loop, job: Job | None = None, step_s: float | None = None) -> dict:
    """Train a fresh published loop (capped by the plan) and record the tutorial's own figure.

    A budgeted run trains fewer epochs, or at one epoch a share of its steps, sized from ``step_s`` (the
    published step just timed: the loop's eager steps are 2-20x the compiled ones the cost model knows). A share
    of an epoch ends before the epoch's own figures, so a loop that reports a training accuracy reports none."""
    from tfbench.implementations.as_published import documented_figure, run

    epochs = min(context.plan.as_published_epochs or loop.epochs, loop.epochs)
    fraction = 1.0
    if context.budget is not None and job is not None and step_s:
        epochs, fraction = context.budget.training(job, epochs, epoch_s=step_s * loop.steps_per_epoch)
    steps = max(1, round(fraction * loop.steps_per_epoch))
    if steps >= loop.steps_per_epoch:  # a share that rounds to the whole epoch (a full-batch loop has 1 step)
        fraction = 1.0
    start = time.perf_counter()
    if fraction < 1:
        fraction = steps / loop.steps_per_epoch  # what it trained
        result = run(loop, steps=steps)
        epochs = 0
    else:
        result = run(loop, epochs=epochs)
    full_length = epochs >= loop.epochs
    extra = {"train_fraction": fraction} if fraction < 1 else {}
    return {"published_accuracy": documented_figure(recipe, result, at_epoch=None if full_length else max(1, epochs)),
            **extra,
            "published_full_length": full_length, "published_epochs": epochs, "documented_epochs": loop.epochs,
            "published_train_time_s": time.perf_counter() - start,
            "published_figures": {k: v for k, v in result.items() if k.endswith("_accuracy")},
            "published_history": result["history"], "documented_metric": recipe.documented_metric,
            "documented_accuracy": recipe.documented_accuracy, "documented_epoch": recipe.documented_epoch,
            "title": recipe.title}
