"""A run's time budget: measure the machine first, then size every record's samples and every stage's fixed
work so that the whole run's benchmarking takes about ``budget_s`` seconds (``tfbench run --budget``).

Three parts, each a pure function of its inputs so that tests drive them with fake clocks:

* **the stopping rule** (:class:`StoppingRule`, :func:`stop_reason`): sequential, as pyperf and Google
  Benchmark's ``--benchmark_min_time`` are. A record is sampled until, after at least ``min_samples``, the
  distribution-free 95% interval of its median (two order statistics, :func:`median_interval`) has a
  half-width under ``target`` of the median; or until its sample cap or its share of the budget is reached.
* **the machine measurement** (:func:`measure_machine`): a float32 matmul peak and the seconds of one trivial
  ``tf.function`` call. Their ratio to the reference machine (the one the README's figures come from) scales
  the cost model, :func:`job_cost`, which says what each job costs before it runs.
* **the budget itself** (:class:`Budget`): splits the seconds between the jobs' fixed work (builds, traces,
  warm-ups), their training (the accuracy and recipe stages: fewer epochs, then a training subset when the
  profile's do not fit) and their sampling; after each job it compares what the job took with what the model
  said and corrects the estimates of the jobs left, so a machine slower than its matmul peak suggests still
  ends near the budget. A budget too small to give every record a minimum interval is refused before anything
  is measured, naming the smallest that works.

docs/budget.md says all this for users, with the parameters.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from tfbench.errors import ConfigError

Clock = Callable[[], float]

# The machine the README's figures were measured on: its float32 matmul peak over the full runs (420-490 GFLOP/s
# in reports/results/cpu-full*.json). A machine measuring half the peak is taken to be twice as slow.
REFERENCE_GFLOPS = 450.0


@dataclass(frozen=True)
class StoppingRule:
    """When a record has enough samples: ``min_samples`` at least, then a 95% interval of the median narrower
    than ``target`` (a fraction of the median, each side), or ``max_samples``."""

    # Twenty, not ten: the 95% interval of ten samples' median runs from the second-smallest to the largest, so a
    # shared machine's one slow call sets its width (+-26% measured); of twenty, from the 6th to the 15th.
    min_samples: int = 20
    target: float = 0.02
    max_samples: int = 1000
    confidence: float = 0.95


DEFAULT_RULE = StoppingRule()


def median_interval(samples: Sequence[float], confidence: float = 0.95) -> tuple[float, float] | None:
    """A distribution-free interval of the median: the order statistics of ranks ``n/2 -+ z sqrt(n)/2`` (the
    binomial's normal approximation, as in Conover's *Practical Nonparametric Statistics*). It assumes the
    samples independent; None when there are too few for an interval at this confidence (fewer than 6 at 95%)."""
    n = len(samples)
    z = statistics.NormalDist().inv_cdf(0.5 + confidence / 2)
    low = math.floor((n - z * math.sqrt(n)) / 2)  # 0-based index of the lower order statistic
    high = math.ceil((n + z * math.sqrt(n)) / 2)  # ... and of the upper one
    if low < 0 or high > n - 1:
        return None
    ordered = sorted(samples)
    return float(ordered[low]), float(ordered[high])


def rel_halfwidth(samples: Sequence[float], confidence: float = 0.95) -> float:
    """The median interval's half-width as a fraction of the median (inf when there is no interval yet)."""
    interval = median_interval(samples, confidence)
    median = statistics.median(samples) if samples else 0.0
    if interval is None or median <= 0:
        return math.inf
    return (interval[1] - interval[0]) / 2 / median


def stop_reason(samples: Sequence[float], rule: StoppingRule) -> str | None:
    """``precision`` or ``max_samples`` when sampling of this record should stop, else None (the budget's own
    stop is the caller's: it knows the time)."""
    if len(samples) >= rule.min_samples and rel_halfwidth(samples, rule.confidence) <= rule.target:
        return "precision"
    if len(samples) >= rule.max_samples:
        return "max_samples"
    return None


# --- the machine ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MachineSpeed:
    """What the machine was measured at before a budgeted run: its matmul peak and one tf.function call."""

    matmul_gflops: float
    call_s: float

    @property
    def slowdown(self) -> float:
        """How many times slower than the reference machine, by the matmul peak: the reference's call time is not
        known, so ``call_s`` is recorded (and printed) but not used; the run's own correction (Budget.done)
        catches a machine whose calls are slower than its peak suggests."""
        return max(REFERENCE_GFLOPS / max(self.matmul_gflops, 1e-9), 0.25)

    def to_json(self) -> dict:
        return {"matmul_gflops": self.matmul_gflops, "call_s": self.call_s, "slowdown": self.slowdown}

    @classmethod
    def from_json(cls, stored: dict) -> MachineSpeed:
        return cls(matmul_gflops=float(stored["matmul_gflops"]), call_s=float(stored["call_s"]))


def time_calls(call: Callable[[], object], calls: int = 200, clock: Clock = time.perf_counter) -> float:
    """The median seconds of ``call`` (its result forced with float), after a few untimed calls."""
    for _ in range(5):
        float(call())
    times = []
    for _ in range(calls):
        start = clock()
        float(call())
        times.append(clock() - start)
    return float(statistics.median(times))


def measure_machine(tf, device, peak_gflops: float | None = None) -> MachineSpeed:
    """The machine's speed on ``device``: its matmul peak (``peak_gflops`` if already measured) and the seconds
    of a tf.function call that does almost nothing (what every compiled step pays on top of its math)."""
    from tfbench.benchmarks.roofline import matmul_gflops

    if peak_gflops is None:
        parallel = tf.config.threading.get_inter_op_parallelism_threads() if device.kind == "cpu" else 1
        peak_gflops = matmul_gflops(device, repeats=3, parallel=max(1, parallel), tf=tf)["peak_gflops"]
    with tf.device(device.tf_device):
        one = tf.constant(1.0)
        trivial = tf.function(lambda: one + 1.0)
        call_s = time_calls(trivial)
    return MachineSpeed(matmul_gflops=float(peak_gflops), call_s=call_s)


# --- the cost model --------------------------------------------------------------------------------------------

# Seconds on the reference machine, per record, of the work the budget cannot shorten (build, trace, first call,
# warm-up, the harness's overhead check), and per job (the batch bank, the roof probes, a profiler session).
# Fitted to `tox -e bench` on a clean clone (2026-12-03, a machine at 207 GFLOP/s, 2.2x the reference): each
# stage's seconds less its sampling and training, divided by that slowdown, rounded up (step_time: 184 s for 50
# records at their minimum samples; breakdown 65 s for 30; as_published 40 s besides its training, for 6). The
# run still corrects them with what its jobs take (Budget.done).
FIXED_PER_RECORD_S = {"step_time": 1.8, "breakdown": 1.1, "input_pipeline": 0.5, "accuracy": 1.5, "recipe": 1.5,
                      "as_published": 3.5, "distributed": 2.0,
                      # The diagnostics do fixed work the budget does not size (an epoch of traces, 1,000 steps of
                      # memory readings, a sweep of K, a training per policy, a JAX worker): counted, not shortened.
                      "retracing": 0.5, "memory_growth": 2.6, "k_sweep": 3.0, "mixed_precision": 10.0, "peer": 30.0}
FIXED_PER_JOB_S = {"step_time": 3.0, "breakdown": 2.0, "input_pipeline": 1.0, "as_published": 1.0,
                   "distributed": 2.0}
# The configurations a job of these stages samples, per record (as_published times the published loop and the
# fixed loop in each mode and K: about six).
SAMPLED_PER_RECORD = {"step_time": 1, "input_pipeline": 1, "as_published": 6, "distributed": 1}
# Sampling seconds a configuration gets at least, on the reference machine, scaled by the slowdown: enough for
# the rule's minimum of a slow (eager CNN, ~20 ms) step, and for a few hundred samples of a compiled one, whose
# single calls scatter by 10-30% on a shared machine (ten samples gave a median interval of +-26% there).
MIN_SAMPLE_S = 0.2
# A training epoch's seconds on the reference machine: 3 x the forward FLOPs per example (forward and
# backward) at this fraction of the matmul peak, plus a fixed cost per optimizer step. Fitted to the quick
# profile's accuracy stage on that machine (MLP 0.77 s, CNN 3.1 s per epoch of 60,000 at batch 128).
DENSE_EFFICIENCY = 0.5
CONV_EFFICIENCY = 0.2
STEP_OVERHEAD_S = 0.3e-3
# A step of a tutorial's loop as published (eager, with its printing and metric updates) costs this much more
# than a compiled step, on the reference machine: the six loops' steps measured 6-72 ms there (13.5-157 ms on the
# 2.2x machine), their compiled math 1-7 ms. Only the plan uses it: the job sizes its training from the published
# step it has just timed (Budget.training's ``epoch_s``).
PUBLISHED_STEP_OVERHEAD_S = 20e-3
# The smallest training a budget may shrink an accuracy or recipe record to: one epoch of this share of the set.
MIN_TRAIN_FRACTION = 0.1
# The sampling gets at least this many times its minimum before the training stages run at full size.
SAMPLING_HEADROOM = 3.0
# A profile's default budget that is too small for the machine grows to this much over the smallest that fits
# (to the next 10 s): the margin goes to the sampling, and absorbs an error of the cost model without overrunning.
GROW_MARGIN = 1.15


def epoch_seconds(workload_name: str, examples: int, batch_size: int, slowdown: float = 1.0) -> float:
    """The cost model's seconds for one training epoch of ``workload_name`` on ``examples`` examples."""
    from tfbench.implementations.workloads import get_workload

    workload = get_workload(workload_name)
    efficiency = CONV_EFFICIENCY if "cnn" in workload_name else DENSE_EFFICIENCY
    compute = examples * 3 * workload.flops_per_sample / (REFERENCE_GFLOPS * 1e9 * efficiency)
    return slowdown * (compute + math.ceil(examples / batch_size) * STEP_OVERHEAD_S)


@dataclass(frozen=True)
class JobCost:
    """What a job costs before it runs, in seconds on this machine: its fixed work, its training at the
    profile's size and at its smallest, and how many configurations it samples."""

    fixed_s: float
    train_s: float = 0.0
    min_train_s: float = 0.0
    configs: int = 0


TRAIN_EXAMPLES = 60000  # MNIST's and Fashion-MNIST's training sets (a recipe's validation split is ignored)


def job_cost(job, plan, slowdown: float) -> JobCost:
    """The cost model applied to one job of ``plan`` (a :class:`~tfbench.benchmarks.stages.base.Job`)."""
    kind, records = job.kind, len(job.stubs)
    fixed = slowdown * (FIXED_PER_JOB_S.get(kind, 0.0) + records * FIXED_PER_RECORD_S.get(kind, 1.0))
    configs = records * SAMPLED_PER_RECORD.get(kind, 0)
    epoch = 0.0
    epochs = 0
    if kind == "accuracy":
        epochs = plan.accuracy_epochs
        epoch = epoch_seconds(job.params["workload"], TRAIN_EXAMPLES, plan.accuracy_batch_size, slowdown)
    elif kind == "recipe":
        recipe = job.params["recipe"]
        epochs = min(plan.recipe_epochs or recipe.epochs, recipe.epochs)
        epoch = epoch_seconds(recipe.workload, recipe.train_limit or TRAIN_EXAMPLES, recipe.batch_size, slowdown)
    elif kind == "as_published":  # the published loop's training: eager, its extra work at every step
        recipe = job.params["recipe"]
        epochs = min(plan.as_published_epochs or recipe.epochs, recipe.epochs)
        examples, batch_size = recipe.train_limit or TRAIN_EXAMPLES, job.stubs[0]["batch_size"]  # the loop's own
        epoch = epoch_seconds(recipe.workload, examples, batch_size, slowdown) + slowdown * math.ceil(
            examples / batch_size) * PUBLISHED_STEP_OVERHEAD_S
    return JobCost(fixed_s=fixed, train_s=epochs * epoch, min_train_s=MIN_TRAIN_FRACTION * epoch if epochs else 0.0,
                   configs=configs)


def size_training(epochs: int, epoch_s: float, allotted_s: float) -> tuple[int, float]:
    """(epochs, share of the training set) that fit in ``allotted_s``, from the profile's ``epochs`` of
    ``epoch_s`` each: fewer epochs first (a whole epoch is what a reader compares), then, at one epoch, a
    subset of the training set (at least :data:`MIN_TRAIN_FRACTION`)."""
    if epoch_s <= 0 or epochs * epoch_s <= allotted_s:
        return epochs, 1.0
    fitting = int(allotted_s // epoch_s)
    if fitting >= 1:
        return fitting, 1.0
    return 1, max(MIN_TRAIN_FRACTION, round(allotted_s / epoch_s, 2))


# --- the budget ------------------------------------------------------------------------------------------------


@dataclass
class Budget:
    """A run's budget across its jobs (those still to run), kept up to date as they end.

    ``spent_s`` is what a resumed run already spent (its records' durations). The budget covers the jobs'
    own time: TensorFlow's start-up, the machine measurement and the report are outside it.
    """

    budget_s: float
    speed: MachineSpeed
    costs: dict[int, JobCost]  # id(job) -> its cost
    rule: StoppingRule = DEFAULT_RULE
    spent_s: float = 0.0
    correction: float = 1.0  # actual / estimated over the jobs done so far
    allotment_s: float | None = None  # the running job's sampling seconds
    _expected: float = 0.0
    _sampled_s: float = 0.0
    _estimated_done: float = 0.0
    _actual_done: float = 0.0
    _left: dict[int, JobCost] = field(default_factory=dict)

    @classmethod
    def for_jobs(cls, budget_s: float, speed: MachineSpeed, jobs: list, plan, *, spent_s: float = 0.0,
                 rule: StoppingRule = DEFAULT_RULE, strict: bool = True, grow: bool = False) -> Budget:
        """The budget of ``jobs``; refused (ConfigError) when it cannot give every record its minimum (unless
        not ``strict``: a resumed run over its budget finishes at the minimum). With ``grow`` (a profile's own
        default budget, which the user did not choose) a budget too small becomes the smallest that fits, with a
        margin (:data:`GROW_MARGIN`), so that the main job still runs on a slow machine, in a time it states
        before it starts."""
        costs = {id(job): job_cost(job, plan, speed.slowdown) for job in jobs}
        budget = cls(budget_s=budget_s, speed=speed, costs=costs, rule=rule, spent_s=spent_s, _left=dict(costs))
        smallest = budget.smallest_s() + spent_s
        if grow and budget_s < smallest:
            grown = float(10 * math.ceil(smallest * GROW_MARGIN / 10))
            return cls(budget_s=grown, speed=speed, costs=costs, rule=rule, spent_s=spent_s, _left=dict(costs))
        if strict and budget_s < smallest:
            raise ConfigError(f"a budget of {budget_s:g} s is too small for this plan on this machine "
                              f"({speed.slowdown:.1f}x slower than the reference): the smallest that gives every "
                              f"record a minimum interval is about {math.ceil(smallest)} s (--budget "
                              f"{math.ceil(smallest)}), or run fewer approaches, workloads or stages")
        return budget

    def min_sampling_s(self, configs: int) -> float:
        return configs * MIN_SAMPLE_S * self.speed.slowdown

    def smallest_s(self) -> float:
        """The least this budget's remaining jobs need: fixed work, smallest training, minimum sampling."""
        left = self._left.values()
        return sum(self.correction * (c.fixed_s + c.min_train_s) + self.min_sampling_s(c.configs) for c in left)

    def remaining_s(self) -> float:
        return max(0.0, self.budget_s - self.spent_s)

    def _training_scale(self) -> float:
        """The share of their profile size the remaining training jobs get (1: all of it)."""
        left = list(self._left.values())
        full = sum(self.correction * c.train_s for c in left)
        if full <= 0:
            return 1.0
        fixed = sum(self.correction * c.fixed_s for c in left)
        sampling = SAMPLING_HEADROOM * sum(self.min_sampling_s(c.configs) for c in left)
        return max(0.0, min(1.0, (self.remaining_s() - fixed - sampling) / full))

    def start(self, job) -> None:
        """Before ``job`` runs: its share of the sampling seconds left (by its configurations), and what the model
        expects it to take (compared with what it took in :meth:`done`)."""
        cost = self._left.get(id(job))
        self.allotment_s = None
        if cost is None:
            return
        left = list(self._left.values())
        scale = self._training_scale()
        if cost.configs:
            committed = sum(self.correction * (c.fixed_s + scale * c.train_s) for c in left)
            sampling = max(0.0, self.remaining_s() - committed)
            configs = sum(c.configs for c in left)
            self.allotment_s = max(self.min_sampling_s(cost.configs), sampling * cost.configs / configs)
        self._expected = cost.fixed_s + scale * cost.train_s  # uncorrected: the model's own estimate

    def training(self, job, epochs: int, epoch_s: float | None = None) -> tuple[int, float]:
        """(epochs, share of the training set) for a training job whose profile asks ``epochs``; ``epoch_s``:
        an epoch's seconds as the job measured them (the model's, corrected, if None). Its share of the budget is
        the model's either way, so a job that measured itself slower than the model trains less, not longer."""
        cost = self._left.get(id(job))
        if cost is None or not cost.train_s or not epochs:
            return epochs, 1.0
        if epoch_s is None:
            epoch_s = self.correction * cost.train_s / epochs
        return size_training(epochs, epoch_s, self._training_scale() * cost.train_s * self.correction)

    def done(self, job, duration_s: float) -> None:
        """After ``job``: count its time, and correct the model by what the non-sampling part really took."""
        cost = self._left.pop(id(job), None)
        self.spent_s += duration_s
        if cost is not None:
            self._estimated_done += self._expected
            self._actual_done += max(0.0, duration_s - self._sampled_s)
            if self._estimated_done > 0:
                self.correction = min(4.0, max(0.25, self._actual_done / self._estimated_done))
        self.allotment_s, self._sampled_s = None, 0.0

    def sampled(self, seconds: float) -> None:
        """The running job's sampling took ``seconds`` (told by the timing loop, for the correction)."""
        self._sampled_s += seconds

    def eta_s(self) -> float:
        """Seconds the jobs left should take: the budget left, but at least their minimum."""
        return max(self.smallest_s(), self.remaining_s()) if self._left else 0.0


def spent_by(records: list[dict]) -> float:
    """What a run's records already took (a resumed budgeted run counts it against its budget)."""
    return float(sum(r.get("duration_s", 0.0) for r in records))
