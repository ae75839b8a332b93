"""Retracing: how many times each approach's compiled step is traced over one epoch a user would write.

Per approach x mode, on the MLP at batch 128, one epoch over synthetic data whose size leaves a smaller last
batch, the step called with the step index as a Python number (the tutorials' habit; see
:mod:`tfbench.benchmarks.tracing`). One record per fix (``variant`` and the ``fix`` metric): ``none``,
``reduce_retracing=True``, an ``input_signature``, ``drop_remainder=True``, a tensor instead of the Python
number. Each record counts the traces with TensorFlow's own counter and times the calls that traced apart
from the steady ones, so the report can say which fix removes the retracing and what it saves.

``keras_fit``: fit's own compiled step (Keras 3's ``multi_step_on_iterator`` around ``one_step_on_data``,
both ``reduce_retracing=True``) over a ``tf.data`` pipeline with and without ``drop_remainder``; a Python
number cannot reach fit's step (it takes only the batch), so the other fixes are ``unsupported``. Eager mode
traces nothing and has no counter: ``unsupported`` with that reason. The tutorials' loops as published
(:mod:`tfbench.implementations.as_published`) run eagerly: checked in their source, recorded the same way.

The quick profile runs a slice (custom_tape and keras_fit, function mode, no fix and the tensor fix: a few
seconds); the full profile runs every approach, mode and fix.
"""

from __future__ import annotations

import time

from tfbench.benchmarks.stages.base import Context, Job, failure

KIND = "retracing"
FLAGS = ("approach", "mode")
WORKLOAD = "mlp"
BATCH_SIZE = 128
FULL_BATCHES = 8  # then one batch of REMAINDER examples: 9 steps an epoch
REMAINDER = 40
QUICK_APPROACHES = ("custom_tape", "keras_fit")
QUICK_MODES = ("function",)
QUICK_FIXES = ("none", "tensor_scalar")  # the pathology and the fix that removes it, within the quick budget
EAGER_REASON = ("eager: no tf.function, so nothing is traced and TensorFlow has no trace counter to read "
                "(every step runs op by op in Python)")
KERAS_FIXES = ("none", "drop_remainder")
KERAS_REASON = ("fit's compiled step takes only the batch (a Python number reaches it only through a callback "
                "or the optimizer's variables), and Keras 3 already compiles it with reduce_retracing=True "
                "and no input_signature option")


def jobs(context: Context) -> list[Job]:
    from tfbench.benchmarks.tracing import FIXES
    from tfbench.implementations.as_published import LOOPS

    plan, device = context.plan, context.devices[0]
    quick = plan.profile == "quick"
    approaches = [a for a in plan.approaches if not quick or a in QUICK_APPROACHES]
    modes = [m for m in plan.modes if not quick or m in QUICK_MODES]
    found = []
    for approach in approaches:
        stubs = [context.stub(KIND, approach=approach, workload=WORKLOAD, mode=mode, device=device.name,
                              batch_size=BATCH_SIZE, variant=fix)
                 for mode in modes for fix in (("none",) if mode == "eager" else QUICK_FIXES if quick else FIXES)]
        if stubs:
            found.append(Job(KIND, {"device": device}, stubs))
    if not quick:
        from tfbench.implementations.recipes import RECIPES

        stubs = [context.stub(KIND, approach=RECIPES[name].approach, workload=RECIPES[name].workload,
                              mode="eager", device=device.name, batch_size=0, variant=f"as_published:{name}")
                 for name in LOOPS]
        found.append(Job(KIND, {"device": device, "as_published": True}, stubs))
    return found


def run(context: Context, job: Job) -> list[dict]:
    if job.params.get("as_published"):
        return [_as_published(stub) for stub in job.stubs]
    from tfbench.implementations.datasets import synthetic

    tf, device = context.tf, job.params["device"]
    num_examples = FULL_BATCHES * BATCH_SIZE + REMAINDER
    train, _ = synthetic(num_examples, 1, seed=context.plan.seed)
    with tf.device(device.tf_device):
        x, y = tf.constant(train.x), tf.constant(train.y)
    records = []
    for stub in job.stubs:
        context.log(f"retracing {stub['approach']} {stub['mode']} fix={stub['variant']}")
        if stub["mode"] == "eager":
            records.append({**stub, "status": "unsupported", "reason": EAGER_REASON})
            continue
        if stub["approach"] == "keras_fit" and stub["variant"] not in KERAS_FIXES:
            records.append({**stub, "status": "unsupported", "reason": KERAS_REASON})
            continue
        try:
            with tf.device(device.tf_device):
                measure = _keras_fit_epoch if stub["approach"] == "keras_fit" else _user_loop_epoch
                metrics, effective = measure(context, stub, x, y)
        except Exception as error:  # e.g. an XLA compile failure: the other records go on
            records.append({**stub, "status": "failed", "reason": failure(error)})
            continue
        records.append({**stub, "metrics": {**metrics, "fix": stub["variant"]}, "effective": effective})
    return records


def _trainer(context: Context, stub: dict):
    from tfbench.implementations import build
    from tfbench.implementations.interface import TrainConfig

    return build(stub["approach"], WORKLOAD, TrainConfig(mode=stub["mode"], seed=context.plan.seed))


def _user_loop_epoch(context: Context, stub: dict, x, y) -> tuple[dict, dict]:
    """One epoch of the tutorials' loop around the approach's own ``train_step``, with the record's fix."""
    from tfbench.benchmarks.environment import effective_settings
    from tfbench.benchmarks.tracing import epoch_batches, run_epoch, user_step

    tf, fix = context.tf, stub["variant"]
    trainer = _trainer(context, stub)
    weights = trainer.get_weights()
    step = user_step(tf, trainer.train_step, fix, jit_compile=stub["mode"] == "xla")
    bounds = epoch_batches(int(x.shape[0]), BATCH_SIZE, drop_remainder=fix == "drop_remainder")
    batches = [(x[a:b], y[a:b]) for a, b in bounds]  # sliced before the clock starts
    tensor_index = [tf.constant(i, tf.int64) for i in range(len(batches))]

    def arguments(i):
        return (*batches[i], tensor_index[i] if fix == "tensor_scalar" else i)

    trace = run_epoch(lambda i: step(*arguments(i)), arguments, len(batches), step.experimental_get_tracing_count,
                      compiles_per_shape=stub["mode"] == "xla", steady_call=lambda: step(*arguments(0)))
    return trace.metrics(), effective_settings(tf, functions=[step], model=getattr(trainer, "model", None),
                                               weights=weights, first_batch=batches[0])


def _keras_fit_epoch(context: Context, stub: dict, x, y) -> tuple[dict, dict]:
    """One ``fit`` epoch over ``tf.data`` batches (``drop_remainder`` per the fix), timed per batch by a
    callback that reads the trace counters of fit's own compiled step."""
    import keras

    from tfbench.benchmarks.environment import trainer_settings
    from tfbench.benchmarks.tracing import EpochTrace, signature_of

    tf = context.tf
    trainer = _trainer(context, stub)
    functions = trainer.compiled_functions()
    outer, nested = functions[0], functions[1:]
    drop = stub["variant"] == "drop_remainder"
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(BATCH_SIZE, drop_remainder=drop)
    first = next(iter(dataset))
    effective = trainer_settings(tf, trainer, first_batch=first)
    sizes = [int(b[0].shape[0]) for b in dataset]
    trace = EpochTrace()

    class Counter(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.epoch_start = time.perf_counter()

        def on_train_batch_begin(self, batch, logs=None):
            self.before = outer.experimental_get_tracing_count()
            self.start = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            float(logs["loss"])  # forces the step before the clock is read
            trace.call_s.append(time.perf_counter() - self.start)
            signature = signature_of([tf.zeros((sizes[batch], 28, 28, 1)), tf.zeros((sizes[batch],), tf.int32)])
            trace.traced.append(outer.experimental_get_tracing_count() > self.before
                                or (stub["mode"] == "xla" and signature not in trace.signatures))
            trace.signatures.add(signature)

        def on_epoch_end(self, epoch, logs=None):
            trace.epoch_wall_s = time.perf_counter() - self.epoch_start

    trainer.model.fit(dataset, epochs=1, verbose=0, shuffle=False, callbacks=[Counter()])
    trace.trace_count = outer.experimental_get_tracing_count()
    trace.nested_trace_count = sum(fn.experimental_get_tracing_count() for fn in nested)
    return trace.metrics(), effective


def _as_published(stub: dict) -> dict:
    """A published loop: read its module's source; an eager loop has nothing to count."""
    import inspect

    from tfbench.implementations.as_published import get_loop

    name = stub["variant"].split(":", 1)[1]
    source = inspect.getsource(inspect.getmodule(get_loop(name)))
    if "tf.function" in source:
        return {**stub, "status": "failed",
                "reason": f"the published loop {name} uses tf.function, which this stage does not drive yet"}
    return {**stub, "status": "unsupported",
            "reason": f"the published loop {name} runs eagerly (its source has no tf.function): " + EAGER_REASON}
