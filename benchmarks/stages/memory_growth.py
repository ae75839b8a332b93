"""Memory growth: does an approach's memory grow as it trains, as it is fit again, as it is built again?

Three curves per approach, on the MLP (:mod:`tfbench.benchmarks.memory_growth` reads the memory and fits the
slope):

* ``step``: :data:`STEPS` optimizer steps of one trainer, in every mode, memory read after each step;
* ``fit_call``: :data:`FIT_CALLS` repeated ``fit()`` calls of one epoch on the same trainer (function mode);
* ``build``: :data:`BUILDS` fresh builds of the approach in one process, each trained two steps and dropped:
  a user's hyper-parameter loop, written as users write it (no ``keras.backend.clear_session()``);
* ``build_clear_session``: the same loop with the fix Keras documents, ``keras.backend.clear_session()``
  (which also runs Python's garbage collector) before each build (``growth_unit`` ``build``).

Each record holds the slope in bytes per unit with its 95% interval, whether it is flagged (above zero and
above the noise), and the curve subsampled to at most 200 points. The quick profile runs a slice
(custom_tape's and keras_fit's steps in function mode, a few seconds); the full profile runs all of it.
"""

from __future__ import annotations

import gc

from tfbench.benchmarks.stages.base import Context, Job, failure

KIND = "memory_growth"
FLAGS = ("approach", "mode")
WORKLOAD = "mlp"
BATCH_SIZE = 32
STEPS = 1000
WARMUP_CALLS = 5  # before the curve: the first call traces and compiles
FIT_CALLS = 12
FIT_EXAMPLES = 512  # 4 steps a fit() call at batch 128
FIT_BATCH_SIZE = 128
BUILDS = 12
CLEAR_SESSION = "build_clear_session"
QUICK_APPROACHES = ("custom_tape", "keras_fit")
EAGER_REASON = "repeated fit() calls and builds are measured in function mode, what a user's loop compiles"


def jobs(context: Context) -> list[Job]:
    plan, device = context.plan, context.devices[0]
    quick = plan.profile == "quick"
    found = []
    for approach in plan.approaches:
        if quick and approach not in QUICK_APPROACHES:
            continue
        modes = ["function"] if quick else list(plan.modes)
        stubs = [context.stub(KIND, approach=approach, workload=WORKLOAD, mode=mode, device=device.name,
                              batch_size=BATCH_SIZE, variant="step") for mode in modes]
        if not quick and "function" in plan.modes:
            stubs += [context.stub(KIND, approach=approach, workload=WORKLOAD, mode="function", device=device.name,
                                   batch_size=FIT_BATCH_SIZE, variant=unit)
                      for unit in ("fit_call", "build", CLEAR_SESSION)]
        found.append(Job(KIND, {"device": device}, stubs))
    return found


def run(context: Context, job: Job) -> list[dict]:
    from tfbench.benchmarks.memory_growth import growth, memory_reader, subsample

    tf, device = context.tf, job.params["device"]
    source, read = memory_reader(device, tf)
    records = []
    for stub in job.stubs:
        context.log(f"memory growth {stub['approach']} {stub['mode']} per {stub['variant']} ({source})")
        measure = {"step": _steps, "fit_call": _fit_calls, "build": _builds, CLEAR_SESSION: _builds}[stub["variant"]]
        try:
            with tf.device(device.tf_device):
                curve, effective = measure(context, stub, read)
            found = growth(curve)
        except Exception as error:  # this curve fails; the others are still measured
            records.append({**stub, "status": "failed", "reason": failure(error)})
            continue
        unit = "build" if stub["variant"] == CLEAR_SESSION else stub["variant"]
        records.append({**stub, "metrics": {"growth_unit": unit, **found.metrics(),
                                            "memory_curve": subsample(curve)}, "effective": effective})
        gc.collect()
    return records


def _build(context: Context, stub: dict):
    from tfbench.implementations import build
    from tfbench.implementations.interface import TrainConfig

    return build(stub["approach"], WORKLOAD, TrainConfig(mode=stub["mode"], seed=context.plan.seed))


def _batches(context: Context, batch_size: int, count: int):
    from tfbench.benchmarks.stages.step_time import device_batches

    return device_batches(context.tf, context.devices[0], batch_size, count, context.plan.seed)


def _steps(context: Context, stub: dict, read) -> tuple[list, dict]:
    """One trainer, :data:`STEPS` steps cycling over 8 device-resident batches, memory after each."""
    from tfbench.benchmarks.environment import trainer_settings

    trainer = _build(context, stub)
    bank_x, bank_y = _batches(context, BATCH_SIZE, 8)
    effective = trainer_settings(context.tf, trainer, first_batch=(bank_x[0], bank_y[0]))
    call = trainer.runner([bank_x[i:i + 1] for i in range(8)], [bank_y[i:i + 1] for i in range(8)])
    for _ in range(WARMUP_CALLS):
        float(call())
    curve = []
    for step in range(STEPS):
        float(call())
        curve.append((step, read()))
    return curve, effective


def _fit_calls(context: Context, stub: dict, read) -> tuple[list, dict]:
    """One trainer, :data:`FIT_CALLS` calls of ``fit()`` for one epoch each, memory after each call."""
    from tfbench.benchmarks.environment import trainer_settings
    from tfbench.implementations.datasets import synthetic

    trainer = _build(context, stub)
    train, _ = synthetic(FIT_EXAMPLES, 1, seed=context.plan.seed)
    effective = trainer_settings(context.tf, trainer, first_batch=(train.x[:FIT_BATCH_SIZE],
                                                                   train.y[:FIT_BATCH_SIZE]))
    curve = []
    for call in range(FIT_CALLS):
        trainer.fit(train.x, train.y, epochs=1, batch_size=FIT_BATCH_SIZE, seed=call)
        curve.append((call, read()))
    return curve, effective


def _builds(context: Context, stub: dict, read) -> tuple[list, dict]:
    """:data:`BUILDS` fresh trainers in one process, two steps each, dropped; memory after each (with
    ``keras.backend.clear_session()`` before each build for the fix's variant)."""
    import keras

    from tfbench.benchmarks.environment import trainer_settings

    bank_x, bank_y = _batches(context, FIT_BATCH_SIZE, 2)
    curve, effective = [], None
    for build in range(BUILDS):
        if stub["variant"] == CLEAR_SESSION:
            keras.backend.clear_session()
        trainer = _build(context, stub)
        if effective is None:
            effective = trainer_settings(context.tf, trainer, first_batch=(bank_x[0], bank_y[0]))
        float(trainer.steps(bank_x, bank_y))
        del trainer
        curve.append((build, read()))
    return curve, effective
