"""The stages of a run, one module each, in run order (see :mod:`.base` for what a stage provides).

* :mod:`.step_time`: time per training step, every approach x workload x mode x K x batch size x device;
* :mod:`.breakdown`: where one compiled call's time goes, op category by category, from TensorFlow's profiler;
* :mod:`.input_pipeline`: one step fed four ways, from device-resident tensors to the tutorials' NumPy slicing;
* :mod:`.accuracy`: each approach trained on the real dataset, with time-to-accuracy;
* :mod:`.recipe`: the tutorials' documented recipes, beside the figures they report;
* :mod:`.as_published`: each tutorial's own loop as published, against its recipe done well;
* :mod:`.retracing`: traces of each approach's compiled step over a user's epoch, and what each fix saves;
* :mod:`.memory_growth`: each approach's memory slope over steps, repeated fit() calls and repeated builds;
* :mod:`.k_sweep`: step time at K = 1, 2, 4 ... 64 steps per call, and the knee where more stops paying;
* :mod:`.mixed_precision`: float32, mixed_bfloat16 and mixed_float16 per approach: step time and accuracy;
* :mod:`.distributed`: every approach under a ``tf.distribute`` strategy at 1, 2, 4... replicas (only when
  the run names a strategy);
* :mod:`.peer`: the best TensorFlow styles beside Keras 3 on JAX and plain JAX (the full profile; JAX optional).
"""

from __future__ import annotations

from types import ModuleType

from tfbench.benchmarks.stages import (
    accuracy,
    as_published,
    breakdown,
    distributed,
    input_pipeline,
    k_sweep,
    memory_growth,
    mixed_precision,
    peer,
    recipe,
    retracing,
    step_time,
)

STAGES: dict[str, ModuleType] = {stage.KIND: stage for stage in (step_time, breakdown, input_pipeline, accuracy,
                                                                  recipe, as_published, retracing, memory_growth,
                                                                  k_sweep, mixed_precision, distributed, peer)}
